"""The way Lore opens its SQLite files (manifest, audit log, keys) and writes to them."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import SchemaMismatch, StoreDamaged


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` says a SQLite file is damaged ("file is not a database", "database
    disk image is malformed"), rather than locked, missing or misused."""
    return type(exc) is sqlite3.DatabaseError


@contextmanager
def naming_damage(path: Path) -> Iterator[None]:
    """Turn SQLite's report of a damaged file into StoreDamaged, naming `path` and the fix."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise StoreDamaged.file(path, exc) from None
        raise


def connect(path: Path) -> sqlite3.Connection:
    """A connection usable from any thread (callers hold a lock), in autocommit mode, with
    a sync to disk at every commit and 30 s of patience for a lock (`open_schema` turns
    on write-ahead logging). StoreDamaged when the file is not a whole database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    with naming_damage(path):
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


def open_schema(db: sqlite3.Connection, path: Path, version: int, script: str) -> int:
    """Bring the store at `path` to this release's schema: refuse it, changing nothing,
    when a newer release wrote it (SchemaMismatch); else turn on write-ahead logging
    and run `script` (idempotent CREATE ... IF NOT EXISTS). Returns the version it was
    at (0: written before versions were recorded, or new). The caller runs its
    migrations from that version, then calls `stamp_schema`.

    The version is SQLite's `user_version`, one per file; `lore doctor` reads it too.
    """
    with naming_damage(path):
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > version:
        raise newer_schema(path, found, version)
    with naming_damage(path):
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(script)
    return found


def stamp_schema(db: sqlite3.Connection, version: int) -> None:
    """Record that the store now has schema `version` (after `open_schema`'s migrations).
    Nothing is written when it says so already: a store must open on a full disk."""
    if int(db.execute("PRAGMA user_version").fetchone()[0]) != version:
        db.execute(f"PRAGMA user_version = {int(version)}")


def schema_version(path: Path) -> int | None:
    """The schema version recorded in the SQLite file at `path`, read only (None: no file)."""
    if not path.is_file():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def newer_schema(path: Path, found: int, version: int) -> SchemaMismatch:
    """The refusal of a store a newer release wrote (schema `found`; this one's is `version`)."""
    return SchemaMismatch(
        f"{path} was written by a newer release of Lore (its schema is version {found}; "
        f"this release reads up to {version}). Run that release or a later one, or "
        "restore a backup made by this release (`lore restore`)."
    )
