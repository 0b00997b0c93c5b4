"""Liveness, readiness and metrics: what load balancers, orchestrators and Prometheus probe."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import AdminDep, CallerDep, LoreDep, MetricsDep
from api.schemas import Health, Readiness, Ready
from rag.components.model_servers import ModelServers
from rag.container import Lore

log = logging.getLogger("lore.api")

router = APIRouter(tags=["health"])


# Async, and taking no dependency: it needs no worker thread, so it answers at once even
# while every worker thread is busy.
@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Alive: answers at once, without a key, whatever the models are doing."""
    return Health(status="ok")


def _readiness(request: Request, lore: Lore) -> Readiness:
    """Each check's state: the models loaded; the vector store (a Chroma server in
    cluster mode) and the manifest (the database in cluster mode) reachable; and, with
    model servers, at least one of them answering."""
    checks = {"models": "ok" if request.app.state.ready else "loading"}
    if not request.app.state.ready:
        # Components are still being built; probing them now would build them here.
        return Readiness(status="not ready", checks=checks)
    try:
        lore.store.list_collections()
        checks["vector_store"] = "ok"
    except Exception:
        log.exception("vector store unreachable")
        checks["vector_store"] = "unreachable"
    records = "database" if lore.settings.cluster else "manifest"
    try:
        lore.manifest.collections()
        checks[records] = "ok"
    except Exception:
        log.exception("%s unreachable", records)
        checks[records] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    generator = lore.generator
    if isinstance(generator, ModelServers):
        # Ready while one server answers: the others' requests go to it.
        answering = generator.reachable()
        checks["model_servers"] = f"{answering} of {len(generator)} answering"
        ready = ready and answering > 0
    return Readiness(status="ready" if ready else "not ready", checks=checks)


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(request: Request, lore: LoreDep) -> Any:
    """Ready (200) or not (503): models loaded and the stores reachable. No key is
    needed, so load balancers and orchestrators can probe it; it says nothing more.
    The checks' detail is `GET /v1/admin/readiness`."""
    state = _readiness(request, lore)
    body = Ready(status=state.status)
    return JSONResponse(body.model_dump(), status_code=200 if state.status == "ready" else 503)


@router.get(
    "/v1/admin/readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
)
def readiness(request: Request, lore: LoreDep, admin: AdminDep) -> Any:
    """Readiness with each check's state (admin only): 503 naming what is not ready."""
    state = _readiness(request, lore)
    code = 200 if state.status == "ready" else 503
    return JSONResponse(state.model_dump(), status_code=code)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(caller: CallerDep, metrics: MetricsDep, lore: LoreDep) -> Response:
    """Prometheus metrics of this replica: requests and latency by route, queue depth,
    time to first token, tokens/s, retrieval latency, ingest counters, and each model
    server's state as this replica sees it."""
    generator = lore.generator
    if isinstance(generator, ModelServers):
        metrics.observe_model_servers(generator.states())
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
