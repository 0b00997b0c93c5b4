"""Backups of a data directory (`lore backup`) and restoring them (`lore restore`).

A backup is a folder:
- the SQLite stores (manifest, keyword index, keys, audit log, feedback, jobs), each
  copied through SQLite's backup API, which reads one consistent state of a database
  while other processes go on writing it;
- `chroma/`, the vector store's folder;
- `uploads/`, the files people uploaded;
- `lore-backup.json`, the backup's own manifest: the sha256 and size of every file
  above, what each collection holds, and where the data directory was.

The manifest, the keyword index and the vector store must agree with one another, so
they are copied with the data directory's write gate closed (rag/components/write_gate.py):
queries go on being answered, and writes wait, for the seconds the copy takes. What is
copied is then a state those stores could have been left in by a crash between two
writes; restoring it runs ingest's recovery, as a start after a crash does. Uploads are
copied twice: once before the gate closes (most of the bytes), then again inside it,
for the files that changed in between.

A backup is made in `<dest>.partial` and renamed to `dest` once its copy of the vector
store has been opened and checked against its manifest, so a folder named like the
destination is always a whole backup.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.components.database import naming_damage, newer_schema, schema_version
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore, data_gate
from rag.errors import ConfigError, InvalidInput, LoreError
from rag.models import sha256_of

BACKUP_FORMAT = 1
BACKUP_MANIFEST = "lore-backup.json"
# Copied with the write gate closed, together with the vector store: they must agree.
GATED_STORES = ("manifest.sqlite3", "keywords.sqlite3")
# Each consistent on its own: copied while writes go on.
RECORD_STORES = (
    "keys.sqlite3",
    "audit.sqlite3",
    "feedback.sqlite3",
    "conversations.sqlite3",
    "jobs.sqlite3",
)
# What a data directory may hold before a restore: an installed model is not data.
RESTORABLE_OVER = {"models", "write.lock"}

Progress = Callable[[str], None]


class BackupDamaged(LoreError):
    """A backup that does not match its own manifest, or has none."""

    code = "backup_damaged"


@dataclass(frozen=True)
class CollectionCount:
    documents: int
    chunks: int


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    collections: dict[str, CollectionCount]
    paused_s: float
    seconds: float


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    files: int
    collections: dict[str, CollectionCount]
    recovered: int
    moved_uploads: int


def _quiet(message: str) -> None:
    del message


# -- copying -------------------------------------------------------------------


def copy_sqlite(source: Path, target: Path) -> None:
    """One consistent state of the SQLite database at `source`, written to `target`
    (nothing when `source` does not exist). Writers of `source` go on meanwhile."""
    if not source.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reading,
        closing(sqlite3.connect(target)) as writing,
        naming_damage(source),
    ):
        reading.backup(writing)
        # One file, no write-ahead log beside it: the copy is whole on its own.
        writing.execute("PRAGMA journal_mode=DELETE")


def _visible_files(folder: Path) -> Iterator[Path]:
    """The files under `folder`, leaving out hidden ones (an upload still being staged)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def mirror(source: Path, target: Path) -> int:
    """Make the files under `target` those under `source` (hidden ones left out): copy
    what is new or changed (by size and mtime), remove what is gone. Returns how many
    files were copied."""
    copied = 0
    wanted: set[Path] = set()
    for path in _visible_files(source):
        relative = path.relative_to(source)
        wanted.add(relative)
        destination = target / relative
        stat = path.stat()
        if destination.is_file():
            there = destination.stat()
            if (there.st_size, there.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, destination)
        except FileNotFoundError:  # removed since it was listed
            wanted.discard(relative)
            continue
        copied += 1
    for path in list(_visible_files(target)):
        if path.relative_to(target) not in wanted:
            path.unlink()
    return copied


def _copy_chroma(source: Path, target: Path) -> None:
    """The Chroma folder: its SQLite database through the backup API, the index files
    as they are (nothing writes them while the gate is closed), its lock file left out."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.name == "chroma.sqlite3":
            copy_sqlite(path, target / path.name)
        elif path.is_dir():
            shutil.copytree(path, target / path.name)
        elif path.name.startswith("chroma.sqlite3-") or path.name == "lore.lock":
            continue  # the database's log, read through the backup API; the lock
        else:
            shutil.copy2(path, target / path.name)


def _sums(folder: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != BACKUP_MANIFEST:
            files[relative] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    return files


# -- what a copy holds ---------------------------------------------------------


def indexed_documents(manifest: Path) -> dict[str, dict[str, int]]:
    """Per collection, the chunks each visible document of the manifest at `manifest` has."""
    if not manifest.is_file():
        return {}
    with closing(sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT collection, doc_id, chunks FROM documents WHERE status = 'indexed'"
        ).fetchall()
    found: dict[str, dict[str, int]] = {}
    for collection, doc_id, chunks in rows:
        found.setdefault(collection, {})[doc_id] = int(chunks)
    return found


def check_copy(manifest: Path, chroma: Path) -> dict[str, CollectionCount]:
    """Open the vector store in the folder `chroma` and check that every visible document
    of the manifest at `manifest` has all its chunks there; returns what each collection
    holds. BackupDamaged when a document lacks chunks."""
    documents = indexed_documents(manifest)
    counts: dict[str, CollectionCount] = {}
    store = ChromaStore.embedded(chroma, None)
    try:
        present = set(store.list_collections())
        for collection, expected in sorted(documents.items()):
            stored = store.chunk_counts(collection) if collection in present else {}
            short = [d for d, n in expected.items() if stored.get(d, 0) < n]
            if short:
                raise BackupDamaged(
                    f"The vector store in {chroma} lacks chunks of {len(short)} document(s) "
                    f"of collection '{collection}' (first: {short[0]})."
                )
            counts[collection] = CollectionCount(len(expected), sum(expected.values()))
    finally:
        store.close()
    return counts


# -- backup --------------------------------------------------------------------


def _check_destination(settings: Settings, dest: Path) -> None:
    data = settings.data_dir.resolve()
    where = dest.resolve()
    if where == data or data in where.parents:
        raise InvalidInput(
            f"{dest} is inside the data directory {data}; a backup must lie outside it "
            "(better, on another disk)."
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(f"{dest} exists and is not an empty folder; name a new one.")


def backup(settings: Settings, dest: Path, progress: Progress = _quiet) -> BackupReport:
    """Copy everything Lore keeps in the data directory into the new folder `dest`, while
    the server answers and ingests; see the module docstring. InvalidInput for a bad
    destination or an empty data directory, ConfigError in cluster mode."""
    if settings.cluster:
        raise ConfigError(
            "In cluster mode the stores are PostgreSQL's and the Chroma server's: back "
            "them up with pg_dump and the server's data folder (docs/operations.md). "
            "`lore backup` copies an embedded data directory."
        )
    data = settings.data_dir
    if not (data / "manifest.sqlite3").is_file():
        raise InvalidInput(f"There is nothing to back up: {data} holds no Lore data.")
    _check_destination(settings, dest)
    started = time.monotonic()
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        raise InvalidInput(
            f"{partial} exists: the folder of an interrupted backup, or not Lore's. "
            "Remove it, or name another destination."
        )
    partial.mkdir(parents=True)
    try:
        progress("copying uploads")
        mirror(settings.uploads_dir, partial / "uploads")
        progress("pausing writes and copying the index")
        with data_gate(settings).closed():
            closed_at = time.monotonic()
            for name in GATED_STORES:
                copy_sqlite(data / name, partial / name)
            _copy_chroma(settings.chroma_dir, partial / "chroma")
            mirror(settings.uploads_dir, partial / "uploads")
            paused = time.monotonic() - closed_at
        progress("copying keys, audit log, feedback, conversations and jobs")
        for name in RECORD_STORES:
            copy_sqlite(data / name, partial / name)
        progress("checking the copy")
        collections = check_copy(partial / "manifest.sqlite3", partial / "chroma")
        progress("computing sha256 sums")
        files = _sums(partial)
        manifest = {
            "format": BACKUP_FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "by": getpass.getuser(),
            "data_dir": str(data.resolve()),
            "uploads_dir": str(settings.uploads_dir.resolve()),
            "collections": {
                name: {"documents": c.documents, "chunks": c.chunks}
                for name, c in collections.items()
            },
            "files": files,
        }
        (partial / BACKUP_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(partial)
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupReport(
        dest,
        len(files),
        sum(f["size"] for f in files.values()),
        collections,
        paused,
        time.monotonic() - started,
    )


def _fsync_tree(folder: Path) -> None:
    """Put every file under `folder` on disk before the backup is called done."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


# -- restore -------------------------------------------------------------------


def read_backup(src: Path) -> dict[str, Any]:
    """The manifest of the backup at `src`, its files checked against their sha256 sums.
    BackupDamaged, naming the first file that differs, when they don't match."""
    path = src / BACKUP_MANIFEST
    if not path.is_file():
        raise BackupDamaged(f"{src} is not a Lore backup: it has no {BACKUP_MANIFEST}.")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
        files = manifest["files"]
        version = int(manifest["format"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupDamaged(f"{path} cannot be read ({exc}).") from None
    if version > BACKUP_FORMAT:
        raise BackupDamaged(
            f"{src} was made by a newer release of Lore (backup format {version}; this "
            f"release reads up to {BACKUP_FORMAT}). Restore it with that release."
        )
    for relative, expected in files.items():
        file = src / relative
        if not file.is_file():
            raise BackupDamaged(f"The backup is incomplete: {file} is missing.")
        if file.stat().st_size != expected["size"] or sha256_of(file) != expected["sha256"]:
            raise BackupDamaged(
                f"The backup is damaged: {file} does not match its sha256 in {BACKUP_MANIFEST}."
            )
    return manifest


def _check_empty(settings: Settings) -> None:
    for folder, allowed in ((settings.data_dir, RESTORABLE_OVER), (settings.chroma_dir, set())):
        if folder.is_dir():
            extra = sorted(p.name for p in folder.iterdir() if p.name not in allowed)
            if extra:
                raise InvalidInput(
                    f"{folder} is not empty (it holds {', '.join(extra[:3])}); restore into "
                    "an empty data directory (set LORE_DATA_DIR), so nothing is overwritten."
                )


def _move_upload_paths(manifest: Path, old: str, new: str) -> int:
    """Point the manifest's uploaded sources at the new uploads folder; returns how many."""
    if not old or old == new:
        return 0
    with closing(sqlite3.connect(manifest)) as db, db:
        cursor = db.execute(
            "UPDATE sources SET source = ? || substr(source, ?) WHERE substr(source, 1, ?) = ?",
            (new, len(old) + 1, len(old) + 1, old + "/"),
        )
        return cursor.rowcount


def restore(settings: Settings, src: Path, progress: Progress = _quiet) -> RestoreReport:
    """Fill the empty data directory of `settings` from the backup at `src`, after
    checking every file's sha256 and that this release reads each store's schema; then
    clean up the writes the backup caught half done. BackupDamaged for a damaged backup,
    SchemaMismatch for one a newer release made, InvalidInput for a data directory in
    use. A restore that fails leaves the data directory as it found it."""
    if settings.cluster:
        raise ConfigError("`lore restore` fills an embedded data directory; unset database_url.")
    _check_empty(settings)
    progress("checking the backup's sha256 sums")
    manifest = read_backup(src)
    _check_schemas(src)
    data = settings.data_dir
    before = _entries(data) | _entries(settings.chroma_dir)
    try:
        recovered, moved = _fill(settings, src, manifest, progress)
        collections = check_copy(data / "manifest.sqlite3", settings.chroma_dir)
    except BaseException:
        for path in (_entries(data) | _entries(settings.chroma_dir)) - before:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return RestoreReport(data, len(manifest["files"]), collections, recovered, moved)


def _entries(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.is_dir() else set()


def _check_schemas(src: Path) -> None:
    """SchemaMismatch when a store of the backup has a schema this release doesn't read."""
    from ingest.doctor import SQLITE_STORES

    for name, version in SQLITE_STORES.items():
        found = schema_version(src / name)
        if found is not None and found > version:
            raise newer_schema(src / name, found, version)


def _fill(
    settings: Settings, src: Path, manifest: dict[str, Any], progress: Progress
) -> tuple[int, int]:
    """Copy the backup's files into place, point uploads at their new folder and remove
    half-written documents; returns how many documents and upload paths that changed."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    progress("copying")
    for name in (*GATED_STORES, *RECORD_STORES):
        if (src / name).is_file():
            shutil.copy2(src / name, data / name)
    if (src / "chroma").is_dir():
        shutil.copytree(src / "chroma", settings.chroma_dir, dirs_exist_ok=True)
    if (src / "uploads").is_dir():
        shutil.copytree(src / "uploads", settings.uploads_dir, dirs_exist_ok=True)
    moved = _move_upload_paths(
        data / "manifest.sqlite3",
        str(manifest.get("uploads_dir", "")),
        str(settings.uploads_dir.resolve()),
    )
    progress("finishing the writes the backup caught half done")
    from ingest.pipeline import recover  # the one cleanup after a crash

    # The store is opened without naming an embedder: no model is needed to remove chunks.
    store = ChromaStore.embedded(settings.chroma_dir, None, data_gate(settings))
    lore = Lore(settings, store_override=store)
    try:
        recovered = recover(lore)
    finally:
        lore.close_records()
        for opened in ("manifest", "keywords"):
            part = lore.__dict__.get(opened)
            if part is not None:
                part.close()
        store.close()
    return recovered, moved
