"""`lore backup` and `lore restore`: a data directory copied while it serves, and put back
into an empty one (ingest/backup.py). No model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings, record
from api.cli.options import JsonOption
from api.cli.output import print_json, steps


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def backup(
    dest: Annotated[
        Path, typer.Argument(help="A new folder for the backup, outside the data directory.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Copy everything Lore keeps (index, uploads, keys, audit log, feedback, jobs) into
    DEST, with a sha256 manifest. Safe while `lore serve` answers and ingests: writes
    pause for the seconds the index takes to copy; queries don't."""
    from ingest.backup import backup as make_backup

    settings = read_settings()
    report = make_backup(settings, dest, steps(as_json))
    with open_lore(settings) as lore:
        record(lore, "backup", settings.collection)
    documents = sum(c.documents for c in report.collections.values())
    chunks = sum(c.chunks for c in report.collections.values())
    if as_json:
        print_json(
            {
                "path": str(report.path),
                "files": report.files,
                "bytes": report.bytes,
                "documents": documents,
                "chunks": chunks,
                "collections": {
                    name: {"documents": c.documents, "chunks": c.chunks}
                    for name, c in report.collections.items()
                },
                "writes_paused_s": round(report.paused_s, 2),
                "seconds": round(report.seconds, 2),
            }
        )
        return
    typer.echo(
        f"Backed up {documents} documents ({chunks} chunks in "
        f"{_count(len(report.collections), 'collection')}) to {report.path}: "
        f"{report.files} files, {report.bytes / 1e6:.1f} MB, "
        f"in {report.seconds:.1f} s (writes paused {report.paused_s:.1f} s)."
    )


def restore(
    src: Annotated[Path, typer.Argument(help="A folder made by `lore backup`.")],
    as_json: JsonOption = False,
) -> None:
    """Fill an empty data directory (LORE_DATA_DIR) from the backup SRC, after checking
    every file's sha256. Install the models with `lore models install` as on any new
    machine, then check the result with `lore doctor`."""
    from ingest.backup import restore as put_back

    settings = read_settings()
    report = put_back(settings, src, steps(as_json))
    with open_lore(settings) as lore:
        record(lore, "restore", settings.collection)
    documents = sum(c.documents for c in report.collections.values())
    if as_json:
        print_json(
            {
                "data_dir": str(report.data_dir),
                "files": report.files,
                "documents": documents,
                "collections": {
                    name: {"documents": c.documents, "chunks": c.chunks}
                    for name, c in report.collections.items()
                },
                "unfinished_writes_removed": report.recovered,
                "uploads_moved": report.moved_uploads,
            }
        )
        return
    typer.echo(
        f"Restored {documents} documents in {_count(len(report.collections), 'collection')} into "
        f"{report.data_dir} ({report.files} files, every sha256 checked)."
    )
    if report.recovered:
        typer.echo(
            f"Removed the unfinished writes of {report.recovered} document(s) the backup "
            "caught mid-ingest; ingest those files again."
        )
    if report.moved_uploads:
        typer.echo(f"Pointed {report.moved_uploads} uploaded file(s) at their new folder.")
    typer.echo("Next: `lore doctor` checks the restored data directory.")
