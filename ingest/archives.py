"""Unpacking archives (.zip, .tar and its compressed kinds, .7z) into their members.

`zipfile` and `tarfile` come with Python; `py7zr` reads .7z and lives here alone.

Each member is unpacked into a folder of its own under a scratch directory, under its
own file name only, so that no name in an archive (`../../etc/passwd`, an absolute
path, a link) can write outside it. A member that is an archive itself is unpacked in
turn, its members named through it (`inner.zip!/report.pdf`).

The limits of `Limits` apply to every member, and a member that trips one fails alone:
- a member larger than `max_file_mb`, or, in a zip, compressed more than
  `max_zip_ratio`:1;
- the members unpacked so far, nested ones included, past `max_unzipped_mb` (this
  member and the ones after it fail);
- an archive nested more than `max_archive_depth` levels deep.
An archive as a whole fails (`unpack` raises) when it cannot be opened, when it holds
more than `max_zip_members` entries, or when it is a compressed stream (.tar.gz, .7z)
that expands more than `max_zip_ratio` times its size.
"""

from __future__ import annotations

import os
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ingest.parsing import Limits, is_archive, is_supported
from rag.errors import EncryptedDocument, LimitExceeded, LoreError, MalformedDocument
from rag.retrieval.manifest import MEMBER_MARK


@dataclass(frozen=True)
class Member:
    """One file found in an archive.

    `name` is its path in the archive (through nested archives: `inner.zip!/a.pdf`).
    Exactly one of these says what became of it: `path`, the file it was unpacked to
    (with the member's size and modification time); `skip`, why it was left out (a key
    of ingest/pipeline.py's SKIP_REASONS); `failure`, the error code and sentence of a
    member that could not be unpacked. A nested archive that could not be opened is a
    member of its own, with both `path` and `failure`.
    """

    name: str
    path: Path | None = None
    skip: str | None = None
    failure: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Entry:
    """A member as the archive lists it, before it is unpacked: `key` is its name as
    the archive spells it, `name` that name made safe (see `_clean`)."""

    key: str
    name: str
    size: int
    packed: int | None  # its compressed size, where the format tells it
    mtime: float
    regular: bool
    encrypted: bool = False


class _Budget:
    """The bytes an archive and all it holds may still unpack to."""

    def __init__(self, limits: Limits):
        self.left = limits.max_unzipped_mb * 1024 * 1024


def unpack(path: Path, scratch: Path, limits: Limits) -> list[Member]:
    """The members of the archive at `path`, unpacked under `scratch` (see the module's
    docstring for the limits). Raises MalformedDocument, EncryptedDocument or
    LimitExceeded, naming the archive, when it cannot be read at all."""
    return _unpack(path, path.name, scratch, limits, _Budget(limits), depth=1)


def _unpack(
    path: Path, shown: str, scratch: Path, limits: Limits, budget: _Budget, depth: int
) -> list[Member]:
    try:
        members, wanted = _unpack_here(path, shown, scratch, limits, budget)
    except LoreError:
        raise
    except Exception as exc:  # each library has its own errors for a damaged file
        raise MalformedDocument(f"{shown}: the archive is damaged ({type(exc).__name__}).") from exc
    for entry, target in wanted:
        os.utime(target, (entry.mtime, entry.mtime))
    return [
        nested
        for member in members
        for nested in _inner(member, shown, scratch, limits, budget, depth)
    ]


def _unpack_here(
    path: Path, shown: str, scratch: Path, limits: Limits, budget: _Budget
) -> tuple[list[Member], list[tuple[_Entry, Path]]]:
    """The members of one archive, the nested ones not opened yet, and those unpacked."""
    members: list[Member] = []
    with _open(path, shown) as archive:
        entries = archive.entries()
        if len(entries) > limits.max_zip_members:
            raise LimitExceeded(
                f"{shown}: the archive holds more than {limits.max_zip_members} files."
            )
        if archive.streamed:
            unpacked = sum(entry.size for entry in entries)
            if unpacked / max(path.stat().st_size, 1) > limits.max_zip_ratio:
                raise LimitExceeded(
                    f"{shown}: the archive expands {unpacked // max(path.stat().st_size, 1)} "
                    f"times its size, more than the {limits.max_zip_ratio} allowed."
                )
        wanted: list[tuple[_Entry, Path]] = []
        for entry in entries:
            skip = _skip(entry)
            if skip is not None:
                members.append(Member(entry.name, skip=skip))
                continue
            failure = _refused(entry, shown, limits, budget)
            if failure is not None:
                members.append(Member(entry.name, failure=failure))
                continue
            target = scratch / f"{len(members):05d}" / PurePosixPath(entry.name).name
            target.parent.mkdir(parents=True)
            wanted.append((entry, target))
            members.append(Member(entry.name, path=target))
        archive.extract(wanted)
    return members, wanted


def _inner(
    member: Member, shown: str, scratch: Path, limits: Limits, budget: _Budget, depth: int
) -> Iterator[Member]:
    """`member`, or when it is an archive, its own members named through it."""
    if member.path is None or not is_archive(member.name):
        yield member
        return
    label = f"{shown}{MEMBER_MARK}{member.name}"
    if depth >= limits.max_archive_depth:
        message = f"{label}: archives are nested more than {limits.max_archive_depth} levels deep."
        yield Member(member.name, member.path, failure=(LimitExceeded.code, message))
        return
    inside = scratch / f"{member.path.parent.name}.members"
    try:
        found = _unpack(member.path, label, inside, limits, budget, depth + 1)
    except LoreError as exc:
        yield Member(member.name, member.path, failure=(exc.code, str(exc)))
        return
    for nested in found:
        yield Member(
            f"{member.name}{MEMBER_MARK}{nested.name}", nested.path, nested.skip, nested.failure
        )


def _clean(name: str) -> str:
    """A member's name as a relative path: no leading '/', no '.' or '..' parts."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "(unnamed)"


def _skip(entry: _Entry) -> str | None:
    if any(part.startswith(".") for part in PurePosixPath(entry.name).parts):
        return "hidden"
    if not entry.regular:
        return "not_a_file"
    if not is_supported(entry.name):
        return "unsupported_type"
    return None


def _refused(entry: _Entry, shown: str, limits: Limits, budget: _Budget) -> tuple[str, str] | None:
    """Why `entry` is not unpacked (an error code and a sentence), or None; takes its
    size from the budget when it is."""
    label = f"{shown}{MEMBER_MARK}{entry.name}"
    if entry.encrypted:
        return EncryptedDocument.code, f"{label}: the member is password-protected."
    if entry.size > limits.max_file_mb * 1024 * 1024:
        return LimitExceeded.code, f"{label}: the member is larger than {limits.max_file_mb} MB."
    if entry.packed is not None and entry.size / max(entry.packed, 1) > limits.max_zip_ratio:
        ratio = entry.size // max(entry.packed, 1)
        return (
            LimitExceeded.code,
            f"{label}: the member is compressed {ratio}:1, more than the "
            f"{limits.max_zip_ratio}:1 allowed.",
        )
    if entry.size > budget.left:
        return (
            LimitExceeded.code,
            f"{label}: the archive expands to more than {limits.max_unzipped_mb} MB; this "
            "member and the ones after it were not unpacked.",
        )
    budget.left -= entry.size
    return None


class _Archive:
    """An open archive of one kind: its entries, and unpacking some of them."""

    streamed = False  # one compressed stream (.tar.gz, .7z): no size per member

    def entries(self) -> list[_Entry]:
        raise NotImplementedError

    def extract(self, wanted: list[tuple[_Entry, Path]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: Path, shown: str) -> _Archive:
    name = path.name.lower()
    if name.endswith(".zip"):
        return _Zip(path, shown)
    if name.endswith(".7z"):
        return _SevenZip(path, shown)
    return _Tar(path, shown)


def _zip_time(info: zipfile.ZipInfo) -> float:
    """A zip entry's modification time (local time, as zip records it); now if invalid."""
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return time.time()


def _copy(source: IO[bytes], target: Path, size: int, label: str) -> None:
    """Copy a member's bytes, never more than the `size` it was listed with."""
    with target.open("wb") as out:
        left = size
        while block := source.read(min(1 << 20, left + 1)):
            left -= len(block)
            if left < 0:
                raise LimitExceeded(f"{label}: the member holds more than its listed size.")
            out.write(block)


class _Zip(_Archive):
    def __init__(self, path: Path, shown: str):
        self.shown = shown
        self.archive = zipfile.ZipFile(path)
        self.infos = {info.filename: info for info in self.archive.infolist()}

    def entries(self) -> list[_Entry]:
        return [
            _Entry(
                info.filename,
                _clean(info.filename),
                info.file_size,
                info.compress_size,
                _zip_time(info),
                not info.is_dir() and not _zip_link(info),
                encrypted=bool(info.flag_bits & 0x1),
            )
            for info in self.infos.values()
            if not info.is_dir()
        ]

    def extract(self, wanted: list[tuple[_Entry, Path]]) -> None:
        for entry, target in wanted:
            try:
                with self.archive.open(self.infos[entry.key]) as source:
                    _copy(source, target, entry.size, f"{self.shown}{MEMBER_MARK}{entry.name}")
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                target.unlink(missing_ok=True)
                raise MalformedDocument(
                    f"{self.shown}: the archive is damaged at {entry.name} ({type(exc).__name__})."
                ) from exc

    def close(self) -> None:
        self.archive.close()


def _zip_link(info: zipfile.ZipInfo) -> bool:
    """Whether a zip entry is a symbolic link (Unix mode bits in its external attributes)."""
    return (info.external_attr >> 16) & 0o170000 == 0o120000


class _Tar(_Archive):
    def __init__(self, path: Path, shown: str):
        self.shown = shown
        self.archive = tarfile.open(path)  # noqa: SIM115 - closed by close()
        self.streamed = not path.name.lower().endswith(".tar")
        self.infos = {info.name: info for info in self.archive.getmembers()}

    def entries(self) -> list[_Entry]:
        return [
            _Entry(
                info.name,
                _clean(info.name),
                info.size,
                None if self.streamed else info.size,
                info.mtime,
                info.isreg(),
            )
            for info in self.infos.values()
            if not info.isdir()
        ]

    def extract(self, wanted: list[tuple[_Entry, Path]]) -> None:
        for entry, target in wanted:
            source = self.archive.extractfile(self.infos[entry.key])
            if source is None:
                continue
            with source:
                _copy(source, target, entry.size, f"{self.shown}{MEMBER_MARK}{entry.name}")

    def close(self) -> None:
        self.archive.close()


class _SevenZip(_Archive):
    streamed = True

    def __init__(self, path: Path, shown: str):
        import py7zr

        self.shown = shown
        self.archive = py7zr.SevenZipFile(path)
        if self.archive.needs_password():
            self.archive.close()
            raise EncryptedDocument(f"{shown}: the archive is password-protected.")

    def entries(self) -> list[_Entry]:
        listed: list[Any] = self.archive.list()
        return [
            _Entry(
                info.filename,
                _clean(info.filename),
                info.uncompressed,
                None,
                info.creationtime.timestamp() if info.creationtime else time.time(),
                bool(info.is_file),
            )
            for info in listed
            if not info.is_directory
        ]

    def extract(self, wanted: list[tuple[_Entry, Path]]) -> None:
        if not wanted:
            return
        import tempfile

        with tempfile.TemporaryDirectory(dir=wanted[0][1].parent.parent) as into:
            self.archive.extract(path=into, targets=[entry.key for entry, _ in wanted])
            for entry, target in wanted:
                unpacked = Path(into, entry.key).resolve()
                if unpacked.is_relative_to(Path(into).resolve()) and unpacked.is_file():
                    if unpacked.stat().st_size > entry.size:
                        raise LimitExceeded(
                            f"{self.shown}{MEMBER_MARK}{entry.name}: the member holds more "
                            "than its listed size."
                        )
                    unpacked.replace(target)
                if not target.is_file():
                    raise MalformedDocument(
                        f"{self.shown}{MEMBER_MARK}{entry.name}: the member could not be unpacked."
                    )

    def close(self) -> None:
        self.archive.close()
