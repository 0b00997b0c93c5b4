"""API keys and the authorisation matrix: every route, every kind of caller."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.container import Lore
from rag.governance.access import KeyStore

pytestmark = pytest.mark.unit


def test_key_is_stored_only_as_a_hash_and_checked(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite3")
    record, key = keys.create("payroll-bot", "reader", ["alpha"])
    assert key.startswith(f"lore_{record.key_id}_")
    raw = (tmp_path / "keys.sqlite3").read_bytes()
    secret = key.split("_", 2)[2]  # lore_<id>_<secret>; the secret may hold "_" too
    assert secret.encode() not in raw
    found = keys.authenticate(key)
    assert found is not None
    assert found.can_read("alpha")
    assert not found.can_write("alpha")
    assert not found.can_read("beta")
    assert keys.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.authenticate("lore_000000000000_nope") is None
    assert keys.authenticate("") is None
    keys.revoke(record.key_id)
    assert keys.authenticate(key) is None
    assert keys.list()[0].revoked_at is not None


@pytest.mark.parametrize(
    ("role", "collections", "message"),
    [
        ("owner", ["alpha"], "role is one of"),
        ("admin", ["alpha"], "name none"),
        ("reader", [], "at least one collection"),
    ],
)
def test_bad_key_requests_are_refused(
    tmp_path: Path, role: str, collections: list[str], message: str
) -> None:
    from rag.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        KeyStore(tmp_path / "keys.sqlite3").create("x", role, collections)


@dataclass
class World:
    client: TestClient
    lore: Lore
    keys: dict[str, str]
    doc_id: str
    job_id: str


CALLERS = ["none", "wrong", "revoked", "other_tenant", "reader", "writer", "admin"]


@pytest.fixture
def world(lore: Lore, docs: Path) -> Iterator[World]:
    secure = Lore(
        lore.settings.model_copy(update={"auth": True}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    store = secure.keys
    keys = {
        "admin": store.create("admin", "admin")[1],
        "reader": store.create("reader", "reader", ["alpha"])[1],
        "writer": store.create("writer", "writer", ["alpha"])[1],
        "other_tenant": store.create("tenant-b", "writer", ["beta"])[1],
    }
    revoked, keys["revoked"] = store.create("gone", "admin")
    store.revoke(revoked.key_id)
    keys["wrong"] = keys["admin"][:-2] + "xx"
    with TestClient(create_app(lore=secure)) as client:
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        doc_id = ""
        for collection in ("alpha", "beta"):
            with (docs / "ports.md").open("rb") as handle:
                response = client.post(
                    "/v1/documents",
                    files={"file": ("ports.md", handle)},
                    data={"collection": collection},
                    headers=admin,
                )
            assert response.status_code == 201, response.text
            doc_id = response.json()["doc_id"]
        with (docs / "zh.txt").open("rb") as handle:
            job = client.post(
                "/v1/ingest/jobs",
                files={"files": ("zh.txt", handle)},
                data={"collection": "alpha"},
                headers=admin,
            )
        assert job.status_code == 202, job.text
        yield World(client, secure, keys, doc_id, job.json()["id"])


def _headers(world: World, caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    # X-API-Key for some callers, Bearer for the rest: both must be honoured.
    if caller in ("reader", "revoked"):
        return {"X-API-Key": world.keys[caller]}
    return {"Authorization": f"Bearer {world.keys[caller]}"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # the route template, as FastAPI lists it
    need: str  # "any" (every valid key), "read", "write" (of alpha) or "admin"
    destructive: bool = False


CASES = [
    Case("GET", "/v1/admin/readiness", "admin"),
    Case("GET", "/metrics", "any"),
    Case("POST", "/v1/query", "read"),
    Case("POST", "/v1/search", "read"),
    Case("POST", "/v1/collections", "write"),
    Case("GET", "/v1/collections", "any"),
    Case("GET", "/v1/collections/{name}", "read"),
    Case("GET", "/v1/collections/{name}/examples", "read"),
    Case("DELETE", "/v1/collections/{name}", "write", destructive=True),
    Case("POST", "/v1/collections/{name}/reindex", "admin"),
    Case("GET", "/v1/collections/{name}/reindex", "admin"),
    Case("POST", "/v1/documents", "write"),
    Case("GET", "/v1/documents", "read"),
    Case("GET", "/v1/documents/{doc_id}", "read"),
    Case("GET", "/v1/documents/{doc_id}/file", "read"),
    Case("POST", "/v1/documents/{doc_id}/reingest", "write"),
    Case("DELETE", "/v1/documents/{doc_id}", "write", destructive=True),
    Case("POST", "/v1/ingest/jobs", "write"),
    Case("GET", "/v1/ingest/jobs", "any"),
    Case("GET", "/v1/ingest/jobs/{job_id}", "read"),
    Case("POST", "/v1/ingest/jobs/{job_id}/cancel", "write"),
    Case("POST", "/v1/feedback", "read"),
    Case("GET", "/v1/feedback", "admin"),
    Case("GET", "/v1/feedback/export", "admin"),
    Case("GET", "/v1/audit/verify", "admin"),
    Case("GET", "/v1/audit/export", "admin"),
    # Every key has conversations of its own: `_call` makes one for the caller first.
    Case("GET", "/v1/conversations", "any"),
    Case("POST", "/v1/conversations", "read"),
    Case("GET", "/v1/conversations/{conversation_id}", "any"),
    Case("PATCH", "/v1/conversations/{conversation_id}", "any"),
    Case("DELETE", "/v1/conversations/{conversation_id}", "any", destructive=True),
    Case("POST", "/v1/conversations/{conversation_id}/turns", "any"),
    Case("GET", "/v1/me", "any"),
    Case("POST", "/v1/keys", "admin"),
    Case("GET", "/v1/keys", "admin"),
    Case("DELETE", "/v1/keys/{key_id}", "admin", destructive=True),
    Case("GET", "/v1/models", "any"),
    Case("POST", "/v1/chat/completions", "read"),
    Case("POST", "/v1/embeddings", "any"),
]


def _call(world: World, case: Case, caller: str, docs: Path) -> Any:
    key_id = world.lore.keys.list()[-1].key_id
    path = (
        case.path.replace("{name}", "alpha")
        .replace("{doc_id}", world.doc_id)
        .replace("{job_id}", world.job_id)
        .replace("{key_id}", key_id)
    )
    if "{conversation_id}" in path:
        # The caller's own (a key's id is between the first two "_" of the key).
        owner = world.keys.get(caller, world.keys["admin"]).split("_", 2)[1]
        made = world.lore.conversations.create(owner, collection="alpha")
        path = path.replace("{conversation_id}", made.id)
    params = {"collection": "alpha"} if path.startswith("/v1/documents") else None
    bodies: dict[str, Any] = {
        "/v1/query": {"question": "Which port?", "collection": "alpha"},
        "/v1/search": {"question": "Which port?", "collection": "alpha"},
        "/v1/collections": {"name": "alpha"},
        "/v1/feedback": {
            "question": "Which port?",
            "answer": "Port 8000 [1].",
            "collection": "alpha",
            "rating": "up",
        },
        "/v1/keys": {"name": "new", "role": "reader", "collections": ["alpha"]},
        "/v1/chat/completions": {
            "model": "lore:alpha",
            "messages": [{"role": "user", "content": "Which port?"}],
        },
        "/v1/embeddings": {"model": "any", "input": "hello"},
        "/v1/collections/alpha/reindex": {"embedding_model": "hashing"},
        "/v1/conversations": {"collection": "alpha"},
    }
    if "{conversation_id}" in case.path and case.method in ("PATCH", "POST"):
        turn = {"question": "Which port?", "answer": "Port 8000 [1].", "declined": False}
        bodies[path] = turn if path.endswith("/turns") else {"title": "renamed"}
    headers = _headers(world, caller)
    if case.method == "GET" and path.endswith("/reindex"):  # there is one to show
        world.client.post(path, json=bodies[path], headers=_headers(world, "admin"))
    if case.method == "POST" and path in ("/v1/documents", "/v1/ingest/jobs"):
        field = "file" if path == "/v1/documents" else "files"
        with (docs / "ports.md").open("rb") as handle:
            return world.client.post(
                path,
                files={field: ("ports.md", handle)},
                data={"collection": "alpha"},
                headers=headers,
            )
    return world.client.request(
        case.method, path, json=bodies.get(path), params=params, headers=headers
    )


def _expected(case: Case, caller: str) -> set[int]:
    ok = {200, 201, 202, 204}
    if caller in ("none", "wrong", "revoked"):
        return {401}
    if caller == "admin":
        return ok
    if case.need == "admin":
        return {403}
    if case.need == "any":
        return ok
    if caller == "other_tenant":
        return {404}  # alpha does not exist, as far as tenant B can tell
    if case.need == "read" or caller == "writer":
        return ok
    return {403}  # a reader asking to change what it can read


def test_the_matrix_covers_every_route(world: World) -> None:
    public = {("GET", "/healthz"), ("GET", "/readyz")}
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    assert routes - public == {(c.method, c.path) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_authorisation_matrix(world: World, docs: Path, case: Case) -> None:
    # Denials first; a destructive route succeeds once, last, for its most limited owner.
    callers = [c for c in CALLERS if not _expected(case, c) & {200, 201, 202, 204}]
    allowed = [c for c in CALLERS if c not in callers]
    if case.destructive:
        allowed = allowed[:1]
    for caller in callers + allowed:
        response = _call(world, case, caller, docs)
        assert response.status_code in _expected(case, caller), (caller, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert body["code"], body
            assert body["request_id"], body
            assert world.keys["admin"] not in response.text
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_tenant_never_sees_another_collections_chunks(world: World) -> None:
    tenant_b = {"Authorization": f"Bearer {world.keys['other_tenant']}"}
    client = world.client
    # Its own collection works.
    own = client.post(
        "/v1/search", json={"question": "port", "collection": "beta"}, headers=tenant_b
    )
    assert own.status_code == 200
    assert own.json()
    # Alpha, however asked for, is a 404 that reads as for a missing collection.
    missing = client.get("/v1/collections/no-such-thing", headers=tenant_b).json()["message"]
    attempts = [
        client.post(
            "/v1/search", json={"question": "port", "collection": "alpha"}, headers=tenant_b
        ),
        client.post(
            "/v1/query", json={"question": "port", "collection": "alpha"}, headers=tenant_b
        ),
        client.get(f"/v1/documents/{world.doc_id}?collection=alpha", headers=tenant_b),
        client.get("/v1/collections/alpha", headers=tenant_b),
        client.post(
            "/v1/chat/completions",
            json={"model": "lore:alpha", "messages": [{"role": "user", "content": "port"}]},
            headers=tenant_b,
        ),
    ]
    for response in attempts:
        assert response.status_code == 404, response.text
        assert "alpha" in response.json()["message"] or "lore:alpha" in response.json()["message"]
    assert missing.replace("no-such-thing", "alpha") == attempts[3].json()["message"]
    # Filters naming alpha's files can't reach them from beta: only beta's chunks come back.
    alpha_path = client.get(
        "/v1/documents?collection=alpha",
        headers={"Authorization": f"Bearer {world.keys['admin']}"},
    ).json()[0]["paths"][0]
    filtered = client.post(
        "/v1/search",
        json={"question": "port", "collection": "beta", "filters": {"source": [alpha_path]}},
        headers=tenant_b,
    )
    assert filtered.status_code == 200
    assert filtered.json() == []  # alpha's path names nothing in beta
    assert all((p["source"], p["path"]) == ("ports.md", None) for p in own.json())
    # Listings show only what the key may read.
    models = client.get("/v1/models", headers=tenant_b).json()["data"]
    assert [m["id"] for m in models] == ["lore:beta"]
    names = [c["name"] for c in client.get("/v1/collections", headers=tenant_b).json()]
    assert names == ["beta"]
    assert client.get("/v1/ingest/jobs", headers=tenant_b).json() == []
    assert client.get(f"/v1/ingest/jobs/{world.job_id}", headers=tenant_b).status_code == 404


def test_revoking_a_key_over_the_api_takes_effect_at_once(world: World) -> None:
    admin = {"Authorization": f"Bearer {world.keys['admin']}"}
    made = world.client.post(
        "/v1/keys", json={"name": "temp", "role": "reader", "collections": ["alpha"]}, headers=admin
    )
    assert made.status_code == 201
    key = made.json()["key"]
    listed = world.client.get("/v1/keys", headers=admin).json()
    assert all("key" not in k for k in listed)
    mine = {"Authorization": f"Bearer {key}"}
    assert world.client.get("/v1/documents?collection=alpha", headers=mine).status_code == 200
    world.client.delete(f"/v1/keys/{made.json()['key_id']}", headers=admin)
    assert world.client.get("/v1/documents?collection=alpha", headers=mine).status_code == 401


def test_keys_and_document_text_stay_out_of_audit_and_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader = {"Authorization": f"Bearer {world.keys['reader']}"}
    world.client.post(
        "/v1/query", json={"question": "Which port?", "collection": "alpha"}, headers=reader
    )
    world.client.get("/v1/documents", headers={"Authorization": "Bearer lore_bad_key"})
    audit_file = world.lore.settings.data_dir / "audit.sqlite3"
    with sqlite3.connect(audit_file) as db:
        rows = [" ".join(map(str, row)) for row in db.execute("SELECT * FROM entries")]
    everything = "\n".join(rows) + caplog.text
    for caller, key in world.keys.items():
        if caller != "wrong":  # not a key at all
            assert key.split("_", 2)[2] not in everything
    assert "listens on port 8000" not in everything
    assert any("Which port?" in row and "query" in row for row in rows)


def test_readiness_probes_need_no_key_and_learn_nothing_more(world: World) -> None:
    # Load balancers and orchestrators probe without a key (issue 14, item 5).
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        probe = world.client.get("/readyz", headers=headers)
        assert probe.status_code == 200
        assert probe.json() == {"status": "ready"}
    # The checks' detail is for admins only.
    assert world.client.get("/v1/admin/readiness").status_code == 401
    reader = world.client.get("/v1/admin/readiness", headers=_headers(world, "reader"))
    assert reader.status_code == 403
    admin = world.client.get("/v1/admin/readiness", headers=_headers(world, "admin"))
    assert admin.json()["checks"] == {"models": "ok", "vector_store": "ok", "manifest": "ok"}


def test_failed_keys_are_throttled_per_address(world: World) -> None:
    # Issue 14, item 4: 200 wrong keys in a row once got 200 x 401, unslowed.
    allowed = world.client.app.state.auth_failures._per_minute  # type: ignore[attr-defined]
    wrong = {"Authorization": "Bearer lore_not_a_real_key"}
    for _ in range(allowed):
        assert world.client.get("/v1/collections", headers=wrong).status_code == 401
    throttled = world.client.get("/v1/collections", headers=wrong)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "auth_throttled"
    assert int(throttled.headers["Retry-After"]) >= 1
    # From that address no key is checked until the pause is over: a right guess fails too.
    admin = world.client.get("/v1/collections", headers=_headers(world, "admin"))
    assert admin.status_code == 429
    # The probes need no key and stay open.
    assert world.client.get("/readyz").status_code == 200
    # Each refusal is audited, the throttled ones too.
    with sqlite3.connect(world.lore.settings.data_dir / "audit.sqlite3") as db:
        rows = [" ".join(map(str, row)) for row in db.execute("SELECT * FROM entries")]
    assert sum(" 429 " in f" {row} " for row in rows) >= 2
