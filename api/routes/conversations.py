"""Saved conversations, kept on the server for the key that made them: list, create,
read, change, delete, and add the turns of `/v1/query` to one.

To any other key a conversation does not exist (404). Making and deleting one is
audited; its turns are not, since `/v1/query` audited each question already.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from api.answers import audit
from api.deps import CallerDep, LoreDep, readable
from api.schemas import (
    ConversationIn,
    ConversationOut,
    ConversationPatch,
    ConversationSummaryOut,
    ConversationTurnIn,
    ConversationTurnOut,
    ErrorOut,
    FiltersIn,
)
from rag.components.store import require_collection
from rag.container import Lore
from rag.governance.access import Principal
from rag.retrieval.filters import make_filters

router = APIRouter(tags=["conversations"])

ConversationId = Annotated[str, Path(min_length=1, max_length=64)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
REFUSED: dict[int | str, dict[str, Any]] = {**NOT_FOUND, 422: {"model": ErrorOut}}


def _collection(lore: Lore, caller: Principal, collection: str) -> str:
    """`collection`, if it exists and the caller may read it; NotFound otherwise."""
    readable(caller, collection)
    require_collection(lore.store, collection)
    return collection


def _filters(given: FiltersIn | None, caller: Principal) -> dict[str, Any] | None:
    """The filters to keep, as sent (checked as `/v1/query` checks them: 422 if wrong)."""
    if given is None:
        return None
    make_filters(given.source, given.type, given.since, given.until, paths=caller.is_admin)
    return given.model_dump()


@router.get("/v1/conversations", response_model=list[ConversationSummaryOut])
def list_conversations(lore: LoreDep, caller: CallerDep) -> Any:
    """This key's saved conversations, the most recently updated first, without turns."""
    lore.conversations.prune(lore.settings.conversation_retention_days)
    return [c.summary_json() for c in lore.conversations.list(caller.key_id)]


@router.post(
    "/v1/conversations", response_model=ConversationOut, status_code=201, responses=REFUSED
)
def create_conversation(
    body: ConversationIn, request: Request, lore: LoreDep, caller: CallerDep
) -> Any:
    """Start a saved conversation about a collection this key may read."""
    collection = _collection(lore, caller, body.collection or lore.settings.collection)
    made = lore.conversations.create(
        caller.key_id,
        collection=collection,
        title=body.title,
        filters=_filters(body.filters or FiltersIn(), caller),
    )
    audit(request, "conversations.create", collection=collection, status=201)
    return made.as_json()


@router.get(
    "/v1/conversations/{conversation_id}", response_model=ConversationOut, responses=NOT_FOUND
)
def get_conversation(conversation_id: ConversationId, lore: LoreDep, caller: CallerDep) -> Any:
    """One of this key's conversations, with its turns, oldest first."""
    return lore.conversations.get(caller.key_id, conversation_id).as_json()


@router.patch(
    "/v1/conversations/{conversation_id}", response_model=ConversationOut, responses=REFUSED
)
def update_conversation(
    conversation_id: ConversationId, body: ConversationPatch, lore: LoreDep, caller: CallerDep
) -> Any:
    """Rename a conversation, or move it to another collection or other filters."""
    collection = None if body.collection is None else _collection(lore, caller, body.collection)
    return lore.conversations.update(
        caller.key_id,
        conversation_id,
        title=body.title,
        collection=collection,
        filters=_filters(body.filters, caller),
    ).as_json()


@router.delete(
    "/v1/conversations/{conversation_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
)
def delete_conversation(
    conversation_id: ConversationId, request: Request, lore: LoreDep, caller: CallerDep
) -> Response:
    """Remove a conversation and its turns."""
    removed = lore.conversations.delete(caller.key_id, conversation_id)
    audit(request, "conversations.delete", collection=removed.collection, status=204)
    return Response(status_code=204)


@router.post(
    "/v1/conversations/{conversation_id}/turns",
    response_model=ConversationTurnOut,
    status_code=201,
    responses=REFUSED,
)
def add_turn(
    conversation_id: ConversationId, body: ConversationTurnIn, lore: LoreDep, caller: CallerDep
) -> Any:
    """Keep a question and the answer `/v1/query` gave it; an untitled conversation takes
    its title from its first question."""
    return lore.conversations.add_turn(
        caller.key_id,
        conversation_id,
        question=body.question,
        answer=body.answer,
        query=body.query,
        declined=body.declined,
        citations=body.citations,
        sources=body.sources,
    ).as_json()
