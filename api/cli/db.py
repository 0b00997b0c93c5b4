"""`lore db`: the PostgreSQL schema of cluster mode (database_url); no model is loaded."""

from __future__ import annotations

import typer

from api.cli.components import read_settings
from rag.config import Settings

app = typer.Typer(help="The cluster database's schema (database_url).", no_args_is_help=True)


def _url(settings: Settings) -> str:
    if settings.database_url is None:
        raise typer.BadParameter(
            "database_url is not set: Lore keeps its state in SQLite files in data_dir, "
            "which need no upgrade. Set LORE_DATABASE_URL for cluster mode."
        )
    return settings.database_url.get_secret_value()


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the database lacks. Safe to run again, and from several
    machines at once: one applies them, the others find nothing left to do."""
    from rag.postgres.database import describe, upgrade

    url = _url(read_settings())
    before, after = upgrade(url)
    where = describe(url)
    if before == after:
        typer.echo(f"The database at {where} is up to date (schema revision {after}).")
    else:
        typer.echo(
            f"Upgraded the database at {where}: schema revision {before or 'none'} → {after}."
        )


@app.command("status")
def db_status() -> None:
    """Say which schema revision the database is at. Exits 1 unless it is this release's."""
    from rag.errors import SchemaMismatch
    from rag.postgres.database import Database

    database = Database(_url(read_settings()))
    try:
        database.check_schema()
        typer.echo(f"The database at {database.where} is at schema revision {database.revision()}.")
    except SchemaMismatch as exc:
        typer.echo(str(exc))
        raise typer.Exit(1) from None
    finally:
        database.close()
