"""Embedders compared: retrieval quality on the dev sets and document-encoding speed.

    .venv/bin/python bench/embedders.py [--models A,B,...] [--sets xquad,cmrc2018-trial]
        [--sample N] [--speed-sample N] [--rounds N]

Every model reads the very same chunks: each dev set is chunked once, with the default
chunker (200 tokens of EmbeddingGemma's tokenizer, overlapping by 30; characters when
it isn't installed). Each model then gets its own throwaway data directory; the chunks
are embedded and written through the ingest pipeline's `write`, and every question is
searched dense and hybrid with `rag.evaluation`, as `lore eval` does. The relevance
threshold is off (min_score 0), so the figures compare rankings.

Speed: a seeded sample of the same chunks (both sets mixed) is encoded by every model
in turn, `--rounds` times, interleaved, all models loaded at once; the best round of
each counts. Only ratios measured in the same run compare.

Calibration: the dense top-1 cosine of each answerable question, and of the questions
in bench/eval/unanswerable/xquad.jsonl (asked of XQuAD), to choose each model's min_score.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.parsing import Limits
from ingest.pipeline import (
    ChunkPlan,
    Todo,
    build_chunks,
    document_id,
    file_sha256,
    plan,
    write,
)
from rag.components.embeddings import Embedder
from rag.components.offline import force_offline
from rag.config import Settings, default_data_dir
from rag.container import Lore
from rag.evaluation import Question, evaluate, load_questions
from rag.models import CATALOGUE
from rag.types import Chunk

SHARED = Path(__file__).resolve().parents[2] / "shared"
HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = (
    "embeddinggemma-300m",
    "multilingual-e5-small",
    "use-multilingual-v3",
    "all-minilm-l6-v2",
)
DEFAULT_SETS = ("xquad", "cmrc2018-trial")
CHUNK_SIZE, CHUNK_OVERLAP = 200, 30


@dataclass(frozen=True)
class ChunkedFile:
    path: Path
    title: str
    chunks: list[Chunk]


def chunk_set(folder: Path, plan_: ChunkPlan) -> list[ChunkedFile]:
    """Every file of a dev set cut once, so that every model reads the same chunks."""
    files = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        sha256 = file_sha256(path)
        source = str(path.resolve())
        title, chunks = build_chunks(path, document_id(sha256), sha256, source, plan_)
        files.append(ChunkedFile(path, title, chunks))
    return files


def ingest(lore: Lore, collection: str, files: list[ChunkedFile]) -> float:
    """Embed and write the pre-cut chunks; returns the seconds spent embedding."""
    spent = 0.0
    for item in files:
        todo = plan(lore, item.path, collection, str(item.path.resolve()))
        if not isinstance(todo, Todo):
            continue
        started = time.perf_counter()
        vectors = lore.embedder.embed_documents([c.embedding_text() for c in item.chunks])
        spent += time.perf_counter() - started
        write(lore, collection, todo, item.title, item.chunks, vectors)
    return spent


def top1_scores(lore: Lore, collection: str, questions: list[Question]) -> list[float]:
    scores = []
    for question in questions:
        hits = lore.store.query(collection, lore.embedder.embed_query(question.question), 1)
        scores.append(hits[0].score if hits else -1.0)
    return scores


def speed(embedders: dict[str, Embedder], texts: list[str], rounds: int) -> dict[str, float]:
    """Chunks per second of each embedder on `texts`: best of interleaved rounds."""
    best = dict.fromkeys(embedders, float("inf"))
    for _ in range(rounds):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            vectors = embedder.embed_documents(texts)
            best[name] = min(best[name], time.perf_counter() - started)
            norms = np.linalg.norm(vectors, axis=1)
            assert vectors.dtype == np.float32, name  # noqa: S101 (a bench's sanity check)
            assert np.allclose(norms, 1.0, atol=1e-2), name  # noqa: S101
    return {name: len(texts) / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="measured on the sets")
    parser.add_argument("--speed-models", default="", help="only timed (default: --models)")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS))
    parser.add_argument("--sample", type=int, default=None, help="questions per set (all)")
    parser.add_argument("--speed-sample", type=int, default=96, help="chunks timed (0: none)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    force_offline()
    names = [n for n in args.models.split(",") if n]
    timed = [n for n in args.speed_models.split(",") if n] or names
    sets = [s for s in args.sets.split(",") if s]
    models_dir = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    eval_dir = SHARED / "eval"

    gemma = CATALOGUE["embeddinggemma-300m"].path(models_dir)
    tokenizer = str(gemma) if (gemma / "tokenizer.json").is_file() else None
    chunk_plan = ChunkPlan(CHUNK_SIZE, CHUNK_OVERLAP, tokenizer, Limits())
    chunked = {name: chunk_set(eval_dir / name / "docs", chunk_plan) for name in sets}
    questions = {
        name: load_questions(eval_dir / name / "questions.jsonl", sample=args.sample)
        for name in sets
    }
    unanswerable = load_questions(HERE / "eval" / "unanswerable" / "xquad.jsonl")
    every_text = [c.embedding_text() for files in chunked.values() for f in files for c in f.chunks]
    sample = random.Random(0).sample(every_text, min(args.speed_sample, len(every_text)))  # noqa: S311
    counts = {name: sum(len(f.chunks) for f in files) for name, files in chunked.items()}
    print(f"chunks: {counts}; speed sample: {len(sample)} chunks", file=sys.stderr)

    quality: dict[str, dict[str, dict[str, float]]] = {}
    ingest_rate: dict[str, float] = {}
    calibration: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lores: dict[str, Lore] = {}
        for name in dict.fromkeys([*timed, *names]):
            settings = Settings(
                data_dir=Path(tmp) / name,
                models_dir=models_dir,
                embedding_model=name,
                embedding_backend="sentence_transformers",
                min_score=0.0,
            )
            lores[name] = Lore(settings)
            started = time.perf_counter()
            _ = lores[name].embedder
            print(f"{name}: loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        dimensions = {n: lore.embedder.dimension for n, lore in lores.items()}
        rates = speed({n: lores[n].embedder for n in timed}, sample, args.rounds) if sample else {}
        print(f"chunks/s: {rates}", file=sys.stderr)

        for name in names:
            lore = lores[name]
            spent = 0.0
            answerable_top1: list[float] = []
            for set_name in sets:
                collection = f"bench-{set_name}"
                spent += ingest(lore, collection, chunked[set_name])
                report = evaluate(
                    lore.retriever, questions[set_name], collection, k=10,
                    modes=("dense", "hybrid"),
                )  # fmt: skip
                for mode, languages in report.retrieval.items():
                    for lang, metrics in languages.items():
                        if lang != "all":
                            quality.setdefault(name, {})[f"{set_name}/{lang}/{mode}"] = metrics
                answerable_top1 += top1_scores(lore, collection, questions[set_name])
                if set_name == "xquad":
                    refused = top1_scores(lore, collection, unanswerable)
                    calibration[name] = (
                        float(np.percentile(answerable_top1, 1)),
                        float(np.percentile(answerable_top1, 50)),
                        float(np.percentile(refused, 50)),
                    )
            ingest_rate[name] = sum(counts.values()) / spent if spent else 0.0
            print(f"{name}: done {quality.get(name)} {calibration.get(name)}", file=sys.stderr)

    print_tables(list(lores), sets, quality, rates, ingest_rate, calibration, dimensions)


def print_tables(
    names: list[str],
    sets: list[str],
    quality: dict[str, dict[str, dict[str, float]]],
    rates: dict[str, float],
    ingest_rate: dict[str, float],
    calibration: dict[str, tuple[float, float, float]],
    dimensions: dict[str, int],
) -> None:
    print("```")
    print(" ".join(["python", *sys.argv]))
    print("```\n")
    keys = sorted({key for per_model in quality.values() for key in per_model})
    print("answer-hit@5 / MRR@10 (no relevance threshold):\n")
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name in names:
        cells = []
        for key in keys:
            metrics = quality.get(name, {}).get(key)
            cells.append(
                f"{metrics['answer_hit@5']:.3f} / {metrics['mrr@10']:.3f}" if metrics else ""
            )
        print(f"| {name} | " + " | ".join(cells) + " |")
    base = next(iter(rates.values()), float("nan"))
    print("\nspeed and score calibration:\n")
    print(
        "| model | dim | chunks/s (interleaved) | x first | chunks/s (ingest) "
        "| top-1 cos p01 / p50 (answerable) | top-1 cos p50 (unanswerable) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        p01, p50, refused = calibration.get(name, (float("nan"),) * 3)
        print(
            f"| {name} | {dimensions[name]} | {rates.get(name, float('nan')):.1f} "
            f"| {rates.get(name, float('nan')) / base:.2f} | {ingest_rate.get(name, 0.0):.1f} "
            f"| {p01:.3f} / {p50:.3f} | {refused:.3f} |"
        )


if __name__ == "__main__":
    main()
