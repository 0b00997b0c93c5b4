"""Metadata filters (source, type, date) on every retrieval path, and the reranker hook."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.pipeline import ingest_file
from rag.container import Lore
from rag.errors import InvalidInput
from rag.retrieval.filters import Filters, epoch_microseconds, make_filters, parse_when
from rag.retrieval.retriever import Mode, Retriever
from rag.types import Chunk
from tests.fakes import WordCountReranker

pytestmark = pytest.mark.unit

MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")


def _ns(day: str) -> int:
    return epoch_microseconds(parse_when(day)) * 1000


def _index(lore: Lore, source: str, texts: Sequence[str], modified: str = "2024-06-01") -> str:
    """Index `texts` as the chunks of one document at `source`, the way ingest records them."""
    doc_id = "doc-" + source.strip("/").replace("/", "-")
    chunks = [
        Chunk(f"{doc_id}:{i}", doc_id, text, source, Path(source).name, i, doc_id)
        for i, text in enumerate(texts)
    ]
    lore.manifest.begin("default", doc_id, doc_id, "test")
    lore.store.add("default", chunks, lore.embedder.embed_documents(texts))
    lore.keywords.add("default", chunks)
    lore.manifest.commit(
        "default",
        doc_id,
        title=doc_id,
        chunks=len(chunks),
        source=source,
        size=1,
        mtime_ns=_ns(modified),
    )
    return doc_id


LIBRARY = {  # name: (source path, text, modification date)
    "q1": ("/srv/docs/reports/q1.pdf", "Pump report Q1: seals replaced.", "2024-01-15"),
    "q2": ("/srv/docs/reports/q2.PDF", "Pump report Q2: pressure is stable.", "2024-04-15"),
    "notes": ("/srv/docs/notes/pump.md", "Pump notes: check the seals weekly.", "2024-04-20"),
    "old": ("/archive/reports/pump.txt", "Old pump report from the archive.", "2019-03-01"),
}


@pytest.fixture
def library(lore: Lore) -> dict[str, str]:
    """Four documents that all mention the pump, in different folders, types and months."""
    return {name: _index(lore, path, [text], day) for name, (path, text, day) in LIBRARY.items()}


def _docs(lore: Lore, filters: Filters, mode: Mode) -> set[str]:
    found = lore.retriever.search("pump report seals", "default", 10, mode=mode, filters=filters)
    return {p.chunk.doc_id for p in found}


def test_make_filters_normalises_types_and_reads_dates_as_utc() -> None:
    filters = make_filters(["reports/*.pdf", "reports/*.pdf"], [".PDF", "md"], "2024-01-01", None)
    assert filters.sources == ("reports/*.pdf",)
    assert filters.types == ("pdf", "md")
    assert filters.since == datetime(2024, 1, 1, tzinfo=UTC)
    assert make_filters(until="2024-01-31").until == datetime(
        2024, 1, 31, 23, 59, 59, 999999, tzinfo=UTC
    )
    assert make_filters(since="2024-01-01T10:00:00+02:00").since == datetime(
        2024, 1, 1, 8, tzinfo=UTC
    )
    assert not make_filters()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": "last tuesday"}, "is not a date"),
        ({"until": "2024-02-30"}, "is not a date"),
        ({"since": "2024-05-01", "until": "2024-04-01"}, "date range is empty"),
        ({"types": ["application/pdf"]}, "is not a file type"),
        ({"types": [""]}, "is not a file type"),
        ({"sources": ["  "]}, "source filter is empty"),
    ],
)
def test_make_filters_refuses_bad_values_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_filters(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_source_filter_takes_exact_paths_folders_and_globs(
    lore: Lore, library: dict[str, str], mode: Mode
) -> None:
    assert _docs(lore, make_filters(["/srv/docs/notes/pump.md"]), mode) == {library["notes"]}
    assert _docs(lore, make_filters(["/srv/docs/reports"]), mode) == {library["q1"], library["q2"]}
    # A relative glob matches at any folder boundary; `*` crosses folders.
    reports = {library["q1"], library["q2"], library["old"]}
    assert _docs(lore, make_filters(["reports/*"]), mode) == reports
    assert _docs(lore, make_filters(["/srv/*.md"]), mode) == {library["notes"]}
    assert _docs(lore, make_filters(["docs/notes"]), mode) == {library["notes"]}
    assert _docs(lore, make_filters(["ocs/notes"]), mode) == set()  # not a folder boundary
    assert _docs(lore, make_filters(["/srv/docs/report"]), mode) == set()


@pytest.mark.parametrize("mode", MODES)
def test_type_filter_matches_the_extension_in_any_case(
    lore: Lore, library: dict[str, str], mode: Mode
) -> None:
    assert _docs(lore, make_filters(types=["pdf"]), mode) == {library["q1"], library["q2"]}
    assert _docs(lore, make_filters(types=["md", "txt"]), mode) == {
        library["notes"],
        library["old"],
    }
    assert _docs(lore, make_filters(types=["docx"]), mode) == set()


@pytest.mark.parametrize("mode", MODES)
def test_date_filter_uses_the_files_modification_time_inclusively(
    lore: Lore, library: dict[str, str], mode: Mode
) -> None:
    this_year = {library["q1"], library["q2"], library["notes"]}
    assert _docs(lore, make_filters(since="2024-01-01"), mode) == this_year
    up_to_mid_april = {library["q1"], library["q2"], library["old"]}
    assert _docs(lore, make_filters(until="2024-04-15"), mode) == up_to_mid_april
    assert _docs(lore, make_filters(since="2024-04-01", until="2024-04-15"), mode) == {
        library["q2"]
    }
    # All conditions must hold for the same document.
    assert _docs(lore, make_filters(["reports/*"], ["pdf"], since="2024-04-01"), mode) == {
        library["q2"]
    }


def test_a_document_stays_hidden_while_its_replacement_is_written(
    lore: Lore, library: dict[str, str]
) -> None:
    lore.manifest.begin("default", library["notes"], "x", "test")  # back to pending
    assert _docs(lore, make_filters(types=["md"]), "hybrid") == set()


@pytest.mark.parametrize("push_down", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_a_narrow_filter_still_returns_k_passages(lore: Lore, mode: Mode, push_down: bool) -> None:
    for i in range(30):  # close matches, outside the filter
        _index(lore, f"/srv/noise/pump{i}.txt", [f"Pump seal report number {i} for pump {i}."])
    wanted = _index(
        lore,
        "/srv/manuals/pump.md",
        [
            "Pump manual, part one: the seal kit.",
            "Pump manual, part two: the impeller and bearings.",
            "Pump manual, part three: pressure testing after a repair.",
            "Pump manual, part four: winter storage and draining.",
        ],
    )
    retriever = lore.retriever
    retriever.PUSH_DOWN_SHARE = 1.01 if push_down else 0.0  # always, or never
    found = retriever.search(
        "pump seal report", "default", 3, mode=mode, filters=make_filters(["manuals/"])
    )
    assert len(found) == 3
    assert {p.chunk.doc_id for p in found} == {wanted}
    assert retriever.search("pump seal report", "default", 3, mode=mode)[0].chunk.doc_id != wanted


def test_filters_that_match_nothing_return_nothing(lore: Lore, library: dict[str, str]) -> None:
    assert lore.retriever.search("pump", "default", 5, filters=make_filters(types=["xlsx"])) == []
    assert lore.answerer.ask("pump?", "default", filters=make_filters(types=["xlsx"])).declined


def test_answers_draw_only_on_documents_that_pass_the_filters(
    lore: Lore, library: dict[str, str]
) -> None:
    answer = lore.answerer.ask(
        "What does the pump report say?", "default", filters=make_filters(types=["md"])
    )
    assert {s.doc_id for s in answer.sources} == {library["notes"]}


def test_filters_work_on_ingested_files(lore: Lore, docs: Path) -> None:
    ingested = {p.suffix: ingest_file(lore, p, "default") for p in docs.iterdir()}
    found = lore.retriever.search("port 8000", "default", 5, filters=make_filters(types=["txt"]))
    assert {p.chunk.doc_id for p in found} == {ingested[".txt"].doc_id}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert lore.retriever.search("port", "default", 5, filters=make_filters(since=tomorrow)) == []


def test_reranker_reorders_the_candidates_and_keeps_the_cosine_scores(lore: Lore) -> None:
    for i, verb in enumerate(["grease", "tighten", "inspect", "clean", "oil", "replace"]):
        _index(lore, f"/srv/kb/hinge{i}.txt", [f"Hinge maintenance, step {i}: {verb} the hinge."])
    target = _index(lore, "/srv/kb/zebra.txt", ["Zebra hinge note: the hinge squeaks."])
    plain = Retriever(lore.embedder, lore.store, lore.manifest, lore.keywords, mode="dense")
    reranker = WordCountReranker("zebra")
    reranked = Retriever(
        lore.embedder, lore.store, lore.manifest, lore.keywords, mode="dense", reranker=reranker
    )
    before = plain.search("grease the hinge", "default", 7)
    assert before[0].chunk.doc_id != target
    after = reranked.search("grease the hinge", "default", 3)
    assert len(after) == 3
    assert after[0].chunk.doc_id == target
    assert after[0].rerank_score == 1.0
    assert [p.rerank_score for p in after[1:]] == [0.0, 0.0]
    cosine = {p.chunk.id: p.score for p in before}
    assert all(p.score == pytest.approx(cosine[p.chunk.id]) for p in after)
    # It read the question and the candidates, up to RERANK_CANDIDATES of them.
    query, texts = reranker.calls[-1]
    assert query == "grease the hinge"
    assert len(texts) == 7 <= Retriever.RERANK_CANDIDATES
    assert plain.search("grease the hinge", "default", 3)[0].rerank_score is None


@pytest.mark.parametrize("mode", MODES)
def test_reranker_sees_only_passages_that_pass_the_filters(lore: Lore, mode: Mode) -> None:
    kept = _index(lore, "/srv/kb/a.md", ["Hinge note A."])
    _index(lore, "/srv/kb/zebra.txt", ["Zebra hinge note."])
    reranker = WordCountReranker("zebra")
    retriever = Retriever(
        lore.embedder, lore.store, lore.manifest, lore.keywords, mode=mode, reranker=reranker
    )
    found = retriever.search("hinge note", "default", 2, filters=make_filters(types=["md"]))
    assert [p.chunk.doc_id for p in found] == [kept]
    assert all("Zebra" not in text for _, texts in reranker.calls for text in texts)
