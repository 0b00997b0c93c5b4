"""The documents of a collection as both interfaces, HTTP and the command line, use them:
list them, show one with its chunks, find its original file, read one again, delete
one, delete a whole collection.

A document being deleted (status `deleting`) is gone to every reader already: each
function here answers NotFound for it, as for one that never was.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ingest.parsing import ARCHIVE_SUFFIXES, is_archive
from ingest.pipeline import IngestResult, delete_document, file_sha256, reingest
from rag.components.store import require_collection
from rag.container import Lore
from rag.errors import InvalidInput, NotFound
from rag.retrieval.manifest import MEMBER_MARK, DocumentRecord
from rag.types import Chunk


@dataclass(frozen=True)
class DocumentDetail:
    """A document's record and its chunks, in their order in the document, with what its
    first source tells of its file: its size in bytes and modification time (seconds
    since the epoch) when the manifest knows them."""

    record: DocumentRecord
    chunks: tuple[Chunk, ...]
    size: int | None = None
    modified_at: float | None = None


@dataclass(frozen=True)
class RemovedDocument:
    """What deleting a document took away: its record as it was, and how many chunks."""

    record: DocumentRecord
    chunks: int


@dataclass(frozen=True)
class RemovedCollection:
    """What deleting a collection took away: its documents' ids and their chunk count."""

    name: str
    doc_ids: tuple[str, ...]
    chunks: int


def list_documents(lore: Lore, collection: str) -> list[DocumentRecord]:
    """The documents of a collection (none being deleted); NotFound when the collection
    does not exist."""
    require_collection(
        lore.store,
        collection,
        missing=f"Collection '{collection}' does not exist; ingest documents into it first.",
    )
    return lore.manifest.documents(collection)


def live_document(lore: Lore, collection: str, doc_id: str) -> DocumentRecord:
    """The document's record; NotFound if there is none or it is being deleted."""
    record = lore.manifest.document(collection, doc_id)
    if record is None or record.status == "deleting":
        raise NotFound(f"Document '{doc_id}' is not in collection '{collection}'.")
    return record


def file_type(name: str) -> str | None:
    """A file's type as its name tells it: its extension in lower case, without the dot
    ("pdf"; "tar.gz" for such an archive; an archive member's own for a member); None
    for a name without one."""
    lower = PurePosixPath(name.lower()).name
    archive = next((suffix for suffix in ARCHIVE_SUFFIXES if lower.endswith(suffix)), None)
    return (archive or PurePosixPath(lower).suffix)[1:] or None


def document_detail(lore: Lore, collection: str, doc_id: str) -> DocumentDetail:
    """The document's record and its chunks; NotFound as for `live_document`."""
    record = live_document(lore, collection, doc_id)
    chunks = tuple(lore.store.document_chunks(collection, doc_id) if record.chunks else [])
    if not record.sources:
        return DocumentDetail(record, chunks)
    source = lore.manifest.source(collection, record.sources[0])
    # An archive's member that could not be unpacked is recorded without a size or time.
    if source is None or (source.size, source.mtime_ns) == (0, 0):
        return DocumentDetail(record, chunks)
    return DocumentDetail(record, chunks, source.size, source.mtime_ns / 1e9)


def original_file(lore: Lore, collection: str, doc_id: str) -> Path:
    """The first source path of the document that still holds its bytes (the manifest's
    paths only, never one from a client); NotFound when there is none."""
    record = live_document(lore, collection, doc_id)
    for source in record.sources:
        path = Path(source)
        # A file changed since it was ingested no longer holds this document.
        try:
            if path.is_file() and file_sha256(path) == record.sha256:
                return path
        except OSError:  # unreadable now: as good as gone
            continue
    raise NotFound(f"Document '{doc_id}' has no original file on this server any more.")


def reingest_document(lore: Lore, collection: str, doc_id: str) -> IngestResult:
    """Read the document's original file (`original_file`) again with the current
    pipeline, even if unchanged, and replace its chunks (see `ingest.pipeline.reingest`).

    NotFound as for `original_file`, and for a member of an archive, which has no file of
    its own; InvalidInput for an archive, whose members are read when it changes. A
    file that cannot be read now raises its LoreError and changes nothing."""
    record = live_document(lore, collection, doc_id)
    if record.sources and all(MEMBER_MARK in source for source in record.sources):
        archive = record.names[0].partition(MEMBER_MARK)[0]
        raise NotFound(
            f"Document '{doc_id}' is a member of the archive '{archive}': it has no file of "
            "its own on this server to read again."
        )
    path = original_file(lore, collection, doc_id)
    if is_archive(path.name):
        raise InvalidInput(
            f"Document '{doc_id}' is an archive; its members are read again when it changes."
        )
    return reingest(lore, collection, record, path)


def remove_document(lore: Lore, collection: str, doc_id: str) -> RemovedDocument:
    """Delete a document: its chunks, its record, and the uploaded copies Lore holds of
    it. Files it was ingested from anywhere else are left alone. NotFound as for
    `live_document`."""
    record = live_document(lore, collection, doc_id)
    chunks, sources = delete_document(lore, collection, doc_id)
    uploads = lore.settings.uploads_dir.resolve()
    for source in sources:
        path = Path(source)
        if path.is_relative_to(uploads):
            path.unlink(missing_ok=True)
    return RemovedDocument(record, chunks)


def remove_collection(lore: Lore, name: str) -> RemovedCollection:
    """Delete every document of a collection (each as `remove_document` does), then the
    collection itself and its uploads folder. NotFound when the collection does not exist."""
    require_collection(lore.store, name)
    doc_ids: list[str] = []
    chunks = 0
    for record in lore.manifest.documents(name):
        removed = remove_document(lore, name, record.doc_id)
        doc_ids.append(record.doc_id)
        chunks += removed.chunks
    lore.store.drop_collection(name)
    lore.keywords.drop_collection(name)
    shutil.rmtree(lore.settings.uploads_dir / name, ignore_errors=True)
    return RemovedCollection(name, tuple(doc_ids), chunks)
