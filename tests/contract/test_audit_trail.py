"""The `AuditTrail` contract (rag/governance/audit.py): above all, the order of its chain.

A new audit trail passes by subclassing `AuditTrailContract` and giving the `audit`
fixture, which reads the time from the suite's `clock`. Tampering with a stored log is
the SQLite log's own business (tests/unit/test_audit.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rag.governance.audit import COLUMNS, ZERO_HASH, AuditLog, AuditTrail, entry_hash
from rag.postgres.audit import PgAuditLog
from rag.postgres.database import Database

pytestmark = pytest.mark.contract

DAY = 86400.0
START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand, in seconds since the epoch."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def fill(audit: AuditTrail, count: int, clock: Clock, step: float = DAY) -> None:
    for number in range(count):
        audit.record(
            actor="key:ab12cd",
            operation="query",
            status=200,
            collection="alpha",
            question=f"question {number}",
            chunk_ids=[f"c{number}", f"c{number}b"],
            request_id=f"req-{number}",
        )
        clock.now += step


def recomputed(entry: dict[str, Any]) -> str:
    """The hash an exported entry's own fields give."""
    fields = {k: v for k, v in entry.items() if k not in ("at", "hash")}
    return entry_hash(at=fields.pop("at_epoch"), **fields)


class AuditTrailContract:
    """What every `AuditTrail` promises. `audit` gives an empty one on `clock`."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def audit(self, clock: Clock) -> AuditTrail:
        raise NotImplementedError("a subclass gives the audit trail to test")

    def test_an_empty_trail_verifies_and_exports_nothing(self, audit: AuditTrail) -> None:
        result = audit.verify()
        assert (result.ok, result.entries) == (True, 0)
        assert list(audit.export()) == []

    def test_entries_follow_one_another_in_one_chain(self, audit: AuditTrail, clock: Clock) -> None:
        first = audit.record(actor="cli", operation="ingest", status=200, doc_ids=["d1"])
        assert (first.seq, first.prev_hash, first.at) == (1, ZERO_HASH, clock.now)
        fill(audit, 3, clock)
        entries = list(audit.export())
        assert [e["seq"] for e in entries] == [1, 2, 3, 4]
        assert entries[0] == first.as_json()
        for before, after in pairwise(entries):
            assert after["prev_hash"] == before["hash"]
        assert all(recomputed(e) == e["hash"] for e in entries)
        result = audit.verify()
        assert (result.ok, result.entries) == (True, 4)

    def test_concurrent_records_form_one_chain(self, audit: AuditTrail) -> None:
        def append(worker: int) -> None:
            for number in range(10):
                audit.record(actor=f"w{worker}", operation=f"op {number}", status=200)

        threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = list(audit.export())
        assert [e["seq"] for e in entries] == list(range(1, 41))
        assert len({e["prev_hash"] for e in entries}) == 40
        assert audit.verify().ok

    def test_export_since_starts_at_the_first_later_entry(
        self, audit: AuditTrail, clock: Clock
    ) -> None:
        fill(audit, 3, clock)
        since = datetime(2026, 1, 2)  # no time zone: UTC
        assert [e["seq"] for e in audit.export(since)] == [2, 3]

    def test_prune_removes_the_oldest_and_the_rest_still_verifies(
        self, audit: AuditTrail, clock: Clock
    ) -> None:
        fill(audit, 5, clock)  # at days 0 to 4; the clock now reads day 5
        assert audit.prune(2.5, actor="cli") == 3
        entries = list(audit.export())
        assert [e["seq"] for e in entries] == [4, 5, 6]
        assert (entries[-1]["operation"], entries[-1]["actor"]) == ("audit.prune", "cli")
        result = audit.verify()
        assert (result.ok, result.entries) == (True, 3)

    def test_prune_of_zero_days_keeps_everything(self, audit: AuditTrail, clock: Clock) -> None:
        fill(audit, 3, clock)
        assert audit.prune(0) == 0
        assert [e["seq"] for e in audit.export()] == [1, 2, 3]
        with pytest.raises(ValueError, match="older_than_days"):
            audit.prune(-1)


@pytest.mark.unit
class TestSqliteAuditLog(AuditTrailContract):
    @pytest.fixture
    def audit(self, tmp_path: Path, clock: Clock) -> Iterator[AuditTrail]:
        log = AuditLog(tmp_path / "audit.sqlite3", clock=clock)
        yield log
        log.close()


@pytest.mark.cluster
class TestPgAuditLog(AuditTrailContract):
    @pytest.fixture
    def audit(self, database_url: str, clock: Clock) -> Iterator[AuditTrail]:
        database = Database(database_url)
        yield PgAuditLog(database, clock=clock)
        database.close()

    def test_entries_copied_from_the_sqlite_log_verify_here(
        self, audit: AuditTrail, database_url: str, tmp_path: Path, clock: Clock
    ) -> None:
        sqlite = AuditLog(tmp_path / "audit.sqlite3", clock=clock)
        try:
            sqlite.record(actor="cli", operation="ingest", status=200, doc_ids=["d1", "d2"])
            clock.now += 0.123456789
            sqlite.record(actor="key:ab12cd", operation="query", status=200, question="长城？")
            exported = list(sqlite.export())
        finally:
            sqlite.close()
        source = sqlite3.connect(tmp_path / "audit.sqlite3")
        rows = source.execute(f"SELECT {COLUMNS} FROM entries ORDER BY seq").fetchall()  # noqa: S608
        source.close()
        copy = f"INSERT INTO audit_entries ({COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"  # noqa: S608
        with psycopg.connect(database_url) as conn:
            conn.cursor().executemany(copy, rows)
        assert (audit.verify().ok, audit.verify().entries) == (True, 2)
        assert list(audit.export()) == exported
        assert audit.record(actor="cli", operation="query", status=200).prev_hash == rows[-1][-1]
        assert audit.verify().ok

    def test_entries_are_changed_or_removed_only_by_the_prune(
        self, audit: AuditTrail, database_url: str, clock: Clock
    ) -> None:
        fill(audit, 3, clock)
        for statement in (
            "UPDATE audit_entries SET actor = 'someone else'",
            "DELETE FROM audit_entries WHERE seq = 1",
            "TRUNCATE audit_entries",
            "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, 1, 'x')",
        ):
            with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error):
                conn.execute(statement)
        assert audit.prune(1.5) == 2
        assert (audit.verify().ok, audit.verify().entries) == (True, 2)
        with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM audit_anchor")

    def test_a_nul_character_is_stored_as_a_question_mark(self, audit: AuditTrail) -> None:
        entry = audit.record(actor="a\x00b", operation="query", status=200, question="\x00?")
        [exported] = audit.export()
        assert exported == entry.as_json()
        assert (exported["actor"], exported["question"]) == ("a?b", "??")
        assert audit.verify().ok
