"""`lore doctor`: check the data directory, and mend its index with --repair (ingest/doctor.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings
from api.cli.options import JsonOption
from api.cli.output import print_json, steps

_MARKS = {"ok": "ok     ", "warning": "warning", "problem": "PROBLEM"}


def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Mend the index: remove orphans, rebuild the keyword index, index again "
            "documents that lack chunks. Stop `lore serve` first. The audit log is never "
            "changed.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check schema versions, the models' sha256, the manifest against the vector store,
    keyword index and files, the audit chain and free disk. Exits 0 when healthy, 1 when
    a problem remains."""
    from ingest.doctor import examine
    from ingest.doctor import repair as mend

    say = steps(as_json)
    settings = read_settings()
    with open_lore(settings) as lore:
        report = examine(lore, say)
        done: list[str] = []
        if repair and any(f.repairable and f.severity != "ok" for f in report.findings):
            done = mend(lore, report, say)
            report = examine(lore, say)
    if as_json:
        print_json(
            {
                "healthy": report.healthy,
                "findings": [
                    {"check": f.check, "severity": f.severity, "message": f.message, "fix": f.fix}
                    for f in report.findings
                ],
                "repaired": done,
            }
        )
    else:
        for line in done:
            typer.echo(f"repaired {line}")
        for finding in report.findings:
            typer.echo(f"{_MARKS[finding.severity]}  {finding.check}: {finding.message}")
            if finding.fix and finding.severity != "ok":
                typer.echo(f"         fix: {finding.fix}")
        typer.echo("Healthy." if report.healthy else "Not healthy: see the problems above.")
    if not report.healthy:
        raise typer.Exit(1)
