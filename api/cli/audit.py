"""`lore audit`: check, export and prune the audit log (no model is loaded)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings
from api.cli.options import OutputOption, checked_since
from api.cli.output import write_lines

app = typer.Typer(help="Check, export and prune the audit log.", no_args_is_help=True)


@app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain. Exits 0 when intact, 1 at the first bad entry."""
    with open_lore(read_settings()) as lore:
        result = lore.audit.verify()
    if not result.ok:
        typer.echo(f"Audit chain broken at entry {result.first_bad_seq}: {result.problem}.")
        typer.echo(f"{result.entries} entries before it are intact.")
        raise typer.Exit(1)
    typer.echo(f"Audit chain intact: {result.entries} entries.")


@app.command("export")
def audit_export(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries at or after this ISO date or time (UTC by default)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print the audit log as JSON lines, one entry a line, oldest first."""
    moment = checked_since(since)
    with open_lore(read_settings()) as lore:
        write_lines(lore.audit.export(moment), output, "entries")


@app.command("prune")
def audit_prune() -> None:
    """Remove the entries older than `audit_retention_days` (0 keeps them all)."""
    settings = read_settings()
    days = settings.audit_retention_days
    if days == 0:
        typer.echo("audit_retention_days is 0: the audit log is kept forever; nothing removed.")
        return
    with open_lore(settings) as lore:
        removed = lore.audit.prune(days, actor="cli")
    typer.echo(f"Removed {removed} audit entries older than {days:g} days.")
