"""Cluster mode with the real default models (issue 16's smoke test): a `lore worker`
ingests the demo corpus from `lore ingest --queue`, and `lore ask`, another process over
the same PostgreSQL and Chroma server, answers from it with a citation."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.queue import ClusterJobQueue
from rag.config import Settings
from rag.container import Lore
from tests.servers import REPO, lore_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

DEMO = REPO / "demo"


def test_worker_ingests_and_another_process_answers_with_real_models(
    tmp_path: Path, models_dir: Path, database_url: str, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    env = {
        **lore_env(tmp_path / "data", models_dir),
        "LORE_DATABASE_URL": database_url,
        "LORE_CHROMA_HOST": host,
        "LORE_CHROMA_PORT": str(port),
    }

    def lore(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    with (tmp_path / "worker.log").open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--poll", "0.5"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        queued = lore("ingest", "--queue", str(DEMO), "--collection", "demo")
        assert queued.returncode == 0, queued.stderr
        job_id = re.search(r"[0-9a-f]{32}", queued.stdout)
        assert job_id is not None, queued.stdout
        jobs = ClusterJobQueue(Lore(Settings(
            data_dir=tmp_path / "data", database_url=SecretStr(database_url),
            chroma_host=host, chroma_port=port,
        )))  # fmt: skip
        deadline = time.monotonic() + 600
        while (job := jobs.get(job_id.group(0))).status not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
        assert job.status == "done", (job.as_json(), (tmp_path / "worker.log").read_text()[-3000:])
        assert job.counts == {"added": 4}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)

    asked = lore("ask", "Lore 适合哪些单位？", "--collection", "demo", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "医院" in answer["answer"] or "银行" in answer["answer"], answer["answer"]
    assert any(c["source"].endswith("lore-zh.md") for c in answer["citations"])
