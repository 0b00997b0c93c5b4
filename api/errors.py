"""How Lore's errors reach an HTTP client: one status for each domain exception, and a
JSON body with a stable code, a human sentence and the request id (never a trace)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from api.schemas import ErrorOut
from rag.components import database
from rag.components.store import damaged_vector_store
from rag.errors import (
    Busy,
    ConfigError,
    DiskFull,
    Forbidden,
    GenerationFailed,
    InvalidInput,
    LimitExceeded,
    LoreError,
    ModelMissing,
    ModelServerUnavailable,
    NotFound,
    ParseError,
    RateLimited,
    StoreUnavailable,
    TimedOut,
    Unauthorized,
    UnsupportedFile,
)

_STATUS: dict[type[LoreError], int] = {
    Unauthorized: 401,
    NotFound: 404,
    Forbidden: 403,
    InvalidInput: 422,
    UnsupportedFile: 415,
    ParseError: 422,
    LimitExceeded: 413,
    ModelMissing: 503,
    StoreUnavailable: 503,
    ModelServerUnavailable: 503,  # before GenerationFailed, which it is a kind of
    GenerationFailed: 502,
    Busy: 503,
    RateLimited: 429,
    TimedOut: 504,
    DiskFull: 507,
    ConfigError: 500,
}

# OpenAI clients read errors from an `error` object; these paths get one as well.
_OPENAI_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/models")


def status_for(exc: LoreError) -> int:
    """The HTTP status for a domain exception: the first of its kinds mapped, else 500."""
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def error_response(status: int, code: str, message: str, request: Request) -> JSONResponse:
    """The JSON error for `request`: `code`, `message` and `request_id` (and, on the
    OpenAI paths, the same in an `error` object), with the request id as a header."""
    request_id = getattr(request.state, "request_id", "")
    body: dict[str, Any] = ErrorOut(code=code, message=message, request_id=request_id).model_dump()
    if request.url.path in _OPENAI_PATHS:
        body["error"] = {"message": message, "type": code, "code": code}
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": request_id})


def http_error_response(
    request: Request, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Lore's JSON error for what the web framework refuses by itself: a path that does
    not exist (404) or a method a path does not take (405, with its `Allow` header)."""
    method, path = request.method, request.url.path
    if status == 404:
        code, message = "not_found", f"There is nothing at {method} {path}."
    elif status == 405:
        code, message = "method_not_allowed", f"{path} does not take {method}."
    else:
        code, message = "http_error", f"The request was refused ({status})."
    response = error_response(status, code, message, request)
    response.headers.update(headers or {})
    return response


# What a client is told when a store file turns out damaged in the middle of a request.
DAMAGED_MESSAGE = (
    "A file of the server's data directory is damaged, so this request could not be "
    "served. An administrator can run `lore doctor`, which names the file, then "
    "`lore doctor --repair` or restore from a backup (`lore restore`)."
)

# ... and when the disk of the data directory turns out full in the middle of one.
DISK_FULL_MESSAGE = (
    "The server's disk is full, so this request could not be recorded or served. An "
    "administrator must free space; nothing already stored was changed."
)


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` reports a damaged store file: SQLite's (rag/components/database.py)
    or the vector store's."""
    return database.is_damage(exc) or damaged_vector_store(exc)
