"""Documents: upload one, list them, show one with its chunks, download its file, read it
again, delete it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from api import presenters
from api.answers import audit
from api.deps import CallerDep, LoreDep, MetricsDep, readable, writable
from api.observability import Metrics
from api.schemas import (
    DeleteOut,
    DocumentDetailOut,
    DocumentOut,
    ErrorOut,
    IngestOut,
)
from api.uploads import safe_filename, stage_upload, unstage
from ingest import documents
from ingest.parsing import check_supported
from ingest.pipeline import IngestResult, ingest_replacing
from rag.config import COLLECTION_PATTERN
from rag.errors import DiskFull
from rag.governance.access import Principal

router = APIRouter(tags=["documents"])

CollectionQuery = Annotated[str | None, Query(pattern=COLLECTION_PATTERN)]
DocIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{8,64}$")]


@router.post(
    "/v1/documents",
    response_model=IngestOut,
    status_code=201,
    responses={
        413: {"model": ErrorOut},
        415: {"model": ErrorOut},
        422: {"model": ErrorOut},
        507: {"model": ErrorOut},
    },
)
def upload_document(
    request: Request,
    lore: LoreDep,
    caller: CallerDep,
    metrics: MetricsDep,
    file: Annotated[UploadFile, File(description="The document to index.")],
    collection: Annotated[str | None, Form(pattern=COLLECTION_PATTERN)] = None,
) -> Any:
    """Upload a file and index it. Uploading the same name again replaces the document."""
    target = writable(caller, collection or lore.settings.collection)
    name = safe_filename(file.filename)
    check_supported(Path(name))
    staged = stage_upload(file.file, lore.settings, target, name)
    final = lore.settings.uploads_dir / target / name
    try:
        result = ingest_replacing(lore, staged, final, target, uploaded_by=caller.actor)
    finally:
        unstage(staged)  # the file is gone already on success
    return _ingested(request, metrics, caller, target, result, "documents.upload", 201)


def _ingested(
    request: Request,
    metrics: Metrics,
    caller: Principal,
    collection: str,
    result: IngestResult,
    operation: str,
    status: int,
) -> dict[str, Any]:
    """The answer to indexing one file, counted and audited as `operation`; DiskFull
    when the disk filled up meanwhile."""
    if result.error_code == DiskFull.code:
        raise DiskFull(result.error or "The server's disk is full.")
    metrics.count_ingested(result)
    audit(
        request,
        operation,
        collection=collection,
        doc_ids=[result.doc_id] if result.doc_id else [],
        status=status,
    )
    return presenters.ingest_json(result, caller.is_admin)


@router.get(
    "/v1/documents",
    response_model=list[DocumentOut],
    responses={404: {"model": ErrorOut}},
)
def list_documents(lore: LoreDep, caller: CallerDep, collection: CollectionQuery = None) -> Any:
    """The documents in a collection, with their status and chunk counts."""
    target = readable(caller, collection or lore.settings.collection)
    return [
        presenters.document_json(d, caller.is_admin) for d in documents.list_documents(lore, target)
    ]


@router.get(
    "/v1/documents/{doc_id}",
    response_model=DocumentDetailOut,
    responses={404: {"model": ErrorOut}},
)
def get_document(
    doc_id: DocIdPath, lore: LoreDep, caller: CallerDep, collection: CollectionQuery = None
) -> Any:
    """One document's record and its chunks."""
    target = readable(caller, collection or lore.settings.collection)
    detail = documents.document_detail(lore, target, doc_id)
    return presenters.document_detail_json(detail, caller.is_admin)


@router.get(
    "/v1/documents/{doc_id}/file",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file."},
        404: {"model": ErrorOut},
    },
)
def download_document(
    doc_id: DocIdPath,
    request: Request,
    lore: LoreDep,
    caller: CallerDep,
    collection: CollectionQuery = None,
) -> FileResponse:
    """The document's original file, as an attachment under its own name: the first
    path it was ingested from that still holds the same bytes."""
    target = readable(caller, collection or lore.settings.collection)
    path = documents.original_file(lore, target, doc_id)
    audit(request, "documents.download", collection=target, doc_ids=[doc_id], status=200)
    return FileResponse(path, filename=path.name)


@router.post(
    "/v1/documents/{doc_id}/reingest",
    response_model=IngestOut,
    responses={
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        507: {"model": ErrorOut},
    },
)
def reingest_document(
    doc_id: DocIdPath,
    request: Request,
    lore: LoreDep,
    caller: CallerDep,
    metrics: MetricsDep,
    collection: CollectionQuery = None,
) -> Any:
    """Read the document's original file again with the current parser and chunker, even
    if it has not changed, and replace its chunks; it keeps its id. 404 when the server
    no longer holds the file (an archive's member has none of its own); 422 when the
    file cannot be parsed now (the document then stays as it was). Its bytes, and so its
    id, are the same: while its new chunks are written it is hidden from queries, and a
    failure then (a full disk, say) leaves it hidden until it is ingested again."""
    target = writable(caller, collection or lore.settings.collection)
    result = documents.reingest_document(lore, target, doc_id)
    return _ingested(request, metrics, caller, target, result, "documents.reingest", 200)


@router.delete(
    "/v1/documents/{doc_id}",
    response_model=DeleteOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def remove_document(
    doc_id: DocIdPath,
    request: Request,
    lore: LoreDep,
    caller: CallerDep,
    collection: CollectionQuery = None,
) -> Any:
    """Delete a document and all of its chunks (and its uploaded file, if it was uploaded)."""
    target = writable(caller, collection or lore.settings.collection)
    removed = documents.remove_document(lore, target, doc_id)
    audit(request, "documents.delete", collection=target, doc_ids=[doc_id], status=200)
    return presenters.deleted_json(removed, caller.is_admin)
