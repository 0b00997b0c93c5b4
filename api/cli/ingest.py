"""`lore ingest`: index files and directory trees, with a progress bar."""

from __future__ import annotations

import getpass
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from api.cli.components import open_lore, read_settings, record
from api.cli.options import CollectionOption, JsonOption
from api.cli.output import print_json, stderr_console

if TYPE_CHECKING:
    from ingest.pipeline import IngestResult
    from rag.config import Settings


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories to index.", exists=True)
    ],
    collection: CollectionOption = None,
    sync: Annotated[
        bool, typer.Option("--sync", help="Also remove documents whose files are gone from DIRs.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Parsing processes (default: half the cores).")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Only files matching this glob (relative path); repeatable."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Skip files matching this glob (relative path); repeatable."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed to parse one file.")] = 300,
    report: Annotated[
        Path | None, typer.Option(help="Write a JSON report of the job to this file.")
    ] = None,
    as_json: JsonOption = False,
    enqueue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Cluster mode: queue a job for the workers, print its id, and return.",
        ),
    ] = False,
) -> None:
    """Index files and directory trees. Unchanged files are skipped; changed files are replaced.

    Exits 0 once every file was handled, failures included (they are listed); non-zero
    only when the job itself could not run, and 130 when interrupted (run it again to resume).
    With --queue (cluster mode), the job is left to `lore worker`s; follow it with
    GET /v1/ingest/jobs/{id}.
    """
    from ingest.batch import BatchOptions, default_workers, run_batch

    settings = read_settings()
    target = collection or settings.collection
    if enqueue:
        _enqueue(settings, list(paths), target, as_json, sync or bool(include or exclude))
        return
    options = BatchOptions(
        workers=workers or default_workers(),
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        timeout_s=timeout,
        sync=sync,
    )
    columns = (
        TextColumn("Ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} files/s"),
        TextColumn("{task.fields[chunks]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    failures: list[str] = []
    with (
        open_lore(settings) as lore,
        Progress(*columns, console=stderr_console(), transient=False) as bar,
    ):
        task = bar.add_task("ingest", total=None, rate="0.0", chunks="")
        began = time.perf_counter()

        def on_file(done: int, total: int, result: IngestResult) -> None:
            rate = done / max(time.perf_counter() - began, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f}")
            for one in result.members or (result,):  # an archive's: its members'
                if one.status == "failed":
                    failures.append(f"failed: {one.source}: {one.error}")
                elif one.flagged:
                    failures.append(
                        f"flagged: {one.source}: {one.flagged} passage(s) read as "
                        "instructions to an AI assistant; their citations will say so."
                    )

        def on_chunks(embedded: int, parsed: int) -> None:
            # Moves while one large file is embedded, when the file count cannot.
            bar.update(task, chunks=f"{embedded}/{parsed} chunks")

        outcome = run_batch(lore, list(paths), target, options, on_file, chunk_progress=on_chunks)
    data = outcome.as_json()
    if report is not None:
        report.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    if as_json:
        print_json(data)
    else:
        for line in failures:
            typer.echo(line, err=True)
        typer.echo(_summary(data, target, report))
    if outcome.interrupted:
        typer.echo("Interrupted. Run the same command again to continue.", err=True)
        raise typer.Exit(130)


# How the summary line names each reason a file was skipped for (SKIP_REASONS).
_SKIP_WORDS = {
    "hidden": "hidden",
    "unsupported_type": "unsupported type",
    "excluded": "excluded by a glob",
    "not_a_file": "not a regular file",
}


def _summary(data: dict[str, Any], target: str, report: Path | None) -> str:
    """The line that ends `lore ingest`: the files found, what became of each, the chunks
    written and the time taken."""
    parts = []
    for status in ("added", "updated", "unchanged", "duplicate", "failed", "skipped", "removed"):
        if not data[status]:
            continue
        part = f"{data[status]} {status}"
        if status == "skipped":
            reasons = Counter(skip["reason"] for skip in data["skipped_files"])
            part += (
                " ("
                + ", ".join(
                    f"{count} {_SKIP_WORDS.get(reason, reason)}"
                    for reason, count in reasons.items()
                )
                + ")"
            )
        parts.append(part)
    line = (
        f"{data['files']} files into '{target}': {', '.join(parts) or 'nothing to do'}; "
        f"{data['chunks']} chunks in {data['seconds']['total']:.1f} s."
    )
    if data["still_failing"]:
        line += f" {len(data['still_failing'])} of them failed before and were not read again."
    if (data["skipped"] or data["still_failing"]) and report is None:
        line += " --report FILE lists them."
    return line


def _enqueue(
    settings: Settings, paths: list[Path], target: str, as_json: bool, filtered: bool
) -> None:
    """Queue a cluster ingest job of `paths` into `target`, and print its id."""
    if not settings.cluster:
        raise typer.BadParameter(
            "there is no queue on one machine: the server (`lore serve`) runs the ingest "
            "jobs sent to it (POST /v1/ingest/jobs), and `lore ingest` without --queue "
            "runs one here. --queue is for cluster mode (database_url).",
            param_hint="--queue",
        )
    if filtered:
        raise typer.BadParameter(
            "a queued job ingests every supported file of its folders: leave out --sync, "
            "--include and --exclude, or ingest here without --queue.",
            param_hint="--queue",
        )
    from ingest.queue import ClusterJobQueue

    with open_lore(settings) as lore:
        job = ClusterJobQueue(lore).submit(
            target, [path.absolute() for path in paths], actor=f"cli:{getpass.getuser()}"
        )
        record(lore, "ingest.jobs.create", target)
    if as_json:
        print_json(job.as_json())
    else:
        typer.echo(job.id)
