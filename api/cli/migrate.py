"""`lore migrate`: move this embedded installation into cluster mode (no model is loaded)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import SecretStr

from api.cli.components import open_lore, read_settings


def migrate(
    database_url: Annotated[
        str, typer.Option(help="The cluster's PostgreSQL: postgresql://user:password@host/db.")
    ],
    chroma_host: Annotated[str, typer.Option(help="The cluster's Chroma server.")],
    chroma_port: Annotated[int, typer.Option(help="Its port.")] = 8000,
    chroma_ssl: Annotated[bool, typer.Option(help="Reach it over TLS.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Copy this installation (data_dir: manifest, keyword index, vectors, keys, audit
    log, feedback, saved conversations) into a cluster's PostgreSQL and Chroma server,
    then check the copy.

    The database's schema is brought up to date first. Stop `lore serve` on this machine
    before: the vector store in data_dir is read, and one process at a time may hold it.
    Running it again after an interruption finishes the copy; nothing here is changed.
    """
    from rag.postgres.database import upgrade
    from rag.postgres.migrate import migrate as copy_all

    settings = read_settings()
    if settings.cluster:
        raise typer.BadParameter(
            "this installation is in cluster mode already (database_url is set); "
            "migrate reads an embedded one: unset LORE_DATABASE_URL and LORE_CHROMA_HOST"
        )
    cluster_settings = {
        "database_url": SecretStr(database_url),
        "chroma_host": chroma_host,
        "chroma_port": chroma_port,
        "chroma_ssl": chroma_ssl,
    }
    target = type(settings).model_validate({**settings.model_dump(), **cluster_settings})
    upgrade(database_url)

    def progress(collection: str, done: int, total: int) -> None:
        if not as_json:  # called once for each thousand chunks or so
            typer.echo(f"  {collection}: {done}/{total} documents", err=True)

    with open_lore(settings) as source, open_lore(target) as cluster:
        report = copy_all(source, cluster, progress)
        verified = cluster.audit.verify()
        moved = {
            name: sum(cluster.store.chunk_counts(name).values()) for name in report.collections
        }
    problems = [
        f"collection {name}: {moved[name]} chunks in the Chroma server, {count} moved"
        for name, count in report.collections.items()
        if moved[name] < count
    ]
    if not verified.ok:
        problems.append(f"audit chain broken at entry {verified.first_bad_seq}: {verified.problem}")
    if as_json:
        typer.echo(json.dumps({**report.as_json(), "ok": not problems, "problems": problems}))
    else:
        typer.echo(
            f"Moved {report.documents} documents ({sum(report.collections.values())} chunks in "
            f"{len(report.collections)} collections), {report.keys} API keys, "
            f"{report.audit_entries} audit entries, {report.feedback} ratings and "
            f"{report.conversations} saved conversations."
        )
        for problem in problems:
            typer.echo(f"problem: {problem}")
        if not problems:
            typer.echo(
                f"Checked: the audit chain is intact ({verified.entries} entries) and every "
                "chunk is in the Chroma server. Set database_url and chroma_host (as given "
                "here) on every Lore process to use the cluster."
            )
    if problems:
        raise typer.Exit(1)
