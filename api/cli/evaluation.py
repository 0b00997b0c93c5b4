"""`lore eval`: measure retrieval, and answers, on questions with known answers."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from api.cli.components import open_lore, read_settings, read_settings_file
from api.cli.options import CollectionOption, JsonOption
from api.cli.output import print_json, stderr_console
from rag.config import Settings

if TYPE_CHECKING:
    from rag.evaluation import EvalReport, Question
    from rag.retrieval.retriever import Mode


def evaluate(
    questions: Annotated[
        list[Path],
        typer.Argument(help="Question files, one JSON object a line (see docs/evaluation.md)."),
    ],
    docs: Annotated[
        Path,
        typer.Option(
            "--docs", exists=True, file_okay=False, help="Folder of the documents to ingest."
        ),
    ],
    collection: CollectionOption = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Passages retrieved.")] = 10,
    mode: Annotated[
        str, typer.Option(help="Retrieval: hybrid, dense, keyword, or all three side by side.")
    ] = "hybrid",
    answers: Annotated[
        bool, typer.Option("--answers", help="Also generate and score answers (slow).")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="A random N questions of each file (the same N every run)."),
    ] = None,
    half: Annotated[
        str | None,
        typer.Option(
            help="Only one half of the questions: calibrate (to tune on) or report (to report)."
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            exists=True,
            dir_okay=False,
            help="A second settings file: run both on the same questions, print the paired "
            "differences.",
        ),
    ] = None,
    rows: Annotated[
        Path | None,
        typer.Option(
            "--rows",
            dir_okay=False,
            help="With --answers: write each answer here (the question, the answer, which "
            "step declined it), one JSON object a line.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval (and with --answers, answers) on questions with known answers.

    DOCS is ingested first, into its own collection (`eval-<folder name>` unless
    --collection is given), kept in step with the folder, so a second run only
    re-reads what changed. With --compare, the same questions are run again with the
    settings of that file (environment variables still apply to both).
    """
    from rag.evaluation import compare as paired
    from rag.evaluation import format_comparison, format_table, load_questions
    from rag.retrieval.retriever import MODES

    modes = [m for m in MODES if mode in (m, "all")]
    if not modes:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)} or all.")
    items = [q for path in questions for q in load_questions(path, limit, sample=sample, half=half)]
    # Named after the folder and its parent ("eval/xquad/docs" gives eval-xquad-docs).
    where = "-".join(docs.resolve().parts[-2:])
    target = collection or "eval-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", where).strip("-") or "docs")
    rows_file = _rows_file(rows, answers)  # opened now: a bad path fails before the work
    report = _evaluate_with(read_settings(), docs, target, items, k, modes, answers)
    if rows_file is not None:
        with rows_file:
            for row in report.answer_rows:
                rows_file.write(json.dumps(row, ensure_ascii=False) + "\n")
    if compare is None:
        if as_json:
            print_json(report.as_json())
        else:
            typer.echo(format_table(report))
        return
    other = _evaluate_with(read_settings_file(compare), docs, target, items, k, modes, answers)
    differences = paired(report, other)
    if as_json:
        b: dict[str, Any] = {"settings": str(compare), **other.as_json()}
        print_json(
            {
                "a": report.as_json(),
                "b": b,
                "differences": [{**asdict(d), "difference": d.difference} for d in differences],
            }
        )
    else:
        typer.echo(f"A: the current settings\n\n{format_table(report)}\n")
        typer.echo(f"B: {compare}\n\n{format_table(other)}\n")
        typer.echo(format_comparison(differences, ("A", "B")))


def _evaluate_with(
    settings: Settings,
    docs: Path,
    target: str,
    items: list[Question],
    k: int,
    modes: list[Mode],
    answers: bool,
) -> EvalReport:
    """Ingest `docs` into `target` with these settings, then evaluate `items` there."""
    from ingest.batch import BatchOptions, run_batch
    from rag.errors import ConfigError
    from rag.evaluation import evaluate

    with open_lore(settings) as lore:
        built_with = lore.store.embedder_of(target)
        if built_with not in (None, lore.embedder_name):
            raise ConfigError(
                f"Collection '{target}' is built with {built_with}, but these settings "
                f"evaluate {lore.embedder_name}: evaluate in another collection."
            )
        ingested = run_batch(lore, [docs], target, BatchOptions(sync=True))
        typer.echo(
            f"{ingested.files} documents in '{target}', {ingested.chunks} new chunks.", err=True
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=stderr_console(),
        ) as bar:  # fmt: skip
            tasks: dict[str, TaskID] = {}

            def on_step(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            return evaluate(
                lore.retriever,
                items,
                target,
                k=k,
                modes=modes,
                answerer=lore.answerer if answers else None,
                count_tokens=lore.generator.count_tokens if answers else None,
                progress=on_step,
            )


def _rows_file(path: Path | None, answers: bool) -> TextIO | None:
    """`--rows` opened for writing, or a usage error that names what is wrong."""
    if path is None:
        return None
    if not answers:
        raise typer.BadParameter("--rows writes the answers: give --answers too.")
    try:
        return path.open("w", encoding="utf-8")
    except OSError as error:
        raise typer.BadParameter(f"--rows: cannot write {path}: {error.strerror}.") from error
