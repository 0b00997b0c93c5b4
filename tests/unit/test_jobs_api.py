from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.container import Lore

pytestmark = pytest.mark.unit


@pytest.fixture
def roots_lore(lore: Lore, tmp_path: Path) -> Lore:
    allowed = tmp_path / "shared-drive"
    allowed.mkdir()
    settings = lore.settings.model_copy(update={"ingest_roots": [allowed]})
    return Lore(
        settings,
        embedder_override=lore.embedder,
        store_override=lore.store,
        generator_override=lore.generator,
    )


@pytest.fixture
def client(roots_lore: Lore) -> Iterator[TestClient]:
    with TestClient(create_app(lore=roots_lore)) as test_client:
        yield test_client


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/ingest/jobs/{job_id}").json()
        if job["status"] in ("done", "cancelled", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_job_from_uploads_reports_progress_and_indexes(client: TestClient, docs: Path) -> None:
    files = [("files", (p.name, p.read_bytes())) for p in sorted(docs.iterdir())]
    created = client.post("/v1/ingest/jobs", files=files, data={"collection": "jobs"})
    assert created.status_code == 202, created.text
    job = _wait(client, created.json()["id"])
    assert job["status"] == "done"
    assert (job["done"], job["total"]) == (2, 2)
    assert job["counts"] == {"added": 2}
    assert job["report"]["chunks"] > 0
    listed = client.get("/v1/documents", params={"collection": "jobs"}).json()
    assert len(listed) == 2


def test_job_from_a_folder_inside_an_allowed_root(
    client: TestClient, roots_lore: Lore, docs: Path
) -> None:
    (root,) = roots_lore.settings.ingest_roots
    for path in docs.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    created = client.post("/v1/ingest/jobs", data={"folder": str(root)})
    assert _wait(client, created.json()["id"])["counts"] == {"added": 2}


def test_folders_outside_the_roots_are_forbidden(client: TestClient, docs: Path) -> None:
    for folder in (str(docs), "/etc", "../../etc"):
        refused = client.post("/v1/ingest/jobs", data={"folder": folder})
        assert refused.status_code == 403, folder
        assert refused.json()["code"] == "forbidden"


def test_a_folder_with_control_characters_is_422_not_500(client: TestClient) -> None:
    # Found by the schema fuzzer: a NUL byte made Path.resolve() raise.
    for folder in ("/srv/docs\x00", "/srv/\ndocs"):
        refused = client.post("/v1/ingest/jobs", data={"folder": folder})
        assert refused.status_code == 422, folder
        assert "control characters" in refused.json()["message"]


def test_job_needs_files_or_a_folder(client: TestClient, roots_lore: Lore) -> None:
    assert client.post("/v1/ingest/jobs", data={}).status_code == 422
    (root,) = roots_lore.settings.ingest_roots
    both = client.post(
        "/v1/ingest/jobs", data={"folder": str(root)}, files=[("files", ("a.md", b"# A"))]
    )
    assert both.status_code == 422


def test_cancel_and_unknown_jobs(client: TestClient, roots_lore: Lore) -> None:
    (root,) = roots_lore.settings.ingest_roots
    for i in range(30):
        (root / f"note-{i}.md").write_text(f"# Note {i}\n\nSome text for note {i}.\n")
    created = client.post("/v1/ingest/jobs", data={"folder": str(root)}).json()
    cancelled = client.post(f"/v1/ingest/jobs/{created['id']}/cancel")
    assert cancelled.status_code == 200
    job = _wait(client, created["id"])
    assert job["status"] == "cancelled"
    assert job["done"] < 30
    assert client.get("/v1/ingest/jobs/nope").status_code == 404
    assert client.post("/v1/ingest/jobs/nope/cancel").status_code == 404
