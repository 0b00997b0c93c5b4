"""Time to first token, decode speed and end-to-end answer latency of the default models.

    .venv/bin/python bench/answer_latency.py [--runs 3]

Ingests the demo corpus into a throwaway data directory, then, with the models loaded:
- times raw generation (TTFT and tokens/s) at short and long prompts,
- times whole answers (retrieve + generate) for English and Chinese questions,
and finally times one `lore ask --json` process from start to exit (model loading
included). Prints a Markdown table with the command that produced it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest.pipeline import ingest_paths
from rag.config import Settings, default_data_dir
from rag.container import Lore
from rag.types import TokenEvent

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What port does the Lore server listen on by default?",
    "Lore 默认的嵌入模型是什么？",
    "How do I back up Lore?",
    "同一个文件导入两次会怎样？",
]


def time_generation(lore: Lore, prompt_words: int, runs: int) -> tuple[float, float, int]:
    """Median TTFT (s), median decode tokens/s, and the prompt's token count."""
    filler = " ".join(["Lore keeps documents on the local machine."] * (prompt_words // 7))
    ttfts, rates = [], []
    prompt_tokens = 0
    for run in range(runs):
        # A different first word each run: llama.cpp reuses the KV cache of a shared prefix,
        # which would make a repeated prompt look instant.
        request = f"Run {run} of {runs}. {filler}\nSummarise the text above in three sentences."
        messages = [{"role": "user", "content": request}]
        prompt_tokens = lore.generator.count_tokens(request)
        start = time.perf_counter()
        first = None
        pieces = 0
        for _piece in lore.generator.stream(messages, max_tokens=128):
            pieces += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        if first is None:
            raise RuntimeError("the model produced no tokens")
        ttfts.append(first - start)
        rates.append((pieces - 1) / (end - first) if pieces > 1 else 0.0)
    return statistics.median(ttfts), statistics.median(rates), prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    models_dir = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), models_dir=models_dir)
        lore = Lore(settings)
        start = time.perf_counter()
        _ = lore.embedder, lore.generator
        load_s = time.perf_counter() - start
        ingest_paths(lore, [REPO / "demo"], settings.collection)

        rows = [f"| model load (embedder + chat model) | {load_s:.1f} s |"]
        for words in (60, 600):
            ttft, rate, tokens = time_generation(lore, words, args.runs)
            rows.append(f"| TTFT, {tokens}-token prompt | {ttft:.2f} s |")
            rows.append(f"| decode speed, {tokens}-token prompt | {rate:.1f} tokens/s |")
        first_token: dict[str, list[float]] = {q: [] for q in QUESTIONS}
        total: dict[str, list[float]] = {q: [] for q in QUESTIONS}
        for _ in range(args.runs):
            # Questions alternate, so no answer reuses the previous one's cached prompt
            # beyond the shared system prompt (as in real use).
            for question in QUESTIONS:
                start = time.perf_counter()
                for event in lore.answerer.stream(question, settings.collection):
                    if (
                        isinstance(event, TokenEvent)
                        and len(first_token[question]) < len(total[question]) + 1
                    ):
                        first_token[question].append(time.perf_counter() - start)
                total[question].append(time.perf_counter() - start)
        for question in QUESTIONS:
            ttft = statistics.median(first_token[question])
            whole = statistics.median(total[question])
            rows.append(
                f"| answer “{question}”: first token / complete | {ttft:.2f} s / {whole:.2f} s |"
            )

        env = {**os.environ, "LORE_DATA_DIR": tmp, "LORE_MODELS_DIR": str(models_dir)}
        start = time.perf_counter()
        subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "api.cli", "ask", QUESTIONS[0], "--json"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        total = time.perf_counter() - start
        rows.append(f"| one `lore ask --json` process, end to end | {total:.1f} s |")

    command = f".venv/bin/python bench/answer_latency.py --runs {args.runs}"
    print(f"Command: {command}  (median of runs)\n")
    print("| measure | value |\n|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
