"""The vector store. `chromadb` is imported here and nowhere else.

Chroma runs embedded (a local directory) by default, or as a server when a host is
configured. Lore always passes its own embeddings: Chroma's default embedding
function would download a model at run time, so it is never created.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import sys
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from rag.components.disk import is_disk_full, nearly_full
from rag.components.embeddings import Vectors
from rag.components.write_gate import WriteGate, passing
from rag.errors import (
    ConfigError,
    DiskFull,
    EmbedderChanged,
    NotFound,
    StoreDamaged,
    StoreInUse,
    StoreUnavailable,
)
from rag.types import Chunk, Passage

# What Chroma's errors say when a file of its folder is damaged (it names no file).
_DAMAGE_SIGNS = ("malformed", "not a database", "corrupt")


def damaged_vector_store(exc: BaseException) -> bool:
    """Whether a Chroma error says a file of its folder is damaged."""
    return type(exc).__module__.startswith("chromadb") and any(
        sign in str(exc) for sign in _DAMAGE_SIGNS
    )


# Chroma caps one add() call; keep batches well below it.
_WRITE_BATCH = 1000
# Ids read a page at a time.
_READ_PAGE = 5000
# The runs of neighbouring chunks `heading_sample` reads from a large collection: few,
# since Chroma steps over every chunk before an offset (docs/benchmarks.md, examples).
_SAMPLE_RUNS = 4


class VectorStore(Protocol):
    """Chunks and their vectors, grouped in named collections.

    A collection exists once `create_collection` or `add` made it, until
    `drop_collection`. Every other method that names a collection raises `NotFound` when
    it does not exist, whatever else it is given (an empty list of ids included), so a
    missing collection is the same answer to every reader. Chunk ids are unique within
    a collection. tests/contract/test_vector_store.py holds every implementation to this.
    """

    def add(self, collection: str, chunks: Sequence[Chunk], vectors: Vectors) -> None:
        """Store `chunks` with one vector each (row i is chunk i's), making the collection
        if it is missing. A chunk id already stored is replaced, never stored twice.
        ValueError when the counts of chunks and vectors differ."""
        ...

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        doc_ids: Collection[str] | None = None,
    ) -> list[Passage]:
        """The `k` chunks nearest to `vector`, nearest first, each scored by its cosine
        similarity to `vector` (1.0 for the same direction); fewer when the collection
        holds fewer. With `doc_ids`, only chunks of those documents (none for an empty
        set)."""
        ...

    def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        """Every chunk of document `doc_id`, as it was added, by `chunk_index`; [] when
        the collection holds none of it."""
        ...

    def chunks_with_vectors(
        self, collection: str, chunk_ids: Sequence[str]
    ) -> list[tuple[Chunk, Vectors]]:
        """The chunks with these ids and their stored vectors (float32, as added); ids
        the collection does not hold are left out."""
        ...

    def delete_chunks(self, collection: str, chunk_ids: Sequence[str]) -> None:
        """Remove the chunks with these ids; ids the collection does not hold are ignored."""
        ...

    def chunk_counts(self, collection: str) -> dict[str, int]:
        """How many chunks each document of the collection has ({} when it is empty)."""
        ...

    def chunk_ids(self, collection: str) -> set[str]:
        """The ids of every chunk the collection holds."""
        ...

    def chunk_pages(self, collection: str, size: int) -> Iterator[list[Chunk]]:
        """Every chunk of the collection, `size` at a time (the last page may be shorter).
        Chunks added or removed meanwhile may be missed or given twice."""
        ...

    def heading_sample(self, collection: str, size: int) -> list[tuple[str, str]]:
        """The (doc_id, heading) of at most `size` chunks spread over the whole collection
        (of every chunk when it holds no more; "" for a chunk under no heading), the same
        ones while it does not change. Cheap however large the collection: a glimpse of
        what it holds, not a scan."""
        ...

    def list_collections(self) -> list[str]:
        """The names of the collections that exist, sorted (the hidden copies that
        `stage` makes are not among them)."""
        ...

    def recorded_embedders(self) -> set[str]:
        """The embedder names the existing collections were built with ({} for none)."""
        ...

    def embedder_of(self, collection: str) -> str | None:
        """The embedder `collection` was built with; None when it records none, or when
        the collection does not exist."""
        ...

    def for_embedder(self, embedder_name: str) -> VectorStore:
        """This store, reading and writing as the embedder `embedder_name`: for the
        collections built with it. It shares this store's client; closing it does nothing."""
        ...

    # -- re-embedding a collection (ingest/reindex.py) -------------------------

    def stage(self, collection: str) -> tuple[str, bool]:
        """A hidden collection to re-embed `collection` into, built with this store's
        embedder: its name, and whether it was there already (a re-embedding resumed).
        One built with another embedder is dropped first, and a new one made."""
        ...

    def staged(self) -> dict[str, str]:
        """The collections with a hidden copy staged: {collection: the copy's embedder}."""
        ...

    def switch(self, collection: str) -> None:
        """Put `collection`'s staged copy in its place and drop the old one: readers
        find either the old collection or the new, never both or neither (a reader that
        comes between the two steps waits for the second). NotFound when nothing is
        staged for it."""
        ...

    def settle(self) -> list[str]:
        """Finish the switches a crash interrupted; the names of the collections whose
        switch was finished ([] for none)."""
        ...

    def drop_staged(self, collection: str) -> bool:
        """Drop `collection`'s staged copy; whether there was one."""
        ...

    def create_collection(self, collection: str) -> None:
        """Make an empty collection (nothing happens if it exists)."""
        ...

    def drop_collection(self, collection: str) -> None:
        """Remove a collection and whatever it still holds (nothing happens if it is gone)."""
        ...

    def close(self) -> None:
        """Let go of the client; the store is not used afterwards."""
        ...


def require_collection(store: VectorStore, name: str, *, missing: str | None = None) -> None:
    """Returns if `store` holds the collection `name`; NotFound otherwise, saying `missing`
    (by default "Collection '<name>' does not exist.").

    The one check that a collection exists before work begins: routes, commands and
    document use cases all call it, each with the message its callers have always had.
    """
    if name not in store.list_collections():
        raise NotFound(missing or f"Collection '{name}' does not exist.")


# A hidden collection's metadata says what it is ("staged": a copy being re-embedded;
# "retired": the collection it replaced, for the moment of the switch) and of which
# collection. Hidden collections are named by a digest of that collection's name, so a
# name of any length fits Chroma's limit.
_HIDDEN = "lore_hidden"
_OF = "lore_copy_of"
# How long a reader waits for a switch between its two steps (milliseconds, normally).
_SWITCH_WAIT_S = 5.0


def _hidden_name(kind: str, collection: str) -> str:
    return f"lore-{kind}-{hashlib.sha256(collection.encode()).hexdigest()[:24]}"


def _hidden(collection: Any) -> tuple[str, str] | None:
    """(kind, of which collection) for a hidden collection, None for one readers see."""
    meta = collection.metadata or {}
    if _HIDDEN not in meta:
        return None
    return str(meta[_HIDDEN]), str(meta.get(_OF, ""))


def _own_metadata(collection: Any, **changes: str | None) -> dict[str, Any]:
    """A collection's metadata as `modify` takes it (Chroma's `hnsw:` keys left out: they
    may not change), with `changes` made (None removes a key)."""
    meta = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


def _metadata(chunk: Chunk) -> dict[str, str | int]:
    meta: dict[str, str | int] = {
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "title": chunk.title,
        "chunk_index": chunk.chunk_index,
        "content_hash": chunk.content_hash,
    }
    if chunk.page is not None:  # Chroma metadata values cannot be None.
        meta["page"] = chunk.page
    if chunk.heading:
        meta["heading"] = chunk.heading
    if chunk.orders:  # Chroma metadata values are scalars: "12:80,150:210"
        meta["orders"] = ",".join(f"{a}:{b}" for a, b in chunk.orders)
    return meta


def _orders(value: object) -> tuple[tuple[int, int], ...]:
    if not value:
        return ()
    pairs = (piece.split(":") for piece in str(value).split(","))
    return tuple((int(a), int(b)) for a, b in pairs)


def _chunk(chunk_id: str, text: str | None, meta: dict[str, Any]) -> Chunk:
    page = meta.get("page")
    return Chunk(
        id=chunk_id,
        doc_id=str(meta["doc_id"]),
        text=text or "",
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        chunk_index=int(meta.get("chunk_index", 0)),
        content_hash=str(meta.get("content_hash", "")),
        page=int(page) if page is not None else None,
        heading=str(meta.get("heading", "")),
        orders=_orders(meta.get("orders")),
    )


def _persistent_client(path: Path) -> Any:
    """Chroma's client of the folder `path`; StoreDamaged when its database is damaged."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    path.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
    except Exception as exc:
        if any(sign in str(exc) for sign in _DAMAGE_SIGNS):
            raise StoreDamaged.file(path / "chroma.sqlite3", exc) from None
        if is_disk_full(exc):
            raise DiskFull(
                f"The vector store in {path} cannot open: its disk is full. Free space on it."
            ) from None
        raise


# The folders this process holds, with the open lock file of each: a lock is held by its
# open file, so the file stays open for as long as the process lives.
_HELD: dict[Path, IO[str]] = {}
_HELD_LOCK = threading.Lock()


def hold_folder(path: Path) -> None:
    """Take `path`'s lock file (`lore.lock`) for this process, for as long as it lives, or
    raise StoreInUse naming the process that has it. Taking it again does nothing."""
    key = path.resolve()
    with _HELD_LOCK:
        if key in _HELD:
            return
        handle = (key / "lore.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreInUse(
                f"The vector store in {key} is being written by another Lore process "
                f"({holder}). One process at a time may write to a store in a folder: stop "
                "that process, or give it the work (a running `lore serve` takes uploads "
                "and ingest jobs), or run Lore in cluster mode with a Chroma server "
                "(docs/cluster.md)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv[:3])[:200]}\n")
        handle.flush()
        _HELD[key] = handle


@dataclass
class _Connection:
    """A Chroma client, shared by a store and the stores its `for_embedder` gives; closed
    by `_full_disk` after a failure, and a new one opened on the next call (`_live`)."""

    client: Any
    closed: bool = False


class ChromaStore:
    """A `VectorStore` on Chroma, embedded or client/server.

    Each collection records the embedder it was built with. Querying or adding with
    another embedder is refused, because vectors from two models don't compare. A store
    opened with no embedder name (None) is for inspecting and repairing: it reads any
    collection, removes chunks, and makes none.
    """

    def __init__(
        self,
        client: Any,
        embedder_name: str | None,
        folder: Path | None = None,
        gate: WriteGate | None = None,
    ):
        self._conn = _Connection(client)  # shared with the stores `for_embedder` gives
        self._owner = True
        self._embedder_name = embedder_name
        self._folder = folder
        self._gate = gate

    @classmethod
    def embedded(
        cls, path: Path, embedder_name: str | None, gate: WriteGate | None = None
    ) -> ChromaStore:
        """The Chroma folder at `path`. Any number of processes may read it; the first
        that writes holds it until it exits, and a write from another process is refused
        with StoreInUse (two writers would damage its index). Each write passes `gate`
        (rag/components/write_gate.py)."""

        return cls(_persistent_client(path), embedder_name, path, gate)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Around any write: an embedded folder is held (`hold_folder`), its gate passed,
        and a full disk reported as `_full_disk` does."""
        if self._folder is not None:
            hold_folder(self._folder)
        with passing(self._gate), self._full_disk():
            yield

    @contextmanager
    def _full_disk(self) -> Iterator[None]:
        """Around any call to an embedded Chroma. After one fails with Chroma's
        InternalError, its client would wait forever on the next call (chromadb 1.5, seen
        after a write found the disk full, even once space was freed): the client is
        closed, and a new one opened on the next call (`_live`). On a nearly full disk the
        failure is raised as OSError(ENOSPC), since Chroma's error does not say why
        ("Failed to apply logs to the metadata segment"); reads fail too then, as they
        apply its log.

        Embedded or not, a collection that vanished under a call already given its
        handle was switched for its re-embedded copy (or dropped) meanwhile: that is
        EmbedderChanged, for the caller to choose its collection's embedder again."""
        try:
            yield
        except Exception as exc:
            if type(exc).__name__ == "NotFoundError":
                raise EmbedderChanged(
                    "The collection was switched to another embedder during this request; "
                    "ask again."
                ) from exc
            if self._folder is None or type(exc).__name__ != "InternalError":
                raise
            self._conn.client.close()
            self._conn.closed = True
            if not nearly_full(self._folder):
                raise
            raise OSError(errno.ENOSPC, f"no space left for the vector store ({exc})") from exc

    @property
    def _live(self) -> Any:
        """The Chroma client, a new one when `_full_disk` closed the last; while the disk
        stays nearly full, none (OSError(ENOSPC)): Chroma is not asked then."""
        conn = self._conn
        if conn.closed and self._folder is not None:
            if nearly_full(self._folder):
                raise OSError(errno.ENOSPC, "no space left for the vector store")
            conn.client = _persistent_client(self._folder)
            conn.closed = False
        return conn.client

    @classmethod
    def server(cls, host: str, port: int, ssl: bool, embedder_name: str) -> ChromaStore:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        try:
            client = chromadb.HttpClient(
                host=host, port=port, ssl=ssl, settings=ChromaSettings(anonymized_telemetry=False)
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreUnavailable(f"Cannot reach the Chroma server at {host}:{port}.") from exc
        return cls(client, embedder_name)

    def close(self) -> None:
        """Let go of the client (an embedded folder's files); the store is not used after.
        A store `for_embedder` gave leaves the client to the store it came from."""
        if self._owner:
            self._conn.client.close()

    def for_embedder(self, embedder_name: str) -> ChromaStore:
        sibling = ChromaStore(None, embedder_name, self._folder, self._gate)
        sibling._conn = self._conn
        sibling._owner = False
        return sibling

    # -- collections --------------------------------------------------------

    def _get(self, name: str) -> Any | None:
        """The collection `name`, or None."""
        from chromadb.errors import NotFoundError

        try:
            return self._live.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            return None

    def _existing(self, name: str) -> Any:
        collection = self._get(name)
        # Between a switch's two steps the collection is briefly absent, its old self
        # retired: wait for the new one.
        deadline = time.monotonic() + _SWITCH_WAIT_S
        while collection is None and time.monotonic() < deadline:
            if self._get(_hidden_name("retired", name)) is None:
                break
            time.sleep(0.01)
            collection = self._get(name)
        if collection is None:
            raise NotFound(f"Collection '{name}' does not exist; ingest documents into it first.")
        return collection

    def _checked(self, name: str) -> Any:
        """`_existing`, for reading vectors: EmbedderChanged when it was built with
        another embedder than this store's (its vectors don't compare)."""
        collection = self._existing(name)
        self._check_embedder(collection)
        return collection

    def _create_or_get(self, name: str) -> Any:
        if self._embedder_name is None:
            raise ConfigError(f"Collection '{name}' can't be made by a store opened to inspect it.")
        if self._get(name) is None and self._get(_hidden_name("retired", name)) is not None:
            self.settle()  # a switch cut short: finish it, rather than make the name anew
        collection = self._live.get_or_create_collection(
            name,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "lore_embedder": self._embedder_name},
        )
        self._check_embedder(collection)
        return collection

    def _check_embedder(self, collection: Any) -> None:
        built_with = (collection.metadata or {}).get("lore_embedder")
        if built_with and self._embedder_name is not None and built_with != self._embedder_name:
            raise EmbedderChanged(
                f"Collection '{collection.name}' was built with the embedder '{built_with}', "
                f"but '{self._embedder_name}' is configured. Use that embedder (embedding_model, "
                "and embedding_backend: onnx for a name ending in -onnx-int8, else "
                "sentence_transformers), "
                "or ingest into a new collection."
            )

    def list_collections(self) -> list[str]:
        names = set()
        for collection in self._live.list_collections():
            hidden = _hidden(collection)
            if hidden is None:
                names.add(collection.name)
            elif hidden[0] == "retired":  # a switch between its two steps, or cut short
                names.add(hidden[1])
        return sorted(names)

    def recorded_embedders(self) -> set[str]:
        collections = self._live.list_collections()
        names = ((c.metadata or {}).get("lore_embedder") for c in collections if not _hidden(c))
        return {str(name) for name in names if name}

    def embedder_of(self, collection: str) -> str | None:
        found = self._get(collection)
        built_with = (found.metadata or {}).get("lore_embedder") if found is not None else None
        return str(built_with) if built_with else None

    # -- re-embedding -------------------------------------------------------

    def stage(self, collection: str) -> tuple[str, bool]:
        if self._embedder_name is None:
            raise ConfigError("A store opened to inspect collections can't stage one.")
        name = _hidden_name("staged", collection)
        with self._writing():
            found = self._get(name)
            if found is not None:
                if (found.metadata or {}).get("lore_embedder") == self._embedder_name:
                    return name, True
                self._live.delete_collection(name)
            self._live.create_collection(
                name,
                embedding_function=None,
                metadata={
                    "hnsw:space": "cosine",
                    "lore_embedder": self._embedder_name,
                    _HIDDEN: "staged",
                    _OF: collection,
                },
            )
        return name, False

    def staged(self) -> dict[str, str]:
        found = {}
        for collection in self._live.list_collections():
            hidden = _hidden(collection)
            if hidden is not None and hidden[0] == "staged":
                found[hidden[1]] = str((collection.metadata or {}).get("lore_embedder", ""))
        return found

    def switch(self, collection: str) -> None:
        staged = self._get(_hidden_name("staged", collection))
        if staged is None:
            raise NotFound(f"Nothing is staged to replace collection '{collection}'.")
        retired = _hidden_name("retired", collection)
        with self._writing():
            old = self._get(collection)
            if old is not None:
                old.modify(
                    name=retired,
                    metadata=_own_metadata(old, **{_HIDDEN: "retired", _OF: collection}),
                )
            try:
                staged.modify(
                    name=collection, metadata=_own_metadata(staged, **{_HIDDEN: None, _OF: None})
                )
            except Exception:
                if old is not None:  # put the old one back: the switch did not happen
                    old.modify(name=collection, metadata=_own_metadata(old))
                raise
            self._drop(retired)

    def settle(self) -> list[str]:
        finished = []
        for collection in self._live.list_collections():
            hidden = _hidden(collection)
            if hidden is None or hidden[0] != "retired":
                continue
            of = hidden[1]
            staged = self._get(_hidden_name("staged", of))
            if self._get(of) is not None and staged is not None:
                # Not a switch cut short (its second step renames the staged copy): leave
                # both copies for `lore doctor` to show rather than drop either.
                continue
            with self._writing():
                if self._get(of) is None:  # cut short between the two steps
                    staged = self._get(_hidden_name("staged", of))
                    back = staged if staged is not None else collection
                    back.modify(name=of, metadata=_own_metadata(back, **{_HIDDEN: None, _OF: None}))
                self._drop(collection.name)
            finished.append(of)
        return sorted(finished)

    def drop_staged(self, collection: str) -> bool:
        name = _hidden_name("staged", collection)
        if self._get(name) is None:
            return False
        with self._writing():
            self._drop(name)
        return True

    def _drop(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        with contextlib.suppress(NotFoundError, ValueError):
            self._live.delete_collection(name)

    def create_collection(self, collection: str) -> None:
        with self._writing():
            self._create_or_get(collection)

    def drop_collection(self, collection: str) -> None:
        with self._writing():
            self._drop(collection)

    # -- chunks -------------------------------------------------------------

    def add(self, collection: str, chunks: Sequence[Chunk], vectors: Vectors) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        with self._writing():
            target = self._create_or_get(collection)
            for start in range(0, len(chunks), _WRITE_BATCH):
                batch = chunks[start : start + _WRITE_BATCH]
                target.upsert(
                    ids=[c.id for c in batch],
                    documents=[c.text for c in batch],
                    metadatas=[_metadata(c) for c in batch],
                    embeddings=np.asarray(vectors[start : start + _WRITE_BATCH], dtype=np.float32),
                )

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        doc_ids: Collection[str] | None = None,
    ) -> list[Passage]:
        with self._full_disk():
            return self._query(collection, vector, k, doc_ids)

    def _query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        doc_ids: Collection[str] | None,
    ) -> list[Passage]:
        target = self._checked(collection)
        if doc_ids is not None and not doc_ids:
            return []
        result = target.query(
            query_embeddings=[list(vector)],
            n_results=k,
            where={"doc_id": {"$in": sorted(doc_ids)}} if doc_ids is not None else None,
            include=["documents", "metadatas", "distances"],
        )
        passages = []
        for chunk_id, text, meta, distance in zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        ):
            # Cosine distance is 1 - cosine similarity.
            passages.append(Passage(_chunk(chunk_id, text, meta), score=1.0 - float(distance)))
        return passages

    def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        target = self._existing(collection)
        with self._full_disk():
            result = target.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        chunks = [
            _chunk(i, text, meta)
            for i, text, meta in zip(
                result["ids"], result["documents"], result["metadatas"], strict=True
            )
        ]
        return sorted(chunks, key=lambda c: c.chunk_index)

    def chunks_with_vectors(
        self, collection: str, chunk_ids: Sequence[str]
    ) -> list[tuple[Chunk, Vectors]]:
        target = self._checked(collection)
        if not chunk_ids:
            return []
        with self._full_disk():
            result = target.get(
                ids=list(chunk_ids), include=["documents", "metadatas", "embeddings"]
            )
        return [
            (_chunk(i, text, meta), np.asarray(vector, dtype=np.float32))
            for i, text, meta, vector in zip(
                result["ids"],
                result["documents"],
                result["metadatas"],
                result["embeddings"],
                strict=True,
            )
        ]

    def delete_chunks(self, collection: str, chunk_ids: Sequence[str]) -> None:
        self._existing(collection)  # NotFound now, before waiting on the gate
        with self._writing():
            target = self._existing(collection)  # as it is once the gate lets us in
            for start in range(0, len(chunk_ids), _WRITE_BATCH):
                target.delete(ids=list(chunk_ids[start : start + _WRITE_BATCH]))

    def chunk_ids(self, collection: str) -> set[str]:
        target = self._existing(collection)
        ids: set[str] = set()
        total = target.count()
        for offset in range(0, total, _READ_PAGE):
            with self._full_disk():
                ids.update(target.get(include=[], limit=_READ_PAGE, offset=offset)["ids"])
        return ids

    def chunk_pages(self, collection: str, size: int) -> Iterator[list[Chunk]]:
        target = self._existing(collection)
        offset = 0
        while True:
            with self._full_disk():
                page = target.get(include=["documents", "metadatas"], limit=size, offset=offset)
            if not page["ids"]:
                return
            yield [
                _chunk(i, text, meta)
                for i, text, meta in zip(
                    page["ids"], page["documents"], page["metadatas"], strict=True
                )
            ]
            offset += len(page["ids"])

    def heading_sample(self, collection: str, size: int) -> list[tuple[str, str]]:
        target = self._existing(collection)
        total = target.count()
        # Runs of neighbouring chunks (one read each), spread evenly: neighbours mostly
        # share a document, so the runs reach documents all over the collection.
        runs = 1 if total <= size else min(_SAMPLE_RUNS, size)
        pairs: list[tuple[str, str]] = []
        for run in range(runs):
            with self._full_disk():
                page = target.get(
                    include=["metadatas"], limit=size // runs, offset=run * total // runs
                )
            pairs += [(str(m["doc_id"]), str(m.get("heading", ""))) for m in page["metadatas"]]
        return pairs

    def chunk_counts(self, collection: str) -> dict[str, int]:
        # A full scan: for consistency checks, not for every request.
        target = self._existing(collection)
        counts: dict[str, int] = {}
        total = target.count()
        for offset in range(0, total, _WRITE_BATCH):
            with self._full_disk():
                page = target.get(include=["metadatas"], limit=_WRITE_BATCH, offset=offset)
            for meta in page["metadatas"]:
                doc_id = str(meta["doc_id"])
                counts[doc_id] = counts.get(doc_id, 0) + 1
        return counts
