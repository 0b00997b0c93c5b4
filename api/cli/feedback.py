"""`lore feedback`: export the ratings given to answers (no model is loaded)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings
from api.cli.options import OutputOption, checked_since
from api.cli.output import write_lines

app = typer.Typer(help="Export the ratings given to answers.", no_args_is_help=True)


@app.command("export")
def feedback_export(
    since: Annotated[
        str | None,
        typer.Option(help="Only ratings at or after this ISO date or time (UTC by default)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print the ratings of answers as JSON lines, one a line, oldest first."""
    moment = checked_since(since)
    with open_lore(read_settings()) as lore:
        write_lines(lore.feedback.export(moment), output, "ratings")
