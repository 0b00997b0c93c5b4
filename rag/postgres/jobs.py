"""Ingest jobs in PostgreSQL (60_jobs.sql): the rows of the cluster's job queue.

Plain storage for ingest/queue.py, which says what the rows mean and what runs them. A
job's files are listed once, when it starts, and split into parts; each part is run by
one Procrastinate job, deferred through a callback on the same connection and inside the
same transaction as the rows that need it, so a row never waits on work that was not
queued. A job's row is locked (`FOR UPDATE`) by whatever may end it, so exactly one
caller sees it end. Locks are taken in one order: a file's row, then its job's; a job's
row, then its parts'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rag.postgres.claims import lock_key
from rag.postgres.database import Database, pg_text

Connection = psycopg.Connection[dict[str, Any]]
Row = dict[str, Any]
# Defers one Procrastinate job for each part of the job given, on the connection and in
# its transaction; returns their ids in the same order.
DeferParts = Callable[[Connection, str, list[int]], list[int]]
# Defers the Procrastinate job that starts the job of this id; returns its id.
DeferStart = Callable[[Connection, str], int]
# Given a job's row once its last part ended, and its files' results (JSON, in file
# order), the columns that end it: status, report (a dict or None), doc_ids.
Conclude = Callable[[Row, list[str]], Row]

_COLUMNS = (
    "id, collection, paths, actor, status, cancel_requested, total, done, counts, seconds, "
    "report, error, doc_ids, created_at, started_at, finished_at"
)
_SELECT_JOB = f"SELECT {_COLUMNS} FROM ingest_jobs WHERE id = %s"  # noqa: S608 (constant)
_UNFINISHED = ("todo", "doing")  # Procrastinate's statuses of a job that will still run
_SUBMIT_LOCK = lock_key("ingest jobs submit")


def _job(row: Row | None) -> Row | None:
    if row is not None and row["report"] is not None:
        row["report"] = json.loads(row["report"])
    return row


class PgJobStore:
    """The rows of the cluster's ingest jobs, safe from any thread or process.
    `close()` leaves the shared `Database` open."""

    def __init__(self, database: Database):
        self._db = database

    def close(self) -> None:
        """Nothing to let go of: the shared `Database` belongs to its creator."""

    @contextmanager
    def _locked(self, job_id: str) -> Iterator[tuple[Connection, Row | None]]:
        """A transaction holding the job's row (None when there is no such job)."""
        with self._db.transaction() as conn:
            row = conn.execute(_SELECT_JOB + " FOR UPDATE", (job_id,)).fetchone()
            yield conn, row

    def get(self, job_id: str) -> Row | None:
        """The job's row (its report parsed), or None."""
        with self._db.connection() as conn:
            return _job(conn.execute(_SELECT_JOB, (job_id,)).fetchone())

    def recent(self, keep: int) -> list[Row]:
        """Every unfinished job and the `keep` most recently finished, newest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM ingest_jobs WHERE finished_at IS NULL "  # noqa: S608
                f"UNION ALL (SELECT {_COLUMNS} FROM ingest_jobs WHERE finished_at IS NOT NULL "
                "ORDER BY finished_at DESC LIMIT %s) ORDER BY created_at DESC",
                (keep,),
            ).fetchall()
        return [row for row in map(_job, rows) if row is not None]

    def insert(
        self,
        job_id: str,
        collection: str,
        paths: list[bytes],
        actor: str,
        created_at: float,
        max_queued: int,
        defer_start: DeferStart,
    ) -> bool:
        """Record a new `queued` job and defer its start, in one transaction. False, and
        nothing recorded, when `max_queued` jobs are queued already."""
        with self._db.transaction() as conn:
            # Submissions take turns, so that two never both fill the last free place.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SUBMIT_LOCK,))
            waiting = conn.execute(
                "SELECT count(*) AS n FROM ingest_jobs WHERE status = 'queued'"
            ).fetchone()
            if waiting is not None and waiting["n"] >= max_queued:
                return False
            conn.execute(
                "INSERT INTO ingest_jobs (id, collection, paths, actor, status, created_at) "
                "VALUES (%s, %s, %s, %s, 'queued', %s)",
                (job_id, pg_text(collection), paths, pg_text(actor), created_at),
            )
            queue_id = defer_start(conn, job_id)
            conn.execute("UPDATE ingest_jobs SET queue_id = %s WHERE id = %s", (queue_id, job_id))
        return True

    def start(
        self,
        job_id: str,
        files: list[tuple[bytes, str]],
        part_size: int,
        now: float,
        defer_parts: DeferParts,
        conclude: Conclude,
    ) -> Row | None:
        """Start a queued job on `files` (path, name): record them in parts of `part_size`
        and defer the parts. Returns the job's row, ended already when it has no file;
        None when the job is not queued (cancelled meanwhile, or started already)."""
        with self._db.transaction() as conn:
            started = conn.execute(
                "UPDATE ingest_jobs SET status = 'running', started_at = %s, total = %s "
                "WHERE id = %s AND status = 'queued' RETURNING id",
                (now, len(files), job_id),
            ).fetchone()
            if started is None:
                return None
            parts = list(range(math.ceil(len(files) / part_size)))
            if parts:
                conn.execute(
                    "INSERT INTO ingest_job_parts (job_id, part, status) "
                    "SELECT %s, part, 'waiting' FROM unnest(%s::integer[]) AS part",
                    (job_id, parts),
                )
                conn.execute(
                    "INSERT INTO ingest_job_files (job_id, position, part, path, name) "
                    "SELECT %s, f.position - 1, (f.position - 1) / %s, f.path, f.name "
                    "FROM unnest(%s::bytea[], %s::text[]) WITH ORDINALITY "
                    "AS f(path, name, position)",
                    (
                        job_id,
                        part_size,
                        [path for path, _ in files],
                        [pg_text(name) for _, name in files],
                    ),
                )
                self._set_queue_ids(conn, job_id, parts, defer_parts(conn, job_id, parts))
            ended = self._conclude_if_over(conn, job_id, conclude)
            return ended or _job(conn.execute(_SELECT_JOB, (job_id,)).fetchone())

    @staticmethod
    def _set_queue_ids(conn: Connection, job_id: str, parts: list[int], ids: list[int]) -> None:
        conn.execute(
            "UPDATE ingest_job_parts p SET queue_id = q.id "
            "FROM unnest(%s::integer[], %s::bigint[]) AS q(part, id) "
            "WHERE p.job_id = %s AND p.part = q.part",
            (parts, ids, job_id),
        )

    def fail(self, job_id: str, error: str, now: float) -> Row | None:
        """End a job that could not start as `failed` with `error`; returns its row, or
        None when it had ended already."""
        with self._db.connection() as conn:
            row = conn.execute(
                "UPDATE ingest_jobs SET status = 'failed', error = %s, finished_at = %s, "  # noqa: S608
                "started_at = COALESCE(started_at, %s) "
                f"WHERE id = %s AND finished_at IS NULL RETURNING {_COLUMNS}",
                (pg_text(error), now, now, job_id),
            ).fetchone()
        return _job(row)

    def begin_part(self, job_id: str, part: int, worker: str) -> tuple[Row, int, list[Row]] | None:
        """Take a part to run in `worker` (host:pid): the job's row, how many times the part
        was taken (this one included), and its files not handled yet (position, path,
        name), in order. None when the part is over (or its job gone)."""
        with self._db.transaction() as conn:
            taken = conn.execute(
                "UPDATE ingest_job_parts SET status = 'running', attempts = attempts + 1, "
                "taken_by = %s WHERE job_id = %s AND part = %s AND status <> 'finished' "
                "RETURNING attempts",
                (pg_text(worker), job_id, part),
            ).fetchone()
            job = _job(conn.execute(_SELECT_JOB, (job_id,)).fetchone())
            if taken is None or job is None:
                return None
            files = conn.execute(
                "SELECT position, path, name FROM ingest_job_files "
                "WHERE job_id = %s AND part = %s AND result IS NULL ORDER BY position",
                (job_id, part),
            ).fetchall()
        return job, int(taken["attempts"]), files

    def record_file(self, job_id: str, position: int, status: str, result: str) -> bool:
        """Record a file's result (JSON) and count it in its job's progress, once however
        often it is recorded. Returns whether the job's parts should stop: it was asked
        to, or one of them broke."""
        with self._db.connection() as conn:
            row = conn.execute(
                "WITH handled AS (UPDATE ingest_job_files SET result = %(result)s "
                "WHERE job_id = %(job)s AND position = %(position)s AND result IS NULL "
                "RETURNING 1) "
                "UPDATE ingest_jobs SET done = done + (SELECT count(*) FROM handled), "
                "counts = CASE WHEN EXISTS (SELECT 1 FROM handled) THEN jsonb_set(counts, "
                "ARRAY[%(status)s::text], to_jsonb(COALESCE((counts ->> %(status)s::text)"
                "::integer, 0) + 1)) ELSE counts END "
                "WHERE id = %(job)s RETURNING cancel_requested OR error IS NOT NULL AS stop",
                {"result": result, "job": job_id, "position": position, "status": status},
            ).fetchone()
        return row is None or bool(row["stop"])

    def end_part(
        self,
        job_id: str,
        part: int,
        seconds: dict[str, float],
        error: str | None,
        conclude: Conclude,
    ) -> Row | None:
        """Record that a part is over, adding its `seconds` by stage to the job's, and
        `error` as the job's when it broke (the first error stays). Returns the job's row
        when this ended the job (it was its last part), else None."""
        with self._locked(job_id) as (conn, job):
            if job is None:
                return None
            conn.execute(
                "UPDATE ingest_job_parts SET status = 'finished' WHERE job_id = %s AND part = %s",
                (job_id, part),
            )
            total = dict(job["seconds"])
            for stage, value in seconds.items():
                total[stage] = total.get(stage, 0.0) + value
            conn.execute(
                "UPDATE ingest_jobs SET seconds = %s, error = COALESCE(error, %s) WHERE id = %s",
                (Jsonb(total), None if error is None else pg_text(error), job_id),
            )
            return self._conclude_if_over(conn, job_id, conclude)

    def hand_back(self, job_id: str, part: int, defer_parts: DeferParts) -> None:
        """Give a running part back to the queue (its worker is stopping): it waits again,
        under a new queue entry, and runs on from its first file not handled. A part handed
        back does not count as an attempt: a rolling restart is not a crash."""
        with self._db.transaction() as conn:
            back = conn.execute(
                "UPDATE ingest_job_parts SET status = 'waiting', attempts = attempts - 1 "
                "WHERE job_id = %s AND part = %s AND status = 'running' RETURNING part",
                (job_id, part),
            ).fetchone()
            if back is not None:
                self._set_queue_ids(conn, job_id, [part], defer_parts(conn, job_id, [part]))

    def cancel(self, job_id: str, now: float, conclude: Conclude) -> tuple[Row | None, bool]:
        """Ask a job to stop: a queued one ends `cancelled` at once; a running one has its
        waiting parts dropped and its running parts told to stop, and ends when the last
        stops (or here, if none runs). Returns its row (None when there is no such job),
        and whether this call ended a job that had started."""
        with self._locked(job_id) as (conn, job):
            if job is None or job["finished_at"] is not None:
                return _job(job), False
            if job["status"] == "queued":
                row = conn.execute(
                    "UPDATE ingest_jobs SET status = 'cancelled', cancel_requested = true, "  # noqa: S608
                    f"finished_at = %s WHERE id = %s RETURNING {_COLUMNS}",
                    (now, job_id),
                ).fetchone()
                return _job(row), False
            conn.execute("UPDATE ingest_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
            conn.execute(
                "UPDATE ingest_job_parts SET status = 'finished' "
                "WHERE job_id = %s AND status = 'waiting'",
                (job_id,),
            )
            ended = self._conclude_if_over(conn, job_id, conclude)
            if ended is not None:
                return ended, True
            return _job(conn.execute(_SELECT_JOB, (job_id,)).fetchone()), False

    def _conclude_if_over(self, conn: Connection, job_id: str, conclude: Conclude) -> Row | None:
        """End the running job whose row this transaction holds, if no part of it is left;
        returns its ended row, or None."""
        job = _job(conn.execute(_SELECT_JOB, (job_id,)).fetchone())
        if job is None or job["status"] != "running":
            return None
        left = conn.execute(
            "SELECT 1 FROM ingest_job_parts WHERE job_id = %s AND status <> 'finished' LIMIT 1",
            (job_id,),
        ).fetchone()
        if left is not None:
            return None
        results = conn.execute(
            "SELECT result FROM ingest_job_files WHERE job_id = %s AND result IS NOT NULL "
            "ORDER BY position",
            (job_id,),
        ).fetchall()
        end = conclude(job, [row["result"] for row in results])
        report = end["report"]
        return _job(
            conn.execute(
                "UPDATE ingest_jobs SET status = %s, report = %s, doc_ids = %s, "  # noqa: S608
                f"finished_at = %s WHERE id = %s RETURNING {_COLUMNS}",
                (
                    end["status"],
                    None if report is None else json.dumps(report),
                    Jsonb(end["doc_ids"]),
                    end["finished_at"],
                    job_id,
                ),
            ).fetchone()
        )

    def requeue_stranded(
        self, defer_start: DeferStart, defer_parts: DeferParts, max_attempts: int
    ) -> list[tuple[str, int]]:
        """Queue again the work that no queue entry will do: queued jobs whose start entry,
        and unfinished parts of running jobs whose entry, is gone or over (a task that
        broke, a lost connection mid-way). Parts taken `max_attempts` times already are
        not queued again but returned (job id, part), for the caller to end."""
        exhausted = []
        with self._db.transaction() as conn:
            jobs = conn.execute(
                "SELECT j.id FROM ingest_jobs j LEFT JOIN procrastinate_jobs q "
                "ON q.id = j.queue_id WHERE j.status = 'queued' "
                "AND (q.id IS NULL OR q.status::text <> ALL(%s)) FOR UPDATE OF j SKIP LOCKED",
                (list(_UNFINISHED),),
            ).fetchall()
            for job in jobs:
                conn.execute(
                    "UPDATE ingest_jobs SET queue_id = %s WHERE id = %s",
                    (defer_start(conn, job["id"]), job["id"]),
                )
            parts = conn.execute(
                "SELECT p.job_id, p.part, p.attempts FROM ingest_job_parts p "
                "JOIN ingest_jobs j ON j.id = p.job_id "
                "LEFT JOIN procrastinate_jobs q ON q.id = p.queue_id "
                "WHERE j.finished_at IS NULL AND p.status <> 'finished' "
                "AND (q.id IS NULL OR q.status::text <> ALL(%s)) FOR UPDATE OF p SKIP LOCKED",
                (list(_UNFINISHED),),
            ).fetchall()
            for part in parts:
                if part["attempts"] >= max_attempts:
                    exhausted.append((part["job_id"], part["part"]))
                    continue
                ids = defer_parts(conn, part["job_id"], [part["part"]])
                self._set_queue_ids(conn, part["job_id"], [part["part"]], ids)
        return exhausted

    def forget_old(self, keep: int) -> None:
        """Delete finished jobs but the `keep` most recently finished, with their files."""
        with self._db.connection() as conn:
            conn.execute(
                "DELETE FROM ingest_jobs WHERE id IN (SELECT id FROM ingest_jobs "
                "WHERE finished_at IS NOT NULL ORDER BY finished_at DESC OFFSET %s)",
                (keep,),
            )
