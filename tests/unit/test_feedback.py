"""Ratings of answers, downloading a document's original file, and the page's security headers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from rag.container import Lore
from rag.governance.audit import AuditLog
from rag.governance.feedback import FeedbackStore, Rating

pytestmark = pytest.mark.unit


@pytest.fixture
def client(lore: Lore) -> Iterator[TestClient]:
    with TestClient(create_app(lore=lore)) as test_client:
        yield test_client


def _upload(client: TestClient, path: Path, collection: str = "default", **kw: Any) -> str:
    with path.open("rb") as handle:
        response = client.post(
            "/v1/documents",
            files={"file": (path.name, handle)},
            data={"collection": collection},
            **kw,
        )
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["doc_id"]
    return doc_id


def _exported(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/v1/feedback/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def _audited(lore: Lore) -> list[dict[str, Any]]:
    log = AuditLog(lore.settings.data_dir / "audit.sqlite3")
    try:
        return list(log.export())
    finally:
        log.close()


def _rating(**changes: Any) -> dict[str, Any]:
    return {"question": "Which port?", "answer": "Port 8000 [1].", "rating": "up", **changes}


# -- feedback ---------------------------------------------------------------


def test_feedback_round_trip_exports_both_ratings_in_order(
    client: TestClient, lore: Lore, docs: Path
) -> None:
    _upload(client, docs / "ports.md")
    passages = client.post("/v1/search", json={"question": "Which port?"}).json()
    chunk_ids = [p["chunk_id"] for p in passages]
    assert chunk_ids
    up = client.post("/v1/feedback", json=_rating(chunk_ids=chunk_ids))
    down = client.post(
        "/v1/feedback",
        json=_rating(
            question="长城有多长？",
            answer="",
            chunk_ids=chunk_ids[:1],
            rating="down",
            comment="答案不对，长城超过两万公里。",
            collection="default",
        ),
    )
    assert up.status_code == 201, up.text
    assert down.status_code == 201, down.text
    assert set(up.json()) == {"id", "at"}
    assert up.json()["at"].endswith("Z")

    rows = _exported(client)
    assert [r["id"] for r in rows] == [up.json()["id"], down.json()["id"]]
    assert [r["rating"] for r in rows] == ["up", "down"]
    assert rows[0]["chunk_ids"] == chunk_ids
    assert rows[0]["comment"] is None
    assert rows[1]["chunk_ids"] == chunk_ids[:1]
    assert rows[1]["comment"] == "答案不对，长城超过两万公里。"
    assert rows[1]["question"] == "长城有多长？"
    assert rows[1]["collection"] == "default"
    assert rows[0]["actor"] == "key:local"
    assert rows[0]["request_id"] == up.headers["X-Request-ID"]
    assert rows[0]["at"] == up.json()["at"]

    feedback = [e for e in _audited(lore) if e["operation"] == "feedback"]
    assert [e["chunk_ids"] for e in feedback] == [chunk_ids, chunk_ids[:1]]
    assert all(e["status"] == 201 and e["collection"] == "default" for e in feedback)
    assert any(e["operation"] == "feedback.export" for e in _audited(lore))


@pytest.mark.parametrize(
    "body",
    [
        _rating(rating="meh"),
        _rating(comment="x" * 2001),
        _rating(question=""),
        _rating(answer="x" * 20001),
        _rating(chunk_ids=["c"] * 51),
        _rating(chunk_ids=["c" * 201]),
        _rating(collection="../etc"),
        _rating(secret="extra fields are refused"),
    ],
    ids=[
        "rating",
        "comment",
        "empty_question",
        "answer",
        "chunk_count",
        "chunk_id",
        "collection",
        "extra",
    ],
)
def test_feedback_is_refused_when_the_body_is_out_of_bounds(
    client: TestClient, docs: Path, body: dict[str, Any]
) -> None:
    _upload(client, docs / "ports.md")
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert _exported(client) == []


def test_feedback_on_a_missing_collection_is_not_found(client: TestClient) -> None:
    response = client.post("/v1/feedback", json=_rating(collection="no-such-thing"))
    assert response.status_code == 404
    assert response.json()["message"] == "Collection 'no-such-thing' does not exist."


def test_feedback_export_since_filters_by_time(client: TestClient, docs: Path) -> None:
    _upload(client, docs / "ports.md")
    assert client.post("/v1/feedback", json=_rating()).status_code == 201
    assert len(_exported(client, since="2000-01-01")) == 1
    assert _exported(client, since="2999-01-01T00:00:00+08:00") == []
    bad = client.get("/v1/feedback/export", params={"since": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_input"


def test_feedback_store_exports_from_since_oldest_first(tmp_path: Path) -> None:
    times = iter([1_700_000_000.0, 1_700_000_100.0, 1_700_000_200.0])
    store = FeedbackStore(tmp_path / "feedback.sqlite3", clock=lambda: next(times))
    try:
        made = [
            store.add(
                actor="key:ab12",
                collection="default",
                question=f"question {n}",
                answer="",
                chunk_ids=[f"c{n}"],
                rating="down" if n % 2 else "up",
            )
            for n in range(3)
        ]
        assert [r["id"] for r in store.export()] == [r.id for r in made]
        middle = datetime.fromtimestamp(made[1].at, UTC)
        assert [r["question"] for r in store.export(middle)] == ["question 1", "question 2"]
        naive = middle.replace(tzinfo=None)  # a time without a zone is UTC
        assert [r["question"] for r in store.export(naive)] == ["question 1", "question 2"]
        assert made[0].as_json()["at"] == "2023-11-14T22:13:20.000000Z"
        assert made[0].as_json()["at_epoch"] == made[0].at
        with pytest.raises(ValueError, match="'up' or 'down'"):
            store.add(
                actor="x",
                collection="c",
                question="q",
                answer="",
                chunk_ids=[],
                rating="meh",  # type: ignore[arg-type]
            )
    finally:
        store.close()


def test_feedback_store_keeps_text_with_lone_surrogates(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    try:
        store.add(
            actor="key:ab12",
            collection="default",
            question="bad \ud800 text",
            answer="",
            chunk_ids=["\udfff"],
            rating="up",
            comment="\ud83d",
        )
        (row,) = store.export()
        assert row["question"] == "bad ? text"
        assert row["chunk_ids"] == ["?"]
    finally:
        store.close()


def test_feedback_cli_export_writes_json_lines_to_a_file(tmp_path: Path) -> None:
    data = tmp_path / "cli-data"
    store = FeedbackStore(data / "feedback.sqlite3")
    ratings: tuple[Rating, ...] = ("up", "down")
    for rating in ratings:
        store.add(
            actor="key:ab12",
            collection="default",
            question="长城有多长？",
            answer="两万公里 [1]。",
            chunk_ids=["c1"],
            rating=rating,
        )
    store.close()
    env = {"LORE_DATA_DIR": str(data), "LORE_CONFIG": ""}
    output = tmp_path / "feedback.jsonl"
    runner = CliRunner()
    result = runner.invoke(cli, ["feedback", "export", "--output", str(output)], env=env)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["rating"] for r in rows] == ["up", "down"]
    assert rows[0]["question"] == "长城有多长？"
    assert "Exported 2 ratings" in result.output
    later = runner.invoke(cli, ["feedback", "export", "--since", "2999-01-01"], env=env)
    assert later.exit_code == 0, later.output
    assert later.output == ""
    bad = runner.invoke(cli, ["feedback", "export", "--since", "soon"], env=env)
    assert bad.exit_code == 2
    assert "'soon' is not a date" in bad.output


# -- downloading the original file --------------------------------------------


def test_download_returns_the_uploaded_bytes_with_the_file_name(
    client: TestClient, lore: Lore, docs: Path
) -> None:
    doc_id = _upload(client, docs / "zh.txt")
    response = client.get(f"/v1/documents/{doc_id}/file")
    assert response.status_code == 200, response.text
    assert response.content == (docs / "zh.txt").read_bytes()
    assert response.headers["content-disposition"] == 'attachment; filename="zh.txt"'
    named = docs / "报告 2024.md"
    named.write_text("# 报告\n\n今年的收入增长了百分之十。\n", encoding="utf-8")
    other = _upload(client, named)
    disposition = client.get(f"/v1/documents/{other}/file").headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=utf-8''%E6%8A%A5%E5%91%8A%202024.md" in disposition
    audited = [e for e in _audited(lore) if e["operation"] == "documents.download"]
    assert [e["doc_ids"] for e in audited] == [[doc_id], [other]]


def test_download_is_not_found_after_delete_or_for_an_unknown_id(
    client: TestClient, docs: Path
) -> None:
    doc_id = _upload(client, docs / "ports.md")
    assert client.delete(f"/v1/documents/{doc_id}").status_code == 200
    gone = client.get(f"/v1/documents/{doc_id}/file")
    assert gone.status_code == 404
    assert gone.json()["message"] == f"Document '{doc_id}' is not in collection 'default'."
    unknown = client.get("/v1/documents/0123456789abcdef/file")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


def test_download_is_not_found_when_the_file_is_gone_or_changed(
    client: TestClient, lore: Lore, docs: Path
) -> None:
    doc_id = _upload(client, docs / "ports.md")
    (source,) = client.get(f"/v1/documents/{doc_id}").json()["paths"]  # auth off: an admin
    Path(source).write_text("Someone edited this after it was indexed.", encoding="utf-8")
    changed = client.get(f"/v1/documents/{doc_id}/file")
    assert changed.status_code == 404
    assert "no original file" in changed.json()["message"]
    Path(source).unlink()
    assert client.get(f"/v1/documents/{doc_id}/file").status_code == 404


def test_another_tenant_gets_not_found_for_feedback_and_downloads(lore: Lore, docs: Path) -> None:
    secure = Lore(
        lore.settings.model_copy(update={"auth": True}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    admin = {"Authorization": f"Bearer {secure.keys.create('admin', 'admin')[1]}"}
    reader = {"Authorization": f"Bearer {secure.keys.create('r', 'reader', ['alpha'])[1]}"}
    tenant_b = {"Authorization": f"Bearer {secure.keys.create('b', 'writer', ['beta'])[1]}"}
    with TestClient(create_app(lore=secure)) as client:
        doc_id = _upload(client, docs / "ports.md", "alpha", headers=admin)
        own = client.get(f"/v1/documents/{doc_id}/file?collection=alpha", headers=reader)
        assert own.status_code == 200
        rated = client.post("/v1/feedback", json=_rating(collection="alpha"), headers=reader)
        assert rated.status_code == 201
        download = client.get(f"/v1/documents/{doc_id}/file?collection=alpha", headers=tenant_b)
        feedback = client.post("/v1/feedback", json=_rating(collection="alpha"), headers=tenant_b)
        for response in (download, feedback):
            assert response.status_code == 404, response.text
            assert response.json()["message"] == "Collection 'alpha' does not exist."
        assert client.get("/v1/feedback/export", headers=reader).status_code == 403
        rows = [
            json.loads(line)
            for line in client.get("/v1/feedback/export", headers=admin).text.splitlines()
        ]
    assert [r["collection"] for r in rows] == ["alpha"]
    assert rows[0]["actor"].startswith("key:")
    # The key's secret (after "lore_<id>_"; it may itself hold "_") is not the actor.
    assert reader["Authorization"].split("_", 2)[2] not in rows[0]["actor"]


# -- security headers ---------------------------------------------------------


def test_security_headers_are_set_on_the_page_and_not_on_the_api_docs(
    client: TestClient,
) -> None:
    for path in ("/", "/web/app.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    docs_page = client.get("/docs")
    assert docs_page.status_code == 200
    assert "content-security-policy" not in docs_page.headers
    assert "content-security-policy" not in client.get("/redoc").headers
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"
