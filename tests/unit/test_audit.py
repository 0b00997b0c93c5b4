"""The audit log: its hash chain, append-only triggers, retention and the `lore audit` commands."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api.cli import app
from rag.config import Settings
from rag.container import Lore
from rag.governance.audit import ZERO_HASH, AuditLog, entry_hash

pytestmark = pytest.mark.unit

DAY = 86400.0
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(tmp_path: Path, clock: Clock) -> Iterator[AuditLog]:
    audit = AuditLog(tmp_path / "audit.sqlite3", clock=clock)
    yield audit
    audit.close()


def fill(log: AuditLog, count: int, clock: Clock | None = None, step: float = 60.0) -> None:
    for number in range(count):
        log.record(
            actor="key:ab12cd",
            operation="query",
            status=200,
            collection="default",
            question=f"question {number}",
            chunk_ids=(f"c{number}", f"c{number}b"),
            request_id=f"req-{number}",
        )
        if clock is not None:
            clock.now += step


def attacker(path: Path) -> sqlite3.Connection:
    """A raw connection to the file, with the triggers dropped, as someone with the file."""
    db = sqlite3.connect(path, isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    return db


def test_entries_chain_and_verify(log: AuditLog) -> None:
    first = log.record(actor="cli", operation="documents.upload", status=200, doc_ids=["d1"])
    second = log.record(
        actor="key:ab12cd", operation="search", status=200, question="ports?", chunk_ids=["c1"]
    )
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == ZERO_HASH
    assert second.prev_hash == first.hash
    assert second.chunk_ids == ("c1",)
    fill(log, 3)
    assert log.verify().ok
    assert log.verify().entries == 5


def test_hash_covers_canonical_json_of_every_field(log: AuditLog) -> None:
    entry = log.record(actor="anonymous", operation="query", status=403, question="x")
    expected = entry_hash(
        seq=1,
        at=entry.at,
        actor="anonymous",
        operation="query",
        collection=None,
        question="x",
        chunk_ids=[],
        doc_ids=[],
        status=403,
        request_id=None,
        prev_hash=ZERO_HASH,
    )
    assert entry.hash == expected
    data = {k: v for k, v in entry.as_json().items() if k not in ("hash", "at")}
    data["at"] = data.pop("at_epoch")
    assert entry_hash(**data) == entry.hash


def test_empty_log_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert (result.ok, result.entries, result.first_bad_seq) == (True, 0, None)


def test_sql_update_and_delete_are_refused(log: AuditLog) -> None:
    fill(log, 3)
    db = sqlite3.connect(log.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE entries SET question = 'changed' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM entries WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="anchor"):
        db.execute("INSERT INTO anchor (id, seq, hash) VALUES (1, 2, 'x')")
    db.close()
    assert log.verify().entries == 3


def test_changed_question_is_found_at_its_entry(log: AuditLog) -> None:
    fill(log, 5)
    db = attacker(log.path)
    db.execute("UPDATE entries SET question = 'something else' WHERE seq = 3")
    db.close()
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.entries) == (3, 2)
    assert result.problem is not None
    assert "does not match its hash" in result.problem


def test_changed_entry_with_its_hash_recomputed_breaks_the_next_link(log: AuditLog) -> None:
    fill(log, 4)
    row = next(e for e in log.export() if e["seq"] == 2)
    row["question"] = "forged"
    fields = {k: v for k, v in row.items() if k not in ("hash", "at")}
    fields["at"] = fields.pop("at_epoch")
    db = attacker(log.path)
    db.execute(
        "UPDATE entries SET question = 'forged', hash = ? WHERE seq = 2", (entry_hash(**fields),)
    )
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem is not None
    assert "does not link to entry 2" in result.problem


def test_deleted_middle_entry_is_found(log: AuditLog) -> None:
    fill(log, 5)
    db = attacker(log.path)
    db.execute("DELETE FROM entries WHERE seq = 3")
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.entries) == (False, 4, 2)
    assert result.problem == "entry 3 is missing before entry 4"


def test_deleted_first_entry_is_found(log: AuditLog) -> None:
    fill(log, 3)
    db = attacker(log.path)
    db.execute("DELETE FROM entries WHERE seq = 1")
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_swapped_entries_are_found(log: AuditLog) -> None:
    fill(log, 4)
    db = attacker(log.path)
    db.execute("UPDATE entries SET seq = 100 WHERE seq = 2")
    db.execute("UPDATE entries SET seq = 2 WHERE seq = 3")
    db.execute("UPDATE entries SET seq = 3 WHERE seq = 100")
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_prune_removes_old_entries_and_the_rest_still_verifies(log: AuditLog, clock: Clock) -> None:
    fill(log, 5, clock, step=DAY)  # days 0..4
    clock.now = START + 10 * DAY
    removed = log.prune(7.5, actor="cli")  # the cutoff is day 2.5: days 0, 1, 2 go
    assert removed == 3
    rows = list(log.export())
    assert [r["seq"] for r in rows] == [4, 5, 6]
    assert rows[-1]["operation"] == "audit.prune"
    assert rows[-1]["actor"] == "cli"
    result = log.verify()
    assert (result.ok, result.entries) == (True, 3)
    assert log.record(actor="cli", operation="query", status=200).seq == 7
    assert log.verify().ok
    assert log.prune(7.5) == 0  # nothing older left: no entry either
    assert log.verify().entries == 4


def test_prune_of_everything_keeps_the_chain(log: AuditLog, clock: Clock) -> None:
    fill(log, 3, clock)
    clock.now += 2 * DAY
    assert log.prune(1) == 3
    assert [r["seq"] for r in log.export()] == [4]
    assert log.verify().ok


def test_prune_zero_keeps_everything(log: AuditLog, clock: Clock) -> None:
    fill(log, 3, clock)
    clock.now += 1000 * DAY
    assert log.prune(0) == 0
    assert log.verify().entries == 3
    with pytest.raises(ValueError, match="older_than_days"):
        log.prune(-1)


def test_tampered_anchor_is_found(log: AuditLog, clock: Clock) -> None:
    fill(log, 5, clock, step=DAY)
    clock.now = START + 10 * DAY
    log.prune(7.5)
    db = attacker(log.path)
    db.execute("UPDATE anchor SET hash = ?", ("f" * 64,))
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem is not None
    assert "retention anchor" in result.problem


def test_moved_anchor_is_found(log: AuditLog, clock: Clock) -> None:
    fill(log, 5, clock, step=DAY)
    clock.now = START + 10 * DAY
    log.prune(7.5)
    db = attacker(log.path)
    db.execute("UPDATE anchor SET seq = 1")
    db.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "entries 2 to 3 are missing before entry 4"


def test_concurrent_records_form_one_chain(tmp_path: Path) -> None:
    # Two connections to one file, as a server and a CLI process would have.
    logs = [AuditLog(tmp_path / "audit.sqlite3"), AuditLog(tmp_path / "audit.sqlite3")]
    start = threading.Barrier(8)

    def work(number: int) -> None:
        start.wait()
        for step in range(25):
            logs[number % 2].record(
                actor=f"key:{number}", operation="search", status=200, question=f"{step}"
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = logs[0].verify()
    assert (result.ok, result.entries) == (True, 200)
    assert [r["seq"] for r in logs[1].export()] == list(range(1, 201))
    for audit in logs:
        audit.close()


def test_export_since_filters_and_is_json_ready(log: AuditLog, clock: Clock) -> None:
    fill(log, 4, clock, step=DAY)  # 2026-01-01 .. 2026-01-04
    rows = list(log.export(datetime(2026, 1, 3)))  # naive: UTC
    assert [r["seq"] for r in rows] == [3, 4]
    assert rows[0]["at"] == "2026-01-03T00:00:00.000000Z"
    assert rows[0]["chunk_ids"] == ["c2", "c2b"]
    json.dumps(rows)
    assert len(list(log.export())) == 4
    assert list(log.export(datetime(2027, 1, 1, tzinfo=UTC))) == []


def test_chinese_question_round_trips(log: AuditLog) -> None:
    question = "长城的总长度是多少？"
    log.record(actor="cli", operation="query", status=200, question=question, chunk_ids=["块1"])
    (row,) = log.export()
    assert row["question"] == question
    assert row["chunk_ids"] == ["块1"]
    assert log.verify().ok


def test_lone_surrogate_is_stored_replaced(log: AuditLog) -> None:
    log.record(actor="cli", operation="query", status=200, question="bad \ud800 text")
    (row,) = log.export()
    assert row["question"] == "bad ? text"
    assert log.verify().ok


def test_retention_setting_defaults_to_a_year_and_refuses_negative() -> None:
    assert Settings().audit_retention_days == 365
    with pytest.raises(ValidationError, match="audit_retention_days"):
        Settings(audit_retention_days=-1)


# -- the command line --------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LORE_DATA_DIR": str(tmp_path / "cli-data"), "LORE_CONFIG": ""}


def cli_log(env: dict[str, str], clock: Clock | None = None) -> AuditLog:
    path = Path(env["LORE_DATA_DIR"]) / "audit.sqlite3"
    return AuditLog(path, clock=clock) if clock else AuditLog(path)


def test_cli_verify_exit_codes(env: dict[str, str]) -> None:
    log = cli_log(env)
    fill(log, 3)
    log.close()
    runner = CliRunner()
    intact = runner.invoke(app, ["audit", "verify"], env=env)
    assert intact.exit_code == 0, intact.output
    assert "Audit chain intact: 3 entries." in intact.output
    db = attacker(Path(env["LORE_DATA_DIR"]) / "audit.sqlite3")
    db.execute("UPDATE entries SET actor = 'someone' WHERE seq = 2")
    db.close()
    broken = runner.invoke(app, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "broken at entry 2" in broken.output


def test_cli_export_since_to_file(env: dict[str, str], tmp_path: Path) -> None:
    clock = Clock()
    log = cli_log(env, clock)
    fill(log, 3, clock, step=DAY)
    log.close()
    runner = CliRunner()
    printed = runner.invoke(app, ["audit", "export", "--since", "2026-01-02"], env=env)
    assert printed.exit_code == 0, printed.output
    assert [json.loads(line)["seq"] for line in printed.output.splitlines()] == [2, 3]
    target = tmp_path / "audit.jsonl"
    written = runner.invoke(
        app, ["audit", "export", "--since", "2026-01-03T00:00:00", "--output", str(target)], env=env
    )
    assert written.exit_code == 0, written.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3]


def test_cli_export_bad_since_is_a_usage_error(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["audit", "export", "--since", "soon"], env=env)
    assert result.exit_code == 2
    assert "'soon' is not a date" in result.output


def test_cli_prune_applies_the_retention_setting(env: dict[str, str]) -> None:
    clock = Clock(time.time() - 400 * DAY)
    log = cli_log(env, clock)
    fill(log, 2)
    clock.now = time.time()
    fill(log, 1)
    log.close()
    runner = CliRunner()
    kept = runner.invoke(app, ["audit", "prune"], env={**env, "LORE_AUDIT_RETENTION_DAYS": "0"})
    assert kept.exit_code == 0, kept.output
    assert "nothing removed" in kept.output
    pruned = runner.invoke(app, ["audit", "prune"], env=env)
    assert pruned.exit_code == 0, pruned.output
    assert "Removed 2 audit entries older than 365 days." in pruned.output
    assert runner.invoke(app, ["audit", "verify"], env=env).exit_code == 0


def test_the_app_audits_into_lores_log_and_closes_it_at_shutdown(lore: Lore) -> None:
    # Lore (rag/container.py) builds the audit log; the app's lifespan closes it, and a
    # later start opens it again.
    from fastapi.testclient import TestClient

    from api.app import create_app

    for _ in range(2):
        with TestClient(create_app(lore=lore)) as client:
            assert client.post("/v1/collections", json={"name": "default"}).status_code == 201
            log = lore.audit
        assert "audit" not in lore.__dict__
        with pytest.raises(sqlite3.ProgrammingError):
            log.record(actor="test", operation="after.shutdown", status=200)
    operations = [entry["operation"] for entry in lore.audit.export()]
    assert operations.count("collections.create") == 2
    assert lore.audit.verify().ok
    lore.close_records()
