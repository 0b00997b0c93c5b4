"""The options several commands share, and the checks that turn their values into
Lore's: each refusal is a usage error (exit status 2), given before any work begins."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from rag.config import validate_collection_name
from rag.errors import InvalidInput
from rag.retrieval.filters import Filters, make_filters, parse_when


def checked_collection(name: str) -> str:
    """`name`, if Lore allows it as a collection name; a usage error otherwise."""
    try:
        return validate_collection_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _collection_option(value: str | None) -> str | None:
    return None if value is None else checked_collection(value)


CollectionOption = Annotated[
    str | None,
    typer.Option(
        "--collection",
        "-c",
        help="Collection to use (default: the configured one).",
        callback=_collection_option,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of text.")
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
]


SourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        help="Only documents with this name or server path, in this folder, or matching "
        "this glob (such as 'reports/*.pdf'); repeatable.",
    ),
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", help="Only files with this extension (pdf, md, ...); repeatable."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Only files modified on or after this ISO date or time (UTC by default)."),
]
UntilOption = Annotated[
    str | None,
    typer.Option(help="Only files modified on or before this ISO date (the whole day) or time."),
]


def checked_filters(
    sources: list[str] | None, types: list[str] | None, since: str | None, until: str | None
) -> Filters | None:
    """The checked filters (None when no option was given); a usage error when invalid."""
    try:
        filters = make_filters(sources or (), types or (), since, until)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None
    return filters or None


def checked_since(value: str | None) -> datetime | None:
    """The `--since` moment (None when not given); a usage error when it is not a date."""
    try:
        return parse_when(value) if value is not None else None
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
