"""A real `lore serve` process with the default models, under 20 queries and 2 ingest jobs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "What port does the Lore server listen on by default?",
    "How do I back up Lore?",
    "Lore 默认使用哪个端口？",
    "What formats can Lore ingest?",
]


def test_twenty_queries_and_two_ingest_jobs_see_only_documented_refusals(
    server: Server,
) -> None:
    headers = server.headers
    demo = sorted(p for p in (REPO / "demo").iterdir() if p.is_file())[:4]
    assert demo, "the demo corpus is missing"
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def ask(index: int) -> None:
        body = {"question": QUESTIONS[index % len(QUESTIONS)], "stream": index % 2 == 0}
        try:
            with httpx.stream(
                "POST", f"{server.url}/v1/query", json=body, headers=headers, timeout=600
            ) as response:
                text = "".join(response.iter_text())
                status = response.status_code
                if status == 200 and body["stream"] and "event: done" not in text:
                    errors.append(f"stream {index} ended without done: {text[-300:]}")
                if status in (429, 503) and not response.headers.get("Retry-After"):
                    errors.append(f"{status} without Retry-After")
        except httpx.HTTPError as exc:  # a dropped connection is a failure
            errors.append(f"query {index}: {exc!r}")
            return
        with lock:
            statuses.append(status)

    def ingest(paths: list[Path], collection: str) -> None:
        files = [("files", (p.name, p.read_bytes())) for p in paths]
        created = httpx.post(
            f"{server.url}/v1/ingest/jobs",
            files=files,
            data={"collection": collection},
            headers=headers,
            timeout=120,
        )
        if created.status_code != 202:
            errors.append(f"ingest job refused: {created.status_code} {created.text[:200]}")
            return
        job_id = created.json()["id"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            job = httpx.get(
                f"{server.url}/v1/ingest/jobs/{job_id}", headers=headers, timeout=30
            ).json()
            if job["status"] in ("done", "failed", "cancelled"):
                if job["status"] != "done":
                    errors.append(f"ingest job ended {job['status']}: {job['error']}")
                return
            time.sleep(1)
        errors.append("ingest job did not finish")

    # A collection to ask about, indexed before the load begins.
    ingest(demo, "default")
    workers = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    workers += [
        threading.Thread(target=ingest, args=(demo[:2], "load-a")),
        threading.Thread(target=ingest, args=(demo[2:], "load-b")),
    ]
    health_worst = 0.0
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        began = time.perf_counter()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        health_worst = max(health_worst, time.perf_counter() - began)
        time.sleep(0.2)
    for worker in workers:
        worker.join()

    assert errors == []
    assert len(statuses) == 20
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses.count(200) >= 2
    assert health_worst < 1.0, f"/healthz took {health_worst:.2f} s under load"
    metrics = httpx.get(f"{server.url}/metrics", headers=headers, timeout=30).text
    assert "lore_generation_queue_depth 0.0" in metrics
