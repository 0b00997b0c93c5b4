"""The API keys in PostgreSQL (`api_keys`), shared by every Lore process of a cluster.

The same keys as the SQLite `KeyStore` (rag/governance/access.py): only the sha256 of
a secret is stored and it is compared in constant time. Nothing is cached in a process:
`authenticate` reads the key's row each time, so a key revoked by one process is refused
by every process from the moment the revocation commits.
"""

from __future__ import annotations

import time
from typing import Any

from rag.errors import NotFound
from rag.governance.access import (
    KeyRecord,
    Principal,
    checked_key,
    new_key,
    secret_matches,
    split_key,
)
from rag.postgres.database import Database, pg_text

_RECORD = "key_id, name, role, collections, created_at, revoked_at"


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        row["key_id"],
        row["name"],
        row["role"],
        tuple(row["collections"]),
        row["created_at"],
        row["revoked_at"],
    )


class PgKeyStore:
    """The API keys, in the cluster's database. `close()` leaves the shared `Database` open."""

    def __init__(self, database: Database):
        self._db = database

    def create(
        self, name: str, role: str, collections: list[str] | tuple[str, ...] = ()
    ) -> tuple[KeyRecord, str]:
        """Make a key; returns its record and the key itself, which is not stored."""
        name, checked_role, wanted = checked_key(name, role, collections)
        name = pg_text(name)
        key_id, secret_hash, key = new_key()
        now = time.time()
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO api_keys (key_id, name, role, collections, secret_hash, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (key_id, name, checked_role, list(wanted), secret_hash, now),
            )
        return KeyRecord(key_id, name, checked_role, wanted, now, None), key

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_RECORD} FROM api_keys ORDER BY created_at"  # noqa: S608
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key at once (revoking it again changes nothing); NotFound if unknown."""
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL",
                (time.time(), pg_text(key_id)),
            )
            row = conn.execute(
                f"SELECT {_RECORD} FROM api_keys WHERE key_id = %s",  # noqa: S608
                (pg_text(key_id),),
            ).fetchone()
        if row is None:
            raise NotFound(f"There is no key '{key_id}'.")
        return _record(row)

    def authenticate(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, wrong or revoked key."""
        key_id, secret = split_key(presented)
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT name, role, collections, secret_hash, revoked_at"
                " FROM api_keys WHERE key_id = %s",
                (pg_text(key_id),),
            ).fetchone()
        matches = secret_matches(secret, row["secret_hash"] if row else None)
        if row is None or not matches or row["revoked_at"] is not None:
            return None
        return Principal(key_id, row["name"], row["role"], frozenset(row["collections"]))

    def close(self) -> None:
        """Nothing to let go of: the shared `Database` belongs to its creator."""
