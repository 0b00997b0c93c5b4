"""Readers see a file's name in its collection, never where it lies on the server (issue 14,
item 3); admins also see the server path, in `path` / `paths`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.pipeline import ingest_paths
from rag.answering.prompts import format_source
from rag.container import Lore
from rag.retrieval.filters import make_filters
from rag.retrieval.manifest import Manifest
from rag.types import Citation
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.unit

LEAVE = "policies/2024/leave.md"
PORTS = "notes/ports.md"
BLANK = "drafts/blank.txt"
UPLOAD = "northwind-safety.txt"


def _drive(root: Path) -> Path:
    """A shared drive as an operator might ingest it: nested folders and one unreadable file."""
    for name, text in {
        LEAVE: "# Leave\n\nEvery employee has 25 days of paid leave a year.\n",
        PORTS: "# Ports\n\nThe Lore server listens on port 8000 by default.\n",
        BLANK: "   \n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@dataclass
class Site:
    client: TestClient
    drive: Path
    generator: ScriptedGenerator
    keys: dict[str, dict[str, str]]
    job_id: str


@pytest.fixture
def site(lore: Lore, tmp_path: Path) -> Iterator[Site]:
    """A server with auth on, a folder ingested by an admin and a file uploaded."""
    drive = _drive(tmp_path / "shared-drive")
    secure = Lore(
        lore.settings.model_copy(update={"auth": True, "ingest_roots": [drive]}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    keys = {}
    for role in ("admin", "reader", "writer"):
        key = secure.keys.create(role, role, [] if role == "admin" else ["default"])[1]
        keys[role] = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(lore=secure)) as client:
        job = client.post("/v1/ingest/jobs", data={"folder": str(drive)}, headers=keys["admin"])
        assert job.status_code == 202, job.text
        _wait(client, job.json()["id"], keys["admin"])
        uploaded = client.post(
            "/v1/documents",
            files={"file": (UPLOAD, b"Safety goggles are kept in the north warehouse.")},
            headers=keys["admin"],
        )
        assert uploaded.status_code == 201, uploaded.text
        assert isinstance(secure.generator_override, ScriptedGenerator)
        yield Site(client, drive, secure.generator_override, keys, job.json()["id"])


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.get(f"/v1/ingest/jobs/{job_id}", headers=headers).json()["status"] == "done":
            return
        time.sleep(0.1)
    raise AssertionError("the ingest job did not finish")


def _responses(site: Site, caller: str) -> dict[str, Any]:
    """Every JSON (or event stream) a caller can get that names files, by route."""
    client, headers = site.client, site.keys[caller]
    question = {"question": "How many days of paid leave does an employee have?"}
    chat = {
        "model": "lore:default",
        "messages": [{"role": "user", "content": question["question"]}],
    }
    documents = client.get("/v1/documents", headers=headers)
    got = {
        "query": client.post("/v1/query", json=question, headers=headers),
        "query stream": client.post(
            "/v1/query", json={**question, "stream": True}, headers=headers
        ),
        "search": client.post("/v1/search", json=question, headers=headers),
        "chat": client.post("/v1/chat/completions", json=chat, headers=headers),
        "chat stream": client.post(
            "/v1/chat/completions", json={**chat, "stream": True}, headers=headers
        ),
        "documents": documents,
        "jobs": client.get("/v1/ingest/jobs", headers=headers),
        "job": client.get(f"/v1/ingest/jobs/{site.job_id}", headers=headers),
    }
    for document in documents.json():
        got[document["doc_id"]] = client.get(f"/v1/documents/{document['doc_id']}", headers=headers)
    for route, response in got.items():
        assert response.status_code == 200, (route, response.text)
    return got


def _assert_no_server_path(text: str, tmp_path: Path) -> None:
    # The data directory, the uploads and the ingested folder all lie in tmp_path.
    for server_path in {str(tmp_path), str(tmp_path.resolve())}:
        assert server_path not in text


def test_a_reader_sees_names_never_server_paths(site: Site, tmp_path: Path) -> None:
    got = _responses(site, "reader")
    for route, response in got.items():
        assert response.text, route
        _assert_no_server_path(response.text, tmp_path)

    listed = got["documents"].json()
    assert sorted(name for d in listed for name in d["sources"]) == sorted(
        [BLANK, UPLOAD, PORTS, LEAVE]
    )
    assert all(d["paths"] is None for d in listed)
    answer = got["query"].json()
    assert answer["citations"][0]["source"] == LEAVE
    assert answer["citations"][0]["path"] is None
    assert {p["source"] for p in got["search"].json()} <= {LEAVE, PORTS, UPLOAD}
    assert got["search"].json()[0]["source"] == LEAVE
    assert got["chat"].json()["citations"][0]["source"] == LEAVE
    (failure,) = got["job"].json()["report"]["failures"]
    assert (failure["source"], failure["path"], failure["code"]) == (BLANK, None, "empty")
    # Nor does the model see them, so it cannot repeat them.
    assert site.generator.prompts
    _assert_no_server_path(json.dumps(site.generator.prompts, ensure_ascii=False), tmp_path)


def test_an_admin_also_sees_where_each_file_lies(site: Site) -> None:
    got = _responses(site, "admin")
    leave_path = str((site.drive / LEAVE).resolve())
    listed = {
        name: path
        for d in got["documents"].json()
        for name, path in zip(d["sources"], d["paths"], strict=True)
    }
    assert listed[LEAVE] == leave_path
    assert listed[UPLOAD].endswith(f"/uploads/default/{UPLOAD}")
    for cited in (
        got["query"].json()["citations"][0],
        got["search"].json()[0],
        got["chat"].json()["citations"][0],
    ):
        assert (cited["source"], cited["path"]) == (LEAVE, leave_path)
    (failure,) = got["job"].json()["report"]["failures"]
    assert (failure["source"], failure["path"]) == (BLANK, str((site.drive / BLANK).resolve()))


def _found(site: Site, caller: str, sources: list[str]) -> set[str]:
    body = {"question": "leave port safety", "top_k": 10, "filters": {"source": sources}}
    response = site.client.post("/v1/search", json=body, headers=site.keys[caller])
    assert response.status_code == 200, response.text
    return {p["source"] for p in response.json()}


def test_source_filters_take_names_and_only_an_admin_server_paths(site: Site) -> None:
    assert _found(site, "reader", ["policies/"]) == {LEAVE}
    assert _found(site, "reader", ["/notes/ports.md"]) == {PORTS}
    assert _found(site, "reader", ["2024/*.md"]) == {LEAVE}
    assert _found(site, "reader", ["/2024"]) == set()  # anchored at the top of the collection
    assert _found(site, "reader", [UPLOAD]) == {UPLOAD}
    leave_path = str((site.drive / LEAVE).resolve())
    assert _found(site, "reader", [leave_path]) == set()
    assert _found(site, "reader", ["shared-drive/"]) == set()  # a server folder, not a name
    assert _found(site, "admin", [leave_path]) == {LEAVE}
    assert _found(site, "admin", ["policies/"]) == {LEAVE}


def test_deleting_names_the_files_deleted(site: Site, tmp_path: Path) -> None:
    listed = site.client.get("/v1/documents", headers=site.keys["writer"]).json()
    (upload,) = [d for d in listed if d["sources"] == [UPLOAD]]
    deleted = site.client.delete(f"/v1/documents/{upload['doc_id']}", headers=site.keys["writer"])
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["sources"], deleted.json()["paths"]) == ([UPLOAD], None)
    _assert_no_server_path(deleted.text, tmp_path)


def test_a_folder_ingest_names_files_by_their_path_within_it(lore: Lore, tmp_path: Path) -> None:
    drive = _drive(tmp_path / "drive")
    results = ingest_paths(lore, [drive], "default")
    assert sorted(r.name for r in results) == sorted([BLANK, PORTS, LEAVE])
    assert all(r.source == str((drive / r.name).resolve()) for r in results)
    assert sorted(n for d in lore.manifest.documents("default") for n in d.names) == sorted(
        [BLANK, PORTS, LEAVE]
    )
    # A file on its own is named by its file name; the same file ingested from another
    # folder later is named within that one.
    (alone,) = ingest_paths(lore, [drive / LEAVE], "other")
    assert alone.name == "leave.md"
    (again,) = ingest_paths(lore, [drive / "policies"], "default")
    assert (again.status, again.name) == ("unchanged", "2024/leave.md")
    assert "2024/leave.md" in {n for d in lore.manifest.documents("default") for n in d.names}


def test_the_prompt_names_a_source_without_its_server_path() -> None:
    citation = Citation(1, "c", "d", "/srv/lore/data/uploads/default/notes.md", "", None, "x", 1.0)
    assert format_source(citation) == "[1] (notes.md)\nx"


_SCHEMA_BEFORE_NAMES = """
CREATE TABLE documents (
    collection TEXT NOT NULL, doc_id TEXT NOT NULL, sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed', 'deleting')),
    title TEXT NOT NULL DEFAULT '', chunks INTEGER NOT NULL DEFAULT 0, error_code TEXT,
    error TEXT, pipeline TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE sources (
    collection TEXT NOT NULL, source TEXT NOT NULL, doc_id TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE INDEX sources_by_doc ON sources (collection, doc_id);
INSERT INTO documents VALUES ('default', 'd1', 'ab', 'indexed', 'Leave', 1, NULL, NULL, 'p', 0, 0);
INSERT INTO sources VALUES ('default', '/srv/drive/policies/leave.md', 'd1', 1, 0, 0);
INSERT INTO sources VALUES ('default', '/srv/lore/uploads/default/leave copy.md', 'd1', 1, 0, 0);
"""


def test_a_manifest_from_before_names_gets_each_files_name(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_BEFORE_NAMES)
    db.close()
    for _ in range(2):  # opening it again finds the column there
        manifest = Manifest(path)
        record = manifest.document("default", "d1")
        assert record is not None
        assert record.names == ("leave.md", "leave copy.md")
        assert record.sources == (
            "/srv/drive/policies/leave.md",
            "/srv/lore/uploads/default/leave copy.md",
        )
        assert manifest.matching("default", make_filters(["leave copy.md"], paths=False)) == {"d1"}
        manifest.close()
