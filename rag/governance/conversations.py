"""Saved conversations: each key's questions and Lore's answers, kept on the server.

A SQLite database beside the index (`<data_dir>/conversations.sqlite3`): a row per
conversation, and a row per turn in a table of its own, so adding a turn is one insert.
A conversation belongs to the key that made it (`owner`, the key id; "local" when auth
is off); to every other key it does not exist. Its turns hold the answers' text and the
passages they cited, so the file is as confidential as the documents. Conversations not
updated for `conversation_retention_days` are removed by `prune`.

`ConversationTables` holds the SQL of every operation; the SQLite store here and the
PostgreSQL one (rag/postgres/conversations.py) each give it a connection.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.components import database
from rag.errors import InvalidInput, NotFound

MAX_TITLE = 200
# A title made from a conversation's first question is cut to this many characters.
TITLE_FROM_QUESTION = 80
# A turn's citations and sources together, as JSON (UTF-8 bytes): the passages an
# answer showed, which are a few kilobytes each.
MAX_TURN_JSON_BYTES = 400_000

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    owner       TEXT NOT NULL,
    title       TEXT NOT NULL,
    collection  TEXT NOT NULL,
    filters     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated_at);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations (updated_at);
CREATE TABLE IF NOT EXISTS conversation_turns (
    seq              INTEGER PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    at               REAL NOT NULL,
    question         TEXT NOT NULL,
    answer           TEXT NOT NULL,
    query            TEXT,
    declined         INTEGER NOT NULL,
    citations        TEXT NOT NULL,
    sources          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_turns_in_order
    ON conversation_turns (conversation_id, seq);
"""

# The columns of a conversation as every read selects them (`c` is `conversations`).
SUMMARY_COLUMNS = (
    "c.id, c.owner, c.title, c.collection, c.filters, c.created_at, c.updated_at, "
    "(SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = c.id) AS turn_count"
)
TURN_COLUMNS = "at, question, answer, query, declined, citations, sources"
# Newest update first; of two updated at the same moment, the one made later.
NEWEST_FIRST = "ORDER BY c.updated_at DESC, c.seq DESC"


@dataclass(frozen=True)
class ConversationTurn:
    """One question, the answer Lore gave, and the passages it cited (`citations`) and
    showed (`sources`), as the query API returned them. `at` is seconds since the epoch."""

    question: str
    answer: str
    query: str | None
    declined: bool
    citations: tuple[dict[str, Any], ...]
    sources: tuple[dict[str, Any], ...]
    at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "query": self.query,
            "declined": self.declined,
            "citations": list(self.citations),
            "sources": list(self.sources),
            "at": self.at,
        }


@dataclass(frozen=True)
class Conversation:
    """A conversation of `owner`'s (a key id), about `collection` with `filters` (a JSON
    object, as the query API takes it). `turns` is empty where a listing leaves them out;
    `turn_count` says how many it has either way."""

    id: str
    owner: str
    title: str
    collection: str
    filters: dict[str, Any]
    created_at: float
    updated_at: float
    turn_count: int
    turns: tuple[ConversationTurn, ...] = ()

    def summary_json(self) -> dict[str, Any]:
        """What a listing shows: everything but the owner and the turns."""
        return {
            "id": self.id,
            "title": self.title,
            "collection": self.collection,
            "filters": self.filters,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "turn_count": self.turn_count,
        }

    def as_json(self) -> dict[str, Any]:
        """The summary with the turns, oldest first."""
        return {**self.summary_json(), "turns": [turn.as_json() for turn in self.turns]}


class Row(Protocol):
    """A row as either database returns it: its columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...


def not_found(conversation_id: str) -> NotFound:
    """The answer for a conversation that does not exist, or is another key's."""
    return NotFound(f"Conversation '{conversation_id[:100]}' does not exist.")


def title_from(question: str) -> str:
    """A title made from a question: its words on one line, cut to TITLE_FROM_QUESTION
    characters (an ellipsis ends a cut one)."""
    words = " ".join(question.split())
    if len(words) <= TITLE_FROM_QUESTION:
        return words
    return words[: TITLE_FROM_QUESTION - 1].rstrip() + "…"


def prune_cutoff(older_than_days: float, clock: Callable[[], float]) -> float | None:
    """The moment before which a conversation last updated is pruned; None when
    `older_than_days` is 0 (keep everything); ValueError when it is negative."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be 0 (keep everything) or more")
    if older_than_days == 0:
        return None
    return clock() - older_than_days * 86400


def encode_json(value: Any) -> str:
    """`value` as JSON text; InvalidInput for what JSON cannot hold (NaN, infinities)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"A conversation holds only JSON values ({exc}).") from None


def storable_json(value: Any, storable: Callable[[str], str]) -> Any:
    """`value` with every string in it, keys too, made `storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return {storable(str(k)): storable_json(v, storable) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v, storable) for v in value]
    return value


def checked_title(title: str | None, storable: Callable[[str], str]) -> str | None:
    """`title` made `storable`; InvalidInput when it is longer than MAX_TITLE."""
    if title is None:
        return None
    if len(title) > MAX_TITLE:
        raise InvalidInput(f"A conversation's title is at most {MAX_TITLE} characters.")
    return storable(title)


def checked_filters(
    filters: Mapping[str, Any] | None, storable: Callable[[str], str]
) -> dict[str, Any] | None:
    """`filters` as a storable JSON object (checked to be one)."""
    if filters is None:
        return None
    stored: dict[str, Any] = storable_json(dict(filters), storable)
    encode_json(stored)
    return stored


def new_conversation(
    *,
    clock: Callable[[], float],
    owner: str,
    title: str,
    collection: str,
    filters: Mapping[str, Any] | None,
    storable: Callable[[str], str] = database.storable,
) -> Conversation:
    """A new, empty conversation with an id of its own, made at the time `clock` reads,
    every text made `storable`. InvalidInput for a title over MAX_TITLE characters."""
    now = clock()
    return Conversation(
        id=uuid.uuid4().hex,
        owner=storable(owner),
        title=checked_title(title, storable) or "",
        collection=storable(collection),
        filters=checked_filters(filters, storable) or {},
        created_at=now,
        updated_at=now,
        turn_count=0,
    )


def new_turn(
    *,
    clock: Callable[[], float],
    question: str,
    answer: str,
    query: str | None,
    declined: bool,
    citations: Iterable[Mapping[str, Any]],
    sources: Iterable[Mapping[str, Any]],
    storable: Callable[[str], str] = database.storable,
) -> ConversationTurn:
    """A new turn at the time `clock` reads, every text made `storable`. InvalidInput when
    its citations and sources together are over MAX_TURN_JSON_BYTES as JSON."""
    cited = tuple(storable_json(dict(c), storable) for c in citations)
    shown = tuple(storable_json(dict(s), storable) for s in sources)
    size = len(encode_json([cited, shown]).encode("utf-8"))
    if size > MAX_TURN_JSON_BYTES:
        raise InvalidInput(
            f"A turn's citations and sources are {size:,} bytes as JSON; the limit is "
            f"{MAX_TURN_JSON_BYTES:,}."
        )
    return ConversationTurn(
        question=storable(question),
        answer=storable(answer),
        query=None if query is None else storable(query),
        declined=declined,
        citations=cited,
        sources=shown,
        at=clock(),
    )


def conversation_of(
    row: Row, decode: Callable[[Any], Any], turns: tuple[ConversationTurn, ...] = ()
) -> Conversation:
    """The conversation a row of SUMMARY_COLUMNS holds; `decode` reads its JSON column."""
    return Conversation(
        id=row["id"],
        owner=row["owner"],
        title=row["title"],
        collection=row["collection"],
        filters=decode(row["filters"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        turn_count=int(row["turn_count"]),
        turns=turns,
    )


def turn_of(row: Row, decode: Callable[[Any], Any]) -> ConversationTurn:
    """The turn a row of TURN_COLUMNS holds; `decode` reads its JSON columns."""
    return ConversationTurn(
        question=row["question"],
        answer=row["answer"],
        query=row["query"],
        declined=bool(row["declined"]),
        citations=tuple(decode(row["citations"])),
        sources=tuple(decode(row["sources"])),
        at=row["at"],
    )


class ConversationStore(Protocol):
    """Saved conversations, each its owner's alone: one owned by another key is, to every
    call here, one that does not exist (NotFound, "Conversation 'x' does not exist.").

    tests/contract/test_conversations.py holds every implementation to these promises;
    `SqliteConversationStore` is the one on SQLite.
    """

    def create(
        self,
        owner: str,
        *,
        collection: str,
        title: str = "",
        filters: Mapping[str, Any] | None = None,
    ) -> Conversation:
        """A new conversation of `owner`'s, without turns. InvalidInput for a title over
        MAX_TITLE characters or filters that are not a JSON object."""
        ...

    def list(self, owner: str) -> list[Conversation]:
        """`owner`'s conversations, the most recently updated first, without their turns
        (`turn_count` says how many each has)."""
        ...

    def get(self, owner: str, conversation_id: str) -> Conversation:
        """One of `owner`'s conversations with its turns, oldest first."""
        ...

    def update(
        self,
        owner: str,
        conversation_id: str,
        *,
        title: str | None = None,
        collection: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> Conversation:
        """Change what is given (None leaves a field as it is) and the time it was updated;
        returns the conversation with its turns."""
        ...

    def delete(self, owner: str, conversation_id: str) -> Conversation:
        """Remove a conversation and its turns; returns what was removed, without turns."""
        ...

    def add_turn(
        self,
        owner: str,
        conversation_id: str,
        *,
        question: str,
        answer: str,
        query: str | None = None,
        declined: bool = False,
        citations: Iterable[Mapping[str, Any]] = (),
        sources: Iterable[Mapping[str, Any]] = (),
    ) -> ConversationTurn:
        """Append a turn and mark the conversation updated at its time; a conversation
        without a title takes one from the question (`title_from`). InvalidInput when the
        citations and sources are over MAX_TURN_JSON_BYTES."""
        ...

    def prune(self, older_than_days: float) -> int:
        """Remove every owner's conversations not updated for `older_than_days` (0 keeps
        them all; ValueError when negative); returns how many went."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


class Cursor(Protocol):
    """What both databases' cursors give back."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Session(Protocol):
    """A connection inside one transaction; "?" marks a parameter."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor: ...


class ConversationTables(ABC):
    """A `ConversationStore` on the tables `conversations` and `conversation_turns`, in
    SQL that SQLite and PostgreSQL both run. A subclass gives a transaction (`_session`),
    how a JSON column is written and read, and how text is made storable.

    `clock` gives the time of each change and the prune cutoff, in seconds since the epoch.
    """

    def __init__(self, clock: Callable[[], float], storable: Callable[[str], str]):
        self._clock = clock
        self._storable = storable

    @abstractmethod
    def _session(self) -> AbstractContextManager[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def _to_json(self, value: Any) -> Any:
        """`value` (JSON-ready, storable) as a parameter of a JSON column."""

    @abstractmethod
    def _from_json(self, value: Any) -> Any:
        """A JSON column as read, as Python values."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""

    def create(
        self,
        owner: str,
        *,
        collection: str,
        title: str = "",
        filters: Mapping[str, Any] | None = None,
    ) -> Conversation:
        made = new_conversation(
            clock=self._clock,
            owner=owner,
            title=title,
            collection=collection,
            filters=filters,
            storable=self._storable,
        )
        with self._session() as db:
            db.execute(
                "INSERT INTO conversations "
                "(id, owner, title, collection, filters, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    made.id,
                    made.owner,
                    made.title,
                    made.collection,
                    self._to_json(made.filters),
                    made.created_at,
                    made.updated_at,
                ),
            )
        return made

    def list(self, owner: str) -> list[Conversation]:
        with self._session() as db:
            rows = db.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM conversations c WHERE c.owner = ? {NEWEST_FIRST}",  # noqa: S608
                (self._storable(owner),),
            ).fetchall()
        return [conversation_of(row, self._from_json) for row in rows]

    def _summary(self, db: Session, owner: str, conversation_id: str) -> Row:
        row: Row | None = db.execute(
            f"SELECT {SUMMARY_COLUMNS} FROM conversations c WHERE c.id = ? AND c.owner = ?",  # noqa: S608
            (self._storable(conversation_id), self._storable(owner)),
        ).fetchone()
        if row is None:
            raise not_found(conversation_id)
        return row

    def get(self, owner: str, conversation_id: str) -> Conversation:
        with self._session() as db:
            row = self._summary(db, owner, conversation_id)
            turns = db.execute(
                f"SELECT {TURN_COLUMNS} FROM conversation_turns "  # noqa: S608
                "WHERE conversation_id = ? ORDER BY seq",
                (row["id"],),
            ).fetchall()
        read = tuple(turn_of(turn, self._from_json) for turn in turns)
        return conversation_of(row, self._from_json, read)

    def update(
        self,
        owner: str,
        conversation_id: str,
        *,
        title: str | None = None,
        collection: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> Conversation:
        title = checked_title(title, self._storable)
        stored = checked_filters(filters, self._storable)
        with self._session() as db:
            changed = db.execute(
                "UPDATE conversations SET title = coalesce(?, title), "
                "collection = coalesce(?, collection), filters = coalesce(?, filters), "
                "updated_at = ? WHERE id = ? AND owner = ?",
                (
                    title,
                    None if collection is None else self._storable(collection),
                    None if stored is None else self._to_json(stored),
                    self._clock(),
                    self._storable(conversation_id),
                    self._storable(owner),
                ),
            ).rowcount
        if not changed:
            raise not_found(conversation_id)
        return self.get(owner, conversation_id)

    def delete(self, owner: str, conversation_id: str) -> Conversation:
        with self._session() as db:
            removed = conversation_of(self._summary(db, owner, conversation_id), self._from_json)
            # Its turns go with it (ON DELETE CASCADE).
            db.execute("DELETE FROM conversations WHERE id = ?", (removed.id,))
        return removed

    def add_turn(
        self,
        owner: str,
        conversation_id: str,
        *,
        question: str,
        answer: str,
        query: str | None = None,
        declined: bool = False,
        citations: Iterable[Mapping[str, Any]] = (),
        sources: Iterable[Mapping[str, Any]] = (),
    ) -> ConversationTurn:
        turn = new_turn(
            clock=self._clock,
            question=question,
            answer=answer,
            query=query,
            declined=declined,
            citations=citations,
            sources=sources,
            storable=self._storable,
        )
        key = self._storable(conversation_id)
        with self._session() as db:
            changed = db.execute(
                "UPDATE conversations SET updated_at = ?, "
                "title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ? AND owner = ?",
                (turn.at, title_from(turn.question), key, self._storable(owner)),
            ).rowcount
            if not changed:
                raise not_found(conversation_id)
            db.execute(
                f"INSERT INTO conversation_turns (conversation_id, {TURN_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    turn.at,
                    turn.question,
                    turn.answer,
                    turn.query,
                    turn.declined,
                    self._to_json(list(turn.citations)),
                    self._to_json(list(turn.sources)),
                ),
            )
        return turn

    def prune(self, older_than_days: float) -> int:
        cutoff = prune_cutoff(older_than_days, self._clock)
        if cutoff is None:
            return 0
        with self._session() as db:
            removed: int = db.execute(
                "DELETE FROM conversations WHERE updated_at < ?", (cutoff,)
            ).rowcount
        return removed


class SqliteConversationStore(ConversationTables):
    """Thread-safe access to the conversations at `path` (created on first use); JSON
    columns are text. `clock` as for `ConversationTables`."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        super().__init__(clock, database.storable)
        self.path = path
        self._lock = threading.RLock()
        self._db = database.connect(path)
        with database.naming_damage(path):
            self._db.execute("PRAGMA foreign_keys=ON")  # for ON DELETE CASCADE
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _session(self) -> AbstractContextManager[Session]:
        return database.transaction(self._db, self._lock)

    def _to_json(self, value: Any) -> Any:
        return encode_json(value)

    def _from_json(self, value: Any) -> Any:
        return json.loads(value)
