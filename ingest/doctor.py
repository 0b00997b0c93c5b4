"""`lore doctor`: check that a data directory is whole, and mend what can be mended.

The checks, each a `Finding`:
- every SQLite store opens, passes SQLite's quick_check, and has a schema this release
  reads (rag/components/database.py);
- the configured models are present and their weights have the catalogue's sha256;
- per collection, the manifest agrees with the vector store and the keyword index:
  every visible document has all its chunks in both, and neither holds chunks of a
  document the manifest does not know (orphans);
- every source of the manifest points at a document, and every uploaded file a
  document was made from is still in the uploads folder;
- the audit log's hash chain is intact;
- the disk holding the data directory has at least `min_free_mb` free.

`repair` mends the index only, pessimistically, as ingest writes it: orphans are
removed; a collection's keyword index is rebuilt from the chunks in the vector store;
a document that lacks chunks is indexed again from its file, or, when its file is gone
too, recorded as failed (invisible) with the reason. It never writes to the audit log:
a broken chain is evidence, and is reported, never "repaired".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.jobs import SCHEMA_VERSION as JOBS_SCHEMA
from rag.components.database import is_damage, newer_schema, schema_version
from rag.components.disk import free_mb
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.keyword import SCHEMA_VERSION as KEYWORDS_SCHEMA
from rag.components.onnx_embeddings import onnx_embedder_name
from rag.components.store import ChromaStore, hold_folder
from rag.config import Settings
from rag.container import Lore
from rag.errors import LoreError, NotFound, SchemaMismatch, StoreDamaged
from rag.governance.access import SCHEMA_VERSION as KEYS_SCHEMA
from rag.governance.audit import SCHEMA_VERSION as AUDIT_SCHEMA
from rag.governance.audit import AuditLog
from rag.governance.conversations import SCHEMA_VERSION as CONVERSATIONS_SCHEMA
from rag.governance.feedback import SCHEMA_VERSION as FEEDBACK_SCHEMA
from rag.models import get_spec, status
from rag.retrieval.manifest import MEMBER_MARK, DocumentRecord
from rag.retrieval.manifest import SCHEMA_VERSION as MANIFEST_SCHEMA

Severity = Literal["ok", "warning", "problem"]
Progress = Callable[[str], None]

# Each SQLite store, with the schema version this release writes.
SQLITE_STORES = {
    "manifest.sqlite3": MANIFEST_SCHEMA,
    "keywords.sqlite3": KEYWORDS_SCHEMA,
    "keys.sqlite3": KEYS_SCHEMA,
    "audit.sqlite3": AUDIT_SCHEMA,
    "feedback.sqlite3": FEEDBACK_SCHEMA,
    "conversations.sqlite3": CONVERSATIONS_SCHEMA,
    "jobs.sqlite3": JOBS_SCHEMA,
}
# Small, and read before anything else is done: checked page by page before serving.
CHECKED_AT_START = ("manifest.sqlite3", "keys.sqlite3")


@dataclass(frozen=True)
class Finding:
    """One check's outcome: `severity` "problem" makes the data directory unhealthy;
    `fix` says what mends it (what `--repair` does, when `repairable`)."""

    check: str
    severity: Severity
    message: str
    fix: str | None = None
    repairable: bool = False


@dataclass
class CollectionState:
    """How a collection's stores disagree with its manifest (doc ids, chunk counts)."""

    name: str
    documents: int = 0
    chunks: int = 0
    # Visible documents with fewer chunks than the manifest says, in the vector store and
    # in the keyword index.
    short_in_store: list[str] = field(default_factory=list)
    short_in_keywords: list[str] = field(default_factory=list)
    # Chunks, per document, of documents the manifest does not hold as visible or unfinished.
    orphans_in_store: dict[str, int] = field(default_factory=dict)
    orphans_in_keywords: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    collections: dict[str, CollectionState] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return all(f.severity != "problem" for f in self.findings)

    def add(
        self,
        check: str,
        severity: Severity,
        message: str,
        fix: str | None = None,
        repairable: bool = False,
    ) -> None:
        self.findings.append(Finding(check, severity, message, fix, repairable))


def _quiet(step: str) -> None:
    del step


# -- the checks ----------------------------------------------------------------


def sqlite_damage(path: Path) -> str | None:
    """What SQLite's quick_check finds wrong with the file at `path` (None when it reads
    whole, or is not there: a store not used yet)."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            result = str(db.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    return None if result == "ok" else result


def check_sqlite(path: Path) -> str | None:
    """A sentence on what is wrong with the SQLite file at `path`; None when it is whole."""
    damage = sqlite_damage(path)
    return None if damage is None else f"{path} is damaged ({damage})"


def check_stores_open(settings: Settings) -> None:
    """Before serving an embedded data directory: StoreDamaged, naming the file and the
    fix, for the first store that is not whole (the small ones checked page by page, the
    rest opened), SchemaMismatch for one a newer release wrote. Changes nothing."""
    data = settings.data_dir
    for name, version in SQLITE_STORES.items():
        path = data / name
        if not path.is_file():
            continue
        try:
            found = schema_version(path) or 0
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged.file(path, exc) from None
        if found > version:
            raise newer_schema(path, found, version)
        damage = sqlite_damage(path) if name in CHECKED_AT_START else None
        if damage:
            raise StoreDamaged.file(path, damage)
    if settings.chroma_host is None and (settings.chroma_dir / "chroma.sqlite3").is_file():
        ChromaStore.embedded(settings.chroma_dir, None).close()


def _check_files(lore: Lore, report: Report) -> bool:
    """SQLite stores whole and of a schema this release reads; False when the manifest
    or keyword index can't be used (the index checks are skipped then)."""
    usable = True
    data = lore.settings.data_dir
    for name, version in SQLITE_STORES.items():
        problem = check_sqlite(data / name)
        found = None if problem else schema_version(data / name)
        if found is not None and found > version:
            report.add("schema", "problem", str(newer_schema(data / name, found, version)))
            usable = usable and name != "manifest.sqlite3"
            continue
        if found is not None:
            later = "" if found == version else f" (made version {version} when next opened)"
            report.add("schema", "ok", f"{name}: schema version {found}{later}")
        if problem is None:
            continue
        keyword_index = name == "keywords.sqlite3"
        fix = (
            "`lore doctor --repair` rebuilds it from the chunks in the vector store"
            if keyword_index
            else "restore the data directory from a backup (`lore restore`)"
        )
        report.add("files", "problem", problem, fix, repairable=keyword_index)
        if name == "manifest.sqlite3":
            usable = False
    return usable


def _check_models(lore: Lore, report: Report) -> None:
    settings = lore.settings
    names = []
    if settings.embedding_backend != "hashing" and settings.embedding_model_path is None:
        names.append(settings.embedding_model)
    if settings.llm_backend == "llama_cpp" and settings.chat_model_path is None:
        names.append(settings.chat_model)
    for name in names:
        try:
            spec = get_spec(name)
        except LoreError:
            continue  # not in the catalogue: nothing to check it against
        state = status(spec, settings.resolved_models_dir, full=True)
        if state.present:
            report.add("models", "ok", f"model {name}: sha256 matches the catalogue")
        else:
            # The sentence names the command that mends it.
            report.add("models", "problem", state.problem or f"model {name} is missing")


def _counts(
    lore: Lore, collection: str, keywords_usable: bool
) -> tuple[dict[str, int], dict[str, int]]:
    try:
        stored = lore.store.chunk_counts(collection)
    except NotFound:
        stored = {}
    keywords = lore.keywords.chunk_counts(collection) if keywords_usable else {}
    return stored, keywords


def collection_state(lore: Lore, collection: str, keywords_usable: bool = True) -> CollectionState:
    """Compare `collection`'s manifest with its vector store and keyword index (taken as
    empty when it is not usable)."""
    state = CollectionState(collection)
    documents = lore.manifest.documents(collection)
    unfinished = {r.doc_id for r in lore.manifest.unfinished(collection)}
    visible = {r.doc_id: r.chunks for r in documents if r.status == "indexed"}
    state.documents = len(visible)
    state.chunks = sum(visible.values())
    state.unfinished = len(unfinished)
    stored, keywords = _counts(lore, collection, keywords_usable)
    known = set(visible) | unfinished
    for doc_id, chunks in sorted(visible.items()):
        if stored.get(doc_id, 0) != chunks:
            state.short_in_store.append(doc_id)
        if keywords.get(doc_id, 0) != chunks:
            state.short_in_keywords.append(doc_id)
    state.orphans_in_store = {d: n for d, n in stored.items() if d not in known}
    state.orphans_in_keywords = {d: n for d, n in keywords.items() if d not in known}
    return state


def _check_collection(state: CollectionState, report: Report) -> None:
    name = state.name
    for short, lack, fix in (
        (state.short_in_store, "chunks in the vector store", "indexes them again from their files"),
        (state.short_in_keywords, "rows in the keyword index",
         "rebuilds the keyword index from the vector store"),
    ):  # fmt: skip
        if short:
            report.add(
                "index", "problem",
                f"collection {name}: {len(short)} document(s) lack {lack} (first: {short[0]})",
                f"`lore doctor --repair` {fix}", repairable=True,
            )  # fmt: skip
    for where, orphans in (
        ("vector store", state.orphans_in_store),
        ("keyword index", state.orphans_in_keywords),
    ):
        if orphans:
            report.add(
                "index", "problem",
                f"collection {name}: {sum(orphans.values())} chunk(s) in the {where} belong to "
                f"no document of the manifest (orphans of {len(orphans)} document(s))",
                "`lore doctor --repair` removes them", repairable=True,
            )  # fmt: skip
    if state.unfinished:
        report.add(
            "index", "warning",
            f"collection {name}: {state.unfinished} document(s) unfinished: an ingest under "
            "way, or the leftovers of one that crashed",
            "the next ingest, or `lore doctor --repair` when none runs, removes leftovers",
            repairable=True,
        )  # fmt: skip
    if not (state.short_in_store or state.short_in_keywords) and not (
        state.orphans_in_store or state.orphans_in_keywords
    ):
        report.add(
            "index", "ok",
            f"collection {name}: {state.documents} documents, {state.chunks} chunks, "
            "in agreement",
        )  # fmt: skip


def dangling_sources(manifest: Path) -> list[tuple[str, str]]:
    """(collection, source) of the manifest's sources whose document record is gone."""
    if not manifest.is_file():
        return []
    with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT s.collection, s.source FROM sources s WHERE NOT EXISTS (SELECT 1 FROM "
            "documents d WHERE d.collection = s.collection AND d.doc_id = s.doc_id)"
        ).fetchall()
    return [(collection, source) for collection, source in rows]


def missing_uploads(lore: Lore, collection: str) -> list[str]:
    """The uploaded files (in the uploads folder) that visible documents were made from,
    and which are gone."""
    uploads = str(lore.settings.uploads_dir.resolve()) + "/"
    gone = []
    for record in lore.manifest.documents(collection):
        if record.status != "indexed":
            continue
        for source in record.sources:
            if source.startswith(uploads) and not Path(source).is_file():
                gone.append(source)
    return gone


def _check_sources(lore: Lore, report: Report, collections: list[str]) -> None:
    if not lore.settings.cluster:
        dangling = dangling_sources(lore.settings.data_dir / "manifest.sqlite3")
        if dangling:
            report.add(
                "manifest", "problem",
                f"{len(dangling)} source path(s) point at no document (first: {dangling[0][1]})",
                "`lore doctor --repair` forgets them; the next ingest of the file adds it again",
                repairable=True,
            )  # fmt: skip
    for collection in collections:
        gone = missing_uploads(lore, collection)
        if gone:
            report.add(
                "files", "problem",
                f"collection {collection}: {len(gone)} uploaded file(s) are missing from the "
                f"uploads folder (first: {gone[0]}); their documents still answer",
                "restore the files from a backup, or upload them again",
            )  # fmt: skip


def _check_reindexes(lore: Lore, report: Report) -> None:
    """A reindex stopped before its switch leaves a hidden copy: said, not a problem."""
    for collection, embedder in sorted(lore.store.staged().items()):
        model = embedder.removesuffix(onnx_embedder_name(""))
        if model == HashingEmbedder().name:
            model = "hashing"
        report.add(
            "reindex",
            "warning",
            f"collection {collection}: a reindex to {embedder} stopped before its switch; "
            "its partial copy takes space",
            fix=f"`lore reindex --embedding-model {model} -c {collection}` goes on from where "
            "it stopped; with --abandon instead, it drops the copy",
        )


def _check_audit(lore: Lore, report: Report) -> None:
    if lore.settings.cluster:
        result = lore.audit.verify()
    else:  # read only: the audit log's file is evidence, never changed here
        path = lore.settings.data_dir / "audit.sqlite3"
        try:
            result = AuditLog.verify_file(path)
        except sqlite3.DatabaseError as exc:
            fix = "restore audit.sqlite3 from a backup; keep this copy as evidence"
            report.add("audit", "problem", f"{path} cannot be read ({exc})", fix)
            return
    if result.ok:
        report.add("audit", "ok", f"audit chain intact: {result.entries} entries")
    else:
        report.add(
            "audit", "problem",
            f"audit chain broken at entry {result.first_bad_seq}: {result.problem}",
            "the audit log is evidence and is never rewritten, repair included: keep this "
            "copy for investigation and compare it with a backup (`lore audit export`)",
        )  # fmt: skip


def _check_disk(lore: Lore, report: Report) -> None:
    folder = lore.settings.data_dir
    free = free_mb(folder)
    floor = lore.settings.min_free_mb
    if free < floor:
        report.add(
            "disk", "problem",
            f"{free:,.0f} MB free on the disk of {folder}, under min_free_mb ({floor:,} MB): "
            "uploads are refused",
            "free space on that disk, or move the data directory to a larger one",
        )  # fmt: skip
    else:
        report.add("disk", "ok", f"{free:,.0f} MB free on the disk of {folder}")


def examine(lore: Lore, progress: Progress = _quiet) -> Report:
    """Run every check on the data directory (or cluster) of `lore`; changes nothing."""
    report = Report()
    progress("checking the database files")
    usable = lore.settings.cluster or _check_files(lore, report)
    if not lore.settings.cluster and not (lore.settings.data_dir / "manifest.sqlite3").is_file():
        # Nothing ingested yet; opening the stores would make them (and a restore then
        # refuses the directory as not empty).
        report.add("index", "ok", f"nothing ingested yet in {lore.settings.data_dir}")
        usable = False
    keywords_usable = lore.settings.cluster or not check_sqlite(
        lore.settings.data_dir / "keywords.sqlite3"
    )
    try:
        if lore.settings.cluster:
            lore.database  # noqa: B018 (opening it checks its schema)
        if usable:
            lore.manifest  # noqa: B018 (opening a store checks its schema version)
            lore.store.list_collections()
    except SchemaMismatch as exc:
        report.add("schema", "problem", str(exc))
        usable = False
    except StoreDamaged as exc:
        report.add("files", "problem", str(exc))
        usable = False
    progress("checking the models' sha256")
    _check_models(lore, report)
    if usable:
        collections = sorted(set(lore.manifest.collections()) | set(lore.store.list_collections()))
        for collection in collections:
            progress(f"comparing collection {collection} with its index")
            state = collection_state(lore, collection, keywords_usable)
            report.collections[collection] = state
            _check_collection(state, report)
        _check_sources(lore, report, collections)
        _check_reindexes(lore, report)
    progress("checking the audit chain")
    _check_audit(lore, report)
    _check_disk(lore, report)
    return report


# -- repair --------------------------------------------------------------------


def _rebuild_keywords(lore: Lore, collection: str) -> int:
    """The collection's keyword index made again from the vector store's chunks of its
    visible documents; returns how many chunks it holds."""
    lore.keywords.drop_collection(collection)
    count = 0
    for record in lore.manifest.documents(collection):
        if record.status != "indexed":
            continue
        try:
            chunks = lore.store.document_chunks(collection, record.doc_id)
        except NotFound:
            chunks = []
        if chunks:
            lore.keywords.add(collection, chunks)
            count += len(chunks)
    return count


def _reindex(lore: Lore, record: DocumentRecord) -> str:
    """Index a document that lacks chunks again from its first file still there; when
    none is, record it failed, so no query sees half of it. Says what was done."""
    from ingest.pipeline import drop_chunks, ingest_file, pipeline_version, purge

    collection, doc_id = record.collection, record.doc_id
    lore = lore.for_collection(collection)
    drop_chunks(lore, collection, doc_id)
    lore.manifest.begin(collection, doc_id, record.sha256, pipeline_version(lore))
    for source, name in zip(record.sources, record.names, strict=True):
        if Path(source).is_file():
            result = ingest_file(lore, Path(source), collection, source=source, name=name)
            return f"indexed {name} again ({result.status}, {result.chunks} chunks)"
        archive, inside, _ = source.partition(MEMBER_MARK)
        if inside and Path(archive).is_file():
            # Forgotten, the archive is unpacked again, and this member written anew
            # (it is `pending`); the others are found unchanged.
            purge(lore, collection, lore.manifest.detach(collection, archive))
            shown = name.partition(MEMBER_MARK)[0]
            ingest_file(lore, Path(archive), collection, source=archive, name=shown)
            again = lore.manifest.document(collection, doc_id)
            chunks = again.chunks if again else 0
            return f"indexed {name} again from {shown} ({chunks} chunks)"
    source = record.sources[0] if record.sources else ""
    lore.manifest.fail(
        collection, doc_id, record.sha256, pipeline_version(lore), source=source, size=0,
        mtime_ns=0, code="chunks_missing",
        error="Its chunks were lost and its file is gone: restore it from a backup, or "
        "ingest the file again.",
        name=record.names[0] if record.names else None,
    )  # fmt: skip
    return f"{doc_id}: its file is gone too; recorded as failed (chunks_missing)"


def repair(lore: Lore, report: Report, progress: Progress = _quiet) -> list[str]:
    """Mend what `examine` found and can be mended (see the module docstring); returns a
    sentence for each thing done. Needs the data directory to itself: a running `lore
    serve` holds the vector store, and this raises StoreInUse then."""
    from ingest.pipeline import drop_chunks, recover_unclaimed

    done: list[str] = []
    data = lore.settings.data_dir
    if not lore.settings.cluster and lore.settings.chroma_dir.is_dir():
        hold_folder(lore.settings.chroma_dir)  # StoreInUse, before anything changes
    for collection in lore.store.settle():
        done.append(f"finished the switch of collection {collection} that a crash cut short")
    if not lore.settings.cluster and check_sqlite(data / "keywords.sqlite3"):
        opened = lore.__dict__.pop("keywords", None)  # opening a damaged one fails
        if opened is not None:
            opened.close()
        damaged = data / "keywords.sqlite3"
        aside = damaged.with_name("keywords.sqlite3.damaged")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{damaged}{suffix}")
            if part.exists():
                part.replace(Path(f"{aside}{suffix}"))
        done.append(f"moved the damaged keyword index aside to {aside}")
        for collection in lore.manifest.collections():
            state = report.collections.setdefault(collection, CollectionState(collection))
            state.short_in_keywords.append("(all)")
    fixed = recover_unclaimed(lore)  # in a cluster, not what a worker is writing now
    if fixed:
        done.append(f"removed the leftovers of {fixed} unfinished document(s)")
    for collection, source in (
        [] if lore.settings.cluster else dangling_sources(data / "manifest.sqlite3")
    ):
        lore.manifest.detach(collection, source)
        done.append(f"forgot the source {source}, which pointed at no document")
    for name, state in sorted(report.collections.items()):
        for doc_id in {**state.orphans_in_store, **state.orphans_in_keywords}:
            drop_chunks(lore, name, doc_id)
        if state.orphans_in_store or state.orphans_in_keywords:
            orphans = len({*state.orphans_in_store, *state.orphans_in_keywords})
            done.append(f"collection {name}: removed the orphan chunks of {orphans} document(s)")
        for doc_id in state.short_in_store:
            record = lore.manifest.document(name, doc_id)
            if record is not None:
                progress(f"indexing {doc_id} again")
                done.append(f"collection {name}: {_reindex(lore, record)}")
        if state.short_in_keywords or state.orphans_in_keywords:
            progress(f"rebuilding the keyword index of {name}")
            count = _rebuild_keywords(lore, name)
            done.append(f"collection {name}: rebuilt the keyword index ({count} chunks)")
    return done
