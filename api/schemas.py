"""HTTP request and response bodies. Every field is bounded; unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.config import COLLECTION_PATTERN
from rag.governance.conversations import MAX_TITLE, MAX_TURN_JSON_BYTES

FilterValue = Annotated[str, Field(max_length=4096)]

FLAGGED_DOC = (
    "True when the passage reads as instructions to an AI assistant (prompt injection): "
    "the document tries to steer answers. Lore does not follow them; an operator may keep "
    "such passages out of answers (exclude_flagged_passages)."
)

# How every body names a file: readers see its name, only admins its server path.
SOURCE_DOC = (
    "The file's name in its collection: its path within the folder it was ingested from "
    "(such as policies/2024/leave.pdf), or the uploaded file's name."
)
PATH_DOC = "Where the file lies on the server, for an admin key; null for any other key."
SOURCES_DOC = "The names of the document's files in its collection (see `source`)."
PATHS_DOC = (
    "Where each of `sources` lies on the server, in the same order, for an admin key; "
    "null for any other key."
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TurnIn(Strict):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)


class FiltersIn(Strict):
    """Which documents to draw on. Values of one field are alternatives; fields combine."""

    source: list[FilterValue] = Field(
        default_factory=list,
        max_length=20,
        description="Source names, as `source` shows them: an exact name, a folder, or a glob "
        "such as reports/*.pdf. A leading / anchors a pattern at the top of the collection. "
        "An admin key's patterns also match server paths.",
        examples=[["reports/*.pdf"]],
    )
    type: list[FilterValue] = Field(
        default_factory=list,
        max_length=20,
        description="File extensions, such as pdf or md.",
        examples=[["pdf", "docx"]],
    )
    since: str | None = Field(
        default=None,
        max_length=40,
        description="Modified at or after this ISO 8601 date or time (UTC unless it says).",
        examples=["2024-01-01"],
    )
    until: str | None = Field(
        default=None,
        max_length=40,
        description="Modified at or before this ISO 8601 date (the whole day) or time.",
        examples=["2024-12-31"],
    )


class QueryRequest(Strict):
    # Its length limit is the server's `max_question_chars` (rag.answering.answerer.check_question).
    question: str = Field(min_length=1, examples=["What port does Lore use?"])
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    top_k: int | None = Field(default=None, ge=1, le=50)
    filters: FiltersIn | None = None
    stream: bool = False
    history: list[TurnIn] = Field(
        default_factory=list,
        max_length=50,
        description="Earlier turns of the conversation, oldest first. A follow-up question "
        "is rewritten into a standalone one before the search.",
    )


class SearchRequest(Strict):
    # Its length limit is the server's `max_question_chars` (rag.answering.answerer.check_question).
    question: str = Field(min_length=1)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    top_k: int = Field(default=5, ge=1, le=50)
    filters: FiltersIn | None = None


class CitationOut(BaseModel):
    number: int
    chunk_id: str
    doc_id: str
    source: str = Field(description=SOURCE_DOC)
    title: str
    page: int | None
    text: str
    score: float
    heading: str
    span: tuple[int, int] | None = Field(
        default=None, description="Characters of `text` that support the answer: [start, end)."
    )
    holds_answer: bool = Field(
        default=True,
        description="False for the passages shown with a declined answer: the closest found, "
        "judged not to answer the question.",
    )
    flagged: bool = Field(default=False, description=FLAGGED_DOC)
    path: str | None = Field(default=None, description=PATH_DOC)


class QueryResponse(BaseModel):
    question: str
    query: str = Field(description="The standalone question searched for (a rewritten follow-up).")
    collection: str
    answer: str
    declined: bool
    citations: list[CitationOut]
    sources: list[CitationOut]


class PassageOut(BaseModel):
    rank: int
    score: float
    rerank_score: float | None
    chunk_id: str
    doc_id: str
    source: str = Field(description=SOURCE_DOC)
    path: str | None = Field(default=None, description=PATH_DOC)
    title: str
    page: int | None
    heading: str
    text: str
    flagged: bool = Field(default=False, description=FLAGGED_DOC)


class DocumentOut(BaseModel):
    doc_id: str
    sha256: str
    status: str
    title: str
    chunks: int
    error_code: str | None
    error: str | None
    created_at: float
    updated_at: float
    sources: list[str] = Field(description=SOURCES_DOC)
    paths: list[str] | None = Field(default=None, description=PATHS_DOC)
    type: str | None = Field(
        description="The file's extension, lower case, without the dot (`pdf`, `docx`; an "
        "archive member's own); null when its name has none."
    )
    pages: int | None = Field(
        description="How many pages it has; null for a format without pages, or a document "
        "indexed before this was recorded."
    )


class IngestOut(BaseModel):
    source: str = Field(description=SOURCE_DOC)
    path: str | None = Field(default=None, description=PATH_DOC)
    doc_id: str
    status: str
    chunks: int
    error_code: str | None
    error: str | None
    members: list[IngestOut] = Field(
        default_factory=list,
        description="An archive's members, each as a file is (`source` is "
        "`archive.zip!/folder/member.pdf`); empty for any other file.",
    )


class DeleteOut(BaseModel):
    doc_id: str
    deleted_chunks: int
    sources: list[str] = Field(description=SOURCES_DOC)
    paths: list[str] | None = Field(default=None, description=PATHS_DOC)


class ErrorOut(BaseModel):
    code: str
    message: str
    request_id: str


class Health(BaseModel):
    status: str


class JobOut(BaseModel):
    id: str
    collection: str
    status: str
    total: int
    done: int
    counts: dict[str, int]
    report: dict[str, object] | None = Field(
        description="When the job is done: counts, chunks, seconds by stage, and `failures`, "
        "each with `source` (the file's name), `path` (admin keys only, else null), `code` "
        "and `error`."
    )
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


class ChunkOut(BaseModel):
    chunk_id: str
    page: int | None
    heading: str
    text: str


class DocumentWarningOut(BaseModel):
    code: str = Field(
        description="What the parser noticed: `empty_pages` (pages that gave no text), `ocr` "
        "(text read by OCR), `encoding_guessed` (a text file not in UTF-8), `hidden_text` "
        "(passages a reader cannot see, left out) or `table_split` (a table without column "
        "names cut across chunks)."
    )
    message: str = Field(description="The same, in a sentence for a reader.")
    detail: str = Field(
        default="",
        description="The sentence's variable part alone: the pages (`2\N{EN DASH}4, 9`) of "
        "`empty_pages` and `ocr`, the encoding of `encoding_guessed`, the count of "
        "`hidden_text` and `table_split`; empty for an image read by OCR.",
    )


class DocumentDetailOut(DocumentOut):
    size: int | None = Field(description="The file's size in bytes; null when unknown.")
    modified_at: float | None = Field(
        description="When the file was last modified, in seconds since the epoch (for an "
        "upload: when it was uploaded); null when unknown."
    )
    uploaded_by: str | None = Field(
        description="Who uploaded it through the API (`key:<key_id>`); null for a file "
        "ingested from a folder or the command line, or indexed before this was recorded."
    )
    warnings: list[DocumentWarningOut] = Field(
        description="What the parser noticed that a reader of the text should know, "
        "recorded when the document was indexed."
    )
    chunk_texts: list[ChunkOut]


class CollectionIn(Strict):
    name: str = Field(pattern=COLLECTION_PATTERN, examples=["contracts"])


class CollectionOut(BaseModel):
    name: str
    documents: int = Field(description="Documents visible to queries (indexed).")
    chunks: int


class ExamplesOut(BaseModel):
    """What a collection's empty chat may offer its reader."""

    questions: list[str] = Field(
        description="Example questions an admin set for the collection (`example_questions`); "
        "[] otherwise."
    )
    headings: list[str] = Field(
        description="When no questions are set: up to 6 headings of the collection's "
        "documents, for a client to turn into questions in its reader's language."
    )
    source: Literal["settings", "headings", "none"] = Field(
        description="Where they come from; `none` when there is nothing to offer."
    )


class ReindexIn(BaseModel):
    embedding_model: str = Field(
        min_length=1,
        max_length=200,
        description="The model to re-embed with: an installed catalogue name, or `hashing`.",
    )


class ReindexReportOut(BaseModel):
    collection: str
    embedder: str = Field(description="The embedder the collection answers with now.")
    previous: str
    chunks: int
    embedded: int = Field(description="Chunks this run embedded (less when it resumed).")
    resumed: bool
    unchanged: bool = Field(description="It was built with that embedder already.")
    switched: bool
    seconds: float
    paused_s: float = Field(description="How long writes waited for the switch.")


class ReindexOut(BaseModel):
    collection: str
    embedding_model: str
    state: Literal["running", "switched", "unchanged", "stopped", "failed"]
    done: int = Field(description="Chunks the re-embedded copy holds so far.")
    total: int | None = Field(description="Chunks to copy (null until counted).")
    error: str | None
    report: ReindexReportOut | None


class CollectionDeleteOut(BaseModel):
    name: str
    deleted_documents: int
    deleted_chunks: int


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["payroll-bot"])
    role: Literal["admin", "reader", "writer"]
    collections: list[Annotated[str, Field(pattern=COLLECTION_PATTERN)]] = Field(
        default_factory=list,
        max_length=1000,
        description="What a reader or writer key reaches; an admin key names none.",
    )


class KeyOut(BaseModel):
    key_id: str
    name: str
    role: str
    collections: list[str]
    created_at: float
    revoked: bool
    revoked_at: float | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself. It is shown only this once; store it safely.")


class MeOut(BaseModel):
    """The key that made the request: what it is and what it may reach."""

    key_id: str = Field(description="`local` when the server checks no keys.")
    name: str
    role: Literal["admin", "writer", "reader"]
    collections: list[str] = Field(
        description="What a reader or writer key reaches; an admin key reaches every "
        "collection and names none."
    )
    auth: bool = Field(
        description="Whether the server checks keys. False: every request is served as an "
        "admin, without a key (one person on the server's own machine)."
    )


class AuditVerifyOut(BaseModel):
    """Whether the audit log's hash chain is intact, and if not, where it breaks."""

    ok: bool
    entries: int = Field(description="Entries found intact: all when `ok`, else those before.")
    first_bad_seq: int | None = Field(description="The seq of the first entry that fails.")
    problem: str | None = Field(description="What is wrong with it, in a sentence.")


class FeedbackIn(Strict):
    """A rating of one answer, with what was asked and answered and the chunks it drew on."""

    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    question: str = Field(min_length=1, max_length=8000)
    answer: str = Field(max_length=20000, description="The answer as shown (may be empty).")
    chunk_ids: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="The ids of the chunks the answer cited (`citations[].chunk_id`).",
    )
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    id: str
    at: str = Field(description="When it was recorded: ISO 8601, UTC.")


class FeedbackRecordOut(BaseModel):
    """A rating as it was given, with what was asked and answered."""

    id: str
    at: str = Field(description="When it was given: ISO 8601, UTC.")
    at_epoch: float = Field(description="The same, in seconds since the epoch.")
    actor: str = Field(description="Who gave it: `key:<key id>`, never the key.")
    collection: str
    question: str
    answer: str
    chunk_ids: list[str]
    rating: Literal["up", "down"]
    comment: str | None
    request_id: str | None


# -- saved conversations ------------------------------------------------------

CONVERSATION_TITLE_DOC = "Empty until the first question names it (its first 80 characters)."
# The citation objects of an answer, stored as the client sends them back.
AnswerPassages = Annotated[
    list[dict[str, Any]],
    Field(
        max_length=50,
        description="As `/v1/query` returned them (its `citations` or `sources` objects). "
        f"A turn's citations and sources together are at most {MAX_TURN_JSON_BYTES:,} "
        "bytes as JSON.",
    ),
]


class ConversationIn(Strict):
    """A new saved conversation: its title and which documents its questions ask."""

    title: str = Field(default="", max_length=MAX_TITLE, description=CONVERSATION_TITLE_DOC)
    collection: str | None = Field(
        default=None, pattern=COLLECTION_PATTERN, description="Default: the server's."
    )
    filters: FiltersIn | None = None


class ConversationPatch(Strict):
    """What to change of a saved conversation; a field left out or null stays as it is."""

    title: str | None = Field(default=None, max_length=MAX_TITLE)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    filters: FiltersIn | None = Field(default=None, description="Replaces the filters whole.")


class ConversationTurnIn(Strict):
    """A question asked in a conversation and the answer `/v1/query` gave, to keep."""

    question: str = Field(min_length=1, max_length=8000)
    answer: str = Field(max_length=20000, description="The answer as shown (may be empty).")
    query: str | None = Field(
        default=None, max_length=8000, description="The answer's `query`: what was searched for."
    )
    declined: bool
    citations: AnswerPassages = Field(default_factory=list)
    sources: AnswerPassages = Field(default_factory=list)


class ConversationTurnOut(BaseModel):
    question: str
    answer: str
    query: str | None
    declined: bool
    citations: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    at: float = Field(description="When it was added, in seconds since the epoch.")


class ConversationSummaryOut(BaseModel):
    id: str
    title: str = Field(description=CONVERSATION_TITLE_DOC)
    collection: str
    filters: FiltersIn
    created_at: float
    updated_at: float = Field(description="The last turn added or change made.")
    turn_count: int


class ConversationOut(ConversationSummaryOut):
    turns: list[ConversationTurnOut] = Field(description="Oldest first.")


class Ready(BaseModel):
    """What a load balancer's probe needs, and nothing more."""

    status: Literal["ready", "not ready"]


class Readiness(Ready):
    """Ready or not, and for an admin, each check's state."""

    checks: dict[str, str]


# -- OpenAI-compatible bodies -------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(max_length=40)
    text: str | None = Field(default=None, max_length=8000)


class ChatMessageIn(BaseModel):
    # OpenAI clients send fields Lore has no use for (name, tool calls); they are ignored.
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # The question's limit is the server's (rag.answering.answerer.check_question); the request
    # body as a whole is bounded by `max_body_mb`.
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(
        default=False, description="Send a last chunk with the answer's token counts."
    )


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request. The model `lore:<collection>` picks a collection;
    the last message is the question, earlier user and assistant messages its history.
    Sampling fields (temperature, top_p, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=600, examples=["lore:default"])
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=51)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[Annotated[str, Field(max_length=8000)]] = Field(
        max_length=8000, description="A text, or up to 256 texts."
    )
    model: str = Field(max_length=600)
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="base64: little-endian float32 bytes (the OpenAI SDK's default).",
    )
