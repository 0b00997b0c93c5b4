"""How commands print: JSON documents, JSON lines, and progress on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console


def print_json(data: object) -> None:
    """`data` as one indented JSON document on stdout, non-ASCII text as it is."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def write_lines(records: Iterable[dict[str, Any]], output: Path | None, what: str) -> None:
    """Records as JSON lines, to stdout or to `output` (then a count on stderr)."""
    lines = (json.dumps(record, ensure_ascii=False) for record in records)
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    count = 0
    with output.open("w", encoding="utf-8") as file:
        for line in lines:
            file.write(line + "\n")
            count += 1
    typer.echo(f"Exported {count} {what} to {output}.", err=True)


def stderr_console() -> Console:
    """Where progress bars go, so that stdout holds only the result."""
    return Console(stderr=True)


def steps(quiet: bool) -> Callable[[str], None]:
    """Where a long command says which step it is at: stderr, unless `quiet` (JSON output)."""

    def say(step: str) -> None:
        if not quiet:
            typer.echo(f"  {step}", err=True)

    return say
