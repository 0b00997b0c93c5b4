"""Turning Lore's internal records into the JSON both interfaces emit.

Inside Lore a file is known by its resolved path on the server (`Chunk.source`,
`Citation.source`, `DocumentRecord.sources`). No reader is shown that path. In JSON,
`source` (`sources` for a document) is the file's name in its collection: its path
within the folder it was ingested from, or the uploaded file's name. `path` (`paths`,
in the same order) is the path on the server for an admin, and null for anyone else.
The command line runs as the server's operator, so it presents as for an admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ingest.documents import DocumentDetail, RemovedDocument, file_type
from ingest.jobs import Job
from ingest.pipeline import IngestResult
from rag.answering.injection import flagged
from rag.retrieval.manifest import DocumentManifest, DocumentRecord
from rag.types import Answer, Citation, Passage


@dataclass(frozen=True)
class SourceView:
    """How one caller sees the files of one collection: by name, and if `admin`, by path.

    Presenting through it looks names up in the manifest, so it blocks: the HTTP routes
    call those presenters from a worker thread.
    """

    manifest: DocumentManifest
    collection: str
    admin: bool

    def names(self, paths: set[str]) -> dict[str, str]:
        return self.manifest.source_names(self.collection, paths)


def _named(data: dict[str, Any], path: str, name: str, admin: bool) -> dict[str, Any]:
    """`data` with `source` set to the file's name and `path` to its path (admins only)."""
    data["source"] = name
    data["path"] = path if admin else None
    return data


def citations_json(citations: Sequence[Citation], view: SourceView) -> list[dict[str, Any]]:
    names = view.names({c.source for c in citations})
    rows = []
    for citation in citations:
        data = asdict(citation)
        del data["orders"]  # what the model was not shown; `flagged` tells the reader
        rows.append(_named(data, citation.source, names[citation.source], view.admin))
    return rows


def answer_json(answer: Answer, view: SourceView) -> dict[str, Any]:
    return {
        "question": answer.question,
        "query": answer.query or answer.question,
        "collection": view.collection,
        "answer": answer.text,
        "declined": answer.declined,
        "citations": citations_json(answer.citations, view),
        "sources": citations_json(answer.sources, view),
    }


def passages_json(passages: Sequence[Passage], view: SourceView) -> list[dict[str, Any]]:
    """The passages, ranked from 1 in the order given."""
    names = view.names({p.chunk.source for p in passages})
    rows = []
    for rank, passage in enumerate(passages, start=1):
        chunk, rerank = passage.chunk, passage.rerank_score
        row = {
            "rank": rank,
            "score": round(passage.score, 4),
            "rerank_score": None if rerank is None else round(rerank, 4),
            "chunk_id": chunk.id,
            "doc_id": chunk.doc_id,
            "source": names[chunk.source],
            "path": chunk.source if view.admin else None,
            "title": chunk.title,
            "page": chunk.page,
            "heading": chunk.heading,
            "text": chunk.text,
            "flagged": flagged(chunk),
        }
        rows.append(row)
    return rows


def document_json(document: DocumentRecord, admin: bool) -> dict[str, Any]:
    data = asdict(document)
    data["sources"] = list(document.names)
    data["paths"] = list(document.sources) if admin else None
    data["type"] = file_type(document.names[0]) if document.names else None
    data["pages"] = document.details.pages
    del data["collection"], data["pipeline"], data["names"], data["details"]
    return data


def document_detail_json(detail: DocumentDetail, admin: bool) -> dict[str, Any]:
    """A document's record, as `document_json`, with what is known of its file, its
    details (rag/retrieval/manifest.py, `DocumentDetails`) and its chunks in `chunk_texts`."""
    data = document_json(detail.record, admin)
    details = detail.record.details
    data.update(
        size=detail.size,
        modified_at=detail.modified_at,
        uploaded_by=details.uploaded_by,
        pages=details.pages,
        warnings=[asdict(warning) for warning in details.warnings],
    )
    data["chunk_texts"] = [
        {"chunk_id": c.id, "page": c.page, "heading": c.heading, "text": c.text}
        for c in detail.chunks
    ]
    return data


def deleted_json(removed: RemovedDocument, admin: bool) -> dict[str, Any]:
    """What deleting a document removed, named by its record as it was."""
    document = removed.record
    return {
        "doc_id": document.doc_id,
        "deleted_chunks": removed.chunks,
        "sources": list(document.names),
        "paths": list(document.sources) if admin else None,
    }


def ingest_json(result: IngestResult, admin: bool) -> dict[str, Any]:
    """A file's outcome, and an archive's members' (each named as the file is)."""
    data = asdict(result)
    del data["name"]
    data["members"] = [ingest_json(member, admin) for member in result.members]
    return _named(data, result.source, result.name, admin)


def job_json(job: Job, admin: bool) -> dict[str, Any]:
    """A job's state; its report's failed and flagged files named as everywhere else."""
    data = job.as_json()
    if data["report"] is not None:
        report = dict(data["report"])
        for key in ("failures", "flagged", "skipped_files", "still_failing"):
            report[key] = [{**f, "path": f["path"] if admin else None} for f in report.get(key, [])]
        data["report"] = report
    return data
