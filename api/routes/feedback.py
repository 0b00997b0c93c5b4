"""Ratings of answers: give one; list the latest, or export them all (admin only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.answers import audit
from api.deps import AdminDep, CallerDep, LoreDep, readable
from api.exports import SinceQuery, export_responses, ndjson_download, since_moment
from api.schemas import ErrorOut, FeedbackIn, FeedbackOut, FeedbackRecordOut
from rag.components.store import require_collection
from rag.config import COLLECTION_PATTERN

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def create_feedback(body: FeedbackIn, request: Request, lore: LoreDep, caller: CallerDep) -> Any:
    """Rate an answer up or down, with the question, the answer and the chunks it cited."""
    collection = readable(caller, body.collection or lore.settings.collection)
    require_collection(lore.store, collection)
    record = lore.feedback.add(
        actor=caller.actor,
        collection=collection,
        question=body.question,
        answer=body.answer,
        chunk_ids=body.chunk_ids,
        rating=body.rating,
        comment=body.comment,
        request_id=request.state.request_id,
    )
    audit(request, "feedback", collection=collection, chunk_ids=body.chunk_ids, status=201)
    return FeedbackOut(id=record.id, at=record.as_json()["at"])


@router.get(
    "/v1/feedback",
    response_model=list[FeedbackRecordOut],
    responses={403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def list_feedback(
    request: Request,
    lore: LoreDep,
    admin: AdminDep,
    rating: Literal["up", "down"] | None = None,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Any:
    """The latest ratings (admin only), newest first: only those with `rating` and of
    `collection` when given."""
    records = lore.feedback.recent(limit, rating=rating, collection=collection)
    audit(request, "feedback.list", collection=collection, status=200)
    return [record.as_json() for record in records]


@router.get(
    "/v1/feedback/export",
    response_class=StreamingResponse,
    responses=export_responses("One rating a line, as JSON, oldest first."),
)
def export_feedback(
    request: Request, lore: LoreDep, admin: AdminDep, since: SinceQuery = None
) -> StreamingResponse:
    """Every rating (admin only), as JSON lines, oldest first: id, at, at_epoch, actor,
    collection, question, answer, chunk_ids, rating, comment, request_id. An attachment,
    `lore-feedback.jsonl`."""
    response = ndjson_download(lore.feedback.export(since_moment(since)), "lore-feedback.jsonl")
    audit(request, "feedback.export", status=200)
    return response
