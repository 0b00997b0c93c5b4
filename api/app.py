"""The HTTP API and the web page, on FastAPI.

Routes are thin: they validate input, call `rag`/`ingest`, and shape the output.
Model work runs in worker threads, so the event loop (and /healthz) stays responsive.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from api import presenters
from api.schemas import (
    COLLECTION_PATTERN,
    DeleteOut,
    DocumentOut,
    ErrorOut,
    FiltersIn,
    Health,
    IngestOut,
    JobOut,
    PassageOut,
    QueryRequest,
    QueryResponse,
    SearchRequest,
)
from ingest.jobs import JobManager
from ingest.parsing import check_supported
from ingest.pipeline import delete_document, ingest_replacing, recover
from rag.config import Settings, load_settings
from rag.container import Lore
from rag.errors import (
    ConfigError,
    Forbidden,
    GenerationFailed,
    InvalidInput,
    LimitExceeded,
    LoreError,
    ModelMissing,
    NotFound,
    ParseError,
    StoreUnavailable,
    UnsupportedFile,
)
from rag.filters import Filters, make_filters
from rag.manifest import DocumentRecord
from rag.types import DoneEvent, SourcesEvent, TokenEvent, Turn

log = logging.getLogger("lore.api")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

_STATUS: dict[type[LoreError], int] = {
    NotFound: 404,
    Forbidden: 403,
    InvalidInput: 422,
    UnsupportedFile: 415,
    ParseError: 422,
    LimitExceeded: 413,
    ModelMissing: 503,
    StoreUnavailable: 503,
    GenerationFailed: 502,
    ConfigError: 500,
}


def _status_for(exc: LoreError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _error(status: int, code: str, message: str, request: Request) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    body = ErrorOut(code=code, message=message, request_id=request_id)
    return JSONResponse(body.model_dump(), status_code=status, headers={"X-Request-ID": request_id})


def get_lore(request: Request) -> Lore:
    lore: Lore = request.app.state.lore
    return lore


LoreDep = Annotated[Lore, Depends(get_lore)]


def get_jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]
CollectionQuery = Annotated[str | None, Query(pattern=COLLECTION_PATTERN)]


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "lore"
    return f"{tag}-{route.name}"


def _safe_filename(name: str | None) -> str:
    """A plain file name for an upload: no directories, no NUL, not too long."""
    base = Path((name or "").replace("\\", "/")).name
    if not base or base in {".", ".."} or "\x00" in base or len(base.encode()) > 200:
        raise InvalidInput("The upload needs a plain file name of at most 200 bytes.")
    return base


def _warm_up(lore: Lore) -> None:
    """Load every component now, so a missing model fails the start, not the first request.

    Also clears what an earlier crash left half-written (invisible, but taking space).
    """
    _ = lore.embedder, lore.store, lore.answerer
    recover(lore)


def create_app(settings: Settings | None = None, lore: Lore | None = None) -> FastAPI:
    """The FastAPI application. Pass `lore` to use ready-made components (tests do)."""
    settings = settings or (lore.settings if lore else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.lore = lore or Lore(settings)
        await run_in_threadpool(_warm_up, app.state.lore)
        app.state.jobs = JobManager(app.state.lore)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.jobs.close)

    app = FastAPI(
        title="Lore",
        version="0.1.0",
        description="Offline, private knowledge assistant: cited answers from your own documents.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Response:
        request.state.request_id = uuid.uuid4().hex
        response: Response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    @app.exception_handler(LoreError)
    async def lore_error(request: Request, exc: LoreError) -> JSONResponse:
        return _error(_status_for(exc), exc.code, str(exc), request)

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
        return Health(status="ok")

    @app.post(
        "/v1/query",
        tags=["query"],
        response_model=QueryResponse,
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def query(body: QueryRequest, lore: LoreDep) -> Any:
        """Answer a question from a collection; with `stream`, as server-sent events."""
        collection = body.collection or lore.settings.collection
        if len(body.question) > lore.settings.max_question_chars:
            raise InvalidInput(
                f"The question is longer than {lore.settings.max_question_chars} characters."
            )
        filters = _filters(body.filters)
        history = [Turn(t.role, t.content) for t in body.history]
        if body.stream:
            return EventSourceResponse(
                _answer_events(lore, body.question, collection, body.top_k, filters, history)
            )
        answer = await run_in_threadpool(
            partial(lore.answerer.ask, filters=filters, history=history),
            body.question,
            collection,
            body.top_k,
        )
        return presenters.answer_json(answer, collection)

    @app.post(
        "/v1/search",
        tags=["query"],
        response_model=list[PassageOut],
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def search(body: SearchRequest, lore: LoreDep) -> Any:
        """The passages nearest to a question, best first, without an answer."""
        collection = body.collection or lore.settings.collection
        filters = _filters(body.filters)
        passages = await run_in_threadpool(
            partial(lore.retriever.search, filters=filters), body.question, collection, body.top_k
        )
        return [presenters.passage_json(i, p) for i, p in enumerate(passages, start=1)]

    @app.post(
        "/v1/documents",
        tags=["documents"],
        response_model=IngestOut,
        status_code=201,
        responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def upload_document(
        lore: LoreDep,
        file: Annotated[UploadFile, File(description="The document to index.")],
        collection: Annotated[str | None, Form(pattern=COLLECTION_PATTERN)] = None,
    ) -> Any:
        """Upload a file and index it. Uploading the same name again replaces the document."""
        target = collection or lore.settings.collection
        name = _safe_filename(file.filename)
        check_supported(Path(name))
        staged = await run_in_threadpool(_stage_upload, file.file, lore.settings, target, name)
        final = lore.settings.uploads_dir / target / name
        try:
            result = await run_in_threadpool(ingest_replacing, lore, staged, final, target)
        finally:
            await run_in_threadpool(staged.unlink, missing_ok=True)  # gone already on success
        return presenters.ingest_json(result)

    @app.get("/v1/documents", tags=["documents"], response_model=list[DocumentOut])
    async def list_documents(lore: LoreDep, collection: CollectionQuery = None) -> Any:
        """The documents in a collection, with their chunk counts."""
        target = collection or lore.settings.collection
        documents = await run_in_threadpool(_list_documents, lore, target)
        return [presenters.document_json(d) for d in documents]

    @app.delete(
        "/v1/documents/{doc_id}",
        tags=["documents"],
        response_model=DeleteOut,
        responses={404: {"model": ErrorOut}},
    )
    async def remove_document(
        doc_id: str, lore: LoreDep, collection: CollectionQuery = None
    ) -> Any:
        """Delete a document and all of its chunks (and its uploaded file, if it was uploaded)."""
        target = collection or lore.settings.collection
        removed, sources = await run_in_threadpool(_remove_document, lore, target, doc_id)
        return DeleteOut(doc_id=doc_id, deleted_chunks=removed, sources=sources)

    @app.post(
        "/v1/ingest/jobs",
        tags=["ingest"],
        response_model=JobOut,
        status_code=202,
        responses={403: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def create_ingest_job(
        lore: LoreDep,
        jobs: JobsDep,
        files: Annotated[list[UploadFile] | None, File(description="Files to index.")] = None,
        folder: Annotated[
            str | None, Form(max_length=4096, description="A server folder inside ingest_roots.")
        ] = None,
        collection: Annotated[str | None, Form(pattern=COLLECTION_PATTERN)] = None,
    ) -> Any:
        """Start indexing uploaded files, or a server-side folder inside an allowed root."""
        target = collection or lore.settings.collection
        if bool(files) == bool(folder):
            raise InvalidInput("Send either files or a folder, not both and not neither.")
        if folder:
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
        return jobs.submit(target, paths).as_json()

    @app.get("/v1/ingest/jobs", tags=["ingest"], response_model=list[JobOut])
    async def list_ingest_jobs(jobs: JobsDep) -> Any:
        """Recent ingest jobs, newest first."""
        return [job.as_json() for job in jobs.list()]

    @app.get(
        "/v1/ingest/jobs/{job_id}",
        tags=["ingest"],
        response_model=JobOut,
        responses={404: {"model": ErrorOut}},
    )
    async def get_ingest_job(job_id: str, jobs: JobsDep) -> Any:
        """A job's progress (files done of total, counts by outcome) and its report when done."""
        return jobs.get(job_id).as_json()

    @app.post(
        "/v1/ingest/jobs/{job_id}/cancel",
        tags=["ingest"],
        response_model=JobOut,
        responses={404: {"model": ErrorOut}},
    )
    async def cancel_ingest_job(job_id: str, jobs: JobsDep) -> Any:
        """Stop a job between files; what it finished stays indexed."""
        return jobs.cancel(job_id).as_json()

    if WEB_DIR.is_dir():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app


def _filters(given: FiltersIn | None) -> Filters | None:
    """The request's filters, checked (InvalidInput, a 422, names what is wrong)."""
    if given is None:
        return None
    return make_filters(given.source, given.type, given.since, given.until)


def _allowed_folder(settings: Settings, folder: str) -> Path:
    """The resolved folder, if it lies inside one of the configured ingest roots."""
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
    """Write an upload to a temporary file in its collection's uploads folder.

    The upload is refused once it passes the size cap, and when it is empty; either
    way the temporary file is removed. The caller moves the file to its name.
    """
    limit = settings.max_upload_mb * 1024 * 1024
    folder = settings.uploads_dir / collection
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".upload-", delete=False) as sink:
        temp = Path(sink.name)
        try:
            while block := upload.read(1 << 20):
                written += len(block)
                if written > limit:
                    raise LimitExceeded(
                        f"The file is larger than the upload limit of {settings.max_upload_mb} MB."
                    )
                sink.write(block)
        except BaseException:
            sink.close()
            temp.unlink(missing_ok=True)
            raise
    if written == 0:
        temp.unlink(missing_ok=True)
        raise InvalidInput(f"{name} is empty.")
    # Keep the name's suffix: parsing picks the reader by it.
    staged = temp.with_name(f"{temp.name}{Path(name).suffix}")
    temp.rename(staged)
    return staged


def _answer_events(
    lore: Lore,
    question: str,
    collection: str,
    top_k: int | None,
    filters: Filters | None,
    history: list[Turn],
) -> AsyncIterator[dict[str, str]]:
    """Server-sent events for one answer: `sources`, `token`…, then `done` (or `error`)."""

    def events() -> Iterator[dict[str, str]]:
        try:
            for event in lore.answerer.stream(
                question, collection, top_k, filters=filters, history=history
            ):
                if isinstance(event, SourcesEvent):
                    data: Any = [presenters.citation_json(c) for c in event.sources]
                    yield {"event": "sources", "data": json.dumps(data, ensure_ascii=False)}
                elif isinstance(event, TokenEvent):
                    yield {
                        "event": "token",
                        "data": json.dumps({"text": event.text}, ensure_ascii=False),
                    }
                elif isinstance(event, DoneEvent):
                    data = presenters.answer_json(event.answer, collection)
                    yield {"event": "done", "data": json.dumps(data, ensure_ascii=False)}
        except LoreError as exc:
            error = {"code": exc.code, "message": str(exc)}
            yield {"event": "error", "data": json.dumps(error, ensure_ascii=False)}
        except Exception:
            log.exception("answer stream failed")
            error = {"code": "internal_error", "message": "Something went wrong on the server."}
            yield {"event": "error", "data": json.dumps(error)}

    return iterate_in_threadpool(events())
