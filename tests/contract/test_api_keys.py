"""The `ApiKeys` contract (rag/governance/access.py), run against every implementation.

A new key store passes by subclassing `ApiKeysContract` and giving the `keys` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.errors import InvalidInput, NotFound
from rag.governance.access import ApiKeys, KeyStore
from rag.postgres.database import Database
from rag.postgres.keys import PgKeyStore

pytestmark = pytest.mark.contract


class ApiKeysContract:
    """What every `ApiKeys` promises. `keys` gives an empty one."""

    @pytest.fixture
    def keys(self) -> ApiKeys:
        raise NotImplementedError("a subclass gives the key store to test")

    def test_a_new_key_authenticates_as_its_principal(self, keys: ApiKeys) -> None:
        record, key = keys.create("alice", "writer", ["beta", "alpha", "alpha"])
        assert record.collections == ("alpha", "beta")
        assert record.revoked_at is None
        principal = keys.authenticate(key)
        assert principal is not None
        assert (principal.key_id, principal.name, principal.role) == (
            record.key_id,
            "alice",
            "writer",
        )
        assert principal.collections == frozenset({"alpha", "beta"})

    def test_wrong_unknown_or_malformed_keys_do_not_authenticate(self, keys: ApiKeys) -> None:
        _, key = keys.create("alice", "admin")
        key_id, secret = key.removeprefix("lore_").split("_", 1)
        changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for presented in (
            f"lore_{key_id}_{changed}",
            f"lore_ffffffffffff_{secret}",
            f"{key_id}_{secret}",
            "lore_",
            "",
        ):
            assert keys.authenticate(presented) is None, presented

    def test_a_revoked_key_stops_at_once(self, keys: ApiKeys) -> None:
        record, key = keys.create("alice", "reader", ["alpha"])
        _, other = keys.create("bob", "reader", ["alpha"])
        revoked = keys.revoke(record.key_id)
        assert revoked.revoked_at is not None
        assert keys.authenticate(key) is None
        assert keys.revoke(record.key_id).revoked_at == revoked.revoked_at
        assert keys.authenticate(other) is not None

    def test_revoking_an_unknown_key_is_not_found(self, keys: ApiKeys) -> None:
        with pytest.raises(NotFound):
            keys.revoke("nope")

    def test_keys_are_listed_oldest_first_revoked_ones_too(self, keys: ApiKeys) -> None:
        assert keys.list() == []
        first, _ = keys.create("first", "admin")
        second, _ = keys.create("second", "reader", ["alpha"])
        keys.revoke(first.key_id)
        listed = keys.list()
        assert [k.key_id for k in listed] == [first.key_id, second.key_id]
        assert listed[0].revoked_at is not None

    @pytest.mark.parametrize(
        ("name", "role", "collections"),
        [
            ("  ", "admin", ()),
            ("x" * 201, "admin", ()),
            ("alice", "owner", ("alpha",)),
            ("alice", "admin", ("alpha",)),
            ("alice", "reader", ()),
            ("alice", "writer", ()),
        ],
    )
    def test_a_bad_name_role_or_collection_list_is_refused(
        self, keys: ApiKeys, name: str, role: str, collections: tuple[str, ...]
    ) -> None:
        with pytest.raises(InvalidInput):
            keys.create(name, role, collections)
        assert keys.list() == []


@pytest.mark.unit
class TestSqliteKeyStore(ApiKeysContract):
    @pytest.fixture
    def keys(self, tmp_path: Path) -> Iterator[ApiKeys]:
        store = KeyStore(tmp_path / "keys.sqlite3")
        yield store
        store.close()


@pytest.mark.cluster
class TestPgKeyStore(ApiKeysContract):
    @pytest.fixture
    def keys(self, database_url: str) -> Iterator[ApiKeys]:
        database = Database(database_url)
        yield PgKeyStore(database)
        database.close()

    def test_a_key_revoked_by_one_process_is_refused_by_another(self, database_url: str) -> None:
        # Two Databases: two pools, as two Lore processes have.
        here, there = Database(database_url), Database(database_url)
        try:
            record, key = PgKeyStore(here).create("alice", "reader", ["alpha"])
            other = PgKeyStore(there)
            assert other.authenticate(key) is not None
            PgKeyStore(here).revoke(record.key_id)
            assert other.authenticate(key) is None
        finally:
            here.close()
            there.close()

    def test_a_key_with_a_nul_byte_is_refused_not_an_error(self, keys: ApiKeys) -> None:
        _, key = keys.create("alice\x00bob", "admin")
        assert keys.list()[0].name == "alice?bob"
        assert keys.authenticate(key.replace("lore_", "lore_\x00", 1)) is None
