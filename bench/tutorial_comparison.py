"""Lore's default pipeline against the LangChain tutorial's, side by side in one run.

    .venv/bin/python bench/tutorial_comparison.py [--sample N] [DOCS ...]

Both pipelines take the same files (default: the XQuAD and CMRC 2018 dev documents,
ingested together) from nothing to a searchable store on this machine, one after the
other, each in a fresh process with its models loaded before the clock starts:
- Lore: `run_batch` with the default settings (parse, chunk, embed, write);
- the tutorial's (bench/tutorial_pipeline.py): load, split, `HuggingFaceEmbeddings`
  over the same EmbeddingGemma folder, `Chroma.add_documents`.

Throughput is the files' text bytes (UTF-8) over the wall time of the whole pipeline.
Then each answers the same questions of those sets (`--sample N` of each file; default
all): answer-hit@5 and MRR@10 as `lore eval` scores them (the first passage from the
gold document that holds a gold answer). Lore searches as the product does (hybrid),
without the translation of questions, which these same-language sets seldom use.
Prints a Markdown table with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
DEFAULT_DOCS = [SHARED / "xquad" / "docs", SHARED / "cmrc2018-trial" / "docs"]
K = 10


def files_of(folders: list[Path]) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())


def questions_for(folders: list[Path], sample: int | None) -> list[object]:
    from rag.evaluation import load_questions

    return [
        q
        for folder in folders
        if (folder.parent / "questions.jsonl").is_file()
        for q in load_questions(folder.parent / "questions.jsonl", sample=sample)
        if not q.unanswerable
    ]


def scores(ranks: list[int]) -> dict[str, float]:
    count = len(ranks) or 1
    return {
        "questions": len(ranks),
        "answer_hit@5": sum(0 < r <= 5 for r in ranks) / count,
        "mrr@10": sum(1 / r for r in ranks if 0 < r <= 10) / count,
    }


def run_lore(folders: list[Path], sample: int | None, work: Path) -> dict[str, object]:
    from ingest.batch import BatchOptions, run_batch
    from rag.config import Settings, default_data_dir
    from rag.container import Lore
    from rag.evaluation import run_retrieval

    models = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    lore = Lore(Settings(data_dir=work, models_dir=models, translate_questions=False))
    _ = lore.embedder  # loaded before the clock starts, as a server has it
    started = time.perf_counter()
    report = run_batch(lore, folders, "bench", BatchOptions())
    seconds = time.perf_counter() - started
    if report.as_json()["failed"]:
        raise SystemExit(f"Lore failed files: {report.as_json()['failed']}")
    rows = run_retrieval(lore.retriever, questions_for(folders, sample), "bench", K)  # type: ignore[arg-type]
    return {
        "seconds": seconds,
        "backend": lore.embedding_backend,
        **scores([row.answer_rank for row in rows]),
    }


def run_tutorial(folders: list[Path], sample: int | None, work: Path) -> dict[str, object]:
    sys.path.insert(0, str(Path(__file__).parent))
    import tutorial_pipeline

    from rag.config import default_data_dir
    from rag.evaluation import contains_answer

    models = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    model_dir = models / "embeddinggemma-300m"
    # Load the model once before the clock, as for Lore (the weights come from the page cache).
    from langchain_huggingface import HuggingFaceEmbeddings

    HuggingFaceEmbeddings(model=str(model_dir)).embed_query("warm up")
    started = time.perf_counter()
    store = tutorial_pipeline.build(files_of(folders), model_dir, work)
    seconds = time.perf_counter() - started
    ranks = []
    for question in questions_for(folders, sample):
        hits = tutorial_pipeline.search(store, question.question, K)  # type: ignore[attr-defined]
        rank = next(
            (
                i
                for i, (source, text) in enumerate(hits, start=1)
                if source == question.doc and contains_answer(text, question.answers)  # type: ignore[attr-defined]
            ),
            0,
        )
        ranks.append(rank)
    return {"seconds": seconds, **scores(ranks)}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="*", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--sample", type=int, default=None, help="questions of each set")
    parser.add_argument("--side", choices=["lore", "tutorial"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one side, in its own process: print its result as JSON
        with tempfile.TemporaryDirectory() as tmp:
            run = run_lore if args.side == "lore" else run_tutorial
            result = run(args.docs, args.sample, Path(tmp))
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    text_bytes = sum(len(p.read_text(encoding="utf-8").encode()) for p in files_of(args.docs))
    results = {}
    for side in ("tutorial", "lore"):
        command = [sys.executable, __file__, *map(str, args.docs), "--side", side]
        if args.sample:
            command += ["--sample", str(args.sample)]
        done = subprocess.run(  # noqa: S603 (this interpreter, this script)
            command, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"`{' '.join(['.venv/bin/python', *sys.argv])}`\n")
    print(f"{len(files_of(args.docs))} files, {text_bytes / 1e6:.2f} MB of text.\n")
    print(
        "| pipeline | seconds | text KB/s | ratio to the tutorial | answer-hit@5 | MRR@10 "
        "| questions | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = text_bytes / results["tutorial"]["seconds"]
    for side, name in (("tutorial", "LangChain tutorial"), ("lore", "Lore, defaults")):
        r = results[side]
        rate = text_bytes / r["seconds"]
        label = f"{name} ({r['backend']})" if "backend" in r else name
        print(
            f"| {label} | {r['seconds']:.0f} | {rate / 1e3:.1f} | {rate / base:.2f} "
            f"| {r['answer_hit@5']:.3f} | {r['mrr@10']:.3f} | {r['questions']} "
            f"| {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
