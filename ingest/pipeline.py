"""Ingesting files into a collection: parse, chunk, embed, write. Idempotent per file.

A document's id comes from its source path, and each chunk's id from the document id,
the file's sha256 and the chunk's position, so ids are deterministic. Re-ingesting an
unchanged file touches nothing. A changed file gets its new chunks written first and
its old chunks deleted after, so a crash in between leaves extra chunks, never a
document with no chunks; re-running removes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.chunking import Chunker
from ingest.parsing import SUPPORTED_SUFFIXES, check_supported, parse
from rag.container import Lore
from rag.errors import InvalidInput, LoreError, NotFound
from rag.types import Chunk

Status = Literal["added", "updated", "unchanged", "failed"]


@dataclass(frozen=True)
class IngestResult:
    source: str
    doc_id: str
    status: Status
    chunks: int = 0
    error_code: str | None = None
    error: str | None = None


def document_id(source: str) -> str:
    """The stable id of the document at `source` (a resolved path)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _chunks_for(
    path: Path, source: str, doc_id: str, content_hash: str, chunker: Chunker
) -> list[Chunk]:
    parsed = parse(path)
    chunks: list[Chunk] = []
    for section in parsed.sections:
        for text in chunker.split(section.text):
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=f"{doc_id}-{content_hash[:12]}-{index:05d}",
                    doc_id=doc_id,
                    text=text,
                    source=source,
                    title=parsed.title,
                    chunk_index=index,
                    content_hash=content_hash,
                    page=section.page,
                )
            )
    return chunks


def ingest_file(
    lore: Lore, path: Path, collection: str, *, source: str | None = None
) -> IngestResult:
    """Index one file into `collection`. Raises LoreError subclasses for unusable files."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file.")
    check_supported(path)
    source = source or str(path.resolve())
    doc_id = document_id(source)
    content_hash = file_sha256(path)
    existing = lore.store.document_chunks(collection, doc_id)
    if existing and all(c.content_hash == content_hash for c in existing):
        return IngestResult(source, doc_id, "unchanged", len(existing))

    settings = lore.settings
    chunks = _chunks_for(
        path, source, doc_id, content_hash, Chunker(settings.chunk_size, settings.chunk_overlap)
    )
    vectors = lore.embedder.embed_documents([c.text for c in chunks])
    lore.store.add(collection, chunks, vectors)
    new_ids = {c.id for c in chunks}
    stale = [c.id for c in existing if c.id not in new_ids]
    lore.store.delete_chunks(collection, stale)
    return IngestResult(source, doc_id, "updated" if existing else "added", len(chunks))


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, plus supported files under named directories (sorted, not hidden)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if found.is_file() and found.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield found
        else:
            yield path


def ingest_paths(
    lore: Lore,
    paths: Iterable[Path],
    collection: str,
    *,
    on_result: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest files and directory trees. A file that fails is reported, and the rest go on."""
    results = []
    for path in iter_files(paths):
        try:
            result = ingest_file(lore, path, collection)
        except LoreError as exc:
            source = str(path.resolve())
            result = IngestResult(
                source, document_id(source), "failed", error_code=exc.code, error=str(exc)
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def delete_document(lore: Lore, collection: str, doc_id: str) -> int:
    """Remove every chunk of a document; returns how many. NotFound if there were none."""
    chunks = lore.store.document_chunks(collection, doc_id)
    if not chunks:
        raise NotFound(f"Document '{doc_id}' is not in collection '{collection}'.")
    lore.store.delete_chunks(collection, [c.id for c in chunks])
    return len(chunks)
