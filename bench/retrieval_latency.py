"""Retrieval latency on the dev corpora, then on an index grown to 100k chunks.

    .venv/bin/python bench/retrieval_latency.py [--data-dir DIR] [--target-chunks 100000]
        [--queries 300] [--warmup 20] [--k 4] [--noise 0.5] [--collection bench]
        [--skip-ingest] [--embed-each-search]

1. Ingests the eval documents (XQuAD and CMRC 2018 trial, about 1,300 chunks) for real,
   with the configured (default) embedder, into the collection `bench` of DIR: a
   temporary directory unless given. A DIR that already holds them is reused, and
   files already indexed are skipped.
2. Times `Retriever.search` in each mode (hybrid, dense, keyword) over QUERIES questions
   of the eval sets, a seeded sample of English and Chinese, after WARMUP untimed ones.
   The time includes embedding the question, as a user sees it (each question is
   embedded once and that time is added to every mode's total; with
   `--embed-each-search`, every search embeds its question and the time is the
   search's wall time, in which the keyword search overlaps the embedding, as in the
   product); each stage (question
   embedding, Chroma HNSW query, FTS5 search, manifest `visible()`, fetching stored
   vectors of keyword-only hits) is timed as well, by thin wrappers that only forward.
3. Grows the collection to TARGET chunks with SYNTHETIC copies of the ingested chunks
   (`replicate`: embedding 100k chunks for real would take hours on a CPU) and times
   the same questions again.

A copy is a whole document copied under a new document id, written the way the
ingest pipeline writes one: recorded `pending` in the manifest, its chunks added to
Chroma and to the keyword index in batches, then committed `indexed`. Each copy differs
from its original: its vectors carry Gaussian noise (`--noise` is the expected length of
the noise added to the unit vector before renormalising; 0.5 gives a cosine of about
0.9 to the original), a few neighbouring words of its text trade places, and its
heading carries the copy number. The vectors and texts are still those of the eval
documents, so the copies say nothing about answer quality, only about cost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from ingest.batch import BatchOptions, default_workers, run_batch
from ingest.pipeline import pipeline_version, recover
from rag.components.embeddings import Vectors
from rag.config import Settings, load_settings
from rag.container import Lore, min_score_for
from rag.postgres.migrate import migrate
from rag.retrieval.retriever import MODES, Mode, Retriever
from rag.types import Chunk

SHARED = Path(__file__).resolve().parents[2] / "shared"
EVAL_SETS = [SHARED / "eval" / "xquad", SHARED / "eval" / "cmrc2018-trial"]
# Sources of copies start with this, so the originals can be told apart.
SYNTHETIC = "synthetic-copy-"

# A word for the text perturbation: one or two CJK characters (Chinese has no spaces),
# or a run of other word characters.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]{{1,2}}|[^\W{_CJK}]+|[^\w]+")
_IS_WORD = re.compile(r"\w")


# -- synthetic copies ---------------------------------------------------------


@dataclass(frozen=True)
class BaseDocument:
    """An ingested (original) document: its chunks in order and their stored vectors."""

    doc_id: str
    title: str
    chunks: list[Chunk]
    vectors: Vectors


@dataclass(frozen=True)
class CopyDocument:
    doc_id: str
    sha256: str
    title: str
    source: str
    chunks: list[Chunk]
    vectors: Vectors


def perturb_text(text: str, rng: np.random.Generator, share: float = 0.1) -> str:
    """`text` with about `share` of its neighbouring words swapped (at least one pair).

    Enough that a copy is not a near-duplicate of its original (which retrieval would
    drop), while its words, and so its keyword matches, stay the same.
    """
    tokens = _TOKEN.findall(text)
    words = [i for i, token in enumerate(tokens) if _IS_WORD.match(token)]
    if len(words) < 2:
        return text
    swaps = max(1, round(share * len(words)))
    for left in rng.choice(len(words) - 1, size=min(swaps, len(words) - 1), replace=False):
        a, b = words[left], words[left + 1]
        tokens[a], tokens[b] = tokens[b], tokens[a]
    return "".join(tokens)


def perturb_vectors(vectors: Vectors, rng: np.random.Generator, noise: float) -> Vectors:
    """Unit vectors near `vectors`: Gaussian noise of expected length `noise`, renormalised."""
    dimension = vectors.shape[1]
    moved = vectors + rng.normal(0.0, noise / np.sqrt(dimension), vectors.shape)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    return moved.astype(np.float32)


def make_copy(base: BaseDocument, number: int, noise: float, seed: int) -> CopyDocument:
    """Copy `number` of `base`: same chunks, perturbed, under a new document id."""
    sha256 = hashlib.sha256(f"{base.doc_id}/{SYNTHETIC}{number}/{seed}".encode()).hexdigest()
    doc_id = sha256[:32]  # as `ingest.pipeline.document_id`
    rng = np.random.default_rng([seed, number, int(base.doc_id[:8], 16)])
    marker = f"copy{number:04d}"
    source = f"{SYNTHETIC}{number:04d}/{base.chunks[0].source}"
    title = f"{base.title} ({marker})"
    chunks = [
        replace(
            chunk,
            id=f"{doc_id}-{chunk.chunk_index:05d}",
            doc_id=doc_id,
            text=perturb_text(chunk.text, rng),
            source=source,
            title=title,
            content_hash=sha256,
            heading=f"{chunk.heading} ({marker})" if chunk.heading else f"({marker})",
        )
        for chunk in base.chunks
    ]
    vectors = perturb_vectors(base.vectors, rng, noise)
    return CopyDocument(doc_id, sha256, title, source, chunks, vectors)


def base_documents(lore: Lore, collection: str) -> list[BaseDocument]:
    """The indexed documents of `collection` that are not synthetic copies, with vectors."""
    found = []
    for record in lore.manifest.documents(collection):
        if record.status != "indexed" or any(s.startswith(SYNTHETIC) for s in record.sources):
            continue
        chunks = lore.store.document_chunks(collection, record.doc_id)
        stored = dict(
            (chunk.id, vector)
            for chunk, vector in lore.store.chunks_with_vectors(collection, [c.id for c in chunks])
        )
        if not chunks or len(stored) != len(chunks):
            continue
        vectors = np.stack([stored[c.id] for c in chunks]).astype(np.float32)
        found.append(BaseDocument(record.doc_id, record.title, chunks, vectors))
    return found


def indexed_chunks(lore: Lore, collection: str) -> int:
    """Chunks that queries can see in `collection`, by the manifest."""
    return sum(r.chunks for r in lore.manifest.documents(collection) if r.status == "indexed")


def write_copies(lore: Lore, collection: str, copies: Sequence[CopyDocument]) -> None:
    """Write documents as the ingest pipeline does: pending, chunks in both indexes, indexed."""
    if not copies:
        return
    pipeline = pipeline_version(lore)
    for copy in copies:
        lore.manifest.begin(collection, copy.doc_id, copy.sha256, pipeline)
    chunks = [chunk for copy in copies for chunk in copy.chunks]
    lore.store.add(collection, chunks, np.concatenate([copy.vectors for copy in copies]))
    lore.keywords.add(collection, chunks)
    for copy in copies:
        lore.manifest.commit(
            collection, copy.doc_id, title=copy.title, chunks=len(copy.chunks),
            source=copy.source, size=sum(len(c.text.encode()) for c in copy.chunks), mtime_ns=0,
        )  # fmt: skip


def replicate(
    lore: Lore,
    collection: str,
    target: int,
    *,
    noise: float = 0.5,
    seed: int = 0,
    batch_chunks: int = 2000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Add synthetic copies of the collection's documents until it holds `target` chunks.

    Copies go round the original documents in order, copy 1 of each, then copy 2, and so
    on, so every run with the same arguments makes the same copies; copies already
    indexed are skipped, so an interrupted run resumes. Returns the chunks added.
    `on_batch` is called with the chunks written by each batch.
    """
    recover(lore, collection)
    have = indexed_chunks(lore, collection)
    if have >= target:
        return 0
    originals = base_documents(lore, collection)
    if not originals:
        raise ValueError(f"Collection '{collection}' has no ingested documents to copy.")
    added = 0
    batch: list[CopyDocument] = []
    number = 0
    while have < target:
        number += 1
        for base in originals:
            if have >= target:
                break
            copy = make_copy(base, number, noise, seed)
            record = lore.manifest.document(collection, copy.doc_id)
            if record is not None and record.status == "indexed":
                continue  # written by an earlier run, and already counted in `have`
            batch.append(copy)
            have += len(copy.chunks)
            if sum(len(c.chunks) for c in batch) >= batch_chunks:
                added += _flush(lore, collection, batch, on_batch)
    added += _flush(lore, collection, batch, on_batch)
    return added


def _flush(
    lore: Lore,
    collection: str,
    batch: list[CopyDocument],
    on_batch: Callable[[int], None] | None,
) -> int:
    write_copies(lore, collection, batch)
    written = sum(len(c.chunks) for c in batch)
    batch.clear()
    if on_batch is not None:
        on_batch(written)
    return written


# -- timing -------------------------------------------------------------------


class StageClock:
    """Seconds spent in each stage during the current query."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.current = defaultdict(float)


T = TypeVar("T")


def timed(inner: T, stages: dict[str, str], clock: StageClock) -> T:
    """`inner`, with calls to the methods named in `stages` timed (a duck-typed stand-in)."""
    return cast(T, Timed(inner, stages, clock))


class Timed:
    """Forwards everything to `inner`; calls to the methods in `stages` add to the clock."""

    def __init__(self, inner: Any, stages: dict[str, str], clock: StageClock):
        self._inner = inner
        self._stages = stages
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        stage = self._stages.get(name)
        if stage is None:
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self._clock.current[stage] += time.perf_counter() - started

        return timed


STAGES = ("embed question", "vector query", "keyword search", "visible()", "fetch vectors")


class EmbedOnce:
    """The embedder, asked once per question: the other modes reuse the vector.

    Every mode embeds the question, the same work each time; timing it once and adding
    that time to each mode's total keeps the figures a user would see while running a
    third of the embeddings on a busy machine. With `every_time` each search embeds its
    question, as the product does: the keyword search, which runs while the question is
    embedded, then counts only where it outlasts the embedding.
    """

    def __init__(self, inner: Any, *, every_time: bool = False):
        self._inner = inner
        self._every_time = every_time
        self.seconds: dict[str, float] = {}
        self._vectors: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_query(self, text: str) -> list[float]:
        if text not in self._vectors or self._every_time:
            started = time.perf_counter()
            self._vectors[text] = self._inner.embed_query(text)
            self.seconds[text] = time.perf_counter() - started
        return self._vectors[text]


def timed_retriever(lore: Lore, embedder: EmbedOnce, clock: StageClock) -> Retriever:
    """The container's components, each wrapped to time its stage, in a `Retriever`
    built with the container's arguments."""
    return Retriever(
        timed(embedder, {"embed_query": "embed question"}, clock),
        timed(
            lore.store,
            {"query": "vector query", "chunks_with_vectors": "fetch vectors"},
            clock,
        ),
        timed(lore.manifest, {"visible": "visible()"}, clock),
        timed(lore.keywords, {"search": "keyword search"}, clock),
        min_score=min_score_for(lore.settings),
        mode=lore.settings.retrieval_mode,
    )


@dataclass
class Timings:
    totals: list[float]  # embedding the question included
    searches: list[float]  # the rest: what the index's size changes
    stages: dict[str, list[float]]
    returned: list[int]


def measure(
    lore: Lore,
    questions: Sequence[str],
    collection: str,
    k: int,
    warmup: int,
    *,
    embed_each_search: bool = False,
) -> tuple[dict[Mode, Timings], tuple[float, float]]:
    """Per-mode timings of `search` over `questions` (modes interleaved), and the load
    average (1 minute) before and after. With `embed_each_search`, a total is the wall
    time of the search, its own embedding of the question included."""
    clock = StageClock()
    embedder = EmbedOnce(lore.embedder, every_time=embed_each_search)
    retriever = timed_retriever(lore, embedder, clock)
    for question in questions[:warmup]:
        for mode in MODES:
            retriever.search(question, collection, k, mode=mode)
    load_before = os.getloadavg()[0]
    results = {mode: Timings([], [], defaultdict(list), []) for mode in MODES}
    for index, question in enumerate(questions[warmup:]):
        # Rotate the order of the modes so none always runs first (or after another).
        for shift in range(len(MODES)):
            mode = MODES[(index + shift) % len(MODES)]
            clock.reset()
            started = time.perf_counter()
            passages = retriever.search(question, collection, k, mode=mode)
            elapsed = time.perf_counter() - started
            search = elapsed - clock.current.get("embed question", 0.0)
            clock.current["embed question"] = embedder.seconds[question]
            timings = results[mode]
            timings.totals.append(
                elapsed if embed_each_search else search + embedder.seconds[question]
            )
            timings.searches.append(search)
            timings.returned.append(len(passages))
            for stage in STAGES:
                timings.stages[stage].append(clock.current.get(stage, 0.0))
    return results, (load_before, os.getloadavg()[0])


def load_questions(count: int, seed: int = 0) -> list[str]:
    """A seeded sample of `count` questions, half from each eval set, shuffled together."""
    chosen: list[str] = []
    for position, folder in enumerate(EVAL_SETS):
        lines = (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        questions = [json.loads(line)["question"] for line in lines if line.strip()]
        share = count // len(EVAL_SETS) + (1 if position < count % len(EVAL_SETS) else 0)
        chosen += random.Random(seed).sample(questions, share)  # noqa: S311 (a sample)
    random.Random(seed).shuffle(chosen)  # noqa: S311
    return chosen


def ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def report(label: str, chunks: int, results: dict[Mode, Timings], load: tuple[float, float]) -> str:
    lines = [
        f"\n### {label}: {chunks:,} chunks (load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after)\n",
        "| mode | p50 ms | p95 ms | max ms | embed question p50 / p95 ms "
        "| search without embedding p50 / p95 ms | passages (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, t in results.items():
        embed = t.stages["embed question"]
        lines.append(
            f"| {mode} | {ms(t.totals, 50):.0f} | {ms(t.totals, 95):.0f} | "
            f"{max(t.totals) * 1000:.0f} | {ms(embed, 50):.0f} / {ms(embed, 95):.0f} | "
            f"{ms(t.searches, 50):.1f} / {ms(t.searches, 95):.1f} | {min(t.returned)} |"
        )
    lines += [
        "",
        "Mean ms per stage (share of the mean total):",
        "",
        "| mode | " + " | ".join(STAGES) + " | rest |",
        "|---|" + "---|" * (len(STAGES) + 1),
    ]
    for mode, t in results.items():
        mean_total = float(np.mean(t.totals))
        cells = []
        spent = 0.0
        for stage in STAGES:
            mean = float(np.mean(t.stages[stage]))
            spent += mean
            cells.append(f"{mean * 1000:.1f} ({mean / mean_total:.0%})" if mean else "-")
        rest = mean_total - spent
        cells.append(f"{rest * 1000:.1f} ({rest / mean_total:.0%})")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextmanager
def data_directory(path: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lore-bench-") as tmp:
        yield Path(tmp)


def ingest_dev_corpora(lore: Lore, collection: str) -> None:
    """Ingest the eval documents for real (files already indexed are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    docs = [folder / "docs" for folder in EVAL_SETS]
    with Progress(
        TextColumn("Ingesting the dev corpora"), BarColumn(), MofNCompleteColumn()
    ) as bar:
        task = bar.add_task("ingest", total=None)

        def progress(done: int, total: int, _result: object) -> None:
            bar.update(task, completed=done, total=total)

        report_ = run_batch(
            lore, docs, collection, BatchOptions(workers=default_workers()), progress
        )
    failed = report_.as_json()["failed"]
    if failed:
        raise SystemExit(f"{failed} eval documents failed to ingest.")


def grow(lore: Lore, collection: str, target: int, noise: float) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    start = indexed_chunks(lore, collection)
    columns = (
        TextColumn("Adding synthetic copies"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("copies", total=max(target - start, 0))
        replicate(lore, collection, target, noise=noise, on_batch=lambda n: bar.advance(task, n))


@contextmanager
def cluster_mode(lore: Lore) -> Iterator[Lore]:
    """A `Lore` in cluster mode beside `lore` (same settings and embedder): a throwaway
    PostgreSQL (initdb) and `chroma run` on loopback, from tests/servers.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pydantic import SecretStr

    from tests.servers import PostgresServer, free_port, lore_env, running

    postgres = PostgresServer()
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="lore-bench-chroma-"))
    chroma = str(Path(sys.executable).parent / "chroma")
    command = [chroma, "run", "--path", str(folder / "db"), "--host", "127.0.0.1"]
    env = {**lore_env(folder, folder), "ANONYMIZED_TELEMETRY": "False"}
    try:
        with running(
            [*command, "--port", str(port)],
            f"http://127.0.0.1:{port}/api/v2/heartbeat",
            folder / "chroma.log",
            env,
        ):
            settings = lore.settings.model_copy(
                update={
                    "database_url": SecretStr(postgres.database()),
                    "chroma_host": "127.0.0.1",
                    "chroma_port": port,
                }
            )
            yield Lore(settings, embedder_override=lore.embedder)
    finally:
        postgres.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--target-chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--k", type=int, default=4, help="passages per search (top_k)")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--collection", default="bench")
    parser.add_argument(
        "--skip-ingest", action="store_true", help="time the collection as found in --data-dir"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also copy the index into cluster mode (a PostgreSQL and a Chroma server this "
        "script starts on loopback, with `lore migrate`'s code) and time both side by side",
    )
    parser.add_argument(
        "--embed-each-search",
        action="store_true",
        help="each search embeds its question, as the product does, and a total is the "
        "search's wall time (default: one embedding a question, its time added to each mode)",
    )
    args = parser.parse_args()
    each = {"embed_each_search": args.embed_each_search}

    questions = load_questions(args.queries + args.warmup)
    outputs = []
    with data_directory(args.data_dir) as data_dir:
        settings: Settings = load_settings(data_dir=data_dir)
        lore = Lore(settings)
        _ = lore.embedder  # loaded before any clock starts, as a server would have it
        servers = contextlib.ExitStack()
        cluster = servers.enter_context(cluster_mode(lore)) if args.cluster else None
        if not args.skip_ingest:
            ingest_dev_corpora(lore, args.collection)
        copies = any(
            s.startswith(SYNTHETIC)
            for r in lore.manifest.documents(args.collection)
            for s in r.sources
        )
        sizes = [("with synthetic copies" if copies else "dev corpora", 0)]
        if indexed_chunks(lore, args.collection) < args.target_chunks:
            sizes.append(("with synthetic copies", args.target_chunks))
        for label, size in sizes:
            if indexed_chunks(lore, args.collection) < size:
                started = time.perf_counter()
                grow(lore, args.collection, size, args.noise)
                print(f"Copies written in {time.perf_counter() - started:.0f} s.")
            chunks = indexed_chunks(lore, args.collection)
            if cluster is not None:
                started = time.perf_counter()
                migrate(lore, cluster)
                print(f"Copied into cluster mode in {time.perf_counter() - started:.0f} s.")
            results, load = measure(lore, questions, args.collection, args.k, args.warmup, **each)
            outputs.append(report(f"{label}, embedded", chunks, results, load))
            print(outputs[-1], flush=True)
            if cluster is not None:
                results, load = measure(
                    cluster, questions, args.collection, args.k, args.warmup, **each
                )
                outputs.append(report(f"{label}, cluster mode", chunks, results, load))
                print(outputs[-1], flush=True)
        servers.close()

    languages = sum(1 for q in questions[args.warmup :] if re.search(f"[{_CJK}]", q))
    command = " ".join(["bench/retrieval_latency.py", *sys.argv[1:]])
    print(f"\nCommand: .venv/bin/python {command}")
    print(
        f"Embedder: {settings.embedding_model} ({lore.embedding_backend}, "
        f"{getattr(lore.embedder, 'dtype', 'int8' if lore.embedding_backend == 'onnx' else '?')}); "
        f"{len(questions) - args.warmup} timed questions ({languages} Chinese), "
        f"{args.warmup} warm-up; k={args.k}; every mode searched for each question in turn."
    )
    print(
        "Chunks beyond the dev corpora are SYNTHETIC copies of them (noisy vectors, "
        "a few words swapped, the copy number in the heading)."
    )


if __name__ == "__main__":
    main()
