"""Collections: create one, list them with their sizes, delete one with all it holds."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from api.answers import audit
from api.deps import AdminDep, CallerDep, LoreDep, readable, writable
from api.schemas import (
    CollectionDeleteOut,
    CollectionIn,
    CollectionOut,
    ErrorOut,
    ExamplesOut,
    ReindexIn,
    ReindexOut,
)
from ingest.documents import remove_collection
from ingest.reindex import ReindexRunner
from rag.components.store import require_collection
from rag.config import COLLECTION_PATTERN
from rag.container import Lore
from rag.errors import NotFound

router = APIRouter(tags=["collections"])

CollectionPath = Annotated[str, PathParam(pattern=COLLECTION_PATTERN)]


@router.post(
    "/v1/collections",
    response_model=CollectionOut,
    status_code=201,
    responses={403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def create_collection(
    body: CollectionIn, request: Request, lore: LoreDep, caller: CallerDep
) -> Any:
    """Create an empty collection (an admin, or a writer key naming it, may)."""
    writable(caller, body.name)
    lore.for_collection(body.name).store.create_collection(body.name)
    audit(request, "collections.create", collection=body.name, status=201)
    return CollectionOut(name=body.name, documents=0, chunks=0)


@router.get("/v1/collections", response_model=list[CollectionOut])
def list_collections(lore: LoreDep, caller: CallerDep) -> Any:
    """The collections this key may read, with their sizes."""
    names = lore.store.list_collections()
    return [_collection_out(lore, n) for n in names if caller.can_read(n)]


@router.get(
    "/v1/collections/{name}",
    response_model=CollectionOut,
    responses={404: {"model": ErrorOut}},
)
def get_collection(name: CollectionPath, lore: LoreDep, caller: CallerDep) -> Any:
    """One collection's size."""
    readable(caller, name)
    require_collection(lore.store, name)
    return _collection_out(lore, name)


@router.get(
    "/v1/collections/{name}/examples",
    response_model=ExamplesOut,
    responses={404: {"model": ErrorOut}},
)
def get_examples(name: CollectionPath, lore: LoreDep, caller: CallerDep) -> Any:
    """What the collection's empty chat may offer: the example questions an admin set
    for it (`example_questions`), else up to 6 headings of its documents, for a client
    to turn into questions in its reader's language."""
    readable(caller, name)
    require_collection(lore.store, name)
    return asdict(lore.examples.for_collection(name))


@router.delete(
    "/v1/collections/{name}",
    response_model=CollectionDeleteOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def delete_collection(
    name: CollectionPath, request: Request, lore: LoreDep, caller: CallerDep
) -> Any:
    """Delete a collection: every document, chunk and uploaded file in it."""
    writable(caller, name)
    removed = remove_collection(lore, name)
    audit(request, "collections.delete", collection=name, doc_ids=list(removed.doc_ids), status=200)
    return CollectionDeleteOut(
        name=name, deleted_documents=len(removed.doc_ids), deleted_chunks=removed.chunks
    )


@router.post(
    "/v1/collections/{name}/reindex",
    response_model=ReindexOut,
    status_code=202,
    responses={
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
def start_reindex(name: CollectionPath, body: ReindexIn, request: Request, caller: AdminDep) -> Any:
    """Re-embed a collection with another embedding model, in the background (an admin
    may). It answers from its old vectors until the copy is whole, then switches at once.
    A reindex stopped (the server stopping) resumes where it was when asked again."""
    runner: ReindexRunner = request.app.state.reindexes
    task = runner.start(name, body.embedding_model)
    audit(request, "collections.reindex", collection=name, status=202)
    return task.as_json()


@router.get(
    "/v1/collections/{name}/reindex",
    response_model=ReindexOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def get_reindex(name: CollectionPath, request: Request, caller: AdminDep) -> Any:
    """How the collection's reindex goes: the chunks copied so far, then its outcome."""
    runner: ReindexRunner = request.app.state.reindexes
    task = runner.get(name)
    if task is None:
        raise NotFound(f"No reindex of '{name}' has run since the server started.")
    return task.as_json()


def _collection_out(lore: Lore, name: str) -> CollectionOut:
    documents = lore.manifest.visible_count(name)
    chunks = sum(d.chunks for d in lore.manifest.documents(name) if d.status == "indexed")
    return CollectionOut(name=name, documents=documents, chunks=chunks)
