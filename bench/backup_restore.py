"""`lore backup`, `lore restore` and `lore doctor` on a large data directory, with keyword
searches running against it throughout the backup.

    PYTHONPATH=. .venv/bin/python bench/backup_restore.py [--data-dir /tmp/lore-bench-100k]

The default data directory is the 100k-chunk index that bench/retrieval_latency.py
builds. Each command runs in a process of its own, as an operator runs it. While the
backup runs, this process searches the keyword index of the live data directory in a
loop (keyword mode needs no model); the table says how many searches were answered
during the backup and the slowest of them, beside the same before it began. Prints a
Markdown table with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rag.components.keyword import KeywordIndex

LORE = [sys.executable, "-m", "api.cli"]
# Where bench/retrieval_latency.py builds its index by default.
BENCH_INDEX = Path(tempfile.gettempdir()) / "lore-bench-100k"
QUESTIONS = ["annual leave policy", "Super Bowl champions", "长城 的 长度", "river delta", "tax"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own CLI, fixed arguments)
        command, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command[3:])} failed:\n{done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def search_loop(index: KeywordIndex, collection: str, stop: threading.Event) -> list[float]:
    """Keyword searches, one after another, until `stop`; their seconds each."""
    seconds = []
    number = 0
    while not stop.is_set():
        began = time.perf_counter()
        index.search(collection, QUESTIONS[number % len(QUESTIONS)], 10)
        seconds.append(time.perf_counter() - began)
        number += 1
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=BENCH_INDEX)
    parser.add_argument("--collection", default="bench")
    args = parser.parse_args()
    if not (args.data_dir / "manifest.sqlite3").is_file():
        sys.exit(f"{args.data_dir} holds no Lore data: run bench/retrieval_latency.py first")
    work = Path(tempfile.mkdtemp(prefix="lore-backup-bench-"))
    env = {**os.environ, "LORE_DATA_DIR": str(args.data_dir), "LORE_CONFIG": ""}
    index = KeywordIndex(args.data_dir / "keywords.sqlite3")
    try:
        stop = threading.Event()
        idle: list[float] = []
        warm = threading.Thread(
            target=lambda: idle.extend(search_loop(index, args.collection, stop))
        )
        warm.start()
        time.sleep(5)
        stop.set()
        warm.join()

        stop = threading.Event()
        during: list[float] = []
        loop = threading.Thread(
            target=lambda: during.extend(search_loop(index, args.collection, stop))
        )
        loop.start()
        backup_s, made = timed([*LORE, "backup", str(work / "backup"), "--json"], env)
        stop.set()
        loop.join()

        restored = {**env, "LORE_DATA_DIR": str(work / "restored")}
        restore_s, _ = timed([*LORE, "restore", str(work / "backup"), "--json"], restored)
        doctor_s, checked = timed([*LORE, "doctor", "--json"], restored)
    finally:
        index.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"`PYTHONPATH=. .venv/bin/python bench/backup_restore.py --data-dir {args.data_dir}`\n")
    print(f"{made['chunks']:,} chunks, {made['bytes'] / 1e6:,.0f} MB backed up\n")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| `lore backup` (whole) | {backup_s:.1f} |")
    print(f"| of which writes paused | {made['writes_paused_s']:.1f} |")
    print(f"| `lore restore` (sha256 checked, copied, checked) | {restore_s:.1f} |")
    print(
        f"| `lore doctor` on the restored copy (healthy: {checked['healthy']}) | {doctor_s:.1f} |"
    )
    print()
    print("| keyword searches | answered | median ms | slowest ms |")
    print("|---|---|---|---|")
    for label, runs in (("before, 5 s", idle), ("during the backup", during)):
        print(
            f"| {label} | {len(runs)} | {statistics.median(runs) * 1000:.0f} "
            f"| {max(runs) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
