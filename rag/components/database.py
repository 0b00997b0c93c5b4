"""The way Lore opens its SQLite files (manifest, audit log, keys) and writes to them."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    """A connection usable from any thread (callers hold a lock), in autocommit mode, with
    write-ahead logging, a sync to disk at every commit, and 30 s of patience for a lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=30000")
    return db


@contextmanager
def transaction(db: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """One write transaction, all or nothing. IMMEDIATE takes the write lock before the
    first read, so two writers, in this process or another, never both act on one state."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def storable(text: str) -> str:
    """`text` as SQLite can store it: a lone surrogate (possible in JSON input) can't be
    encoded as UTF-8, so it becomes "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")
