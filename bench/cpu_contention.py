"""How the embedder fares when another process holds a core (issue 18), by thread choice.

    PYTHONPATH=. .venv/bin/python bench/cpu_contention.py [--texts 48] [--rounds 2]

Embeds the same `--texts` passages with EmbeddingGemma, each measurement in a fresh
process (OpenMP reads its settings once, at start), on an idle machine and beside a
busy loop (`while True: pass`, one process), alternating, for each choice: torch on
every CPU this process may use (the default before issue 18), the same with OpenMP's
passive wait policy (`OMP_WAIT_POLICY=PASSIVE`: a waiting thread sleeps instead of
spinning), torch on one thread, and the int8 ONNX embedder on every CPU (the default
now; its idle threads sleep) and on one thread. Prints a Markdown table with this
command: seconds (the median of the rounds) and busy / idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MEASURE = """
import sys, time
from rag.config import Settings
from rag.container import build_embedder
settings = Settings(threads=int(sys.argv[1]) if sys.argv[1] != "0" else None)
embedder = build_embedder(settings, sys.argv[3])
texts = [f"Passage {i}: the treaty of Rome set up the European Economic Community and a "
         "customs union between its six founding states in 1957. " * 3
         for i in range(int(sys.argv[2]))]
embedder.embed_documents(texts[:8])
began = time.perf_counter()
embedder.embed_documents(texts)
print(time.perf_counter() - began)
"""

TORCH, ONNX = "sentence_transformers", "onnx"
CHOICES = (
    ("torch, every CPU (before issue 18)", TORCH, "0", {}),
    ("torch, every CPU, OMP_WAIT_POLICY=PASSIVE", TORCH, "0", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("torch, one thread", TORCH, "1", {}),
    ("int8 ONNX, every CPU, threads sleep when idle (the default)", ONNX, "0", {}),
    ("int8 ONNX, one thread", ONNX, "1", {}),
)


def measure(backend: str, threads: str, extra: dict[str, str], texts: int, busy: bool) -> float:
    """Seconds to embed `texts` passages in a fresh process, beside a busy loop if `busy`."""
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        env = {**os.environ, **extra, "PYTHONPATH": str(REPO)}
        done = subprocess.run(  # noqa: S603 (this interpreter, our own snippet)
            [sys.executable, "-c", MEASURE, threads, str(texts), backend],
            env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[tuple[str, bool], list[float]] = {}
    for round_ in range(args.rounds):
        for name, backend, threads, extra in CHOICES:
            for busy in (False, True):
                took = measure(backend, threads, extra, args.texts, busy)
                times.setdefault((name, busy), []).append(took)
                print(f"round {round_ + 1}: {name}, {'busy' if busy else 'idle'}: {took:.2f} s")
    command = (
        f"PYTHONPATH=. .venv/bin/python bench/cpu_contention.py --texts {args.texts} "
        f"--rounds {args.rounds}"
    )
    print(f"\n`{command}` ({os.cpu_count()} cores)\n")
    print(
        "| embedder, threads | idle s | beside a busy loop s | busy / idle "
        "| busy / first row's idle |"
    )
    print("|---|---|---|---|---|")
    baseline = statistics.median(times[(CHOICES[0][0], False)])
    for name, *_ in CHOICES:
        idle = statistics.median(times[(name, False)])
        busy = statistics.median(times[(name, True)])
        print(f"| {name} | {idle:.2f} | {busy:.2f} | {busy / idle:.2f} | {busy / baseline:.2f} |")


if __name__ == "__main__":
    main()
