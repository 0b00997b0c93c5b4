"""The HTTP API and the web page, on FastAPI: the application, its lifespan, middleware
and error handlers. The routes are in api/routes/, one module a resource.

Routes are thin: they validate input, call `rag`/`ingest`, and shape the output.
Model work runs in worker threads, so the event loop (and /healthz) stays responsive.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.answers import audit
from api.errors import (
    DAMAGED_MESSAGE,
    DISK_FULL_MESSAGE,
    error_response,
    http_error_response,
    is_damage,
    status_for,
)
from api.limits import BodyLimit, GenerationGate, WindowRateLimit
from api.observability import Metrics, request_id_var
from api.routes import audit as audit_log
from api.routes import (
    collections,
    conversations,
    documents,
    feedback,
    health,
    ingest_jobs,
    keys,
    openai,
    page,
    query,
)
from ingest.jobs import audit_job, build_job_queue
from ingest.pipeline import recover_unclaimed
from ingest.reindex import ReindexRunner
from rag.components.disk import is_disk_full
from rag.config import Settings, load_settings
from rag.container import Lore
from rag.errors import (
    AuthThrottled,
    Busy,
    DiskFull,
    LimitExceeded,
    LoreError,
    ModelServerUnavailable,
    RateLimited,
    StoreDamaged,
    StoreUnavailable,
    Unauthorized,
)

log = logging.getLogger("lore.api")


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "lore"
    return f"{tag}-{route.name}"


def _warm_up(lore: Lore) -> None:
    """Load every component now, so a missing model fails the start, not the first request.

    Also clears what an earlier crash left half-written (invisible, but taking space).
    """
    _ = lore.embedder, lore.store, lore.answerer, lore.keys, lore.feedback, lore.audit
    for collection in lore.store.settle():
        log.warning("Finished the switch of collection '%s' that a crash cut short", collection)
    recover_unclaimed(lore)


def create_app(settings: Settings | None = None, lore: Lore | None = None) -> FastAPI:
    """The FastAPI application. Pass `lore` to use ready-made components (tests do)."""
    settings = settings or (lore.settings if lore else load_settings())
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.auth:
            log.warning(
                "AUTH IS OFF: every request is served as an admin, without a key. "
                "This is only for one person on this machine; the server binds to loopback."
            )
        if settings.cluster and settings.rate_limit_url is None:
            log.warning(
                "rate_limit_url is not set: each replica counts its own rate limits, so a "
                "key may make rate_limit_per_minute requests a minute on every replica"
            )
        components = lore or Lore(settings)
        app.state.lore = components
        # Retention is applied at every start (and by `lore audit prune`).
        await run_in_threadpool(components.audit.prune, settings.audit_retention_days)
        await run_in_threadpool(
            components.conversations.prune, settings.conversation_retention_days
        )
        await run_in_threadpool(_warm_up, components)
        # On one machine the server runs ingest jobs; in cluster mode `lore worker`s do.
        app.state.jobs = await run_in_threadpool(
            partial(
                build_job_queue,
                components,
                on_result=metrics.count_ingested,
                on_finish=partial(audit_job, components),
            )
        )
        app.state.reindexes = ReindexRunner(components)
        app.state.ready = True
        try:
            yield
        finally:
            await run_in_threadpool(app.state.reindexes.close)
            await run_in_threadpool(app.state.jobs.close)
            components.close_records()

    # FastAPIOffline serves the /docs and /redoc pages' scripts itself, not from a CDN:
    # Lore's networks have no internet.
    app = FastAPIOffline(
        title="Lore",
        version="0.1.0",
        description=(
            "Offline, private knowledge assistant: cited answers from your own documents.\n\n"
            "Every route but `/healthz` and `/readyz` needs an API key: "
            "`Authorization: Bearer <key>` (or `X-API-Key`). A collection a key may not "
            "read answers 404, as one that does not exist. Errors are JSON: a stable "
            "`code`, a `message` and a `request_id`.\n\n"
            "Files are named as readers know them: `source` (`sources` for a document) is "
            "a file's name in its collection, its path within the folder it was ingested "
            "from or the uploaded file's name. Only an admin key is shown where a file "
            "lies on the server, in `path` (`paths`), which is null for every other key. "
            "Source filters match names; an admin key's match server paths too."
        ),
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.metrics = metrics
    # One generation at a time for a model in this process; one a server for several.
    slots = len(settings.model_servers) if settings.llm_backend == "openai" else 1
    app.state.gate = GenerationGate(settings.generation_queue, slots=slots)
    # Counted in Redis when rate_limit_url names one, so replicas share each key's limit.
    counts = settings.rate_limit_url.get_secret_value() if settings.rate_limit_url else "memory://"
    app.state.limiter = WindowRateLimit(
        settings.rate_limit_per_minute, counts, namespace="lore-requests"
    )
    app.state.auth_failures = WindowRateLimit(
        settings.failed_auth_per_minute, counts, namespace="lore-failed-keys"
    )
    app.state.ready = False

    async def too_large(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope)
        request.state.request_id = uuid.uuid4().hex
        metrics.rejected.labels("body_too_large").inc()
        message = "The request body is larger than this server accepts."
        response = error_response(413, LimitExceeded.code, message, request)
        await response(scope, receive, send)

    app.add_middleware(
        BodyLimit,
        json_bytes=settings.max_body_mb * 1024 * 1024,
        upload_bytes=settings.max_upload_mb * 1024 * 1024 + 64 * 1024,
        refuse=too_large,
    )

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        request.state.request_id = uuid.uuid4().hex
        token = request_id_var.set(request.state.request_id)
        started = time.perf_counter()
        try:
            response: Response = await call_next(request)
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - started
            # The access log: the route's template, never its values or the body.
            log.info(
                "%s %s %d %.1f ms",
                request.method,
                template,
                response.status_code,
                seconds * 1000,
                extra={"actor": getattr(request.state, "actor", "")},
            )
        finally:
            request_id_var.reset(token)
        metrics.latency.labels(template).observe(seconds)
        metrics.requests.labels(template, request.method, str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        if settings.tls_cert is not None:  # browsers then refuse plain HTTP here for a year
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if request.url.path == "/" or request.url.path.startswith("/web/"):
            response.headers.update(page.HEADERS)
        return response

    @app.exception_handler(LoreError)
    async def lore_error(request: Request, exc: LoreError) -> JSONResponse:
        status = status_for(exc)
        response = error_response(status, exc.code, str(exc), request)
        if isinstance(exc, Busy | RateLimited):
            metrics.rejected.labels(exc.code).inc()
        if isinstance(exc, Busy | RateLimited | StoreUnavailable | ModelServerUnavailable):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        if status in (401, 403) or isinstance(exc, AuthThrottled):
            await run_in_threadpool(
                audit, request, f"denied {request.method} {request.url.path}", status=status
            )
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error_response(
            422, "invalid_request", f"The request is not valid: {problems}", request
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(request, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error (request %s)", getattr(request.state, "request_id", ""))
        if is_damage(exc):  # found mid-request: the log has the trace, the client a sentence
            return error_response(503, StoreDamaged.code, DAMAGED_MESSAGE, request)
        if is_disk_full(exc):
            return error_response(507, DiskFull.code, DISK_FULL_MESSAGE, request)
        return error_response(500, "internal_error", "Something went wrong on the server.", request)

    app.include_router(health.router)
    app.include_router(query.router)
    app.include_router(collections.router)
    app.include_router(documents.router)
    app.include_router(ingest_jobs.router)
    app.include_router(feedback.router)
    app.include_router(audit_log.router)
    app.include_router(conversations.router)
    app.include_router(keys.router)
    app.include_router(openai.router)
    if page.WEB_DIR.is_dir():
        app.mount("/web", StaticFiles(directory=page.WEB_DIR), name="web")
        app.include_router(page.router)
    return app
