"""The PostgreSQL audit log stays one linear chain when several processes append to it
at once, as the Lore processes of a cluster do (issue 16)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections import Counter
from multiprocessing.synchronize import Barrier

import pytest

from rag.postgres.audit import PgAuditLog
from rag.postgres.database import Database
from tests.servers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

PROCESSES = 6
ENTRIES = 50


def append(url: str, worker: int, start: Barrier) -> None:
    """One process: wait until every process is ready, then append ENTRIES entries."""
    database = Database(url)
    try:
        audit = PgAuditLog(database)
        audit.verify()  # connects before the start, so that the appends start together
        start.wait(timeout=60)
        for number in range(ENTRIES):
            audit.record(actor=f"worker-{worker}", operation=f"op {number}", status=200)
    finally:
        database.close()


def test_processes_appending_at_once_form_one_chain(database_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(PROCESSES)
    workers = [
        spawn.Process(target=append, args=(database_url, worker, start))
        for worker in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * PROCESSES

    database = Database(database_url)
    try:
        audit = PgAuditLog(database)
        result = audit.verify()
        entries = list(audit.export())
    finally:
        database.close()
    total = PROCESSES * ENTRIES
    assert (result.ok, result.entries, result.problem) == (True, total, None)
    assert [e["seq"] for e in entries] == list(range(1, total + 1))
    assert len({e["prev_hash"] for e in entries}) == total  # no two follow the same entry
    assert Counter(e["actor"] for e in entries) == {
        f"worker-{w}": ENTRIES for w in range(PROCESSES)
    }
    # Each worker's own entries keep the order it appended them in.
    for worker in range(PROCESSES):
        mine = [e["operation"] for e in entries if e["actor"] == f"worker-{worker}"]
        assert mine == [f"op {n}" for n in range(ENTRIES)]
    # And as an operator checks it: `lore audit verify` against the cluster's database.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_DATABASE_URL=database_url, LORE_CHROMA_HOST="127.0.0.1")
    verified = subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "verify"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"Audit chain intact: {total} entries." in verified.stdout
