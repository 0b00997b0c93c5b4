"""Cluster mode against embedded mode: the same retrieval quality on every dev set.

    PYTHONPATH=. LORE_DATA_DIR=/tmp/eval/data .venv/bin/python bench/keyword_parity.py \\
        --start-postgres [--eval-dir ../shared/eval] [--sets xquad,cmrc2018-trial] [--sample N]
        [--grow 100000]

    (or --database-url postgresql://… instead of --start-postgres)

1. Copies the data dir's Chroma store, keyword index and manifest into a temporary
   folder (the original is only read; `lore eval` ingested the dev sets there, one
   collection each).
2. Copies each set's keyword chunks into a `PgKeywordIndex` (from the Chroma store's
   chunks, in the SQLite index's order, through `add` as ingest writes them) and its
   manifest into a `PgManifest`, in the given database (its collections there are
   replaced), and checks both indexes hold the same words in the same number of chunks.
3. Searches every question of each set in hybrid mode twice, with the same embedder and
   the same Chroma store: once with the SQLite keyword index and manifest (embedded
   mode), once with the PostgreSQL ones (cluster mode). Each question is embedded once
   (a cache), and translation is off in both runs: it needs the chat model, and searches
   both runs alike. Prints answer-hit@5 and MRR@10 side by side, how many questions'
   keyword top 20 and hybrid top 10 differ, and the keyword search latency of each.
4. With --grow N, fills one more collection of both keyword indexes with N chunks:
   copies of the sets' chunks, made as bench/retrieval_latency.py makes them (every word
   is then far more frequent than in a real corpus of that size, the costly case), and
   times keyword search there with up to 100 questions of each set.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from rag.components.embeddings import Embedder, Vectors
from rag.components.keyword import KeywordIndex, KeywordStore
from rag.components.store import VectorStore
from rag.config import Settings, default_data_dir
from rag.container import Lore
from rag.evaluation import Question, load_questions, retrieval_metrics, run_retrieval
from rag.postgres.database import Database, upgrade
from rag.postgres.keywords import PgKeywordIndex
from rag.postgres.manifest import PgManifest
from rag.retrieval.manifest import DocumentManifest, Manifest
from rag.retrieval.retriever import Retriever
from rag.types import Chunk

K = 10
CANDIDATES = Retriever.CANDIDATES
# The collection `--grow` fills with copies of the dev sets' chunks, in both indexes.
GROWN = "keyword-parity-grown"


@dataclass(frozen=True)
class DevSet:
    name: str
    folder: str  # under the eval dir
    collection: str  # as `lore eval` names it


SETS = (
    DevSet("xquad", "xquad", "eval-xquad-docs"),
    DevSet("xquad-cross/en2zh", "xquad-cross/en2zh", "eval-en2zh-docs"),
    DevSet("xquad-cross/zh2en", "xquad-cross/zh2en", "eval-zh2en-docs"),
    DevSet("cmrc2018-trial", "cmrc2018-trial", "eval-cmrc2018-trial-docs"),
)


class CachedQueries:
    """`embedder`, remembering each question's vector: both runs embed a question once."""

    def __init__(self, embedder: Embedder):
        self._embedder = embedder
        self._vectors: dict[str, list[float]] = {}

    @property
    def name(self) -> str:
        return self._embedder.name

    @property
    def dimension(self) -> int:
        return self._embedder.dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embedder.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        if text not in self._vectors:
            self._vectors[text] = self._embedder.embed_query(text)
        return self._vectors[text]


@contextmanager
def postgres(url: str | None, start: bool) -> Iterator[str]:
    """The URL of a database with Lore's schema: `url` (migrated if need be), or a new
    one in a throwaway server (tests/servers.py)."""
    if url is not None:
        upgrade(url)
        yield url
        return
    if not start:
        sys.exit("Give --database-url, or --start-postgres to start a throwaway server.")
    from tests.servers import PostgresServer

    server = PostgresServer()
    try:
        yield server.database()
    finally:
        server.close()


def ingest_order(path: Path, collection: str) -> list[tuple[str, str]]:
    """(doc id, chunk id) of each chunk of `collection` in the SQLite index at `path`, in
    the order they were written (the order ties keep in its ranking)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT doc_id, chunk_id FROM chunk_rows WHERE collection = ? ORDER BY rowid",
            (collection,),
        ).fetchall()
    finally:
        db.close()
    return [(str(doc), str(chunk)) for doc, chunk in rows]


def vocabulary(path: Path, collection: str) -> list[str]:
    """Every word of `collection` in the SQLite index at `path` (FTS5's vocabulary)."""
    db = sqlite3.connect(path)
    try:
        number = db.execute("SELECT id FROM collections WHERE name = ?", (collection,)).fetchone()
        if number is None:
            return []
        table = f"vocab_{int(number[0])}"
        return [str(r[0]) for r in db.execute(f"SELECT term FROM {table}")]  # noqa: S608
    finally:
        db.close()


def copy_keywords(
    path: Path, store: VectorStore, pg: PgKeywordIndex, collection: str
) -> tuple[list[Chunk], float]:
    """Write `collection`'s chunks into `pg` as the SQLite index at `path` holds them,
    document by document; returns the chunks and the seconds it took."""
    pg.drop_collection(collection)
    documents: dict[str, list[str]] = {}
    for doc_id, chunk_id in ingest_order(path, collection):
        documents.setdefault(doc_id, []).append(chunk_id)
    chunks = []
    started = time.perf_counter()
    for chunk_ids in documents.values():
        found = {c.id: c for c, _ in store.chunks_with_vectors(collection, chunk_ids)}
        chunks += [found[i] for i in chunk_ids]
        pg.add(collection, [found[i] for i in chunk_ids])
    return chunks, time.perf_counter() - started


def grow(base: Sequence[Chunk], target: int, stores: dict[str, KeywordStore]) -> dict[str, float]:
    """Fill the collection GROWN of each store with at least `target` chunks: copies of
    `base`, each under new ids, its heading numbered and about a tenth of its neighbouring
    words (between spaces) trading places, as bench/retrieval_latency.py makes them.
    Returns each store's seconds."""
    draw = random.Random(0)  # noqa: S311
    seconds = dict.fromkeys(stores, 0.0)
    for store in stores.values():
        store.drop_collection(GROWN)
    for copy in range(math.ceil(target / len(base))):
        batch = []
        for chunk in base:
            words = chunk.text.split(" ")
            for _ in range(len(words) // 10):
                i = draw.randrange(max(len(words) - 1, 1))
                words[i : i + 2] = words[i : i + 2][::-1]
            batch.append(
                replace(
                    chunk,
                    id=f"{chunk.id}~{copy}",
                    doc_id=f"{chunk.doc_id}~{copy}",
                    text=" ".join(words),
                    heading=f"{chunk.heading} (copy {copy})",
                )
            )
        for name, store in stores.items():
            started = time.perf_counter()
            store.add(GROWN, batch)
            seconds[name] += time.perf_counter() - started
    return seconds


def copy_manifest(sqlite: Manifest, pg: PgManifest, collection: str) -> int:
    """Record `collection`'s documents in `pg` as `sqlite` has them; returns how many."""
    for record in pg.documents(collection) + pg.unfinished(collection):
        pg.retire(collection, record.doc_id)
        pg.forget(collection, record.doc_id)
    records = sqlite.documents(collection)
    for record in records:
        found = (sqlite.source(collection, path) for path in record.sources)
        sources = [s for s in found if s is not None]
        if not sources:
            continue
        first, rest = sources[0], sources[1:]
        if record.status == "failed":
            pg.fail(
                collection, record.doc_id, record.sha256, record.pipeline,
                source=first.source, size=first.size, mtime_ns=first.mtime_ns,
                code=record.error_code or "", error=record.error or "", name=first.name,
            )  # fmt: skip
        elif record.status == "indexed":
            pg.begin(collection, record.doc_id, record.sha256, record.pipeline)
            pg.commit(
                collection, record.doc_id, title=record.title, chunks=record.chunks,
                source=first.source, size=first.size, mtime_ns=first.mtime_ns, name=first.name,
            )  # fmt: skip
        else:
            pg.begin(collection, record.doc_id, record.sha256, record.pipeline)
            rest = sources
        for s in rest:
            pg.attach(collection, s.source, record.doc_id, s.size, s.mtime_ns, s.name)
    return len(records)


def same_words(sqlite: KeywordIndex, pg: PgKeywordIndex, path: Path, collection: str) -> str:
    """Whether both indexes count every word of the collection in as many chunks."""
    words = vocabulary(path, collection)
    expected, total = sqlite.document_counts(collection, words)
    found, pg_total = pg.document_counts(collection, words)
    differ = sum(expected[w] != found[w] for w in words)
    chunks = (
        "same chunks"
        if sqlite.chunk_counts(collection) == pg.chunk_counts(collection)
        else "CHUNKS DIFFER"
    )
    return (
        f"{len(words)} words, {differ} counted differently; {total} / {pg_total} chunks, {chunks}"
    )


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def spread(milliseconds: Sequence[float]) -> str:
    return f"{percentile(milliseconds, 0.5):.1f} / {percentile(milliseconds, 0.95):.1f}"


def keyword_runs(
    stores: dict[str, KeywordStore], questions: Sequence[Question], collection: str
) -> tuple[dict[str, list[float]], int, float]:
    """Each store's keyword search times (ms) for the questions, how many questions' top
    CANDIDATES differ between the stores, and the largest relative score difference."""
    times: dict[str, list[float]] = {name: [] for name in stores}
    differ, worst = 0, 0.0
    for question in questions:
        hits = {}
        for name, store in stores.items():
            started = time.perf_counter()
            hits[name] = store.search(collection, question.question, CANDIDATES)
            times[name].append((time.perf_counter() - started) * 1000)
        first, second = hits.values()
        differ += [h.chunk_id for h in first] != [h.chunk_id for h in second]
        scores = {h.chunk_id: h.score for h in first}
        for hit in second:
            if hit.chunk_id in scores:
                worst = max(
                    worst, abs(hit.score - scores[hit.chunk_id]) / abs(scores[hit.chunk_id])
                )
    return times, differ, worst


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: LORE_DATA_DIR")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="default: LORE_MODELS_DIR, else ~/.local/share/lore/models",
    )
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--sets", default=",".join(s.name for s in SETS))
    parser.add_argument("--sample", type=int, default=None, help="questions a set (seeded)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--start-postgres", action="store_true")
    parser.add_argument(
        "--grow", type=int, default=0, help="then time keyword search in N chunks (copies)"
    )
    args = parser.parse_args(argv)

    wanted = args.sets.split(",")
    sets = [s for s in SETS if s.name in wanted]
    settings = Settings()
    source = args.data_dir or settings.data_dir
    models = args.models_dir or settings.models_dir or default_data_dir() / "models"
    work = Path(tempfile.mkdtemp(prefix="keyword-parity-"))
    for name in ("keywords.sqlite3", "manifest.sqlite3"):
        shutil.copy2(source / name, work / name)
    shutil.copytree(source / "chroma", work / "chroma")
    print(f"# {' '.join(sys.argv)}")
    print(f"# data copied from {source} to {work}")

    try:
        run(args, sets, Settings(data_dir=work, models_dir=models), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, sets: Sequence[DevSet], settings: Settings, work: Path) -> None:
    lore = Lore(settings)
    embedder = CachedQueries(lore.embedder)
    sqlite_keywords = KeywordIndex(work / "keywords.sqlite3")
    sqlite_manifest = Manifest(work / "manifest.sqlite3")
    with postgres(args.database_url, args.start_postgres) as url:
        database = Database(url)
        pg_keywords, pg_manifest = PgKeywordIndex(database), PgManifest(database)
        modes: dict[str, tuple[DocumentManifest, KeywordStore]] = {
            "embedded": (sqlite_manifest, sqlite_keywords),
            "cluster": (pg_manifest, pg_keywords),
        }
        retrievers = {
            name: Retriever(embedder, lore.store, manifest, keywords, mode="hybrid")
            for name, (manifest, keywords) in modes.items()
        }
        rows, base, asked = [], [], []
        keyword_stores = {name: keywords for name, (_, keywords) in modes.items()}
        for dev_set in sets:
            collection = dev_set.collection
            chunks, seconds = copy_keywords(
                work / "keywords.sqlite3", lore.store, pg_keywords, collection
            )
            base += chunks
            documents = copy_manifest(sqlite_manifest, pg_manifest, collection)
            print(
                f"# {dev_set.name}: {documents} documents, {len(chunks)} chunks copied "
                f"({len(chunks) / seconds:.0f} chunks/s); "
                f"{same_words(sqlite_keywords, pg_keywords, work / 'keywords.sqlite3', collection)}"
            )
            path = args.eval_dir / dev_set.folder / "questions.jsonl"
            questions = [q for q in load_questions(path, sample=args.sample) if not q.unanswerable]
            asked += questions[:: max(1, len(questions) // 100)][:100]
            found = {
                name: run_retrieval(retriever, questions, collection, K, mode="hybrid")
                for name, retriever in retrievers.items()
            }
            ranks_differ = sum(
                a.answer_rank != b.answer_rank
                for a, b in zip(found["embedded"], found["cluster"], strict=True)
            )
            times, top_differ, worst = keyword_runs(keyword_stores, questions, collection)
            metrics = {name: retrieval_metrics(found[name], K) for name in found}
            rows.append(
                (dev_set.name, len(questions), metrics, ranks_differ, top_differ, worst, times)
            )
        if args.grow:
            # Once each: xquad-cross holds the same documents (chunk ids) as xquad.
            unique = list({chunk.id: chunk for chunk in base}.values())
            written = grow(unique, args.grow, keyword_stores)
            count = sum(pg_keywords.chunk_counts(GROWN).values())
            times, top_differ, worst = keyword_runs(keyword_stores, asked, GROWN)
            grown = (count, written, len(asked), top_differ, worst, times)
            for keywords in keyword_stores.values():
                keywords.drop_collection(GROWN)
        database.close()

    print()
    print(
        "| set | questions | answer-hit@5 embedded | cluster | Δ | MRR@10 embedded | cluster | Δ "
        "| answer ranks differ | keyword top 20 differ | max score Δ (rel.) "
        "| keyword p50 / p95 ms SQLite | PostgreSQL |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, count, metrics, ranks_differ, top_differ, worst, times in rows:
        e, c = metrics["embedded"], metrics["cluster"]
        hit = (e["answer_hit@5"], c["answer_hit@5"])
        mrr = (e["mrr@10"], c["mrr@10"])
        print(
            f"| {name} | {count} | {hit[0]:.3f} | {hit[1]:.3f} | {hit[1] - hit[0]:+.3f} "
            f"| {mrr[0]:.3f} | {mrr[1]:.3f} | {mrr[1] - mrr[0]:+.3f} | {ranks_differ} "
            f"| {top_differ} | {worst:.1e} "
            f"| {spread(times['embedded'])} | {spread(times['cluster'])} |"
        )
    if args.grow:
        count, written, asked_count, top_differ, worst, times = grown
        print()
        print(
            f"Keyword search in {count} chunks (copies of the sets' chunks), {asked_count} "
            "questions (up to 100 a set):"
        )
        print()
        print(
            "| index | write, chunks/s | search p50 / p95 ms | top 20 differ | max score Δ (rel.) |"
        )
        print("|---|---|---|---|---|")
        for name, label in (("embedded", "SQLite FTS5"), ("cluster", "PostgreSQL")):
            print(
                f"| {label} | {count / written[name]:.0f} | {spread(times[name])} "
                f"| {top_differ} | {worst:.1e} |"
            )


if __name__ == "__main__":
    main()
