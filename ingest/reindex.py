"""Re-embedding a collection with another embedding model while it keeps answering.

`lore reindex --embedding-model NAME` (or `POST /v1/collections/{name}/reindex` on a
running server) goes in three steps:

1. **Stage.** A hidden copy of the collection is made in the vector store, recording
   the new embedder (`VectorStore.stage`). Readers never see it.
2. **Copy.** Every chunk of the collection, its text and metadata as they are, is
   embedded anew into the copy, a page at a time. The copy is its own progress record:
   a run cut short (a crash, Ctrl-C) resumes by copying only the chunks it lacks.
   Queries and ingests go on meanwhile, against the old collection.
3. **Switch.** With writes paused (the data directory's write gate closed, and in
   cluster mode the collection's batch claim held), what was written or removed since
   the copy began is caught up, the manifest records the documents as made with the new
   embedder, and the copy takes the collection's place (`VectorStore.switch`). A query
   answers from the old collection or the new, never from both; a request that chose
   the old embedder just before the switch chooses again (`Lore.on_collection`). A
   switch cut short by a crash is finished when the store is next settled
   (`VectorStore.settle`: at `lore serve`'s start, and by the next reindex).

The keyword index and the manifest hold chunk ids and texts, which a new embedder does
not change: they serve the old collection and the new alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ingest.pipeline import pipeline_version
from rag.components.store import require_collection
from rag.container import data_gate
from rag.errors import Busy, InvalidInput, LoreError
from rag.models import CATALOGUE, get_spec
from rag.types import Chunk

if TYPE_CHECKING:
    from rag.container import Lore

log = logging.getLogger(__name__)

# Chunks read from the old collection, embedded and written to the copy at a time.
PAGE = 256

# Told how many chunks of how many the copy holds.
ReindexProgress = Callable[[int, int], None]


@dataclass
class ReindexReport:
    collection: str
    embedder: str  # the embedder the collection is built with now (or would be)
    previous: str  # the one it was built with before
    chunks: int = 0  # chunks in the collection when it switched
    embedded: int = 0  # chunks this run embedded
    resumed: bool = False  # a copy left by an earlier run was continued
    unchanged: bool = False  # the collection was built with that embedder already
    switched: bool = False  # the copy took the collection's place
    seconds: float = 0.0
    paused_s: float = 0.0  # how long writes waited for the switch

    def as_json(self) -> dict[str, object]:
        return {
            "collection": self.collection,
            "embedder": self.embedder,
            "previous": self.previous,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "resumed": self.resumed,
            "unchanged": self.unchanged,
            "switched": self.switched,
            "seconds": round(self.seconds, 1),
            "paused_s": round(self.paused_s, 2),
        }


class Stopped(Exception):
    """The reindex was asked to stop; its copy is kept for the next run to resume."""


def reindex(
    lore: Lore,
    collection: str,
    model: str,
    *,
    progress: ReindexProgress | None = None,
    stop: threading.Event | None = None,
    patience_s: float = 120.0,
) -> ReindexReport:
    """Re-embed `collection` with the embedding model `model` and switch it over (see the
    module). Raises Stopped when `stop` is set mid-copy, Busy when writes don't pause for
    the switch within `patience_s`, NotFound for a missing collection and ModelMissing
    for a model that is not installed; the copy made so far is kept in every case."""
    started = time.perf_counter()
    require_collection(lore.store, collection)
    for finished in lore.store.settle():
        log.warning("Finished the switch of collection '%s' that a crash cut short", finished)
    old = lore.for_collection(collection)
    new = lore.with_embedding_model(model)
    report = ReindexReport(collection, new.embedder_name, old.embedder_name)
    if new.embedder_name == old.embedder_name:
        report.unchanged = True
        return report
    _ = new.embedder  # loaded now: a missing model is said before any work
    staged, report.resumed = new.store.stage(collection)
    report.embedded = _copy(old, new, collection, staged, progress, stop)
    report.embedded += _catch_up(old, new, collection, staged)  # most of it, writes going on
    with _writes_paused(lore, collection, patience_s):
        pause_began = time.perf_counter()
        report.embedded += _catch_up(old, new, collection, staged)
        report.chunks = len(new.store.chunk_ids(staged))
        new.store.switch(collection)
        report.paused_s = time.perf_counter() - pause_began
        # Its documents are now as the new embedder's ingest would make them, but for
        # how the text was cut (see docs/operations.md): a later ingest of the same files
        # finds them current. A crash before this line costs that ingest its speed only.
        lore.manifest.repipe(collection, pipeline_version(old), pipeline_version(new))
    report.switched = True
    report.seconds = time.perf_counter() - started
    return report


def abandon(lore: Lore, collection: str) -> bool:
    """Drop the copy an unfinished reindex of `collection` left; whether there was one."""
    return lore.store.drop_staged(collection)


def _copy(
    old: Lore,
    new: Lore,
    collection: str,
    staged: str,
    progress: ReindexProgress | None,
    stop: threading.Event | None,
) -> int:
    """Embed every chunk of `collection` the copy lacks into it; how many were embedded."""
    present = new.store.chunk_ids(staged)
    wanted = old.store.chunk_ids(collection)
    done = len(present & wanted)
    embedded = 0
    if progress is not None:
        progress(done, len(wanted))
    for page in old.store.chunk_pages(collection, PAGE):
        if stop is not None and stop.is_set():
            raise Stopped(
                f"The reindex of '{collection}' stopped with {done} of {len(wanted)} chunks "
                "copied; run it again to go on from there."
            )
        lacking = [chunk for chunk in page if chunk.id not in present]
        if not lacking:
            continue
        _embed_into(new, staged, lacking)
        present.update(chunk.id for chunk in lacking)
        embedded += len(lacking)
        done += sum(chunk.id in wanted for chunk in lacking)
        if progress is not None:
            progress(done, len(wanted))
    return embedded


def _catch_up(old: Lore, new: Lore, collection: str, staged: str) -> int:
    """Make the copy hold exactly the chunks the collection holds now: embed those
    written since they were read, drop those removed since; how many were embedded."""
    wanted = old.store.chunk_ids(collection)
    present = new.store.chunk_ids(staged)
    gone = sorted(present - wanted)
    if gone:
        new.store.delete_chunks(staged, gone)
    lacking = sorted(wanted - present)
    for start in range(0, len(lacking), PAGE):
        ids = lacking[start : start + PAGE]
        chunks = [chunk for chunk, _ in old.store.chunks_with_vectors(collection, ids)]
        _embed_into(new, staged, chunks)
    return len(lacking)


def _embed_into(new: Lore, staged: str, chunks: list[Chunk]) -> None:
    """Embed `chunks` with the new embedder into the copy, their sentences that read as
    orders to an AI assistant found again as the new embedder's ingest would find them
    (rag/answering/injection.py: its classifier is made for one embedder)."""
    chunks = new.injection.marked([replace(chunk, orders=()) for chunk in chunks])
    vectors = new.embedder.embed_documents([chunk.embedding_text() for chunk in chunks])
    new.store.add(staged, chunks, vectors)


@contextmanager
def _writes_paused(lore: Lore, collection: str, patience_s: float) -> Iterator[None]:
    """No document is written into `collection` by anyone else inside the block: the
    data directory's write gate is closed (this thread alone writes), and in cluster mode
    no other batch holds the collection (Busy when one does: they run on other hosts)."""
    with lore.claims.batch(collection) as claims:
        if not claims.sole:
            raise Busy(
                f"Documents are being written into '{collection}' by another process; the "
                "re-embedded copy is kept, so run the reindex again once that ingest is done.",
                retry_after_s=60,
            )
        with data_gate(lore.settings).closed(patience_s, writer=True):
            yield


def check_model_name(model: str) -> str:
    """`model` stripped: `hashing` or an embedding model of the catalogue; InvalidInput
    for anything else."""
    name = model.strip()
    if not name:
        raise InvalidInput("Name the embedding model to re-embed with (--embedding-model).")
    if name != "hashing":
        known = sorted(s.name for s in CATALOGUE.values() if s.kind == "embedding")
        if name not in CATALOGUE:
            raise InvalidInput(
                f"Unknown embedding model '{name}'. Embedding models: {', '.join(known)} "
                "(or `hashing`, for tests)."
            )
        if get_spec(name).kind != "embedding":
            raise InvalidInput(
                f"'{name}' is a chat model, not an embedding model. Embedding models: "
                f"{', '.join(known)} (or `hashing`, for tests)."
            )
    return name


def prepare(lore: Lore, collection: str, model: str) -> Lore:
    """Check a reindex can begin: the collection exists, the model is an embedding model
    and is installed (it is loaded now). Returns the Lore for the new embedder."""
    require_collection(lore.store, collection)
    new = lore.with_embedding_model(check_model_name(model))
    _ = new.embedder
    return new


@dataclass
class ReindexTask:
    """A reindex a server runs in the background, as `GET .../reindex` shows it."""

    collection: str
    model: str
    state: str = "running"  # running, switched, unchanged, stopped, failed
    done: int = 0
    total: int | None = None
    error: str | None = None
    report: ReindexReport | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "collection": self.collection,
            "embedding_model": self.model,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "error": self.error,
            "report": self.report.as_json() if self.report else None,
        }


class ReindexRunner:
    """Runs reindexes in a thread of this process, one at a time: how a running `lore
    serve`, which holds its embedded vector store, re-embeds a collection while it goes
    on answering. A run stopped by `close` (the server stopping) resumes when asked again."""

    def __init__(self, lore: Lore, on_end: Callable[[ReindexTask], None] | None = None):
        self._lore = lore
        self._on_end = on_end
        self._tasks: dict[str, ReindexTask] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, collection: str, model: str) -> ReindexTask:
        """Begin re-embedding `collection` with `model`; Busy while another runs here.
        A missing collection or model is said now (NotFound, ModelMissing)."""
        model = check_model_name(model)
        with self._lock:
            self._refuse_while_running()
        prepare(self._lore, collection, model)
        with self._lock:
            self._refuse_while_running()
            task = ReindexTask(collection, model)
            self._tasks[collection] = task
            self._thread = threading.Thread(
                target=self._run, args=(task,), name=f"reindex-{collection}", daemon=True
            )
            self._thread.start()
            return task

    def _refuse_while_running(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        running = [t.collection for t in self._tasks.values() if t.state == "running"]
        name = running[0] if running else "a collection"
        raise Busy(
            f"The reindex of '{name}' is running; one runs at a time. Follow it at "
            f"GET /v1/collections/{name}/reindex.",
            retry_after_s=60,
        )

    def get(self, collection: str) -> ReindexTask | None:
        """The last reindex of `collection` this process ran or runs; None for none."""
        with self._lock:
            return self._tasks.get(collection)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop a running reindex between two pages (its copy is kept) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, task: ReindexTask) -> None:
        def on_progress(done: int, total: int) -> None:
            task.done, task.total = done, total

        try:
            task.report = reindex(
                self._lore, task.collection, task.model, progress=on_progress, stop=self._stop
            )
            task.state = "unchanged" if task.report.unchanged else "switched"
        except Stopped as exc:
            task.state, task.error = "stopped", str(exc)
        except LoreError as exc:
            task.state, task.error = "failed", str(exc)
        except Exception:
            log.exception("The reindex of '%s' failed", task.collection)
            task.state, task.error = "failed", "Something went wrong; the server's log says what."
        if self._on_end is not None:
            self._on_end(task)
