"""Ingest jobs: index uploaded files or a server folder in the background, and follow them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam

from api import presenters
from api.answers import audit
from api.deps import CallerDep, JobsDep, LoreDep, writable
from api.schemas import ErrorOut, JobOut
from api.uploads import safe_filename, stage_upload, unstage
from ingest.parsing import check_supported
from rag.config import COLLECTION_PATTERN, Settings
from rag.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(tags=["ingest"])

JobIdPath = Annotated[str, PathParam(max_length=64)]


@router.post(
    "/v1/ingest/jobs",
    response_model=JobOut,
    status_code=202,
    responses={
        403: {"model": ErrorOut},
        413: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
def create_ingest_job(
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
        paths = [_allowed_folder(lore.settings, folder)]
    else:
        paths = []
        for upload in files or []:
            name = safe_filename(upload.filename)
            check_supported(Path(name))
            staged = stage_upload(upload.file, lore.settings, target, name)
            final = lore.settings.uploads_dir / target / name
            # A job records unreadable files as failed, so the upload takes its place now.
            paths.append(staged.replace(final))
            unstage(staged)
    job = jobs.submit(target, paths, actor=caller.actor)
    audit(request, "ingest.jobs.create", collection=target, status=202)
    return presenters.job_json(job, caller.is_admin)


@router.get("/v1/ingest/jobs", response_model=list[JobOut])
def list_ingest_jobs(jobs: JobsDep, caller: CallerDep) -> Any:
    """Recent ingest jobs into collections this key may read, newest first."""
    return [
        presenters.job_json(job, caller.is_admin)
        for job in jobs.list()
        if caller.can_read(job.collection)
    ]


@router.get(
    "/v1/ingest/jobs/{job_id}",
    response_model=JobOut,
    responses={404: {"model": ErrorOut}},
)
def get_ingest_job(job_id: JobIdPath, jobs: JobsDep, caller: CallerDep) -> Any:
    """A job's progress (files done of total, counts by outcome) and its report when done."""
    job = jobs.get(job_id)
    if not caller.can_read(job.collection):
        raise NotFound(f"There is no ingest job '{job_id}'.")
    return presenters.job_json(job, caller.is_admin)


@router.post(
    "/v1/ingest/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def cancel_ingest_job(job_id: JobIdPath, request: Request, jobs: JobsDep, caller: CallerDep) -> Any:
    """Stop a job between files; what it finished stays indexed."""
    job = jobs.get(job_id)
    if not caller.can_read(job.collection):
        raise NotFound(f"There is no ingest job '{job_id}'.")
    writable(caller, job.collection)
    cancelled = presenters.job_json(jobs.cancel(job_id), caller.is_admin)
    audit(request, "ingest.jobs.cancel", collection=job.collection, status=200)
    return cancelled


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
