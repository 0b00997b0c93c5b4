"""How the ingest job's memory grows with the size of one file.

    .venv/bin/python bench/single_file_memory.py [--sizes 4,16,64] [--workers 1]

For each size, writes one plain-text file of that many MB (English and Chinese
paragraphs from the eval documents, each numbered so that no two are alike) and
ingests it alone with `run_batch` into a throwaway data directory. The embedder is a
stand-in that returns random unit vectors of EmbeddingGemma's 768 dimensions at once,
so the figures are what the pipeline itself holds for the file (parse results, chunk
texts, vectors on their way to the index, the index) apart from the model, whose own
memory `bench/ingest_throughput.py` measures.

Prints, per size, the peak growth of the main process over its size before the job,
and the parsing process's peak, both from the kernel's high-water marks (VmHWM), which
no sampling interval can miss.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import psutil

from ingest.batch import BatchOptions, default_workers, run_batch
from rag.components.embeddings import Vectors
from rag.components.offline import force_offline
from rag.components.store import ChromaStore
from rag.config import Settings, default_data_dir
from rag.container import Lore
from rag.models import get_spec

SHARED = Path(__file__).resolve().parents[2] / "shared"
SOURCES = [SHARED / "eval" / "xquad" / "docs", SHARED / "eval" / "cmrc2018-trial" / "docs"]


class RandomEmbedder:
    """Random unit vectors of a real model's width, at no cost: isolates the pipeline."""

    name = "random-768"
    dimension = 768

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        vectors = self._rng.standard_normal((len(texts), self.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embed_documents([text])[0]]


def vm(pid: int, field: str) -> int:
    """One field of /proc/PID/status, in bytes (0 when the process is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def write_text(path: Path, megabytes: int) -> int:
    paragraphs = [
        p.strip()
        for folder in SOURCES
        for doc in sorted(folder.glob("*.md"))
        for p in doc.read_text(encoding="utf-8").split("\n\n")
        if len(p.strip()) > 80
    ]
    if not paragraphs:
        raise SystemExit(f"No documents under {SOURCES}: this bench needs ../shared/eval.")
    target = megabytes * 1024 * 1024
    written = 0
    with path.open("w", encoding="utf-8") as out:
        index = 0
        while written < target:
            line = f"{index}. {paragraphs[index % len(paragraphs)]}\n\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            index += 1
    return path.stat().st_size


def models_dir() -> Path:
    return Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")


def measure(megabytes: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        size = write_text(folder / f"one-{megabytes}mb.txt", megabytes)
        settings = Settings(data_dir=Path(tmp) / "data", max_text_mb=max(64, megabytes + 1))
        embedder = RandomEmbedder()
        store = ChromaStore.embedded(settings.chroma_dir, embedder.name)
        lore = Lore(settings, embedder_override=embedder, store_override=store)
        # Chunks sized in EmbeddingGemma's tokens, as the real job cuts them.
        lore.embedder_dir = get_spec(settings.embedding_model).path(models_dir())
        _ = lore.manifest, lore.keywords
        children: dict[int, int] = {}
        stop = threading.Event()

        def watch() -> None:
            me = psutil.Process()
            while not stop.is_set():
                for child in me.children(recursive=True):
                    children[child.pid] = max(children.get(child.pid, 0), vm(child.pid, "VmHWM"))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        before = vm(os.getpid(), "VmRSS")
        with contextlib.suppress(OSError):  # "5" resets this process's VmHWM
            Path("/proc/self/clear_refs").write_text("5")
        watcher.start()
        started = time.perf_counter()
        report = run_batch(lore, [folder], "bench", BatchOptions(workers=workers)).as_json()
        seconds = time.perf_counter() - started
        stop.set()
        watcher.join()
        if report["failed"]:
            raise SystemExit(f"The file failed: {report['failures']}")
        return {
            "mb": size / 2**20,
            "chunks": report["chunks"],
            "seconds": seconds,
            "main_growth": (vm(os.getpid(), "VmHWM") - before) / 2**20,
            "parser_peak": max(children.values(), default=0) / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,16,64", help="file sizes in MB, comma-separated")
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    force_offline()
    rows = [measure(int(size), args.workers) for size in args.sizes.split(",")]
    print(f"Command: .venv/bin/python bench/single_file_memory.py --sizes {args.sizes}\n")
    print("| file | chunks | seconds | main process growth | parsing process peak |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['mb']:.0f} MB of text | {row['chunks']:,} | {row['seconds']:.0f} | "
            f"{row['main_growth']:,.0f} MiB | {row['parser_peak']:,.0f} MiB |"
        )


if __name__ == "__main__":
    main()
