"""Batch ingestion of directory trees: parsing in a process pool, embedding in batches.

Files are planned (hashed, checked against the manifest) in this process, parsed in
worker processes that each have a time limit per file and a memory cap, then
embedded together in batches and written one document at a time. Each document
becomes visible in its own manifest transaction, so an interrupted job (Ctrl-C,
kill -9, power loss) keeps every file it finished, and the next run picks up the rest.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from ingest.parsing import is_archive
from ingest.pipeline import (
    EMBED_GROUP,
    Built,
    ChunkPlan,
    Failure,
    IngestResult,
    Todo,
    build_document,
    chunk_plan,
    content_key,
    embed_in_steps,
    ingest_archive,
    iter_files,
    plan,
    record_failure,
    recover,
    remove_missing,
    skip_reason,
    skipped,
    write,
)
from rag.components.claims import BatchClaims
from rag.components.cpus import available_cpus
from rag.components.memory import return_free_memory
from rag.components.offline import force_offline
from rag.container import Lore
from rag.errors import LoreError


def default_workers() -> int:
    """Parsing processes: half the CPUs this process may use (the embedder uses the
    rest), at least one."""
    return max(1, available_cpus() // 2)


@dataclass(frozen=True)
class BatchOptions:
    workers: int = field(default_factory=default_workers)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    timeout_s: float = 300.0
    memory_mb: int = 3072
    embed_batch: int = 64
    sync: bool = False
    # "spawn" starts parsers from a fresh interpreter (about 60 MB before parsing). A
    # forked parser would start as a copy of this process, model and all, and Python's
    # reference counting soon turns the shared pages into private copies.
    start_method: str = "spawn"


@dataclass
class BatchReport:
    """What a batch job did, for the summary line and `--report FILE`."""

    collection: str
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    # Files found but left out, each with its reason (ingest/pipeline.py, SKIP_REASONS).
    skips: list[dict[str, str]] = field(default_factory=list)
    # Files unchanged since they failed: counted `unchanged` (or `duplicate`), not read
    # again, and listed here with the failure recorded then.
    still_failing: list[dict[str, str]] = field(default_factory=list)
    # The members of the archives unpacked, by outcome; they are listed with the files
    # in `failures`, `skipped_files` and the rest, named `archive.zip!/member`.
    members: dict[str, int] = field(default_factory=dict)
    # Files with passages that read as instructions to an AI assistant, and how many.
    flagged: list[dict[str, str | int]] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {
            "plan": 0.0,
            "parse": 0.0,
            "embed": 0.0,
            "write": 0.0,
            "total": 0.0,
        }
    )
    interrupted: bool = False

    def add(self, result: IngestResult) -> None:
        """Count a file found; an archive's members are counted in `members`."""
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status in ("added", "updated"):
            self.chunks += result.chunks  # an archive's: its members'
        self._list(result)
        for member in result.members:
            self.members[member.status] = self.members.get(member.status, 0) + 1
            self._list(member)

    def _list(self, result: IngestResult) -> None:
        # Named as in every JSON Lore writes: `source` for readers, `path` for admins.
        entry = {"source": result.name, "path": result.source}
        if result.flagged and not result.members:
            self.flagged.append({**entry, "passages": result.flagged})
        said = {"code": result.error_code or "", "error": result.error or ""}
        if result.status in ("unchanged", "duplicate") and result.error_code:
            self.still_failing.append({**entry, **said})
        if result.status == "skipped":
            self.skips.append({**entry, "reason": said["code"], "error": said["error"]})
        if result.status == "failed":
            self.failures.append({**entry, **said})

    def as_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "files": self.files,
            **{status: self.counts.get(status, 0) for status in _STATUSES},
            "chunks": self.chunks,
            "archive_members": {status: self.members.get(status, 0) for status in _STATUSES},
            "failures": self.failures,
            "skipped_files": self.skips,
            "still_failing": self.still_failing,
            "flagged": self.flagged,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "interrupted": self.interrupted,
        }


_STATUSES = ("added", "updated", "unchanged", "duplicate", "failed", "skipped", "removed")

Progress = Callable[[int, int, IngestResult], None]
# Chunks embedded so far, of the chunks of the files parsed so far: what moves while one
# large file is being embedded.
ChunkProgress = Callable[[int, int], None]


def _worker_setup(memory_mb: int) -> None:
    """Runs in each parsing process: offline, capped memory, and Ctrl-C left to the parent."""
    force_offline()
    # Parsing never needs torch, but spaCy's thinc (unstructured's classifier) imports it
    # whenever it can: 200 MB in every parsing process. A None entry makes it fail softly.
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def parse_in_worker(
    path: str, doc_id: str, sha256: str, source: str, plan: ChunkPlan
) -> tuple[Built, float]:
    """Parse and chunk one file; returns what it gave and the seconds it took."""
    return_free_memory()  # what the previous file left behind
    started = time.perf_counter()
    try:
        built = build_document(Path(path), doc_id, sha256, source, plan)
    finally:
        # The parse's working memory (a big DOCX: 200 MB) is handed back now, not when
        # the next file comes, since the job may embed this file's chunks for a long time.
        return_free_memory()
    return built, time.perf_counter() - started


class _Batch:
    """Parsed documents waiting to be embedded together."""

    def __init__(self) -> None:
        self.items: list[tuple[Todo, Built]] = []

    @property
    def chunk_count(self) -> int:
        return sum(len(built.chunks) for _, built in self.items)


def run_batch(
    lore: Lore,
    paths: list[Path],
    collection: str,
    options: BatchOptions,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    selected: list[tuple[Path, str]] | None = None,
    pool: ProcessPool | None = None,
    chunk_progress: ChunkProgress | None = None,
    *,
    uploaded_by: str | None = None,
) -> BatchReport:
    """Ingest every selected file under `paths`. Failures are reported per file, never raised.

    `progress` is told of each file handled; `chunk_progress`, when given, of the chunks
    embedded (of those parsed), several times a file for a large one.

    On KeyboardInterrupt, or when `stop` is set, the job stops cleanly between files:
    finished documents stay indexed, the rest are picked up by the next run, and the
    report says `interrupted`. `selected`, when given, are the files to ingest, each
    with its name (as `iter_files` gives them); `paths` then only names the folders
    that `options.sync` looks in.

    Each file is claimed (`lore.claims`) from its plan until it is handled, so that no
    other process indexes it meanwhile; one that another process holds is set aside,
    waited for after the rest and planned again (it is then usually found unchanged).
    Files are parsed in `pool` (`parse_pool`) when given, which is left running; else in
    processes of the batch's own. The documents written are recorded as uploaded by
    `uploaded_by` (files uploaded through the API; None for any other).
    """
    started = time.perf_counter()
    if selected is None:
        selected = list(iter_files(paths))
    lore = lore.for_collection(collection)  # its own embedder, if `lore reindex` changed it
    with lore.claims.batch(collection) as claims:
        return _run_claimed(
            lore, paths, collection, options, progress, stop, selected, claims, started, pool,
            chunk_progress, uploaded_by,
        )  # fmt: skip


def _outcome(
    future: ProcessFuture[Any], todo: Todo, options: BatchOptions
) -> tuple[Built, float] | Failure:
    """What a parsing process made of a file and the seconds it took, or why it gave
    nothing."""
    try:
        result: tuple[Built, float] = future.result()
    except FutureTimeout:
        return Failure("timeout", f"{todo.name}: parsing took longer than {options.timeout_s:g} s.")
    except MemoryError:
        return Failure(
            "too_large", f"{todo.name}: parsing needed more than {options.memory_mb} MB of memory."
        )
    except ProcessExpired:
        return Failure("parser_crashed", f"{todo.name}: the parser crashed on this file.")
    except LoreError as exc:
        return Failure(exc.code, str(exc))
    return result


def parse_pool(options: BatchOptions) -> ProcessPool:
    """Parsing processes as `options` asks for. A batch makes its own and closes it; a
    process that runs batch after batch (a worker) may keep one and hand it to each, so
    that the processes start once (a few seconds each, importing the parsers)."""
    return ProcessPool(
        max_workers=options.workers,
        initializer=_worker_setup,
        initargs=(options.memory_mb,),
        context=multiprocessing.get_context(options.start_method),
    )


# How often a batch asks again for a file that another process is indexing.
CLAIM_POLL_S = 0.1


def _run_claimed(
    lore: Lore,
    paths: list[Path],
    collection: str,
    options: BatchOptions,
    progress: Progress | None,
    stop: threading.Event | None,
    files: list[tuple[Path, str]],
    claims: BatchClaims,
    started: float,
    pool: ProcessPool | None,
    chunk_progress: ChunkProgress | None = None,
    uploaded_by: str | None = None,
) -> BatchReport:
    report = BatchReport(collection)
    parsed = embedded = 0

    def count_embedded(more: int) -> None:
        nonlocal embedded
        embedded += more
        if chunk_progress is not None:
            chunk_progress(embedded, parsed)

    on_embedded = count_embedded if chunk_progress is not None else None
    if claims.sole:  # else a document left unfinished may be another batch's, mid-write
        recover(lore, collection)
    report.files = len(files)
    done = 0
    plan_for_chunks = chunk_plan(lore)

    def finish(result: IngestResult) -> None:
        nonlocal done
        claims.release(result.source)
        if result.doc_id:
            claims.release(content_key(result.doc_id))
        done += 1
        report.add(result)
        if progress is not None:
            progress(done, len(files), result)

    def flush(batch: _Batch) -> None:
        # Small documents are embedded together; a big one streams through `write`,
        # EMBED_GROUP chunks at a time, so its vectors never all sit in memory.
        nonlocal lore
        lore = lore.for_collection(collection)  # `lore reindex` may have switched it
        small = [built for _, built in batch.items if len(built.chunks) <= EMBED_GROUP]
        texts = [c.embedding_text() for built in small for c in built.chunks]
        began = time.perf_counter()
        vectors = embed_in_steps(lore, texts, on_embedded) if texts else None
        report.seconds["embed"] += time.perf_counter() - began
        offset = 0
        for todo, built in batch.items:
            chunks, details = built.chunks, built.details(uploaded_by)
            if vectors is None or len(chunks) > EMBED_GROUP:  # big: embedded as it is written
                written = write(
                    lore, collection, todo, built.title, chunks, seconds=report.seconds,
                    on_embedded=on_embedded, details=details,
                )  # fmt: skip
                finish(written)
                continue
            mine = vectors[offset : offset + len(chunks)]
            offset += len(chunks)
            finish(
                write(lore, collection, todo, built.title, chunks, mine, report.seconds,
                      details=details)
            )  # fmt: skip
        batch.items.clear()
        del texts, vectors
        return_free_memory()

    def settle(todo: Todo, future: ProcessFuture[Any], batch: _Batch) -> None:
        nonlocal parsed
        outcome = _outcome(future, todo, options)
        if isinstance(outcome, Failure):
            failed = record_failure(
                lore, collection, todo, outcome.code, outcome.error, uploaded_by
            )
            finish(failed)
            return
        built, seconds = outcome
        report.seconds["parse"] += seconds
        parsed += len(built.chunks)
        if chunk_progress is not None:
            chunk_progress(embedded, parsed)
        batch.items.append((todo, built))
        if batch.chunk_count >= options.embed_batch:
            flush(batch)

    batch = _Batch()
    window: deque[tuple[Todo, ProcessFuture[Any]]] = deque()
    seen: set[str] = set()
    own_pool = pool is None
    pool = pool or parse_pool(options)

    def schedule(todo: Todo) -> ProcessFuture[Any]:
        return pool.schedule(
            parse_in_worker,
            args=(str(todo.path), todo.doc_id, todo.sha256, todo.source, plan_for_chunks),
            timeout=options.timeout_s,
        )

    def parse_member(todo: Todo) -> Built | Failure:
        outcome = _outcome(schedule(todo), todo, options)
        if isinstance(outcome, Failure):
            return outcome
        report.seconds["parse"] += outcome[1]
        return outcome[0]

    def start(path: Path, name: str, source: str) -> None:
        if is_archive(path.name):
            # Its members are written together and made visible in one step: the files
            # in flight are finished first, then the archive is handled here.
            drain()
            archived = ingest_archive(
                lore, path, collection, source, name, parse_member, uploaded_by=uploaded_by
            )
            finish(archived)
            return
        began = time.perf_counter()
        planned = plan_or_failure(path, name, source)
        while isinstance(planned, Todo) and not claims.claim(content_key(planned.doc_id)):
            # The same bytes under another path, being indexed by another process: wait
            # for it, holding nothing else in flight, then plan again (it is usually a
            # duplicate by then, recorded without parsing).
            drain()
            while not claims.claim(content_key(planned.doc_id)):
                stop_if_asked()
                time.sleep(CLAIM_POLL_S)
            planned = plan_or_failure(path, name, source)
        report.seconds["plan"] += time.perf_counter() - began
        if isinstance(planned, IngestResult):
            finish(planned)
            return
        window.append((planned, schedule(planned)))
        # A bounded window keeps memory flat however many files the tree holds.
        while len(window) > 2 * options.workers:
            settle(*window.popleft(), batch)

    def drain() -> None:
        """Handle every file started, which lets go of every claim this batch holds."""
        while window:
            settle(*window.popleft(), batch)
        flush(batch)

    def plan_or_failure(path: Path, name: str, source: str) -> Todo | IngestResult:
        try:
            return plan(lore, path, collection, source, name)
        except LoreError as exc:
            return IngestResult(source, name, "", "failed", 0, exc.code, str(exc))

    def stop_if_asked() -> None:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt

    try:
        set_aside: list[tuple[Path, str, str]] = []
        for path, name in files:
            stop_if_asked()
            reason = skip_reason(path, name, options.include, options.exclude)
            if reason is not None:
                finish(skipped(path, name, reason))
                continue
            source = str(path.resolve())
            seen.add(source)
            if claims.claim(source):
                start(path, name, source)
            else:
                set_aside.append((path, name, source))
        for path, name, source in set_aside:
            stop_if_asked()
            if not claims.claim(source):
                # Waiting while holding no claim: two batches never wait for each other.
                drain()
                while not claims.claim(source):
                    stop_if_asked()
                    time.sleep(CLAIM_POLL_S)
            start(path, name, source)
        drain()
        if options.sync:
            for folder in (p for p in paths if p.is_dir()):
                for result in remove_missing(lore, collection, folder, seen):
                    finish(result)
    except KeyboardInterrupt:
        report.interrupted = True
        if own_pool:
            pool.stop()  # type: ignore[no-untyped-call]
        for _, future in window:  # a shared pool goes on; only this batch's files stop
            future.cancel()  # type: ignore[no-untyped-call]
    finally:
        if own_pool:
            pool.close()  # type: ignore[no-untyped-call]
            pool.join()
        report.seconds["total"] = time.perf_counter() - started
    return report
