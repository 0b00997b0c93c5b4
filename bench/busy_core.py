"""`lore ingest` and `lore ask` on an idle machine and beside a process that holds a core.

    PYTHONPATH=. .venv/bin/python bench/busy_core.py [--pages 50] [--rounds 2]
        [--env NAME=VALUE ...]

Times the commands a user runs, end to end (start, model load, work, exit), each in a
fresh process with the default settings plus `--env`:
- `lore ingest` of a PDF of `--pages` pages (cut from the corpus's 619-page PDF) into a
  new data directory;
- `lore ask` of a question about it, in a data directory holding that PDF.
Each is run on an idle machine and beside a busy loop (`while True: pass`, one process,
started half a second before), alternating, `--rounds` times. Prints a Markdown table
with the command: the median seconds and busy / idle.
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

SHARED = Path(__file__).resolve().parents[2] / "shared"
SOURCE = SHARED / "corpus" / "large" / "DA-619p.pdf"
QUESTION = "What does the document say about training requirements?"
LORE = str(Path(sys.executable).parent / "lore")


def cut_pdf(source: Path, pages: int, target: Path) -> Path:
    """The first `pages` pages after the front matter of `source`, as a new PDF."""
    import pypdfium2 as pdfium

    original = pdfium.PdfDocument(str(source))
    part = pdfium.PdfDocument.new()
    start = min(20, max(0, len(original) - pages))
    part.import_pages(original, list(range(start, start + pages)))
    part.save(str(target))
    return target


def timed(command: list[str], env: dict[str, str], busy: bool) -> float:
    """Wall seconds of `command`, beside a busy loop if `busy`; raises if it fails."""
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if loop is not None:
            time.sleep(0.5)
        began = time.perf_counter()
        done = subprocess.run(  # noqa: S603 (our own CLI, fixed arguments)
            command, env=env, capture_output=True, text=True, check=False, timeout=1800
        )
        took = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return took
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for Lore")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pdf = cut_pdf(SOURCE, args.pages, work / f"manual-{args.pages}p.pdf")
        base = {**os.environ, **extra, "LORE_AUTH": "false"}
        base.setdefault("LORE_MODELS_DIR", str(Path.home() / ".local/share/lore/models"))
        asking = {**base, "LORE_DATA_DIR": str(work / "asking")}
        timed([LORE, "ingest", str(pdf)], asking, busy=False)  # the data `lore ask` reads
        for round_ in range(args.rounds):
            for busy in (False, True):
                fresh = {**base, "LORE_DATA_DIR": str(work / f"ingest-{round_}-{busy}")}
                runs = (
                    ("lore ingest", [LORE, "ingest", str(pdf)], fresh),
                    ("lore ask", [LORE, "ask", QUESTION], asking),
                )
                for name, command, env in runs:
                    took = timed(command, env, busy)
                    times.setdefault((name, busy), []).append(took)
                    state = "busy" if busy else "idle"
                    print(f"round {round_ + 1}: {name}, {state}: {took:.1f} s", flush=True)
    shown = " ".join(f"--env {item}" for item in args.env)
    print(
        f"\n`PYTHONPATH=. .venv/bin/python bench/busy_core.py --pages {args.pages} "
        f"--rounds {args.rounds} {shown}`".rstrip("` ")
        + "`"
    )
    print(f"({os.cpu_count()} cores)\n")
    print("| command | idle s | beside a busy loop s | busy / idle |")
    print("|---|---|---|---|")
    for name in ("lore ingest", "lore ask"):
        idle = statistics.median(times[(name, False)])
        busy = statistics.median(times[(name, True)])
        print(f"| {name} ({args.pages} pages) | {idle:.1f} | {busy:.1f} | {busy / idle:.2f} |")


if __name__ == "__main__":
    main()
