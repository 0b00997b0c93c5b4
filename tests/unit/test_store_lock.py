"""An embedded Chroma folder is written by one process at a time; any may read it
(issue 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.components.store import ChromaStore
from rag.types import Chunk
from tests.servers import REPO

pytestmark = pytest.mark.unit

IN_CHILD = (
    "import sys; from pathlib import Path; from rag.components.store import ChromaStore\n"
    "from rag.errors import StoreInUse\n"
    "store = ChromaStore.embedded(Path(sys.argv[1]), 'hashing')\n"
    "print(store.list_collections())\n"
    "try:\n"
    "    store.create_collection('other')\n"
    "except StoreInUse as exc:\n"
    "    print(exc); sys.exit(3)\n"
)


def _child(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", IN_CHILD, str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _write(store: ChromaStore) -> None:
    chunk = Chunk("c1", "d1", "hello", "/a.md", "A", 0, "sha")
    store.add("notes", [chunk], np.ones((1, 8), dtype=np.float32))


def test_a_second_process_reads_but_may_not_write_while_one_writes(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    store = ChromaStore.embedded(folder, "hashing")
    _write(store)
    _write(ChromaStore.embedded(folder, "hashing"))  # the same process may write again
    child = _child(folder)
    assert child.returncode == 3, child.stderr
    assert "['notes']" in child.stdout  # it read
    assert "being written by another Lore process" in child.stdout
    assert "cluster mode" in child.stdout


def test_a_store_written_by_an_ended_process_can_be_written(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    assert _child(folder).returncode == 0
    assert _child(folder).returncode == 0
