"""The routes the web page's admin screen and empty chat call: who the key is
(`/v1/me`), the audit log, the latest ratings, and a collection's example questions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.container import Lore

pytestmark = pytest.mark.unit


@dataclass
class Server:
    """An app with auth on, collections alpha and beta, and a key of each role."""

    client: TestClient
    lore: Lore
    headers: dict[str, dict[str, str]]  # by role
    key_ids: dict[str, str]

    def get(self, path: str, role: str = "admin", **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers[role])


def _secure(lore: Lore, **settings: Any) -> Lore:
    return Lore(
        lore.settings.model_copy(update={"auth": True, **settings}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )


@pytest.fixture
def server(lore: Lore) -> Iterator[Server]:
    secure = _secure(lore, example_questions={"beta": ["What is in beta?", "Who wrote it?"]})
    keys = {
        "admin": secure.keys.create("ops", "admin"),
        "writer": secure.keys.create("editor", "writer", ["alpha"]),
        "reader": secure.keys.create("viewer", "reader", ["beta", "alpha"]),
        "beta_reader": secure.keys.create("outsider", "reader", ["beta"]),
    }
    headers = {role: {"Authorization": f"Bearer {key}"} for role, (_, key) in keys.items()}
    with TestClient(create_app(lore=secure)) as client:
        for name in ("alpha", "beta"):
            made = client.post("/v1/collections", json={"name": name}, headers=headers["admin"])
            assert made.status_code == 201, made.text
        yield Server(client, secure, headers, {r: rec.key_id for r, (rec, _) in keys.items()})


def _upload(server: Server, path: Path, collection: str) -> None:
    with path.open("rb") as handle:
        response = server.client.post(
            "/v1/documents",
            files={"file": (path.name, handle)},
            data={"collection": collection},
            headers=server.headers["admin"],
        )
    assert response.status_code == 201, response.text


def _rate(server: Server, question: str, rating: str, collection: str) -> None:
    body = {"question": question, "answer": "…", "rating": rating, "collection": collection}
    response = server.client.post("/v1/feedback", json=body, headers=server.headers["reader"])
    assert response.status_code == 201, response.text


def _lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines()]


# -- /v1/me -------------------------------------------------------------------


def test_me_says_each_keys_role_and_collections(server: Server) -> None:
    assert server.get("/v1/me", "admin").json() == {
        "key_id": server.key_ids["admin"],
        "name": "ops",
        "role": "admin",
        "collections": [],
        "auth": True,
    }
    assert server.get("/v1/me", "writer").json() == {
        "key_id": server.key_ids["writer"],
        "name": "editor",
        "role": "writer",
        "collections": ["alpha"],
        "auth": True,
    }
    assert server.get("/v1/me", "reader").json() == {
        "key_id": server.key_ids["reader"],
        "name": "viewer",
        "role": "reader",
        "collections": ["alpha", "beta"],
        "auth": True,
    }
    assert server.client.get("/v1/me").status_code == 401


def test_me_with_auth_off_is_the_local_admin(lore: Lore) -> None:
    with TestClient(create_app(lore=lore)) as client:
        assert client.get("/v1/me").json() == {
            "key_id": "local",
            "name": "local user (auth off)",
            "role": "admin",
            "collections": [],
            "auth": False,
        }


# -- the audit log ------------------------------------------------------------


def test_audit_verify_finds_the_chain_intact(server: Server) -> None:
    _rate(server, "Which port?", "up", "alpha")
    verified = server.get("/v1/audit/verify")
    assert verified.status_code == 200
    body = verified.json()
    assert body == {"ok": True, "entries": body["entries"], "first_bad_seq": None, "problem": None}
    assert body["entries"] >= 3  # two collections made, one rating


def test_audit_verify_names_the_first_entry_changed(server: Server) -> None:
    _rate(server, "Which port?", "up", "alpha")
    with sqlite3.connect(server.lore.settings.data_dir / "audit.sqlite3") as db:
        db.execute("DROP TRIGGER entries_no_update")
        db.execute("UPDATE entries SET collection = 'gamma' WHERE seq = 2")
    body = server.get("/v1/audit/verify").json()
    assert body["ok"] is False
    assert body["entries"] == 1
    assert body["first_bad_seq"] == 2
    assert body["problem"]


def test_audit_export_is_an_attachment_of_json_lines_that_records_itself(server: Server) -> None:
    _rate(server, "Which port?", "up", "alpha")
    response = server.get("/v1/audit/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"] == 'attachment; filename="lore-audit.jsonl"'
    entries = _lines(response)
    assert [e["operation"] for e in entries] == [
        "collections.create",
        "collections.create",
        "feedback",
        "audit.export",
    ]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[-1]["actor"] == f"key:{server.key_ids['admin']}"
    assert entries[-1]["prev_hash"] == entries[-2]["hash"]
    # `at` is rounded to the microsecond: start just before the export's own entry.
    since = datetime.fromtimestamp(entries[-1]["at_epoch"] - 2e-6, UTC).isoformat()
    again = _lines(server.get("/v1/audit/export", since=since))
    assert [e["operation"] for e in again] == ["audit.export", "audit.export"]
    assert server.get("/v1/audit/export", since="2100-01-01").text == ""
    assert server.get("/v1/audit/export", since="yesterday").status_code == 422


@pytest.mark.parametrize("path", ["/v1/audit/verify", "/v1/audit/export"])
@pytest.mark.parametrize("role", ["writer", "reader"])
def test_only_an_admin_may_read_the_audit_log(server: Server, path: str, role: str) -> None:
    refused = server.get(path, role)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"


# -- the latest ratings -------------------------------------------------------


def test_feedback_lists_the_latest_ratings_newest_first_filtered(server: Server) -> None:
    _rate(server, "alpha up", "up", "alpha")
    _rate(server, "alpha down", "down", "alpha")
    _rate(server, "beta down", "down", "beta")

    def questions(**params: Any) -> list[str]:
        response = server.get("/v1/feedback", **params)
        assert response.status_code == 200, response.text
        return [r["question"] for r in response.json()]

    assert questions() == ["beta down", "alpha down", "alpha up"]
    assert questions(rating="down") == ["beta down", "alpha down"]
    assert questions(collection="alpha") == ["alpha down", "alpha up"]
    assert questions(rating="down", collection="alpha") == ["alpha down"]
    assert questions(rating="up", collection="beta") == []
    assert questions(limit=2) == ["beta down", "alpha down"]
    [newest] = server.get("/v1/feedback", limit=1).json()
    exported = _lines(server.get("/v1/feedback/export"))
    assert newest == exported[-1]
    assert newest["actor"] == f"key:{server.key_ids['reader']}"
    for bad in ({"limit": 0}, {"limit": 1001}, {"rating": "meh"}, {"collection": "a"}):
        assert server.get("/v1/feedback", **bad).status_code == 422, bad
    # Ratings hold answers' text: reading them is audited, as exporting them is.
    audited = [e["operation"] for e in _lines(server.get("/v1/audit/export"))]
    assert audited.count("feedback.list") == 7


def test_only_an_admin_may_list_ratings(server: Server) -> None:
    for role in ("writer", "reader"):
        assert server.get("/v1/feedback", role).status_code == 403


def test_feedback_export_is_an_attachment(server: Server) -> None:
    _rate(server, "Which port?", "up", "alpha")
    response = server.get("/v1/feedback/export")
    assert response.headers["content-disposition"] == 'attachment; filename="lore-feedback.jsonl"'
    assert [r["question"] for r in _lines(response)] == ["Which port?"]


# -- example questions ----------------------------------------------------------


def test_examples_are_the_questions_an_admin_set(server: Server) -> None:
    response = server.get("/v1/collections/beta/examples", "beta_reader")
    assert response.status_code == 200
    assert response.json() == {
        "questions": ["What is in beta?", "Who wrote it?"],
        "headings": [],
        "source": "settings",
    }


def test_examples_are_headings_of_the_documents_when_none_are_set(
    server: Server, tmp_path: Path
) -> None:
    ports = tmp_path / "ports.md"
    ports.write_text(
        "# Ports\n\nLore listens on port 8000.\n\n## 2. Backups\n\nCopy the data folder.\n",
        encoding="utf-8",
    )
    keys = tmp_path / "keys.md"
    keys.write_text(
        "# API keys\n\nEvery route needs one.\n\n## Revoking a key\n\nIt stops at once.\n\n"
        "## 12\n\nA heading of digits says nothing.\n",
        encoding="utf-8",
    )
    _upload(server, ports, "alpha")
    _upload(server, keys, "alpha")
    assert server.get("/v1/collections/alpha/examples", "reader").json() == {
        "questions": [],
        "headings": ["Ports", "API keys", "Backups", "Revoking a key"],
        "source": "headings",
    }


def test_examples_of_an_empty_collection_or_one_without_headings_are_none(
    server: Server, tmp_path: Path
) -> None:
    none = {"questions": [], "headings": [], "source": "none"}
    assert server.get("/v1/collections/alpha/examples", "writer").json() == none
    plain = tmp_path / "notes.txt"
    plain.write_text("Plain text has no headings at all.", encoding="utf-8")
    _upload(server, plain, "alpha")
    assert server.get("/v1/collections/alpha/examples", "writer").json() == none


def test_examples_of_a_collection_the_key_may_not_read_are_404_as_a_missing_one(
    server: Server,
) -> None:
    hidden = server.get("/v1/collections/alpha/examples", "beta_reader")
    missing = server.get("/v1/collections/gamma/examples", "admin")
    for response in (hidden, missing):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert hidden.json()["message"] == missing.json()["message"].replace("gamma", "alpha")
