"""OpenAI-compatible routes, so existing OpenAI clients and SDKs work against Lore.

The model name picks the collection: `lore:<collection>` (plain `lore` is the default
collection). The last message is the question; earlier user and assistant messages
are the conversation it follows. Lore's own prompt replaces system messages, and
sampling fields are ignored: answers come from the documents, at Lore's settings.
Citations ride in an extra `citations` field, which OpenAI clients ignore.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from api import presenters
from api.answers import audit, start_answer
from api.deps import CallerDep, LoreDep, readable
from api.schemas import (
    ChatCompletionRequest,
    ChatMessageIn,
    EmbeddingRequest,
    ErrorOut,
)
from rag.answering.answerer import check_question
from rag.components.store import require_collection
from rag.config import validate_collection_name
from rag.container import Lore
from rag.errors import InvalidInput, LimitExceeded, LoreError, NotFound
from rag.types import Answer, DoneEvent, TokenEvent, Turn

router = APIRouter(tags=["openai"])

MODEL_PREFIX = "lore:"
MAX_EMBEDDING_INPUTS = 256


def model_name(collection: str) -> str:
    return f"{MODEL_PREFIX}{collection}"


def collection_of(model: str, lore: Lore) -> str:
    """The collection a model name selects; NotFound for a name that is not Lore's."""
    if model == "lore":
        return lore.settings.collection
    if not model.startswith(MODEL_PREFIX):
        raise NotFound(f"There is no model '{model[:100]}'; Lore's models are lore:<collection>.")
    try:
        return validate_collection_name(model[len(MODEL_PREFIX) :])
    except ValueError:
        raise NotFound(f"There is no model '{model[:100]}'.") from None


def _text(message: ChatMessageIn) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text or "" for part in message.content if part.type == "text")


def _conversation(messages: list[ChatMessageIn]) -> tuple[str, list[Turn]]:
    """The question (the last message, which must be the user's) and the turns before it."""
    last = messages[-1]
    question = _text(last).strip()
    if last.role != "user" or not question:
        raise InvalidInput("The last message must be the user's question, with text.")
    history = [
        Turn(m.role, _text(m))
        for m in messages[:-1]
        if m.role in ("user", "assistant") and _text(m).strip()
    ]
    return question, history


def _max_tokens(body: ChatCompletionRequest, lore: Lore) -> int | None:
    wanted = body.max_completion_tokens or body.max_tokens
    if wanted is not None and wanted > lore.settings.max_tokens:
        raise InvalidInput(
            f"max_tokens may be at most {lore.settings.max_tokens} on this server, not {wanted}."
        )
    return wanted


@router.get("/v1/models", responses={401: {"model": ErrorOut}})
def list_models(lore: LoreDep, caller: CallerDep) -> dict[str, Any]:
    """The collections this key may read, as OpenAI models named `lore:<collection>`."""
    names = lore.store.list_collections()
    return {
        "object": "list",
        "data": [
            {"id": model_name(n), "object": "model", "created": 0, "owned_by": "lore"}
            for n in names
            if caller.can_read(n)
        ],
    }


# Async: the answer runs beside the event loop (api/answers.py), and a stream is sent
# from it as the tokens come.
@router.post(
    "/v1/chat/completions",
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "model": "lore:default",
                        "messages": [{"role": "user", "content": "What port does Lore use?"}],
                    }
                }
            }
        }
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, lore: LoreDep, caller: CallerDep
) -> Any:
    """An answer from a collection, as an OpenAI chat completion (or its stream of chunks)."""
    collection = readable(caller, collection_of(body.model, lore))
    question, history = _conversation(body.messages)
    check_question(question, lore.settings)
    max_tokens = _max_tokens(body, lore)
    missing = f"There is no model '{body.model[:100]}'."
    await run_in_threadpool(require_collection, lore.store, collection, missing=missing)
    events = start_answer(
        request,
        lore,
        operation="chat.completions",
        question=question,
        collection=collection,
        history=history,
        max_tokens=max_tokens,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    view = presenters.SourceView(lore.manifest, collection, caller.is_admin)
    if body.stream:
        with_usage = body.stream_options is not None and body.stream_options.include_usage
        return EventSourceResponse(
            _chunks(events, completion_id, created, body.model, view, with_usage=with_usage),
            ping=15,
        )
    answer: Answer | None = None
    async for event in events:
        if isinstance(event, DoneEvent):
            answer = event.answer
    if answer is None:  # pragma: no cover - the stream always ends with Done or raises
        raise RuntimeError("the answer ended without a result")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(answer),
        "citations": await run_in_threadpool(presenters.citations_json, answer.citations, view),
    }


def _usage(answer: Answer) -> dict[str, int]:
    """The tokens the model read (the whole prompt, a follow-up's rewrite included) and wrote."""
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


async def _chunks(
    events: AsyncIterator[Any],
    completion_id: str,
    created: int,
    model: str,
    view: presenters.SourceView,
    *,
    with_usage: bool = False,
) -> AsyncIterator[dict[str, str]]:
    """`chat.completion.chunk` objects: the role, the text piece by piece, then the finish
    with the citations, then (asked for with `stream_options.include_usage`) the usage
    with no choices, then `[DONE]`. The pieces add up to the plain response's content
    exactly. A failure mid-stream is an `error` object."""

    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}

    def chunk(delta: dict[str, str], finish: str | None, **extra: Any) -> dict[str, str]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {**base, "model": model, "choices": [choice], **extra}
        return {"data": json.dumps(body, ensure_ascii=False)}

    yield chunk({"role": "assistant", "content": ""}, None)
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                yield chunk({"content": event.text}, None)
            elif isinstance(event, DoneEvent):
                citations = await run_in_threadpool(
                    presenters.citations_json, event.answer.citations, view
                )
                yield chunk({}, "stop", citations=citations)
                if with_usage:
                    usage = {**base, "model": model, "choices": [], "usage": _usage(event.answer)}
                    yield {"data": json.dumps(usage)}
    except LoreError as exc:
        error = {"message": str(exc), "type": exc.code, "code": exc.code}
        yield {"data": json.dumps({"error": error}, ensure_ascii=False)}
    yield {"data": "[DONE]"}


@router.post(
    "/v1/embeddings",
    responses={413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def embeddings(body: EmbeddingRequest, request: Request, lore: LoreDep, caller: CallerDep) -> Any:
    """Vectors from the configured embedder, as OpenAI embeddings (the `model` is ignored)."""
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise InvalidInput("Send at least one text to embed.")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise LimitExceeded(f"Send at most {MAX_EMBEDDING_INPUTS} texts at a time.")
    if any(len(t) > 8000 for t in texts):
        raise InvalidInput("Each text may be at most 8000 characters.")
    vectors = lore.embedder.embed_documents(texts)
    audit(request, "embeddings", status=200)
    tokens = sum(len(t) for t in texts) // 4

    def encoded(vector: Any) -> list[float] | str:
        if body.encoding_format == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        return [float(x) for x in vector]

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(vector)}
            for i, vector in enumerate(vectors)
        ],
        "model": lore.embedder_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
