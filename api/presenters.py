"""Turning Lore's internal records into the JSON both interfaces emit."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ingest.pipeline import IngestResult
from rag.manifest import DocumentRecord
from rag.types import Answer, Citation, Passage


def citation_json(citation: Citation) -> dict[str, Any]:
    return asdict(citation)


def answer_json(answer: Answer, collection: str) -> dict[str, Any]:
    return {
        "question": answer.question,
        "query": answer.query or answer.question,
        "collection": collection,
        "answer": answer.text,
        "declined": answer.declined,
        "citations": [citation_json(c) for c in answer.citations],
        "sources": [citation_json(c) for c in answer.sources],
    }


def passage_json(rank: int, passage: Passage) -> dict[str, Any]:
    chunk = passage.chunk
    return {
        "rank": rank,
        "score": round(passage.score, 4),
        "rerank_score": None if passage.rerank_score is None else round(passage.rerank_score, 4),
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "title": chunk.title,
        "page": chunk.page,
        "heading": chunk.heading,
        "text": chunk.text,
    }


def document_json(document: DocumentRecord) -> dict[str, Any]:
    data = asdict(document)
    data["sources"] = list(document.sources)
    del data["collection"], data["pipeline"]
    return data


def ingest_json(result: IngestResult) -> dict[str, Any]:
    return asdict(result)
