"""The write gate of a data directory: writers pass it shared, a backup closes it.

Every write to the stores whose files must agree with each other (the manifest, the
keyword index and the embedded Chroma folder) passes the gate for as long as it lasts,
one store operation at a time. `lore backup` closes the gate while it copies those
files, so the copy holds no operation half done, in this process or any other: what
it holds is a state the stores could have been left in by a crash between two
operations, which ingest's recovery already cleans up (rag/retrieval/manifest.py).
Readers never pass the gate, so queries are answered throughout a backup; writers
wait until the copy is done.

The gate is an flock(2) lock on `<data_dir>/write.lock`: shared by writers, exclusive
for the backup. An flock belongs to an open file, which all threads of a process share,
so a process takes its shared lock once and counts the threads inside.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO

from rag.errors import Busy

# One shared lock a process and gate file, with how many threads are inside.
_OPEN: dict[Path, tuple[IO[bytes], int]] = {}
_OPEN_LOCK = threading.Lock()
# The gates this thread holds closed, as `closed(writer=True)` does: it passes them.
_HOLDING = threading.local()


def _held_here() -> set[Path]:
    held: set[Path] | None = getattr(_HOLDING, "gates", None)
    if held is None:
        held = _HOLDING.gates = set()
    return held


class WriteGate:
    """The gate of the data directory whose lock file is `path`."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def passing(self) -> Iterator[None]:
        """Hold the gate open (shared) for one write; waits while a backup holds it closed.
        The thread that holds it closed to write alone (`closed(writer=True)`) passes."""
        key = self.path.resolve() if self.path.parent.exists() else self.path
        if key in _held_here():
            yield
            return
        with _OPEN_LOCK:
            handle, inside = _OPEN.get(key, (None, 0))
            if handle is None:
                key.parent.mkdir(parents=True, exist_ok=True)
                handle = key.open("ab")
                # Blocks only while a backup holds the gate: no thread of this
                # process is inside then (the count is 0), so none waits on us.
                fcntl.flock(handle, fcntl.LOCK_SH)
            _OPEN[key] = (handle, inside + 1)
        try:
            yield
        finally:
            with _OPEN_LOCK:
                handle, inside = _OPEN[key]
                if inside == 1:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
                    del _OPEN[key]
                else:
                    _OPEN[key] = (handle, inside - 1)

    @contextmanager
    def closed(self, patience_s: float = 120.0, *, writer: bool = False) -> Iterator[None]:
        """Hold the gate closed (exclusive): no write to the gated stores starts, in any
        process, until the block ends; writes under way finish first. Busy when they
        have not finished within `patience_s`.

        With `writer`, this thread writes alone inside the block (a re-embedding's
        switch, ingest/reindex.py): its writes pass, every other thread's wait. Without
        it, writes from this thread inside the block would wait for it forever.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")
        try:
            deadline = time.monotonic() + patience_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy(
                            f"Writes to {self.path.parent} did not pause within "
                            f"{patience_s:g} s; try again when the ingest is quieter.",
                            retry_after_s=60,
                        ) from None
                    time.sleep(0.05)
            key = self.path.resolve()
            if writer:
                _held_here().add(key)
            try:
                yield
            finally:
                _held_here().discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()


def passing(gate: WriteGate | None) -> AbstractContextManager[None]:
    """`gate.passing()`, or nothing to pass for a store that has no gate."""
    return gate.passing() if gate is not None else nullcontext()
