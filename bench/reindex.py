"""`lore reindex` while the collection answers: how fast it re-embeds, how long writes
pause for the switch, and what the searches asked meanwhile saw.

    PYTHONPATH=. .venv/bin/python bench/reindex.py [--docs N] [--model multilingual-e5-small]

A fresh data directory gets N XQuAD articles (English and Chinese, built with the
hashing embedder, which takes seconds), then is re-embedded with `--model` in this
process while another thread searches it in a loop, as a server's request threads
would (`Lore.on_collection`). Prints a Markdown table with the command: chunks, the
reindex's seconds and chunks a second, the seconds writes paused for the switch, and
the searches answered before, during and after it, with their median and slowest time
and how many failed (none should).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from ingest.pipeline import ingest_paths
from ingest.reindex import reindex
from rag.config import load_settings
from rag.container import Lore

XQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "xquad" / "docs"
QUESTIONS = ["Who won Super Bowl 50?", "Where is Warsaw's Old Town?", "诺曼人何时征服英格兰？"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--model", default="multilingual-e5-small")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lore-bench-reindex-"))
    try:
        folder = work / "docs"
        folder.mkdir()
        for path in sorted(XQUAD.iterdir())[: args.docs]:
            shutil.copy(path, folder)
        settings = load_settings(
            data_dir=work / "data", embedding_backend="hashing", llm_backend="openai",
            llm_base_url="http://127.0.0.1:9/v1",
        )  # fmt: skip
        lore = Lore(settings)
        ingest_paths(lore, [folder], "main")
        timings: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        failures = {"before": 0, "during": 0, "after": 0}
        phase = ["before"]
        stop = threading.Event()

        def ask() -> None:
            number = 0
            while not stop.is_set():
                question = QUESTIONS[number % len(QUESTIONS)]
                began = time.perf_counter()
                try:
                    lore.on_collection(
                        "main",
                        lambda chosen, q=question: chosen.retriever.search(q, "main", 5),
                    )
                    timings[phase[0]].append(time.perf_counter() - began)
                except Exception:
                    failures[phase[0]] += 1
                number += 1

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(5)
        phase[0] = "during"
        report = reindex(lore, "main", args.model)
        phase[0] = "after"
        time.sleep(5)
        stop.set()
        asker.join()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = (
        f"PYTHONPATH=. .venv/bin/python bench/reindex.py --docs {args.docs} --model {args.model}"
    )
    print(f"`{command}`\n")
    print("| chunks | reindex s | chunks/s | writes paused s |")
    print("|---:|---:|---:|---:|")
    rate = report.embedded / report.seconds if report.seconds else 0.0
    print(f"| {report.chunks} | {report.seconds:.1f} | {rate:.1f} | {report.paused_s:.2f} |\n")
    print("| searches | answered | failed | median ms | slowest ms |")
    print("|---|---:|---:|---:|---:|")
    for name, times in timings.items():
        median = statistics.median(times) * 1000 if times else 0.0
        slowest = max(times) * 1000 if times else 0.0
        print(f"| {name} | {len(times)} | {failures[name]} | {median:.0f} | {slowest:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
