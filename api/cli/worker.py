"""`lore worker`: run a cluster's ingest jobs (cluster mode, database_url) until stopped."""

from __future__ import annotations

import signal
from functools import partial
from types import FrameType
from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings


def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Parts of jobs run at once, each on a thread.")
    ] = 1,
    parse_workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Parsing processes per part (default: half the cores)."),
    ] = None,
    poll: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks for work when idle.")
    ] = 5.0,
    heartbeat: Annotated[
        float, typer.Option(min=0.05, help="Seconds between signs of life to the others.")
    ] = 10.0,
    stalled_after: Annotated[
        float,
        typer.Option(
            min=0.5, help="Seconds without a sign of life after which a worker is taken for dead."
        ),
    ] = 30.0,
    sweep: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks for dead workers' tasks.")
    ] = 10.0,
) -> None:
    """Run ingest jobs for a cluster's API processes, until Ctrl-C or SIGTERM.

    Any number of workers may run, on any machine that sees the same database, Chroma
    server and files. Stopped, a worker hands the files it had not reached back to the
    others; one that dies (kill -9) has its work taken up once `--stalled-after` passes.
    """
    from ingest.batch import BatchOptions, default_workers
    from ingest.jobs import audit_job
    from ingest.queue import ClusterJobQueue, WorkerTiming

    settings = read_settings()
    if not settings.cluster:
        raise typer.BadParameter(
            "lore worker runs the ingest jobs of a cluster, and database_url is not set. "
            "On one machine `lore serve` runs ingest jobs itself; for a cluster, set "
            "LORE_DATABASE_URL (and LORE_CHROMA_HOST)."
        )
    with open_lore(settings) as lore:
        _ = lore.embedder, lore.store, lore.manifest, lore.keywords  # fail now, not mid-job
        queue = ClusterJobQueue(
            lore,
            on_finish=partial(audit_job, lore),
            options=BatchOptions(workers=parse_workers or default_workers()),
            timing=WorkerTiming(
                poll_s=poll, heartbeat_s=heartbeat, stalled_after_s=stalled_after, sweep_s=sweep
            ),
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            typer.echo("Stopping: the files not reached go back to the other workers.", err=True)
            queue.stop(hand_back=True)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        typer.echo(
            f"Worker running {concurrency} part(s) at a time for {lore.database.where}; "
            "Ctrl-C stops it.",
            err=True,
        )
        queue.work(concurrency)
    typer.echo("Worker stopped.", err=True)
