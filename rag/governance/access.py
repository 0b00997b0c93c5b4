"""API keys and what each may do: the access rules every interface applies.

A key is shown once, when it is made: `lore_<id>_<secret>`. Only the sha256 of the
secret is stored (the secret is 256 random bits, so a slow password hash would add
nothing), and it is compared in constant time. A key is either `admin` (everything,
including managing keys) or a `reader` or `writer` of named collections; a writer may
also read them. A collection a key may not read is, to that key, a collection that
does not exist: callers answer NotFound, never Forbidden, so nothing leaks its name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from rag.components import database
from rag.errors import InvalidInput, NotFound

Role = Literal["admin", "reader", "writer"]
ROLES: tuple[Role, ...] = get_args(Role)

_PREFIX = "lore_"
# Compared against when a key id is unknown, so a miss takes as long as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'reader', 'writer')),
    collections  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    revoked_at   REAL
);
"""


@dataclass(frozen=True)
class Principal:
    """Who is asking, and which collections they may read and change."""

    key_id: str
    name: str
    role: Role
    collections: frozenset[str]

    @property
    def actor(self) -> str:
        """How audit records and logs name this caller (never the secret)."""
        return f"key:{self.key_id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_read(self, collection: str) -> bool:
        return self.is_admin or collection in self.collections

    def can_write(self, collection: str) -> bool:
        return self.is_admin or (self.role == "writer" and collection in self.collections)

    def require_read(self, collection: str) -> None:
        """NotFound, worded as for a missing collection, unless this caller may read it."""
        if not self.can_read(collection):
            raise NotFound(f"Collection '{collection}' does not exist.")


# The caller when auth is turned off for a local single-user setup.
LOCAL_USER = Principal("local", "local user (auth off)", "admin", frozenset())


@dataclass(frozen=True)
class KeyRecord:
    """A stored key as listings show it: everything but the secret."""

    key_id: str
    name: str
    role: Role
    collections: tuple[str, ...]
    created_at: float
    revoked_at: float | None

    def as_json(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "collections": list(self.collections),
            "created_at": self.created_at,
            "revoked": self.revoked_at is not None,
            "revoked_at": self.revoked_at,
        }


class ApiKeys(Protocol):
    """The API keys: made, listed, revoked and checked.

    A key's secret is shown once, by `create`, and never kept in a form it could be read
    back from. tests/contract/test_api_keys.py holds every implementation to these
    promises; `KeyStore` is the one on SQLite.
    """

    def create(
        self, name: str, role: str, collections: list[str] | tuple[str, ...] = ()
    ) -> tuple[KeyRecord, str]:
        """Make a key; returns its record and the key itself (`lore_<id>_<secret>`).

        InvalidInput for a name that is blank or over 200 characters, a role not in
        ROLES, an admin key given collections, or another key given none.
        """
        ...

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key at once (revoking it again changes nothing); NotFound if unknown."""
        ...

    def authenticate(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, wrong or revoked key."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def checked_key(
    name: str, role: str, collections: list[str] | tuple[str, ...]
) -> tuple[str, Role, tuple[str, ...]]:
    """What `ApiKeys.create` stores for these arguments: the name stripped, the role, and
    the collections sorted without repeats. InvalidInput for what `create` refuses."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("A key needs a name of 1 to 200 characters.")
    if role not in ROLES:
        raise InvalidInput(f"A key's role is one of {', '.join(ROLES)}, not '{role}'.")
    wanted = tuple(sorted(set(collections)))
    if role == "admin" and wanted:
        raise InvalidInput("An admin key reaches every collection; name none.")
    if role != "admin" and not wanted:
        raise InvalidInput(f"A {role} key needs at least one collection.")
    return name, role, wanted


def new_key() -> tuple[str, str, str]:
    """A new key: its id, the hash of its secret (what is stored), and the key itself
    (`lore_<id>_<secret>`, shown once and never stored)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, _hash(secret), f"{_PREFIX}{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str]:
    """The key id and secret of a presented key; empty strings where it has none."""
    key_id, secret = "", ""
    if presented.startswith(_PREFIX):
        key_id, _, secret = presented[len(_PREFIX) :].partition("_")
    return key_id, secret


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Whether `secret` is the one whose hash was stored, compared in constant time.
    None (no such key) is False after as long as a wrong secret takes."""
    matches = hmac.compare_digest(
        _hash(secret), _DUMMY_HASH if stored_hash is None else stored_hash
    )
    return matches and stored_hash is not None


class KeyStore:
    """The API keys, in a SQLite file beside the index."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = database.connect(path)
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def create(
        self, name: str, role: str, collections: list[str] | tuple[str, ...] = ()
    ) -> tuple[KeyRecord, str]:
        """Make a key; returns its record and the key itself, which is not stored."""
        name, checked_role, wanted = checked_key(name, role, collections)
        key_id, secret_hash, key = new_key()
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key_id, name, checked_role, json.dumps(wanted), secret_hash, now),
            )
        return KeyRecord(key_id, name, checked_role, wanted, now, None), key

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, name, role, collections, created_at, revoked_at"
                " FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [
            KeyRecord(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5])
            for row in rows
        ]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key at once (revoking it again changes nothing); NotFound if unknown."""
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        record = next((k for k in self.list() if k.key_id == key_id), None)
        if record is None:
            raise NotFound(f"There is no key '{key_id}'.")
        return record

    def authenticate(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, wrong or revoked key."""
        key_id, secret = split_key(presented)
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, collections, secret_hash, revoked_at"
                " FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        matches = secret_matches(secret, row[3] if row else None)
        if row is None or not matches or row[4] is not None:
            return None
        return Principal(key_id, row[0], row[1], frozenset(json.loads(row[2])))

    def close(self) -> None:
        with self._lock:
            self._db.close()
