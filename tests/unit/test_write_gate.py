"""The data directory's write gate: writers pass together; a backup waits for them and
holds them back (rag/components/write_gate.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag.components.keyword import KeywordIndex
from rag.components.write_gate import WriteGate
from rag.errors import Busy
from rag.types import Chunk

pytestmark = pytest.mark.unit


def test_writes_wait_while_the_gate_is_closed(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "write.lock")
    index = KeywordIndex(tmp_path / "keywords.sqlite3", gate)
    chunk = Chunk("d-0", "d", "gate test", "a.txt", "a", chunk_index=0, content_hash="h")
    finished = threading.Event()

    def write() -> None:
        index.add("main", [chunk])
        finished.set()

    with gate.closed():
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        assert not finished.is_set(), "a write went through a closed gate"
        assert index.chunk_counts("main") == {}  # readers are not held back
    writer.join(timeout=10)
    assert finished.is_set()
    assert index.chunk_counts("main") == {"d": 1}


def test_closing_waits_for_writes_under_way_and_gives_up_with_busy(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "write.lock")
    with gate.passing(), gate.passing():  # two threads' writes: one shared lock
        began = time.monotonic()
        with pytest.raises(Busy, match="did not pause"), gate.closed(patience_s=0.3):
            pass
        assert time.monotonic() - began >= 0.3
    with gate.closed(patience_s=0.3):  # every write done: it closes at once
        pass


def test_the_thread_that_closes_the_gate_to_write_alone_passes_it(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "write.lock")
    index = KeywordIndex(tmp_path / "keywords.sqlite3", gate)

    def chunk(doc: str) -> Chunk:
        return Chunk(f"{doc}-0", doc, "gate test", "a.txt", "a", chunk_index=0, content_hash="h")

    finished = threading.Event()

    def write() -> None:
        index.add("main", [chunk("other")])
        finished.set()

    with gate.closed(writer=True):
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        index.add("main", [chunk("mine")])  # the closing thread's own write goes through
        assert index.chunk_counts("main") == {"mine": 1}
        assert not finished.is_set(), "another thread's write went through a closed gate"
    writer.join(timeout=10)
    assert finished.is_set()
    assert index.chunk_counts("main") == {"mine": 1, "other": 1}
    with gate.closed():  # and the gate closes again afterwards, to everyone
        pass
