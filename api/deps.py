"""What routes receive through `Depends`: Lore's components, the caller, and the limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.limits import AdmissionGate, RateLimit
from api.observability import Metrics
from ingest.jobs import JobQueue
from rag.config import validate_collection_name
from rag.container import Lore
from rag.errors import AuthThrottled, Forbidden, InvalidInput, Unauthorized
from rag.governance.access import LOCAL_USER, Principal


def get_lore(request: Request) -> Lore:
    lore: Lore = request.app.state.lore
    return lore


LoreDep = Annotated[Lore, Depends(get_lore)]


def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobQueue, Depends(get_jobs)]


def get_gate(request: Request) -> AdmissionGate:
    gate: AdmissionGate = request.app.state.gate
    return gate


GateDep = Annotated[AdmissionGate, Depends(get_gate)]


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer …` (what OpenAI clients send) or `X-API-Key`."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def get_caller(request: Request, lore: LoreDep) -> Principal:
    """The caller behind the request's key (401 without a valid one), within its rate."""
    if not lore.settings.auth:
        principal = LOCAL_USER
    else:
        key = presented_key(request)
        if key is None:
            raise Unauthorized("This request needs an API key: send 'Authorization: Bearer <key>'.")
        # Failed keys are counted per client address; past the allowance, no key from
        # that address is even checked until the pause is over, so guessing stalls.
        failures: RateLimit = request.app.state.auth_failures
        address = f"address:{request.client.host if request.client else 'unknown'}"
        wait = failures.wait_s(address)
        if wait:
            raise AuthThrottled(
                f"Too many failed API keys from this address; try again in {wait} s.",
                retry_after_s=wait,
            )
        found = lore.keys.authenticate(key)
        if found is None:
            failures.check(address)  # counts this failure (raises once over the allowance)
            raise Unauthorized("That API key is not valid (unknown, malformed or revoked).")
        principal = found
    request.state.actor = principal.actor
    limiter: RateLimit = request.app.state.limiter
    limiter.check(principal.key_id)
    return principal


CallerDep = Annotated[Principal, Depends(get_caller)]


def get_admin(caller: CallerDep) -> Principal:
    """The caller, if it holds an admin key (403 otherwise: the route is no secret)."""
    if not caller.is_admin:
        raise Forbidden("Only an admin key may do this.")
    return caller


AdminDep = Annotated[Principal, Depends(get_admin)]


def _valid(collection: str) -> str:
    """The name, if Lore allows it (the HTTP pattern can't say "no '..'"); else a 422."""
    try:
        return validate_collection_name(collection)
    except ValueError as exc:
        raise InvalidInput(f"'{collection[:100]}' is not a collection name: {exc}.") from None


def readable(caller: Principal, collection: str) -> str:
    """`collection`, if the caller may read it; NotFound otherwise, as for a missing one."""
    _valid(collection)
    caller.require_read(collection)
    return collection


def writable(caller: Principal, collection: str) -> str:
    """`collection`, if the caller may change it: NotFound if it may not even read it,
    Forbidden if it may read but not write."""
    _valid(collection)
    caller.require_read(collection)
    if not caller.can_write(collection):
        raise Forbidden(f"This key may read collection '{collection}' but not change it.")
    return collection
