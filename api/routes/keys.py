"""API keys: the caller's own (any key); make one, list them, revoke one (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from api.answers import audit
from api.deps import AdminDep, CallerDep, LoreDep
from api.schemas import ErrorOut, KeyIn, KeyOut, MeOut, NewKeyOut

router = APIRouter(tags=["keys"])

KeyIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")]


@router.get("/v1/me", response_model=MeOut)
def get_me(lore: LoreDep, caller: CallerDep) -> Any:
    """The key this request came with (any key): its id, name, role and collections, and
    whether the server checks keys at all (with auth off, the caller is a local admin)."""
    return MeOut(
        key_id=caller.key_id,
        name=caller.name,
        role=caller.role,
        collections=sorted(caller.collections),
        auth=lore.settings.auth,
    )


@router.post(
    "/v1/keys",
    response_model=NewKeyOut,
    status_code=201,
    responses={403: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def create_key(body: KeyIn, request: Request, lore: LoreDep, admin: AdminDep) -> Any:
    """Make an API key (admin only). The key is in this response and nowhere else."""
    record, key = lore.keys.create(body.name, body.role, body.collections)
    audit(request, f"keys.create {record.key_id}", status=201)
    return {**record.as_json(), "key": key}


@router.get("/v1/keys", response_model=list[KeyOut], responses={403: {"model": ErrorOut}})
def list_keys(lore: LoreDep, admin: AdminDep) -> Any:
    """Every key, revoked ones included, without secrets (admin only)."""
    return [k.as_json() for k in lore.keys.list()]


@router.delete(
    "/v1/keys/{key_id}",
    response_model=KeyOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def revoke_key(key_id: KeyIdPath, request: Request, lore: LoreDep, admin: AdminDep) -> Any:
    """Revoke a key at once (admin only)."""
    record = lore.keys.revoke(key_id)
    audit(request, f"keys.revoke {key_id}", status=200)
    return record.as_json()
