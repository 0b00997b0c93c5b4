"""How a metadata filter's size changes the cost of a filtered search, on each index.

    .venv/bin/python bench/filter_pushdown.py [--docs 4000] [--chunks 5] [--runs 20]

Builds a throwaway collection of `--docs` documents of `--chunks` chunks each (random
words, the hashing test embedder, so no model is needed), then times, median of
`--runs` queries:
- the manifest lookup that turns a filter into document ids,
- a Chroma query and an FTS5 query with no filter, and with the ids of 10 … N documents
  passed down (`where doc_id $in [...]` and `doc_id IN json_each(?)`),
- the whole `Retriever.search` (hybrid, k=5) with filters that let through 0.2 %, 10 %
  and 50 % of the documents, each pushed down and applied to over-fetched hits instead.
Prints a Markdown table with the command that produced it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.keyword import KeywordIndex
from rag.components.store import ChromaStore
from rag.retrieval.filters import make_filters
from rag.retrieval.manifest import Manifest
from rag.retrieval.retriever import Retriever
from rag.types import Chunk

WORDS = [f"w{i}" for i in range(3000)]


def median_ms(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def build(folder: Path, docs: int, chunks: int) -> tuple[ChromaStore, KeywordIndex, Manifest]:
    rng = random.Random(0)  # noqa: S311 (test data, not a secret)
    embedder = HashingEmbedder()
    store = ChromaStore.embedded(folder / "chroma", embedder.name)
    keywords = KeywordIndex(folder / "keywords.sqlite3")
    manifest = Manifest(folder / "manifest.sqlite3")
    batch: list[Chunk] = []
    for d in range(docs):
        doc_id = f"doc{d:06d}"
        folder_name = "reports" if d % 10 == 0 else "notes"
        source = f"/corpus/{folder_name}/{doc_id}.{'pdf' if d % 2 else 'md'}"
        manifest.begin("bench", doc_id, doc_id, "bench")
        for c in range(chunks):
            text = " ".join(rng.choices(WORDS, k=60))
            batch.append(Chunk(f"{doc_id}:{c}", doc_id, text, source, doc_id, c, doc_id))
        manifest.commit(
            "bench", doc_id, title=doc_id, chunks=chunks, source=source, size=1, mtime_ns=d
        )
        if len(batch) >= 2000 or d == docs - 1:
            store.add("bench", batch, embedder.embed_documents([c.text for c in batch]))
            keywords.add("bench", batch)
            batch = []
    return store, keywords, manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    embedder = HashingEmbedder()
    question = " ".join(random.Random(1).choices(WORDS, k=8))  # noqa: S311
    vector = embedder.embed_query(question)
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        store, keywords, manifest = build(Path(scratch), args.docs, args.chunks)
        built = time.perf_counter() - began
        every = sorted(manifest.matching("bench", make_filters(types=["pdf", "md"])))
        filters = make_filters(sources=["reports/*"])
        rows.append(
            (
                f"manifest lookup, source glob ({len(manifest.matching('bench', filters))} docs)",
                median_ms(lambda: manifest.matching("bench", filters), args.runs),
            )
        )
        rows.append(
            (
                "Chroma query, no filter",
                median_ms(lambda: store.query("bench", vector, 20), args.runs),
            )
        )
        rows.append(
            (
                "FTS5 query, no filter",
                median_ms(lambda: keywords.search("bench", question, 20), args.runs),
            )
        )
        sizes = [n for n in (10, 100, 1000, 4000, 10000) if n <= len(every)]
        for size in sizes:
            ids = set(random.Random(size).sample(every, size))  # noqa: S311
            rows.append(
                (
                    f"Chroma query, {size} doc ids pushed down",
                    median_ms(lambda ids=ids: store.query("bench", vector, 20, ids), args.runs),
                )
            )
            rows.append(
                (
                    f"FTS5 query, {size} doc ids pushed down",
                    median_ms(
                        lambda ids=ids: keywords.search("bench", question, 20, ids), args.runs
                    ),
                )
            )
        retriever = Retriever(embedder, store, manifest, keywords)
        for narrow in (
            make_filters(sources=["/corpus/notes/doc00001*"]),
            make_filters(sources=["reports/*"]),
            make_filters(types=["pdf"]),
        ):
            allowed = len(manifest.matching("bench", narrow))
            for label, share in (("pushed down", 1.01), ("over-fetched", 0.0)):
                retriever.PUSH_DOWN_SHARE = share
                found = retriever.search(question, "bench", 5, filters=narrow)
                rows.append(
                    (
                        f"Retriever.search hybrid k=5, {allowed} docs allowed, {label} "
                        f"({len(found)} found)",
                        median_ms(
                            lambda narrow=narrow: retriever.search(
                                question, "bench", 5, filters=narrow
                            ),
                            args.runs,
                        ),
                    )
                )
        retriever.PUSH_DOWN_SHARE = Retriever.PUSH_DOWN_SHARE
        rows.append(
            (
                "Retriever.search hybrid k=5, no filter",
                median_ms(lambda: retriever.search(question, "bench", 5), args.runs),
            )
        )
    command = "python bench/filter_pushdown.py " + " ".join(sys.argv[1:])
    print(
        f"`{command.strip()}`: {args.docs} documents x {args.chunks} chunks, "
        f"built in {built:.0f} s; median of {args.runs} runs\n"
    )
    print("| measure | ms |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
