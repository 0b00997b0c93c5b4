"""The `lore` command line: ingest, ask, search, serve; manage models, documents, keys,
the audit log and feedback.

One module a command group (`lore docs ...` is api/cli/documents.py); the options they
share are in api/cli/options.py, and every command gets its settings and Lore's
components through api/cli/components.py. Heavy modules (the models' code, FastAPI,
ingestion) are imported inside the commands that use them, so `lore --help` and the
commands that load no model start at once.
"""

from __future__ import annotations

import typer

from api.cli import (
    audit,
    backup,
    db,
    doctor,
    documents,
    evaluation,
    feedback,
    ingest,
    keys,
    migrate,
    models,
    query,
    reindex,
    serve,
    worker,
)
from rag.errors import LoreError

app = typer.Typer(
    help="Lore: cited answers from your own documents, offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.add_typer(documents.app, name="docs")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(feedback.app, name="feedback")
app.add_typer(db.app, name="db")
app.command()(ingest.ingest)
app.command()(backup.backup)
app.command()(backup.restore)
app.command()(doctor.doctor)
app.command("eval")(evaluation.evaluate)
app.command()(migrate.migrate)
app.command()(query.ask)
app.command()(query.search)
app.command()(reindex.reindex)
app.command()(serve.serve)
app.command()(worker.worker)


def main() -> None:
    """Entry point: runs the app and turns Lore's errors into a message and exit status 1."""
    try:
        app()
    except LoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
