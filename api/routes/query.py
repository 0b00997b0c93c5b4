"""Questions: a cited answer (`/v1/query`), or the nearest passages alone (`/v1/search`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from api import presenters
from api.answers import audit, start_answer
from api.deps import CallerDep, LoreDep, MetricsDep, readable
from api.schemas import (
    ErrorOut,
    FiltersIn,
    PassageOut,
    QueryRequest,
    QueryResponse,
    SearchRequest,
)
from rag.answering.answerer import check_question
from rag.components.store import require_collection
from rag.errors import LoreError
from rag.governance.access import Principal
from rag.retrieval.filters import Filters, make_filters
from rag.types import AnswerEvent, DoneEvent, SourcesEvent, TokenEvent, Turn

log = logging.getLogger("lore.api")

router = APIRouter(tags=["query"])


# Async: the answer runs beside the event loop (api/answers.py), and a stream is sent
# from it as the tokens come.
@router.post(
    "/v1/query",
    response_model=QueryResponse,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def query(body: QueryRequest, request: Request, lore: LoreDep, caller: CallerDep) -> Any:
    """Answer a question from a collection; with `stream`, as server-sent events:
    `sources`, then `token`s, then `done` (or `error`)."""
    collection = readable(caller, body.collection or lore.settings.collection)
    check_question(body.question, lore.settings)
    filters = _filters(body.filters, caller)
    await run_in_threadpool(require_collection, lore.store, collection)
    events = start_answer(
        request,
        lore,
        operation="query",
        question=body.question,
        collection=collection,
        top_k=body.top_k,
        filters=filters,
        history=[Turn(t.role, t.content) for t in body.history],
    )
    view = presenters.SourceView(lore.manifest, collection, caller.is_admin)
    if body.stream:
        return EventSourceResponse(_answer_events(events, view), ping=15)
    async for event in events:
        if isinstance(event, DoneEvent):
            return await run_in_threadpool(presenters.answer_json, event.answer, view)
    raise RuntimeError("the answer ended without a result")  # pragma: no cover


@router.post(
    "/v1/search",
    response_model=list[PassageOut],
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def search(
    body: SearchRequest, request: Request, lore: LoreDep, caller: CallerDep, metrics: MetricsDep
) -> Any:
    """The passages nearest to a question, best first, without an answer."""
    collection = readable(caller, body.collection or lore.settings.collection)
    check_question(body.question, lore.settings)
    filters = _filters(body.filters, caller)
    require_collection(lore.store, collection)
    started = time.perf_counter()
    passages = lore.on_collection(
        collection,
        lambda target: target.retriever.search(
            body.question, collection, body.top_k, filters=filters
        ),
    )
    metrics.retrieval.observe(time.perf_counter() - started)
    audit(
        request,
        "search",
        collection=collection,
        question=body.question,
        chunk_ids=[p.chunk.id for p in passages],
        status=200,
    )
    view = presenters.SourceView(lore.manifest, collection, caller.is_admin)
    return presenters.passages_json(passages, view)


def _filters(given: FiltersIn | None, caller: Principal) -> Filters | None:
    """The request's filters, checked (InvalidInput, a 422, names what is wrong). Source
    patterns match the names of files, and their server paths only for an admin."""
    if given is None:
        return None
    return make_filters(given.source, given.type, given.since, given.until, paths=caller.is_admin)


async def _answer_events(
    events: AsyncIterator[AnswerEvent], view: presenters.SourceView
) -> AsyncIterator[dict[str, str]]:
    """Server-sent events for one answer: `sources`, `token`…, then `done` (or `error`)."""
    try:
        async for event in events:
            if isinstance(event, SourcesEvent):
                data: Any = await run_in_threadpool(presenters.citations_json, event.sources, view)
                yield {"event": "sources", "data": json.dumps(data, ensure_ascii=False)}
            elif isinstance(event, TokenEvent):
                yield {
                    "event": "token",
                    "data": json.dumps({"text": event.text}, ensure_ascii=False),
                }
            elif isinstance(event, DoneEvent):
                data = await run_in_threadpool(presenters.answer_json, event.answer, view)
                yield {"event": "done", "data": json.dumps(data, ensure_ascii=False)}
    except LoreError as exc:
        error = {"code": exc.code, "message": str(exc)}
        yield {"event": "error", "data": json.dumps(error, ensure_ascii=False)}
    except Exception:
        log.exception("answer stream failed")
        error = {"code": "internal_error", "message": "Something went wrong on the server."}
        yield {"event": "error", "data": json.dumps(error)}
