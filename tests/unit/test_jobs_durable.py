"""JobManager keeps its jobs in jobs.sqlite3: a restart resumes what a crash or a close left."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.jobs import MAX_STARTS, Job, JobManager
from ingest.pipeline import IngestResult
from rag.container import Lore

pytestmark = pytest.mark.unit

TIMEOUT = 60.0


class Crash(BaseException):
    """Ends the jobs' thread as the death of its process would: nothing more is written."""


def finished(manager: JobManager, job_id: str) -> Job:
    deadline = time.monotonic() + TIMEOUT
    while (job := manager.get(job_id)).status not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} is still {job.status}"
        time.sleep(0.01)
    return job


def crash_after_first_file(ready: threading.Event) -> Callable[[IngestResult], None]:
    """An `on_result` that lets the first file be written, waits for `ready`, then dies."""

    def on_result(result: IngestResult) -> None:
        assert ready.wait(TIMEOUT)
        raise Crash

    return on_result


def other_docs(tmp_path: Path) -> Path:
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "leave.md").write_text("# Leave\n\nStaff get 25 days of leave a year.\n")
    return folder


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_job_cut_short_by_a_crash_runs_again_after_a_restart_then_the_waiting_one(
    lore: Lore, docs: Path, tmp_path: Path
) -> None:
    submitted = threading.Event()
    before = JobManager(lore, on_result=crash_after_first_file(submitted))
    cut_short = before.submit("alpha", [docs], actor="key:ab12")
    waiting = before.submit("alpha", [other_docs(tmp_path)])
    submitted.set()
    deadline = time.monotonic() + TIMEOUT
    while before._thread.is_alive():  # the "process" dies after its first file
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lore.manifest.visible_count("alpha") == 1

    ended: list[Job] = []
    after = JobManager(lore, on_finish=ended.append)
    try:
        resumed = finished(after, cut_short.id)
        assert (resumed.status, resumed.actor) == ("done", "key:ab12")
        assert (resumed.done, resumed.total) == (2, 2)
        assert resumed.counts == {"unchanged": 1, "added": 1}
        assert resumed.started_at is not None
        assert resumed.created_at <= resumed.started_at <= (resumed.finished_at or 0)
        assert len(resumed.doc_ids) == 2
        later = finished(after, waiting.id)
        assert (later.status, later.counts) == ("done", {"added": 1})
        after.close()  # returns once the thread has reported its last job
        assert [job.id for job in ended] == [cut_short.id, waiting.id]
        assert lore.manifest.visible_count("alpha") == 3
        assert sum(lore.store.chunk_counts("alpha").values()) == sum(
            record.chunks for record in lore.manifest.documents("alpha")
        )
    finally:
        after.close()
        before.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_job_that_kills_the_server_at_every_start_is_given_up(lore: Lore, docs: Path) -> None:
    go = threading.Event()
    go.set()
    job_id = ""
    for start in range(MAX_STARTS):
        dying = JobManager(lore, on_result=crash_after_first_file(go))
        if start == 0:
            job_id = dying.submit("alpha", [docs], actor="key:ab12").id
        deadline = time.monotonic() + TIMEOUT
        while dying._thread.is_alive():  # each start dies on the job's first file
            assert time.monotonic() < deadline
            time.sleep(0.01)
    after = JobManager(lore)
    try:
        given_up = after.get(job_id)
        assert given_up.status == "failed"
        assert given_up.error is not None
        assert f"{MAX_STARTS} times" in given_up.error
        assert given_up.finished_at is not None
        assert lore.manifest.visible_count("alpha") == 1  # what it finished stays indexed
    finally:
        after.close()


def test_close_leaves_waiting_jobs_queued_for_the_next_start(lore: Lore, tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(result: IngestResult) -> None:
        entered.set()
        assert release.wait(TIMEOUT)

    before = JobManager(lore, on_result=hold)
    running = before.submit("alpha", [tmp_path / f"gone-{n}.md" for n in range(3)])
    assert entered.wait(TIMEOUT)
    waiting = before.submit("alpha", [other_docs(tmp_path)])
    closer = threading.Thread(target=before.close)
    closer.start()
    assert before.get(running.id).cancel.wait(TIMEOUT)  # close has asked it to stop
    release.set()
    closer.join(TIMEOUT)
    assert before.get(running.id).status == "cancelled"
    assert before.get(waiting.id).status == "queued"

    after = JobManager(lore)
    try:
        assert after.get(running.id).as_json() == before.get(running.id).as_json()
        assert finished(after, waiting.id).status == "done"
        assert [job.id for job in after.list()] == [waiting.id, running.id]
    finally:
        after.close()


def test_finished_jobs_are_remembered_after_a_restart_but_only_the_latest(
    lore: Lore, tmp_path: Path
) -> None:
    before = JobManager(lore, keep_finished=2)
    ids = [finished(before, before.submit("alpha", [tmp_path / "gone.md"]).id).id for _ in range(3)]
    report = before.get(ids[-1]).as_json()
    before.close()
    after = JobManager(lore, keep_finished=2)
    try:
        assert [job.id for job in after.list()] == ids[:0:-1]
        assert after.get(ids[-1]).as_json() == report
    finally:
        after.close()
