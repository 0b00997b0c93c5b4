"""A full disk: how Lore recognises one, and the free space it keeps in reserve.

SQLite says "database or disk is full", Chroma passes SQLite's words on or says "No
space left on device", and a plain file write raises OSError(ENOSPC). Each is the same
event to Lore: the file being written fails with `disk_full`, and nothing already
indexed is touched (ingest/pipeline.py).
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from rag.errors import DiskFull

_SIGNS = ("disk is full", "no space left on device")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` reports that a write found no space left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.OperationalError | OSError) or type(exc).__module__.startswith(
        "chromadb"
    ):
        return any(sign in str(exc).lower() for sign in _SIGNS)
    return False


def free_mb(folder: Path) -> float:
    """Megabytes free on the disk that holds `folder` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free / (1 << 20)


def nearly_full(folder: Path) -> bool:
    """Whether the disk of `folder` has under 64 MB free (under a tenth of it, on a disk
    smaller than 640 MB): a write that fails then failed for want of space, whatever its
    error says."""
    usage = shutil.disk_usage(folder)
    return usage.free < min(64 << 20, usage.total // 10)


def require_free_space(folder: Path, min_free_mb: int) -> None:
    """DiskFull, with a sentence, while the disk of `folder` has less than `min_free_mb` free."""
    free = free_mb(folder)
    if free < min_free_mb:
        raise DiskFull(
            f"The server's disk has {free:,.0f} MB free, under its reserve of "
            f"{min_free_mb:,} MB (min_free_mb), so no file is taken until an administrator "
            "frees space."
        )
