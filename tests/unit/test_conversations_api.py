"""Saved conversations over HTTP: each key's own, kept on the server, pruned when old."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from rag.config import Settings
from rag.container import Lore
from rag.governance.audit import AuditLog
from rag.governance.conversations import MAX_TURN_JSON_BYTES, SqliteConversationStore
from tests.contract.test_conversations import CITATION, DAY, FILTERS, Clock

pytestmark = pytest.mark.unit

NO_FILTERS = {"source": [], "type": [], "since": None, "until": None}


@dataclass
class Keys:
    admin: dict[str, str]
    reader: dict[str, str]  # reads alpha
    other: dict[str, str]  # writes beta
    reader_id: str


def _secure(lore: Lore, **settings: Any) -> Lore:
    return Lore(
        lore.settings.model_copy(update={"auth": True, **settings}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )


def _keys(lore: Lore) -> Keys:
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    reader, reader_key = lore.keys.create("reader", "reader", ["alpha"])
    return Keys(
        admin=bearer(lore.keys.create("admin", "admin")[1]),
        reader=bearer(reader_key),
        other=bearer(lore.keys.create("tenant-b", "writer", ["beta"])[1]),
        reader_id=reader.key_id,
    )


def _collections(client: TestClient, keys: Keys) -> None:
    for name in ("alpha", "beta"):
        made = client.post("/v1/collections", json={"name": name}, headers=keys.admin)
        assert made.status_code == 201, made.text


@dataclass
class World:
    client: TestClient
    lore: Lore
    keys: Keys


@pytest.fixture
def world(lore: Lore) -> Iterator[World]:
    secure = _secure(lore)
    keys = _keys(secure)
    with TestClient(create_app(lore=secure)) as client:
        _collections(client, keys)
        yield World(client, secure, keys)


def _audited(lore: Lore) -> list[dict[str, Any]]:
    log = AuditLog(lore.settings.data_dir / "audit.sqlite3")
    try:
        return list(log.export())
    finally:
        log.close()


def _turn(**changes: Any) -> dict[str, Any]:
    return {"question": "Which port?", "answer": "Port 8000 [1].", "declined": False, **changes}


def test_a_conversation_is_created_added_to_listed_renamed_refiltered_and_deleted(
    world: World,
) -> None:
    client, reader = world.client, world.keys.reader
    made = client.post(
        "/v1/conversations", json={"collection": "alpha", "filters": FILTERS}, headers=reader
    )
    assert made.status_code == 201, made.text
    conversation = made.json()
    conversation_id = conversation["id"]
    assert conversation == {
        "id": conversation_id,
        "title": "",
        "collection": "alpha",
        "filters": FILTERS,
        "created_at": conversation["created_at"],
        "updated_at": conversation["created_at"],
        "turn_count": 0,
        "turns": [],
    }
    assert len(conversation_id) == 32

    first = client.post(
        f"/v1/conversations/{conversation_id}/turns",
        json=_turn(
            question="长城有多长？",
            answer="两万多公里 [1]。",
            query="长城的长度",
            citations=[CITATION],
            sources=[CITATION, {**CITATION, "number": 2, "holds_answer": False}],
        ),
        headers=reader,
    )
    assert first.status_code == 201, first.text
    turn = first.json()
    assert turn == {
        "question": "长城有多长？",
        "answer": "两万多公里 [1]。",
        "query": "长城的长度",
        "declined": False,
        "citations": [CITATION],
        "sources": [CITATION, {**CITATION, "number": 2, "holds_answer": False}],
        "at": turn["at"],
    }
    second = client.post(
        f"/v1/conversations/{conversation_id}/turns",
        json=_turn(question="And the port?", answer="", declined=True),
        headers=reader,
    )
    assert second.status_code == 201, second.text
    assert second.json()["query"] is None

    [listed] = client.get("/v1/conversations", headers=reader).json()
    assert set(listed) == {
        "id",
        "title",
        "collection",
        "filters",
        "created_at",
        "updated_at",
        "turn_count",
    }
    assert (listed["id"], listed["title"], listed["turn_count"]) == (
        conversation_id,
        "长城有多长？",
        2,
    )
    assert listed["updated_at"] >= turn["at"] >= listed["created_at"]

    found = client.get(f"/v1/conversations/{conversation_id}", headers=reader).json()
    assert found["turns"] == [turn, second.json()]
    assert found["turn_count"] == 2

    renamed = client.patch(
        f"/v1/conversations/{conversation_id}", json={"title": "长城"}, headers=reader
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["title"], renamed.json()["filters"]) == ("长城", FILTERS)
    assert renamed.json()["turns"] == found["turns"]
    narrowed = {"source": ["notes/*.md"], "type": ["md"], "until": "2025-12-31"}
    refiltered = client.patch(
        f"/v1/conversations/{conversation_id}", json={"filters": narrowed}, headers=reader
    ).json()
    assert refiltered["title"] == "长城"
    assert refiltered["filters"] == {**narrowed, "since": None}
    cleared = client.patch(
        f"/v1/conversations/{conversation_id}", json={"filters": {}}, headers=reader
    ).json()
    assert cleared["filters"] == NO_FILTERS

    deleted = client.delete(f"/v1/conversations/{conversation_id}", headers=reader)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = client.get(f"/v1/conversations/{conversation_id}", headers=reader)
    assert gone.status_code == 404
    assert client.get("/v1/conversations", headers=reader).json() == []

    entries = [e for e in _audited(world.lore) if e["operation"].startswith("conversations")]
    assert [(e["operation"], e["collection"], e["status"]) for e in entries] == [
        ("conversations.create", "alpha", 201),
        ("conversations.delete", "alpha", 204),
    ]
    assert {e["actor"] for e in entries} == {f"key:{world.keys.reader_id}"}


def test_another_key_gets_not_found_and_an_empty_list(world: World) -> None:
    client, keys = world.client, world.keys
    made = client.post(
        "/v1/conversations", json={"collection": "alpha", "title": "Ports"}, headers=keys.reader
    ).json()
    client.post(f"/v1/conversations/{made['id']}/turns", json=_turn(), headers=keys.reader)
    path = f"/v1/conversations/{made['id']}"
    for other in (keys.other, keys.admin):  # an admin key sees only its own too
        assert client.get("/v1/conversations", headers=other).json() == []
        attempts = [
            client.get(path, headers=other),
            client.patch(path, json={"title": "mine"}, headers=other),
            client.post(f"{path}/turns", json=_turn(), headers=other),
            client.delete(path, headers=other),
        ]
        for response in attempts:
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "not_found"
            assert response.json()["message"] == f"Conversation '{made['id']}' does not exist."
    missing = client.get("/v1/conversations/" + "0" * 32, headers=keys.reader)
    assert missing.status_code == 404
    # Worded as for another key's: nothing tells the two apart.
    assert missing.json()["message"] == f"Conversation '{'0' * 32}' does not exist."
    kept = client.get(path, headers=keys.reader).json()
    assert (kept["title"], kept["turn_count"]) == ("Ports", 1)


def test_a_collection_the_key_may_not_read_is_not_found(world: World) -> None:
    client, reader = world.client, world.keys.reader
    for body in ({"collection": "beta"}, {}, {"collection": "no-such-thing"}):
        refused = client.post("/v1/conversations", json=body, headers=reader)
        assert refused.status_code == 404, refused.text
        name = body.get("collection", "default")
        assert refused.json()["message"] == f"Collection '{name}' does not exist."
    made = client.post("/v1/conversations", json={"collection": "alpha"}, headers=reader).json()
    moved = client.patch(
        f"/v1/conversations/{made['id']}", json={"collection": "beta"}, headers=reader
    )
    assert moved.status_code == 404
    assert moved.json()["message"] == "Collection 'beta' does not exist."
    assert client.get(f"/v1/conversations/{made['id']}", headers=reader).json()["collection"] == (
        "alpha"
    )
    admin_moved = client.post(
        "/v1/conversations", json={"collection": "beta"}, headers=world.keys.admin
    )
    assert admin_moved.status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("", {"title": "x" * 201}, "invalid_request"),
        ("", {"collection": "alpha", "colour": "red"}, "invalid_request"),
        ("", {"collection": "a"}, "invalid_request"),
        ("", {"collection": "al..pha"}, "invalid_input"),
        ("", {"collection": "alpha", "filters": {"since": "soon"}}, "invalid_input"),
        ("", {"collection": "alpha", "filters": {"type": ["p d f"]}}, "invalid_input"),
        ("", {"collection": "alpha", "filters": {"owner": "me"}}, "invalid_request"),
        ("/turns", _turn(question=""), "invalid_request"),
        ("/turns", _turn(question="q" * 8001), "invalid_request"),
        ("/turns", _turn(answer="a" * 20001), "invalid_request"),
        ("/turns", _turn(query="q" * 8001), "invalid_request"),
        ("/turns", {"question": "Which port?", "answer": ""}, "invalid_request"),
        ("/turns", _turn(at=0), "invalid_request"),
        ("/turns", _turn(citations=[CITATION] * 51), "invalid_request"),
        ("/turns", _turn(citations=["not an object"]), "invalid_request"),
        (
            "/turns",
            _turn(citations=[{**CITATION, "text": "长" * (MAX_TURN_JSON_BYTES // 3 + 1)}]),
            "invalid_input",
        ),
        ("patch", {"title": "x" * 201}, "invalid_request"),
        ("patch", {"turns": []}, "invalid_request"),
        ("patch", {"filters": {"since": "2025-01-01", "until": "2024-01-01"}}, "invalid_input"),
        ("patch", {"collection": "al..pha"}, "invalid_input"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    world: World, path: str, body: dict[str, Any], code: str
) -> None:
    client, reader = world.client, world.keys.reader
    made = client.post(
        "/v1/conversations", json={"collection": "alpha", "title": "kept"}, headers=reader
    ).json()
    if path == "":
        refused = client.post("/v1/conversations", json=body, headers=reader)
    elif path == "patch":
        refused = client.patch(f"/v1/conversations/{made['id']}", json=body, headers=reader)
    else:
        refused = client.post(f"/v1/conversations/{made['id']}{path}", json=body, headers=reader)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == code
    assert client.get("/v1/conversations", headers=reader).json() == [
        {k: v for k, v in made.items() if k != "turns"}
    ]


def test_an_over_long_conversation_id_is_refused(world: World) -> None:
    refused = world.client.get("/v1/conversations/" + "x" * 65, headers=world.keys.reader)
    assert refused.status_code == 422


def test_old_conversations_are_pruned_at_start_and_when_listing(lore: Lore) -> None:
    clock = Clock()
    secure = _secure(lore, conversation_retention_days=90)
    keys = _keys(secure)
    owner = keys.reader_id
    store = SqliteConversationStore(secure.settings.data_dir / "conversations.sqlite3", clock=clock)
    secure.conversations = store  # the same file, on a clock the test moves
    old = store.create(owner, collection="alpha", title="old")
    clock.now += 60 * DAY
    recent = store.create(owner, collection="alpha", title="recent")
    clock.now += 31 * DAY
    with TestClient(create_app(lore=secure)) as client:
        assert store.list(owner) == [recent]  # pruned as the server started
        listed = client.get("/v1/conversations", headers=keys.reader).json()
        assert [c["id"] for c in listed] == [recent.id]
        assert client.get(f"/v1/conversations/{old.id}", headers=keys.reader).status_code == 404
        clock.now += 60 * DAY
        assert client.get("/v1/conversations", headers=keys.reader).json() == []


def test_retention_zero_keeps_conversations_forever(lore: Lore) -> None:
    clock = Clock()
    secure = _secure(lore, conversation_retention_days=0)
    keys = _keys(secure)
    store = SqliteConversationStore(secure.settings.data_dir / "conversations.sqlite3", clock=clock)
    secure.conversations = store
    made = store.create(keys.reader_id, collection="alpha")
    clock.now += 10_000 * DAY
    with TestClient(create_app(lore=secure)) as client:
        listed = client.get("/v1/conversations", headers=keys.reader).json()
    assert [c["id"] for c in listed] == [made.id]


def test_with_auth_off_conversations_belong_to_the_local_user(lore: Lore) -> None:
    with TestClient(create_app(lore=lore)) as client:
        assert client.post("/v1/collections", json={"name": "default"}).status_code == 201
        made = client.post("/v1/conversations", json={})
        assert made.status_code == 201, made.text
        assert made.json()["collection"] == "default"
        assert made.json()["filters"] == NO_FILTERS
        assert [c["id"] for c in client.get("/v1/conversations").json()] == [made.json()["id"]]
    assert [c.id for c in lore.conversations.list("local")] == [made.json()["id"]]


def test_conversation_routes_have_stable_operation_ids(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "conversations-list_conversations",
        "conversations-create_conversation",
        "conversations-get_conversation",
        "conversations-update_conversation",
        "conversations-delete_conversation",
        "conversations-add_turn",
    } <= ids


def test_conversation_retention_is_90_days_and_never_negative() -> None:
    assert Settings().conversation_retention_days == 90
    with pytest.raises(ValidationError, match="conversation_retention_days"):
        Settings(conversation_retention_days=-1)
