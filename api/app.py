"""The HTTP API and the web page, on FastAPI.

Routes are thin: they validate input, call `rag`/`ingest`, and shape the output.
Model work runs in worker threads, so the event loop (and /healthz) stays responsive.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette.sse import EventSourceResponse

from api import presenters
from api.answers import audit, start_answer
from api.deps import AdminDep, CallerDep, JobsDep, LoreDep, readable, writable
from api.limits import BodyLimit, GenerationGate, RateLimiter
from api.observability import Metrics, request_id_var
from api.openai_compat import router as openai_router
from api.schemas import (
    COLLECTION_PATTERN,
    CollectionDeleteOut,
    CollectionIn,
    CollectionOut,
    DeleteOut,
    DocumentDetailOut,
    DocumentOut,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    FiltersIn,
    Health,
    IngestOut,
    JobOut,
    KeyIn,
    KeyOut,
    NewKeyOut,
    PassageOut,
    QueryRequest,
    QueryResponse,
    Readiness,
    Ready,
    SearchRequest,
)
from ingest.jobs import Job, JobManager
from ingest.parsing import check_name, check_supported
from ingest.pipeline import (
    IngestResult,
    delete_document,
    file_sha256,
    ingest_replacing,
    recover,
)
from rag.access import Principal
from rag.answering import check_question
from rag.audit import AuditLog
from rag.config import Settings, load_settings
from rag.container import Lore
from rag.errors import (
    AuthThrottled,
    Busy,
    ConfigError,
    Forbidden,
    GenerationFailed,
    InvalidInput,
    LimitExceeded,
    LoreError,
    ModelMissing,
    NotFound,
    ParseError,
    RateLimited,
    StoreUnavailable,
    TimedOut,
    Unauthorized,
    UnsupportedFile,
)
from rag.filters import Filters, make_filters, parse_when
from rag.manifest import DocumentRecord
from rag.types import AnswerEvent, DoneEvent, SourcesEvent, TokenEvent, Turn

log = logging.getLogger("lore.api")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# The web page loads only its own files and talks only to this server. /docs and /redoc
# are left out: their pages run an inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

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
    GenerationFailed: 502,
    Busy: 503,
    RateLimited: 429,
    TimedOut: 504,
    ConfigError: 500,
}


def _status_for(exc: LoreError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _error(status: int, code: str, message: str, request: Request) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    body: dict[str, Any] = ErrorOut(code=code, message=message, request_id=request_id).model_dump()
    if request.url.path in _OPENAI_PATHS:
        body["error"] = {"message": message, "type": code, "code": code}
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": request_id})


CollectionQuery = Annotated[str | None, Query(pattern=COLLECTION_PATTERN)]
CollectionPath = Annotated[str, PathParam(pattern=COLLECTION_PATTERN)]
DocIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{8,64}$")]
JobIdPath = Annotated[str, PathParam(max_length=64)]
KeyIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")]


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "lore"
    return f"{tag}-{route.name}"


def _safe_filename(name: str | None) -> str:
    """A plain file name for an upload: no directories, no control characters, not blank,
    not too long. It is what readers see as the document's name, so it is refused, with
    the reason, rather than silently changed."""
    base = Path((name or "").replace("\\", "/")).name
    check_name(base)
    if not base.strip() or base in {".", ".."} or len(base.encode()) > 200:
        raise InvalidInput("The upload needs a plain file name of at most 200 bytes.")
    return base


def _warm_up(lore: Lore) -> None:
    """Load every component now, so a missing model fails the start, not the first request.

    Also clears what an earlier crash left half-written (invisible, but taking space).
    """
    _ = lore.embedder, lore.store, lore.answerer, lore.keys, lore.feedback
    recover(lore)


# OpenAI clients read errors from an `error` object; these paths get one as well.
_OPENAI_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/models")


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
        app.state.lore = lore or Lore(settings)
        app.state.audit = AuditLog(settings.data_dir / "audit.sqlite3")
        # Retention is applied at every start (and by `lore audit prune`).
        await run_in_threadpool(app.state.audit.prune, settings.audit_retention_days)
        await run_in_threadpool(_warm_up, app.state.lore)
        app.state.jobs = JobManager(
            app.state.lore,
            on_result=partial(_count_ingested, metrics),
            on_finish=partial(_audit_job, app.state.audit),
        )
        app.state.ready = True
        try:
            yield
        finally:
            await run_in_threadpool(app.state.jobs.close)
            app.state.audit.close()

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
    app.state.gate = GenerationGate(settings.generation_queue)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.auth_failures = RateLimiter(settings.failed_auth_per_minute)
    app.state.ready = False

    async def too_large(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope)
        request.state.request_id = uuid.uuid4().hex
        metrics.rejected.labels("body_too_large").inc()
        message = "The request body is larger than this server accepts."
        response = _error(413, LimitExceeded.code, message, request)
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
        if request.url.path == "/" or request.url.path.startswith("/web/"):
            response.headers.update(_PAGE_HEADERS)
        return response

    @app.exception_handler(LoreError)
    async def lore_error(request: Request, exc: LoreError) -> JSONResponse:
        status = _status_for(exc)
        response = _error(status, exc.code, str(exc), request)
        if isinstance(exc, Busy | RateLimited):
            metrics.rejected.labels(exc.code).inc()
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
        return _error(422, "invalid_request", f"The request is not valid: {problems}", request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error (request %s)", getattr(request.state, "request_id", ""))
        return _error(500, "internal_error", "Something went wrong on the server.", request)

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> Health:
        """Alive: answers at once, without a key, whatever the models are doing."""
        return Health(status="ok")

    async def _readiness(request: Request, lore: Lore) -> Readiness:
        checks = {"models": "ok" if request.app.state.ready else "loading"}
        try:
            await run_in_threadpool(lore.store.list_collections)
            checks["vector_store"] = "ok"
        except Exception:
            log.exception("vector store unreachable")
            checks["vector_store"] = "unreachable"
        try:
            await run_in_threadpool(lore.manifest.collections)
            checks["manifest"] = "ok"
        except Exception:
            log.exception("manifest unreachable")
            checks["manifest"] = "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return Readiness(status="ready" if ready else "not ready", checks=checks)

    @app.get("/readyz", tags=["health"], response_model=Ready, responses={503: {"model": Ready}})
    async def readyz(request: Request, lore: LoreDep) -> Any:
        """Ready (200) or not (503): models loaded and the stores reachable. No key is
        needed, so load balancers and orchestrators can probe it; it says nothing more.
        The checks' detail is `GET /v1/admin/readiness`."""
        state = await _readiness(request, lore)
        body = Ready(status=state.status)
        return JSONResponse(body.model_dump(), status_code=200 if state.status == "ready" else 503)

    @app.get(
        "/v1/admin/readiness",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness}},
    )
    async def readiness(request: Request, lore: LoreDep, admin: AdminDep) -> Any:
        """Readiness with each check's state (admin only): 503 naming what is not ready."""
        state = await _readiness(request, lore)
        code = 200 if state.status == "ready" else 503
        return JSONResponse(state.model_dump(), status_code=code)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus_metrics(caller: CallerDep) -> Response:
        """Prometheus metrics: requests and latency by route, queue depth, time to first
        token, tokens/s, retrieval latency, ingest counters."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/query",
        tags=["query"],
        response_model=QueryResponse,
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    async def query(body: QueryRequest, request: Request, lore: LoreDep, caller: CallerDep) -> Any:
        """Answer a question from a collection; with `stream`, as server-sent events:
        `sources`, then `token`s, then `done` (or `error`)."""
        collection = readable(caller, body.collection or lore.settings.collection)
        check_question(body.question, lore.settings.max_question_chars)
        filters = _filters(body.filters, caller)
        await run_in_threadpool(_require_collection, lore, collection)
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

    @app.post(
        "/v1/search",
        tags=["query"],
        response_model=list[PassageOut],
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def search(
        body: SearchRequest, request: Request, lore: LoreDep, caller: CallerDep
    ) -> Any:
        """The passages nearest to a question, best first, without an answer."""
        collection = readable(caller, body.collection or lore.settings.collection)
        check_question(body.question, lore.settings.max_question_chars)
        filters = _filters(body.filters, caller)
        await run_in_threadpool(_require_collection, lore, collection)
        started = time.perf_counter()
        passages = await run_in_threadpool(
            partial(lore.retriever.search, filters=filters),
            body.question,
            collection,
            body.top_k,
        )
        metrics.retrieval.observe(time.perf_counter() - started)
        await run_in_threadpool(
            audit,
            request,
            "search",
            collection=collection,
            question=body.question,
            chunk_ids=[p.chunk.id for p in passages],
            status=200,
        )
        view = presenters.SourceView(lore.manifest, collection, caller.is_admin)
        return await run_in_threadpool(presenters.passages_json, passages, view)

    # -- collections --------------------------------------------------------

    @app.post(
        "/v1/collections",
        tags=["collections"],
        response_model=CollectionOut,
        status_code=201,
        responses={403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def create_collection(
        body: CollectionIn, request: Request, lore: LoreDep, caller: CallerDep
    ) -> Any:
        """Create an empty collection (an admin, or a writer key naming it, may)."""
        writable(caller, body.name)
        await run_in_threadpool(lore.store.create_collection, body.name)
        await run_in_threadpool(
            audit, request, "collections.create", collection=body.name, status=201
        )
        return CollectionOut(name=body.name, documents=0, chunks=0)

    @app.get("/v1/collections", tags=["collections"], response_model=list[CollectionOut])
    async def list_collections(lore: LoreDep, caller: CallerDep) -> Any:
        """The collections this key may read, with their sizes."""
        names = await run_in_threadpool(lore.store.list_collections)
        return [
            await run_in_threadpool(_collection_out, lore, n) for n in names if caller.can_read(n)
        ]

    @app.get(
        "/v1/collections/{name}",
        tags=["collections"],
        response_model=CollectionOut,
        responses={404: {"model": ErrorOut}},
    )
    async def get_collection(name: CollectionPath, lore: LoreDep, caller: CallerDep) -> Any:
        """One collection's size."""
        readable(caller, name)
        await run_in_threadpool(_require_collection, lore, name)
        return await run_in_threadpool(_collection_out, lore, name)

    @app.delete(
        "/v1/collections/{name}",
        tags=["collections"],
        response_model=CollectionDeleteOut,
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def delete_collection(
        name: CollectionPath, request: Request, lore: LoreDep, caller: CallerDep
    ) -> Any:
        """Delete a collection: every document, chunk and uploaded file in it."""
        writable(caller, name)
        await run_in_threadpool(_require_collection, lore, name)
        doc_ids, chunks = await run_in_threadpool(_delete_collection, lore, name)
        await run_in_threadpool(
            audit, request, "collections.delete", collection=name, doc_ids=doc_ids, status=200
        )
        return CollectionDeleteOut(name=name, deleted_documents=len(doc_ids), deleted_chunks=chunks)

    # -- documents ----------------------------------------------------------

    @app.post(
        "/v1/documents",
        tags=["documents"],
        response_model=IngestOut,
        status_code=201,
        responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def upload_document(
        request: Request,
        lore: LoreDep,
        caller: CallerDep,
        file: Annotated[UploadFile, File(description="The document to index.")],
        collection: Annotated[str | None, Form(pattern=COLLECTION_PATTERN)] = None,
    ) -> Any:
        """Upload a file and index it. Uploading the same name again replaces the document."""
        target = writable(caller, collection or lore.settings.collection)
        name = _safe_filename(file.filename)
        check_supported(Path(name))
        staged = await run_in_threadpool(_stage_upload, file.file, lore.settings, target, name)
        final = lore.settings.uploads_dir / target / name
        try:
            result = await run_in_threadpool(ingest_replacing, lore, staged, final, target)
        finally:
            await run_in_threadpool(_unstage, staged)  # the file is gone already on success
        _count_ingested(metrics, result)
        await run_in_threadpool(
            audit,
            request,
            "documents.upload",
            collection=target,
            doc_ids=[result.doc_id] if result.doc_id else [],
            status=201,
        )
        return presenters.ingest_json(result, caller.is_admin)

    @app.get(
        "/v1/documents",
        tags=["documents"],
        response_model=list[DocumentOut],
        responses={404: {"model": ErrorOut}},
    )
    async def list_documents(
        lore: LoreDep, caller: CallerDep, collection: CollectionQuery = None
    ) -> Any:
        """The documents in a collection, with their status and chunk counts."""
        target = readable(caller, collection or lore.settings.collection)
        documents = await run_in_threadpool(_list_documents, lore, target)
        return [presenters.document_json(d, caller.is_admin) for d in documents]

    @app.get(
        "/v1/documents/{doc_id}",
        tags=["documents"],
        response_model=DocumentDetailOut,
        responses={404: {"model": ErrorOut}},
    )
    async def get_document(
        doc_id: DocIdPath, lore: LoreDep, caller: CallerDep, collection: CollectionQuery = None
    ) -> Any:
        """One document's record and its chunks."""
        target = readable(caller, collection or lore.settings.collection)
        return await run_in_threadpool(_document_detail, lore, target, doc_id, caller.is_admin)

    @app.get(
        "/v1/documents/{doc_id}/file",
        tags=["documents"],
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The file."},
            404: {"model": ErrorOut},
        },
    )
    async def download_document(
        doc_id: DocIdPath,
        request: Request,
        lore: LoreDep,
        caller: CallerDep,
        collection: CollectionQuery = None,
    ) -> FileResponse:
        """The document's original file, as an attachment under its own name: the first
        path it was ingested from that still holds the same bytes."""
        target = readable(caller, collection or lore.settings.collection)
        path = await run_in_threadpool(_original_file, lore, target, doc_id)
        await run_in_threadpool(
            audit, request, "documents.download", collection=target, doc_ids=[doc_id], status=200
        )
        return FileResponse(path, filename=path.name)

    @app.delete(
        "/v1/documents/{doc_id}",
        tags=["documents"],
        response_model=DeleteOut,
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def remove_document(
        doc_id: DocIdPath,
        request: Request,
        lore: LoreDep,
        caller: CallerDep,
        collection: CollectionQuery = None,
    ) -> Any:
        """Delete a document and all of its chunks (and its uploaded file, if it was uploaded)."""
        target = writable(caller, collection or lore.settings.collection)
        record = await run_in_threadpool(_live_document, lore, target, doc_id)
        removed, _ = await run_in_threadpool(_remove_document, lore, target, doc_id)
        await run_in_threadpool(
            audit, request, "documents.delete", collection=target, doc_ids=[doc_id], status=200
        )
        return presenters.deleted_json(record, removed, caller.is_admin)

    # -- ingest jobs --------------------------------------------------------

    @app.post(
        "/v1/ingest/jobs",
        tags=["ingest"],
        response_model=JobOut,
        status_code=202,
        responses={
            403: {"model": ErrorOut},
            413: {"model": ErrorOut},
            422: {"model": ErrorOut},
            503: {"model": ErrorOut},
        },
    )
    async def create_ingest_job(
        request: Request,
        lore: LoreDep,
        jobs: JobsDep,
        caller: CallerDep,
        files: Annotated[list[UploadFile] | None, File(description="Files to index.")] = None,
        folder: Annotated[
            str | None, Form(max_length=4096, description="A server folder inside ingest_roots.")
        ] = None,
        collection: Annotated[str | None, Form(pattern=COLLECTION_PATTERN)] = None,
    ) -> Any:
        """Start indexing uploaded files, or a server-side folder inside an allowed root."""
        target = writable(caller, collection or lore.settings.collection)
        if bool(files) == bool(folder):
            raise InvalidInput("Send either files or a folder, not both and not neither.")
        if folder:
            if not caller.is_admin:
                raise Forbidden("Only an admin key may ingest a folder on the server.")
            paths = [await run_in_threadpool(_allowed_folder, lore.settings, folder)]
        else:
            paths = []
            for upload in files or []:
                name = _safe_filename(upload.filename)
                check_supported(Path(name))
                staged = await run_in_threadpool(
                    _stage_upload, upload.file, lore.settings, target, name
                )
                final = lore.settings.uploads_dir / target / name
                # A job records unreadable files as failed, so the upload takes its place now.
                paths.append(await run_in_threadpool(staged.replace, final))
                await run_in_threadpool(_unstage, staged)
        job = jobs.submit(target, paths, actor=caller.actor)
        await run_in_threadpool(audit, request, "ingest.jobs.create", collection=target, status=202)
        return presenters.job_json(job, caller.is_admin)

    @app.get("/v1/ingest/jobs", tags=["ingest"], response_model=list[JobOut])
    async def list_ingest_jobs(jobs: JobsDep, caller: CallerDep) -> Any:
        """Recent ingest jobs into collections this key may read, newest first."""
        return [
            presenters.job_json(job, caller.is_admin)
            for job in jobs.list()
            if caller.can_read(job.collection)
        ]

    @app.get(
        "/v1/ingest/jobs/{job_id}",
        tags=["ingest"],
        response_model=JobOut,
        responses={404: {"model": ErrorOut}},
    )
    async def get_ingest_job(job_id: JobIdPath, jobs: JobsDep, caller: CallerDep) -> Any:
        """A job's progress (files done of total, counts by outcome) and its report when done."""
        job = jobs.get(job_id)
        if not caller.can_read(job.collection):
            raise NotFound(f"There is no ingest job '{job_id}'.")
        return presenters.job_json(job, caller.is_admin)

    @app.post(
        "/v1/ingest/jobs/{job_id}/cancel",
        tags=["ingest"],
        response_model=JobOut,
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def cancel_ingest_job(
        job_id: JobIdPath, request: Request, jobs: JobsDep, caller: CallerDep
    ) -> Any:
        """Stop a job between files; what it finished stays indexed."""
        job = jobs.get(job_id)
        if not caller.can_read(job.collection):
            raise NotFound(f"There is no ingest job '{job_id}'.")
        writable(caller, job.collection)
        cancelled = presenters.job_json(jobs.cancel(job_id), caller.is_admin)
        await run_in_threadpool(
            audit, request, "ingest.jobs.cancel", collection=job.collection, status=200
        )
        return cancelled

    # -- feedback -----------------------------------------------------------

    @app.post(
        "/v1/feedback",
        tags=["feedback"],
        response_model=FeedbackOut,
        status_code=201,
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def create_feedback(
        body: FeedbackIn, request: Request, lore: LoreDep, caller: CallerDep
    ) -> Any:
        """Rate an answer up or down, with the question, the answer and the chunks it cited."""
        collection = readable(caller, body.collection or lore.settings.collection)
        await run_in_threadpool(_require_collection, lore, collection)
        record = await run_in_threadpool(
            partial(
                lore.feedback.add,
                actor=caller.actor,
                collection=collection,
                question=body.question,
                answer=body.answer,
                chunk_ids=body.chunk_ids,
                rating=body.rating,
                comment=body.comment,
                request_id=request.state.request_id,
            )
        )
        await run_in_threadpool(
            audit,
            request,
            "feedback",
            collection=collection,
            chunk_ids=body.chunk_ids,
            status=201,
        )
        return FeedbackOut(id=record.id, at=record.as_json()["at"])

    @app.get(
        "/v1/feedback/export",
        tags=["feedback"],
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
    async def export_feedback(
        request: Request,
        lore: LoreDep,
        admin: AdminDep,
        since: Annotated[
            str | None,
            Query(
                max_length=40,
                description="Only ratings at or after this ISO 8601 date or time (UTC unless "
                "it says).",
            ),
        ] = None,
    ) -> Response:
        """Every rating (admin only), as JSON lines: id, at, actor, collection, question,
        answer, chunk_ids, rating, comment, request_id."""
        moment = parse_when(since) if since is not None else None
        body = await run_in_threadpool(_feedback_lines, lore, moment)
        await run_in_threadpool(audit, request, "feedback.export", status=200)
        return Response(body, media_type="application/x-ndjson")

    # -- keys ---------------------------------------------------------------

    @app.post(
        "/v1/keys",
        tags=["keys"],
        response_model=NewKeyOut,
        status_code=201,
        responses={403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def create_key(body: KeyIn, request: Request, lore: LoreDep, admin: AdminDep) -> Any:
        """Make an API key (admin only). The key is in this response and nowhere else."""
        record, key = await run_in_threadpool(
            lore.keys.create, body.name, body.role, body.collections
        )
        await run_in_threadpool(audit, request, f"keys.create {record.key_id}", status=201)
        return {**record.as_json(), "key": key}

    @app.get(
        "/v1/keys", tags=["keys"], response_model=list[KeyOut], responses={403: {"model": ErrorOut}}
    )
    async def list_keys(lore: LoreDep, admin: AdminDep) -> Any:
        """Every key, revoked ones included, without secrets (admin only)."""
        return [k.as_json() for k in await run_in_threadpool(lore.keys.list)]

    @app.delete(
        "/v1/keys/{key_id}",
        tags=["keys"],
        response_model=KeyOut,
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def revoke_key(
        key_id: KeyIdPath, request: Request, lore: LoreDep, admin: AdminDep
    ) -> Any:
        """Revoke a key at once (admin only)."""
        record = await run_in_threadpool(lore.keys.revoke, key_id)
        await run_in_threadpool(audit, request, f"keys.revoke {key_id}", status=200)
        return record.as_json()

    app.include_router(openai_router)

    if WEB_DIR.is_dir():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app


def _count_ingested(metrics: Metrics, result: IngestResult) -> None:
    metrics.ingested_files.labels(result.status).inc()
    metrics.ingested_chunks.inc(result.chunks if result.status in ("added", "updated") else 0)


def _audit_job(log_: AuditLog, job: Job) -> None:
    log_.record(
        actor=job.actor or "anonymous",
        operation=f"ingest.jobs.{job.status}",
        collection=job.collection,
        doc_ids=job.doc_ids,
        status=200,
        request_id=job.id,
    )


def _require_collection(lore: Lore, collection: str) -> None:
    if collection not in lore.store.list_collections():
        raise NotFound(f"Collection '{collection}' does not exist.")


def _collection_out(lore: Lore, name: str) -> CollectionOut:
    documents = lore.manifest.visible_count(name)
    chunks = sum(d.chunks for d in lore.manifest.documents(name) if d.status == "indexed")
    return CollectionOut(name=name, documents=documents, chunks=chunks)


def _delete_collection(lore: Lore, name: str) -> tuple[list[str], int]:
    """Delete every document (each as `DELETE /v1/documents` would), then the collection."""
    doc_ids: list[str] = []
    chunks = 0
    for record in lore.manifest.documents(name):
        if record.status == "deleting":
            continue
        removed, _ = _remove_document(lore, name, record.doc_id)
        doc_ids.append(record.doc_id)
        chunks += removed
    lore.store.drop_collection(name)
    lore.keywords.drop_collection(name)
    shutil.rmtree(lore.settings.uploads_dir / name, ignore_errors=True)
    return doc_ids, chunks


def _live_document(lore: Lore, collection: str, doc_id: str) -> DocumentRecord:
    """The document's record; NotFound if there is none or it is being deleted."""
    record = lore.manifest.document(collection, doc_id)
    if record is None or record.status == "deleting":
        raise NotFound(f"Document '{doc_id}' is not in collection '{collection}'.")
    return record


def _document_detail(lore: Lore, collection: str, doc_id: str, admin: bool) -> dict[str, Any]:
    record = _live_document(lore, collection, doc_id)
    data = presenters.document_json(record, admin)
    data["chunk_texts"] = [
        {"chunk_id": c.id, "page": c.page, "heading": c.heading, "text": c.text}
        for c in (lore.store.document_chunks(collection, doc_id) if record.chunks else [])
    ]
    return data


def _original_file(lore: Lore, collection: str, doc_id: str) -> Path:
    """The first source path of the document that still holds its bytes (the manifest's
    paths only, never one from a client); NotFound when there is none."""
    record = _live_document(lore, collection, doc_id)
    for source in record.sources:
        path = Path(source)
        # A file changed since it was ingested no longer holds this document.
        try:
            if path.is_file() and file_sha256(path) == record.sha256:
                return path
        except OSError:  # unreadable now: as good as gone
            continue
    raise NotFound(f"Document '{doc_id}' has no original file on this server any more.")


def _feedback_lines(lore: Lore, since: datetime | None) -> str:
    return "".join(
        json.dumps(record, ensure_ascii=False) + "\n" for record in lore.feedback.export(since)
    )


def _filters(given: FiltersIn | None, caller: Principal) -> Filters | None:
    """The request's filters, checked (InvalidInput, a 422, names what is wrong). Source
    patterns match the names of files, and their server paths only for an admin."""
    if given is None:
        return None
    return make_filters(given.source, given.type, given.since, given.until, paths=caller.is_admin)


def _allowed_folder(settings: Settings, folder: str) -> Path:
    """The resolved folder, if it lies inside one of the configured ingest roots."""
    if "\0" in folder or any(ord(ch) < 32 for ch in folder):
        raise InvalidInput("A folder's path may not hold control characters.")
    path = Path(folder).resolve()
    roots = [root.resolve() for root in settings.ingest_roots]
    if not any(path.is_relative_to(root) for root in roots):
        raise Forbidden("That folder is not inside a folder this server may ingest from.")
    if not path.is_dir():
        raise InvalidInput("That folder does not exist on the server.")
    return path


def _list_documents(lore: Lore, collection: str) -> list[DocumentRecord]:
    if collection not in lore.store.list_collections():
        raise NotFound(f"Collection '{collection}' does not exist; ingest documents into it first.")
    return lore.manifest.documents(collection)


def _remove_document(lore: Lore, collection: str, doc_id: str) -> tuple[int, list[str]]:
    """Delete the document's chunks, then the uploaded copies Lore holds of it."""
    removed, sources = delete_document(lore, collection, doc_id)
    uploads = lore.settings.uploads_dir.resolve()
    for source in sources:
        path = Path(source)
        if path.is_relative_to(uploads):
            path.unlink(missing_ok=True)
    return removed, sources


def _stage_upload(upload: BinaryIO, settings: Settings, collection: str, name: str) -> Path:
    """Write an upload, under its own name, into a private temporary folder inside its
    collection's uploads folder (so a rename moves it into place).

    Parsing reads the file there, so a title taken from the file name, and every error,
    name the user's file, never a staging name. The upload is refused once it passes the
    size cap, and when it is empty; either way nothing is left. The caller moves the
    file to its place and then calls `_unstage`.
    """
    limit = settings.max_upload_mb * 1024 * 1024
    folder = settings.uploads_dir / collection
    folder.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=folder, prefix=".upload-")) / name
    written = 0
    try:
        with staged.open("wb") as sink:
            while block := upload.read(1 << 20):
                written += len(block)
                if written > limit:
                    raise LimitExceeded(
                        f"The file is larger than the upload limit of {settings.max_upload_mb} MB."
                    )
                sink.write(block)
        if written == 0:
            raise InvalidInput(f"{name} is empty.")
    except BaseException:
        _unstage(staged)
        raise
    return staged


def _unstage(staged: Path) -> None:
    """Remove a staged upload (if it was not moved into place) and its private folder."""
    staged.unlink(missing_ok=True)
    shutil.rmtree(staged.parent, ignore_errors=True)


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
