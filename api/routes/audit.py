"""The audit log (admin only): check its hash chain, and export it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.answers import audit
from api.deps import AdminDep, LoreDep
from api.exports import SinceQuery, export_responses, ndjson_download, since_moment
from api.schemas import AuditVerifyOut, ErrorOut

router = APIRouter(tags=["audit"])


@router.get("/v1/audit/verify", response_model=AuditVerifyOut, responses={403: {"model": ErrorOut}})
def verify_audit(lore: LoreDep, admin: AdminDep) -> Any:
    """Check the audit log's hash chain, as `lore audit verify` does (admin only): `ok`,
    or the first entry that was changed, removed or reordered, and what is wrong."""
    return asdict(lore.audit.verify())


@router.get(
    "/v1/audit/export",
    response_class=StreamingResponse,
    responses=export_responses("One entry a line, as JSON, oldest first."),
)
def export_audit(
    request: Request, lore: LoreDep, admin: AdminDep, since: SinceQuery = None
) -> StreamingResponse:
    """The audit log (admin only), as JSON lines, oldest first: seq, at, at_epoch, actor,
    operation, collection, question, chunk_ids, doc_ids, status, request_id, prev_hash
    and hash, from which each hash recomputes. An attachment, `lore-audit.jsonl`. The
    export is itself recorded (`audit.export`), before its entries are read."""
    moment = since_moment(since)
    audit(request, "audit.export", status=200)
    return ndjson_download(lore.audit.export(moment), "lore-audit.jsonl")
