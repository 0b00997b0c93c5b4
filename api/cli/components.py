"""What a command works with: the settings, Lore's components built from them (in
rag/container.py, the one composition root), and the audit entry of what it did."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rag.config import Settings, load_settings
from rag.errors import LoreError

if TYPE_CHECKING:
    from rag.container import Lore


def read_settings() -> Settings:
    """The settings from the file and the environment; a usage error when they are invalid."""
    try:
        return load_settings()
    except LoreError:
        raise
    except Exception as exc:  # pydantic's ValidationError names the bad key and value
        raise typer.BadParameter(f"invalid configuration: {exc}") from None


def read_settings_file(path: Path) -> Settings:
    """Settings read from `path` instead of the usual file (environment variables still win)."""
    saved = os.environ.get("LORE_CONFIG")
    os.environ["LORE_CONFIG"] = str(path)
    try:
        return read_settings()
    finally:
        if saved is None:
            del os.environ["LORE_CONFIG"]
        else:
            os.environ["LORE_CONFIG"] = saved


@contextmanager
def open_lore(settings: Settings) -> Iterator[Lore]:
    """Lore's components for one command; the audit log, keys and feedback it opened are
    closed after. Each is built on first use: a command that touches only `lore.keys`
    loads no model."""
    # Imported here: `lore --help` and `lore models ...` need none of it.
    from rag.container import Lore

    lore = Lore(settings)
    try:
        yield lore
    finally:
        lore.close_records()


def record(
    lore: Lore,
    operation: str,
    collection: str,
    question: str | None = None,
    chunk_ids: list[str] | None = None,
    doc_ids: list[str] | None = None,
) -> None:
    """Record what was asked or changed on this machine's command line in the audit log."""
    lore.audit.record(
        actor=f"cli:{getpass.getuser()}",
        operation=operation,
        status=200,
        collection=collection,
        question=question,
        chunk_ids=chunk_ids or [],
        doc_ids=doc_ids or [],
    )
