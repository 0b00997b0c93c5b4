"""Ratings of answers: give one, and export them all (admin only)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.answers import audit
from api.deps import AdminDep, CallerDep, LoreDep, readable
from api.schemas import ErrorOut, FeedbackIn, FeedbackOut
from rag.components.store import require_collection
from rag.container import Lore
from rag.retrieval.filters import parse_when

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
    "/v1/feedback/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One rating a line, as JSON, oldest first.",
        },
        403: {"model": ErrorOut},
        422: {"model": ErrorOut},
    },
)
def export_feedback(
    request: Request,
    lore: LoreDep,
    admin: AdminDep,
    since: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Only ratings at or after this ISO 8601 date or time (UTC unless it says).",
        ),
    ] = None,
) -> Response:
    """Every rating (admin only), as JSON lines: id, at, actor, collection, question,
    answer, chunk_ids, rating, comment, request_id."""
    moment = parse_when(since) if since is not None else None
    body = _feedback_lines(lore, moment)
    audit(request, "feedback.export", status=200)
    return Response(body, media_type="application/x-ndjson")


def _feedback_lines(lore: Lore, since: datetime | None) -> str:
    return "".join(
        json.dumps(record, ensure_ascii=False) + "\n" for record in lore.feedback.export(since)
    )
