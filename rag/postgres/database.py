"""A pool of connections to the PostgreSQL server of `database_url`, and the schema check.

Every failure to reach the server, or a server that goes away mid-request, surfaces as
`DatabaseUnavailable` (HTTP 503 with Retry-After, a sentence on the command line); the
pool checks each connection before lending it, so a restarted server is reconnected to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from rag.components.database import storable
from rag.errors import Busy, DatabaseUnavailable, SchemaMismatch

# The pool logs every failed attempt to connect; Lore reports the failure once, itself.
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `lore db upgrade` (with the same database_url) to bring it up to date"


def pg_text(text: str) -> str:
    """`text` as PostgreSQL can store it: NUL and lone surrogates (which SQLite stores,
    and JSON input may carry) become "?"."""
    return storable(text).replace("\x00", "?")


def describe(url: str) -> str:
    """`url` without its password, for messages: user@host:port/dbname."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable database_url)"
    host = parts.get("host") or "localhost"
    return f"{parts.get('user', '')}@{host}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def head_revision() -> str:
    """The schema revision this release of Lore is written for (the newest migration)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise SchemaMismatch(f"Lore's migrations in {MIGRATIONS} are missing.")
    return head


def known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


class Database:
    """Connections to one PostgreSQL database, shared by the stores of one process.

    Connections are in autocommit mode with rows as dicts; `transaction()` groups
    statements. The pool opens lazily and at most `max_size` connections at once.
    """

    def __init__(self, url: str, *, max_size: int = 20, timeout_s: float = 5.0):
        self.url = url
        self.where = describe(url)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._max_size = max_size

    def _open_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = psycopg_pool.ConnectionPool(
                    self.url,
                    min_size=0,
                    max_size=self._max_size,
                    kwargs={"autocommit": True, "row_factory": dict_row},
                    check=psycopg_pool.ConnectionPool.check_connection,
                    timeout=self._timeout_s,
                    open=True,
                    name="lore",
                )
            return self._pool

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        """The error to raise for a connection that failed with `exc`; when the pool only
        says it waited in vain, one direct attempt finds the server's own reason."""
        if isinstance(exc, psycopg_pool.PoolTimeout):
            exc = self._direct_error() or exc
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        reason = reason.removeprefix("connection failed: ")
        return DatabaseUnavailable(
            f"The database at {self.where} is unavailable ({reason[:200]}); try again shortly."
        )

    def _direct_error(self) -> psycopg.Error | None:
        """Why a connection made now, outside the pool, fails; None when it succeeds."""
        try:
            psycopg.connect(self.url, connect_timeout=3).close()
        except psycopg.Error as exc:
            return exc
        return None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection in autocommit mode; DatabaseUnavailable when the server can't be
        reached or goes away while it is used."""
        try:
            with self._open_pool().connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            reason = self._direct_error()
            if reason is None:  # the server answers: every connection of the pool is busy
                raise Busy(
                    f"All {self._max_size} database connections of this process are in use; "
                    "try again shortly.",
                    retry_after_s=2,
                ) from exc
            raise self.unavailable(reason) from exc
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection inside one transaction: committed when the block ends, rolled
        back if it raises."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def revision(self) -> str | None:
        """The schema revision the database is at; None when it has no Lore schema."""
        with self.connection() as conn:
            exists = conn.execute("SELECT to_regclass('alembic_version') AS t").fetchone()
            if exists is None or exists["t"] is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row["version_num"])

    def check_schema(self) -> None:
        """Return when the schema is the one this release knows; else SchemaMismatch with
        a sentence naming the command that fixes it."""
        current, head = self.revision(), head_revision()
        if current == head:
            return
        if current is None:
            raise SchemaMismatch(
                f"The database at {self.where} has no Lore schema yet: {UPGRADE_HINT}."
            )
        if current in known_revisions():
            raise SchemaMismatch(
                f"The database at {self.where} is at schema revision {current}, older than "
                f"this release's {head}: {UPGRADE_HINT}."
            )
        raise SchemaMismatch(
            f"The database at {self.where} is at schema revision {current}, which this "
            "release of Lore does not know: a newer release wrote it. Run that release "
            "(or a later one) here too; never an older one."
        )

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def upgrade(url: str) -> tuple[str | None, str]:
    """Apply every migration the database lacks (Alembic); returns (before, after)."""
    from alembic import command
    from alembic.config import Config

    database = Database(url)
    try:
        before = database.revision()
    finally:
        database.close()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    try:
        command.upgrade(config, "head")
    except psycopg.OperationalError as exc:
        raise Database(url).unavailable(exc) from exc
    return before, head_revision()
