"""What `GET /v1/collections/{name}/examples` costs on a large collection, found afresh
and kept.

    PYTHONPATH=. .venv/bin/python bench/example_headings.py [--chunks 1000 5000 20000] [--runs 20]

For each size, builds a throwaway collection of documents of 40 chunks, each under one
of five headings of its document (random words, the hashing test embedder, so no model
is needed), and serves it with auth off through FastAPI's test client. Then times the
route, median and slowest of `--runs` calls: with the headings looked for at every call
(`fresh_s=0`), and with them kept (the default, a minute). Prints a Markdown table with
the command.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from rag.answering.examples import ExampleQuestions
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from rag.types import Chunk
from tests.fakes import ScriptedGenerator

WORDS = [f"w{i}" for i in range(3000)]
PER_DOC = 40


def build(lore: Lore, chunks: int) -> None:
    rng = random.Random(0)  # noqa: S311 (test data, not a secret)
    batch: list[Chunk] = []
    for d in range(chunks // PER_DOC):
        doc_id = f"doc{d:06d}"
        source = f"/corpus/{doc_id}.md"
        lore.manifest.begin("bench", doc_id, doc_id, "bench")
        for c in range(PER_DOC):
            text = " ".join(rng.choices(WORDS, k=60))
            heading = f"Report {d} > Part {c // 8 + 1}. Topic {rng.choice(WORDS)}"
            batch.append(
                Chunk(f"{doc_id}:{c}", doc_id, text, source, doc_id, c, doc_id, heading=heading)
            )
        lore.manifest.commit(
            "bench", doc_id, title=doc_id, chunks=PER_DOC, source=source, size=1, mtime_ns=d
        )
        if len(batch) >= 2000:
            lore.store.add("bench", batch, lore.embedder.embed_documents([c.text for c in batch]))
            batch = []
    if batch:
        lore.store.add("bench", batch, lore.embedder.embed_documents([c.text for c in batch]))


def timed(client: TestClient, runs: int) -> tuple[float, float, list[str]]:
    times = []
    headings: list[str] = []
    for _ in range(runs):
        began = time.perf_counter()
        response = client.get("/v1/collections/bench/examples")
        times.append(time.perf_counter() - began)
        headings = response.json()["headings"]
    return statistics.median(times) * 1000, max(times) * 1000, headings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("lore.api").setLevel(logging.ERROR)
    rows = []
    for chunks in args.chunks:
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(auth=False, data_dir=Path(scratch), models_dir=Path(scratch))
            embedder = HashingEmbedder()
            lore = Lore(
                settings,
                embedder_override=embedder,
                store_override=ChromaStore.embedded(settings.chroma_dir, embedder.name),
                generator_override=ScriptedGenerator(),
            )
            build(lore, chunks)
            with TestClient(create_app(lore=lore)) as client:
                lore.__dict__["examples"] = ExampleQuestions(
                    {}, lore.store, lore.manifest, fresh_s=0
                )
                fresh = timed(client, args.runs)
                lore.__dict__["examples"] = ExampleQuestions({}, lore.store, lore.manifest)
                kept = timed(client, args.runs)
            rows.append((chunks, fresh, kept))
    print(f"`PYTHONPATH=. .venv/bin/python bench/example_headings.py {' '.join(sys.argv[1:])}`")
    print()
    print("| chunks | found afresh: median ms | slowest ms | kept: median ms | slowest ms |")
    print("|---:|---:|---:|---:|---:|")
    for chunks, fresh, kept in rows:
        print(f"| {chunks} | {fresh[0]:.1f} | {fresh[1]:.1f} | {kept[0]:.1f} | {kept[1]:.1f} |")
    print()
    print("Headings offered for the largest:", ", ".join(rows[-1][1][2]))


if __name__ == "__main__":
    main()
