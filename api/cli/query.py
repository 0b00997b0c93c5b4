"""`lore ask` and `lore search`: a cited answer, or the nearest passages alone."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.components import open_lore, read_settings, record
from api.cli.options import (
    CollectionOption,
    JsonOption,
    SinceOption,
    SourceOption,
    TypeOption,
    UntilOption,
    checked_filters,
)
from api.cli.output import print_json

if TYPE_CHECKING:
    from rag.types import Answer


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
    from rag.answering.answerer import check_question
    from rag.types import DoneEvent, TokenEvent

    filters = checked_filters(source, file_type, since, until)
    settings = read_settings()
    check_question(question, settings)  # before the models load
    target = collection or settings.collection
    started = time.perf_counter()
    with open_lore(settings) as lore:
        # Loads both models, so the timings below separate loading from answering.
        _ = lore.for_collection(target).answerer
        loaded = time.perf_counter()
        first_token: float | None = None
        answer: Answer | None = None
        events = lore.stream_on_collection(
            target, lambda chosen: chosen.answerer.stream(question, target, k, filters=filters)
        )
        for event in events:
            if isinstance(event, TokenEvent):
                if first_token is None:
                    first_token = time.perf_counter() - loaded
                if not as_json:
                    typer.echo(event.text, nl=False)
            elif isinstance(event, DoneEvent):
                answer = event.answer
        assert answer is not None  # noqa: S101 - the stream always ends with DoneEvent
        record(lore, "query", target, question, [c.chunk_id for c in answer.sources])
        if as_json:
            data = answer_json(answer, SourceView(lore.manifest, target, admin=True))
            finished = time.perf_counter()
            data["timing"] = {
                "load_s": round(loaded - started, 3),
                "first_token_s": round(first_token or 0.0, 3),
                "answer_s": round(finished - loaded, 3),
            }
            print_json(data)
            return
    typer.echo()
    for citation in answer.citations:
        page = f", page {citation.page}" if citation.page is not None else ""
        flag = "  (reads as instructions to an AI assistant)" if citation.flagged else ""
        typer.echo(f"[{citation.number}] {citation.source}{page}{flag}")


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
    from rag.answering.answerer import check_question

    filters = checked_filters(source, file_type, since, until)
    settings = read_settings()
    question = check_question(question, settings)
    target = collection or settings.collection
    with open_lore(settings) as lore:
        passages = lore.on_collection(
            target, lambda chosen: chosen.retriever.search(question, target, k, filters=filters)
        )
        record(lore, "search", target, question, [p.chunk.id for p in passages])
        rows = passages_json(passages, SourceView(lore.manifest, target, admin=True))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        page = f", page {row['page']}" if row["page"] is not None else ""
        preview = " ".join(row["text"].split())[:160]
        flag = "  (reads as instructions to an AI assistant)" if row["flagged"] else ""
        typer.echo(f"{row['rank']}. [{row['score']:.3f}] {row['path']}{page}{flag}\n   {preview}")
