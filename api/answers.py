"""One answer as the HTTP interfaces run it: admitted through the generation queue,
generated beside the event loop under a time limit, measured, and audited.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.limits import GenerationGate
from api.observability import Metrics
from api.streaming import events_in_thread
from rag.container import Lore
from rag.retrieval.filters import Filters
from rag.types import AnswerEvent, DoneEvent, SourcesEvent, TokenEvent, Turn


def audit(request: Request, operation: str, **details: Any) -> None:
    """Append an audit entry for this request (blocking: call it from a worker thread)."""
    lore: Lore = request.app.state.lore
    lore.audit.record(
        actor=getattr(request.state, "actor", "anonymous"),
        operation=operation,
        request_id=getattr(request.state, "request_id", ""),
        **details,
    )


def start_answer(
    request: Request,
    lore: Lore,
    *,
    operation: str,
    question: str,
    collection: str,
    top_k: int | None = None,
    filters: Filters | None = None,
    history: Sequence[Turn] = (),
    max_tokens: int | None = None,
) -> AsyncIterator[AnswerEvent]:
    """The events of one answer. Takes a place in the generation queue now (Busy, a 503,
    when it is full), so a refusal comes before any response has begun."""
    gate: GenerationGate = request.app.state.gate
    metrics: Metrics = request.app.state.metrics
    entered = gate.enter()
    metrics.queue_depth.set(gate.depth)

    def finished() -> None:
        gate.leave(entered)
        metrics.queue_depth.set(gate.depth)

    events = events_in_thread(
        lambda: lore.stream_on_collection(
            collection,
            lambda target: target.answerer.stream(
                question,
                collection,
                top_k,
                filters=filters,
                history=history,
                max_tokens=max_tokens,
            ),
        ),
        timeout_s=lore.settings.generation_timeout_s,
        on_finish=finished,
    )
    return _measured(request, events, metrics, entered, operation, collection, question)


async def _measured(
    request: Request,
    events: AsyncIterator[AnswerEvent],
    metrics: Metrics,
    started: float,
    operation: str,
    collection: str,
    question: str,
) -> AsyncIterator[AnswerEvent]:
    first_token: float | None = None
    pieces = 0
    async for event in events:
        now = time.monotonic()
        if isinstance(event, SourcesEvent):
            metrics.retrieval.observe(now - started)
        elif isinstance(event, TokenEvent):
            pieces += 1
            if first_token is None:
                first_token = now
                metrics.first_token.observe(now - started)
        elif isinstance(event, DoneEvent):
            if first_token is not None and pieces > 1 and now > first_token:
                metrics.tokens_per_second.observe((pieces - 1) / (now - first_token))
            shown = [c.chunk_id for c in event.answer.sources]
            await run_in_threadpool(
                audit,
                request,
                operation,
                collection=collection,
                question=question,
                chunk_ids=shown,
                status=200,
            )
        yield event
