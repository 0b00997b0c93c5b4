"""Files sent over HTTP: their names checked, their bytes written beside their final place."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ingest.parsing import check_name
from rag.components.disk import is_disk_full, require_free_space
from rag.config import Settings
from rag.errors import DiskFull, InvalidInput, LimitExceeded


def safe_filename(name: str | None) -> str:
    """A plain file name for an upload: no directories, no control characters, not blank,
    not too long. It is what readers see as the document's name, so it is refused, with
    the reason, rather than silently changed."""
    base = Path((name or "").replace("\\", "/")).name
    check_name(base)
    if not base.strip() or base in {".", ".."} or len(base.encode()) > 200:
        raise InvalidInput("The upload needs a plain file name of at most 200 bytes.")
    return base


def stage_upload(upload: BinaryIO, settings: Settings, collection: str, name: str) -> Path:
    """Write an upload, under its own name, into a private temporary folder inside its
    collection's uploads folder (so a rename moves it into place).

    Parsing reads the file there, so a title taken from the file name, and every error,
    name the user's file, never a staging name. The upload is refused once it passes the
    size cap, when it is empty, and with DiskFull while the disk has less than
    `min_free_mb` free or fills up; either way nothing is left. The caller moves the
    file to its place and then calls `unstage`.
    """
    limit = settings.max_upload_mb * 1024 * 1024
    require_free_space(settings.data_dir, settings.min_free_mb)
    folder = settings.uploads_dir / collection
    folder.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=folder, prefix=".upload-")) / name
    written = 0
    try:
        with staged.open("wb") as sink:
            while block := upload.read(1 << 20):
                written += len(block)
                if written > limit:
                    raise LimitExceeded(
                        f"The file is larger than the upload limit of {settings.max_upload_mb} MB."
                    )
                sink.write(block)
        if written == 0:
            raise InvalidInput(f"{name} is empty.")
    except OSError as exc:
        unstage(staged)
        if is_disk_full(exc):
            raise DiskFull(f"The server's disk filled up while {name} was received.") from None
        raise
    except BaseException:
        unstage(staged)
        raise
    return staged


def unstage(staged: Path) -> None:
    """Remove a staged upload (if it was not moved into place) and its private folder."""
    staged.unlink(missing_ok=True)
    shutil.rmtree(staged.parent, ignore_errors=True)
