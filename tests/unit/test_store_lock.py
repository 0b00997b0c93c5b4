"""An embedded Chroma folder is held by one process at a time (issue 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rag.components.store import ChromaStore
from tests.servers import REPO

pytestmark = pytest.mark.unit

OPEN_IN_CHILD = (
    "import sys; from pathlib import Path; from rag.components.store import ChromaStore\n"
    "from rag.errors import StoreInUse\n"
    "try:\n"
    "    ChromaStore.embedded(Path(sys.argv[1]), 'hashing')\n"
    "except StoreInUse as exc:\n"
    "    print(exc); sys.exit(3)\n"
)


def _open_in_child(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_second_process_is_refused_an_open_store_with_a_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    ChromaStore.embedded(folder, "hashing")
    ChromaStore.embedded(folder, "hashing")  # the same process may open it again
    child = _open_in_child(folder)
    assert child.returncode == 3, child.stderr
    assert "open in another Lore process" in child.stdout
    assert "cluster mode" in child.stdout


def test_a_store_left_by_an_ended_process_opens(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    first = _open_in_child(folder)
    assert first.returncode == 0, first.stderr
    assert _open_in_child(folder).returncode == 0
