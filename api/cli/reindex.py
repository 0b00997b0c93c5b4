"""`lore reindex`: re-embed a collection with another embedding model (ingest/reindex.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from api.cli.components import open_lore, read_settings
from api.cli.options import CollectionOption, JsonOption
from api.cli.output import print_json, stderr_console
from rag.errors import StoreInUse


def reindex(
    embedding_model: Annotated[
        str,
        typer.Option(
            "--embedding-model",
            help="The model to re-embed with: a name from `lore models list` (installed), "
            "or `hashing`.",
        ),
    ] = "",
    collection: CollectionOption = None,
    abandon: Annotated[
        bool,
        typer.Option(
            "--abandon",
            help="Drop the copy an unfinished reindex of the collection left, instead.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-embed a collection with another embedding model, then switch to it at once.

    The collection answers throughout, from its old vectors until the switch. Stopped or
    crashed, it resumes where it was when run again. On a data directory that `lore
    serve` is using, ask the server instead: POST /v1/collections/NAME/reindex.
    """
    from ingest.reindex import abandon as drop_copy
    from ingest.reindex import check_model_name, prepare
    from ingest.reindex import reindex as run

    settings = read_settings()
    target = collection or settings.collection
    if abandon:
        with open_lore(settings) as lore:
            dropped = drop_copy(lore, target)
        typer.echo(
            f"Dropped the unfinished copy of '{target}'."
            if dropped
            else f"No reindex of '{target}' was unfinished."
        )
        return
    model = check_model_name(embedding_model)
    columns = (
        TextColumn("Re-embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    copied = [0, 0]  # chunks re-embedded, of how many
    try:
        with open_lore(settings) as lore:
            prepare(lore, target, model)
            with Progress(*columns, console=stderr_console(), disable=as_json) as bar:
                task = bar.add_task("reindex", total=None)

                def on_progress(done: int, total: int) -> None:
                    copied[:] = [done, total]
                    bar.update(task, completed=done, total=total)

                report = run(lore, target, model, progress=on_progress)
    except KeyboardInterrupt:
        typer.echo(
            f"Stopped with {copied[0]} of {copied[1]} chunks re-embedded; '{target}' still "
            "answers as before. Run the same command again to go on from there.",
            err=True,
        )
        raise typer.Exit(130) from None
    except StoreInUse as exc:
        raise StoreInUse(
            f"{exc} To re-embed while `lore serve` runs, ask it: "
            f"POST /v1/collections/{target}/reindex with an admin key."
        ) from None
    if as_json:
        print_json(report.as_json())
        return
    if report.unchanged:
        typer.echo(f"'{target}' is built with {report.embedder} already: nothing to do.")
        return
    resumed = " (resumed)" if report.resumed else ""
    typer.echo(
        f"'{target}' now answers with {report.embedder} (was {report.previous}): "
        f"{report.chunks} chunks, {report.embedded} embedded by this run{resumed}, "
        f"in {report.seconds:.1f} s."
    )
