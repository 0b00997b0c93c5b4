"""The keyword index on PostgreSQL scores as the SQLite one does, and keeps exact
statistics when several processes write to it at once (issue 16)."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from dataclasses import replace
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from rag.components.keyword import KeywordIndex, words
from rag.postgres.database import Database
from rag.postgres.keywords import PgKeywordIndex
from rag.types import Chunk

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

_ENGLISH = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "river castle harbour engine protocol treaty glacier violin parliament orbit copper "
    "pension mortgage reactor cathedral ferry tariff monsoon vaccine satellite dynasty "
    "8000 1848 42 qz-4471 snake_case_name ὀξύς"
)
_CHINESE = (
    "长城 是 中国 古代 的 军事 防御 工程 北京 故宫 明清 两代 皇家 宫殿 上海 港口 黄河 长江 "
    "铁路 桥梁 大学 图书馆 博物馆 历史 经济 政府 条约 发电站 卫星 疫苗 季风 王朝 铜矿 议会"
)
ENGLISH, CHINESE = _ENGLISH.split(), _CHINESE.split()


def _text(draw: random.Random, vocabulary: list[str], joiner: str) -> str:
    # Zipf-like: early words of the vocabulary are common, late ones rare.
    length = draw.randint(3, 60)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    return joiner.join(draw.choices(vocabulary, weights, k=length))


def _chunks(seed: int, documents: int, prefix: str = "d") -> list[Chunk]:
    draw = random.Random(seed)  # noqa: S311
    chunks = []
    for number in range(documents):
        doc_id = f"{prefix}{number}"
        for index in range(draw.randint(1, 4)):
            if draw.random() < 0.4:
                text = _text(draw, CHINESE, "") + "。" + _text(draw, CHINESE, "，")
            else:
                text = _text(draw, ENGLISH, " ").capitalize() + "."
            chunks.append(
                Chunk(f"{doc_id}-{index}", doc_id, text, f"/docs/{doc_id}.md", doc_id, index, "0")
            )
    return chunks


QUESTIONS = [
    "Which river runs past the castle?",
    "When was the treaty of 1848 signed by parliament?",
    "What does the copper tariff do to pensions and mortgages?",
    "Is QZ-4471 the part for the reactor?",
    "Where does the ferry leave the harbour in the monsoon?",
    "What is snake_case_name, and ὀξύς?",
    "the of and",
    "长城是什么时候修建的？",
    "故宫在北京的哪里？",
    "黄河和长江上的铁路桥梁",
    "中国古代王朝的议会",
    "Which satellite carried the vaccine to 上海？",
]


@pytest.fixture
def indexes(database_url: str, tmp_path: Path) -> Iterator[tuple[KeywordIndex, PgKeywordIndex]]:
    database = Database(database_url)
    sqlite = KeywordIndex(tmp_path / "keywords.sqlite3")
    yield sqlite, PgKeywordIndex(database)
    sqlite.close()
    database.close()


def _assert_same_search(
    sqlite: KeywordIndex, pg: PgKeywordIndex, collection: str, *, written_alike: bool = True
) -> None:
    """Both indexes find the same chunks with the same scores, to the last bit, and rank
    them alike; chunks that score the same are in the order they were written, so when
    the two were not written in the same order, only the scores are compared in order."""
    for question in QUESTIONS:
        assert pg.query_terms(collection, question) == sqlite.query_terms(collection, question)
        assert pg.document_counts(collection, words(question)) == sqlite.document_counts(
            collection, words(question)
        )
        assert pg.rarity(collection, words(question)) == sqlite.rarity(collection, words(question))
        expected = sqlite.search(collection, question, 10_000)
        found = pg.search(collection, question, 10_000)
        if written_alike:
            assert found == expected
            assert pg.search(collection, question, 5) == expected[:5]
        else:
            assert sorted(found, key=str) == sorted(expected, key=str)
            assert [h.score for h in found] == [h.score for h in expected]


def test_postgresql_ranks_and_scores_as_sqlite_does(
    indexes: tuple[KeywordIndex, PgKeywordIndex],
) -> None:
    sqlite, pg = indexes
    chunks = _chunks(seed=1, documents=120)
    # Copies under other ids score exactly the same: they are ranked in the order written.
    chunks += [replace(c, id=f"copy-{c.id}", doc_id=f"copy-{c.doc_id}") for c in chunks[:60]]
    for index in (sqlite, pg):
        index.add("alpha", chunks)
        # Another collection's chunks change no score in alpha.
        index.add("beta", _chunks(seed=2, documents=60))
    _assert_same_search(sqlite, pg, "alpha")
    _assert_same_search(sqlite, pg, "beta")
    assert pg.chunk_counts("alpha") == sqlite.chunk_counts("alpha")

    # Replaced and deleted chunks leave the same statistics as ones never written.
    replacements = _chunks(seed=3, documents=30)
    for index in (sqlite, pg):
        index.add("alpha", replacements)
        for number in range(30, 60):
            index.delete_document("alpha", f"d{number}")
        index.drop_collection("beta")
    _assert_same_search(sqlite, pg, "alpha")
    assert pg.search("beta", QUESTIONS[0], 5) == []


def test_scores_of_a_collection_ignore_other_collections(database_url: str) -> None:
    database = Database(database_url)
    pg = PgKeywordIndex(database)
    pg.add("alpha", _chunks(seed=1, documents=40))
    before = [pg.search("alpha", q, 20) for q in QUESTIONS]
    pg.add("beta", _chunks(seed=2, documents=80, prefix="b"))
    pg.add("alpha-2", _chunks(seed=1, documents=40))
    assert [pg.search("alpha", q, 20) for q in QUESTIONS] == before
    pg.drop_collection("beta")
    assert [pg.search("alpha", q, 20) for q in QUESTIONS] == before
    database.close()


def test_a_word_too_long_for_a_lexeme_still_counts_in_the_length(database_url: str) -> None:
    database = Database(database_url)
    pg = PgKeywordIndex(database)
    long_word = "x" * 3000
    pg.add("alpha", [Chunk("c1", "d1", f"river {long_word} castle", "/a.md", "a", 0, "0")])
    assert [h.chunk_id for h in pg.search("alpha", "river", 5)] == ["c1"]
    assert pg.search("alpha", long_word, 5) == []
    pg.delete_document("alpha", "d1")
    assert pg.chunk_counts("alpha") == {}
    database.close()


PROCESSES = 2
DOCUMENTS = 60


def write(url: str, worker: int, start: Barrier) -> None:
    """One process: add its documents one at a time, deleting every third one again."""
    database = Database(url)
    try:
        index = PgKeywordIndex(database)
        index.chunk_counts("alpha")  # connects before the start, so that both start together
        chunks = _chunks(seed=10 + worker, documents=DOCUMENTS, prefix=f"w{worker}-")
        start.wait(timeout=60)
        for number in range(DOCUMENTS):
            doc_id = f"w{worker}-{number}"
            index.add("alpha", [c for c in chunks if c.doc_id == doc_id])
            if number % 3 == 2:
                index.delete_document("alpha", f"w{worker}-{number - 1}")
    finally:
        database.close()


def test_processes_writing_at_once_leave_exact_statistics(
    database_url: str, tmp_path: Path
) -> None:
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(PROCESSES)
    workers = [
        spawn.Process(target=write, args=(database_url, worker, start))
        for worker in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * PROCESSES

    # The statistics are those of the chunks left, counted afresh...
    database = Database(database_url)
    with database.connection() as conn:
        counted = conn.execute(
            "SELECT k.chunks, k.length, count(c.id) AS rows, coalesce(sum(c.length), 0) AS words "
            "FROM keyword_collections k LEFT JOIN keyword_chunks c ON c.collection = k.id "
            "WHERE k.name = 'alpha' GROUP BY k.id"
        ).fetchone()
        kept = {
            row["term"]: row["chunks"]
            for row in conn.execute("SELECT term, chunks FROM keyword_terms").fetchall()
        }
        recounted = {
            row["word"]: row["ndoc"]
            for row in conn.execute(
                "SELECT word, ndoc FROM ts_stat('SELECT terms FROM keyword_chunks')"
            )
        }
    assert counted is not None
    assert (counted["chunks"], counted["length"]) == (counted["rows"], counted["words"])
    assert kept == recounted
    # ... and the same as a SQLite index's with those chunks.
    left = [
        c
        for worker in range(PROCESSES)
        for c in _chunks(seed=10 + worker, documents=DOCUMENTS, prefix=f"w{worker}-")
        if int(c.doc_id.split("-")[1]) % 3 != 1
    ]
    sqlite = KeywordIndex(tmp_path / "keywords.sqlite3")
    sqlite.add("alpha", left)
    try:
        _assert_same_search(sqlite, PgKeywordIndex(database), "alpha", written_alike=False)
        assert PgKeywordIndex(database).chunk_counts("alpha") == sqlite.chunk_counts("alpha")
    finally:
        sqlite.close()
        database.close()
