"""Ingestion throughput, measured end to end and against the embedder alone.

    .venv/bin/python bench/ingest_throughput.py [--embedding-model NAME] [--workers N]
        [--raw-sample N] [--backends onnx,sentence_transformers] [PATH ...]

Ingests PATHs (default: ../shared/corpus/large and the eval documents) from scratch
into a throwaway data directory with `run_batch`, sampling the peak memory of the job
(main process plus parsing processes). Then it embeds the very same chunk texts with
the embedder alone (`embed_documents`, as the job calls it), so the two rates compare
side by side in one run (`--raw-sample N` times a seeded random sample of N chunks
instead of all of them, for slow embedders). Prints a Markdown table with the command.
`--backends` runs the whole measurement once per embedding backend, one after the
other, each in a fresh process, for a side-by-side comparison in one run.

Pages: PDF pages, the page count a DOCX records, and 3,000 characters per page for
other formats (a stated convention, not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil

from ingest.batch import BatchOptions, default_workers, run_batch
from ingest.pipeline import iter_files, skip_reason
from rag.components.offline import force_offline
from rag.config import Settings, default_data_dir
from rag.container import Lore

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_PATHS = [
    SHARED / "corpus" / "large",
    SHARED / "eval" / "xquad" / "docs",
    SHARED / "eval" / "cmrc2018-trial" / "docs",
]


def count_pages(path: Path) -> float:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        try:
            return float(len(pdf))
        finally:
            pdf.close()
    if suffix == ".docx":
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            app = (
                archive.read("docProps/app.xml").decode("utf-8", "replace")
                if "docProps/app.xml" in names
                else ""
            )
        if "<Pages>" in app:
            return float(app.split("<Pages>")[1].split("</Pages>")[0])
        # No recorded page count: the corpus names its large files by pages ("-872p").
        match = re.search(r"-(\d+)p\.", path.name)
        if match:
            return float(match.group(1))
    return path.stat().st_size / 3000


def status_bytes(pid: int, *fields: str) -> list[int]:
    """Fields of /proc/PID/status (RssAnon, RssFile, VmHWM...) in bytes; 0 when unreadable."""
    found = dict.fromkeys(fields, 0)
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in found:
                    found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return [found[f] for f in fields]


def resident(pid: int) -> tuple[int, int]:
    """Anonymous (private heap) and file-backed resident bytes of a process."""
    anon, file = status_bytes(pid, "RssAnon", "RssFile")
    return anon, file


class PeakMemory:
    """Samples the resident memory of this process and its children every 100 ms.

    With `series`, also writes one line a second: seconds, the main process's anonymous
    and file-backed MiB, and the parsing processes' MiB, to see what grows when.
    """

    def __init__(self, series: Path | None = None) -> None:
        self.peak = 0
        self.peak_main = 0
        self.peak_child = 0
        # Private (anonymous) memory: RSS less file-backed and shared pages. The model's
        # weights are memory-mapped, so they count in RSS as they are paged in, but are
        # clean pages the kernel may drop at any time.
        self.peak_private = 0
        self.peak_main_anon = 0
        self.peak_main_file = 0
        # The kernel's high-water marks (VmHWM), which no sampling interval can miss: the
        # main process's is reset when the job starts; a child's covers its whole life.
        self.hwm_main = 0
        self.hwm_children: dict[int, int] = {}
        self._series = series
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        started = time.perf_counter()
        written = -1.0
        out = self._series.open("w") if self._series else None
        while not self._stop.is_set():
            total = 0
            private = 0
            children = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    info = process.memory_info()
                except psutil.Error:
                    continue
                rss = info.rss
                total += rss
                private += rss - getattr(info, "shared", 0)
                if process.pid == me.pid:
                    self.peak_main = max(self.peak_main, rss)
                    anon, file = resident(me.pid)
                    self.peak_main_anon = max(self.peak_main_anon, anon)
                    self.peak_main_file = max(self.peak_main_file, file)
                else:
                    children += rss
                    self.peak_child = max(self.peak_child, rss)
                    (hwm,) = status_bytes(process.pid, "VmHWM")
                    self.hwm_children[process.pid] = max(self.hwm_children.get(process.pid, 0), hwm)
            self.peak = max(self.peak, total)
            self.peak_private = max(self.peak_private, private)
            now = time.perf_counter() - started
            if out is not None and now - written >= 1.0:
                written = now
                anon, file = resident(me.pid)
                out.write(f"{now:.0f}\t{anon >> 20}\t{file >> 20}\t{children >> 20}\n")
                out.flush()
            time.sleep(0.1)
        if out is not None:
            out.close()

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):  # "5" resets this process's VmHWM
            Path("/proc/self/clear_refs").write_text("5")
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        (self.hwm_main,) = status_bytes(os.getpid(), "VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=DEFAULT_PATHS)
    parser.add_argument("--embedding-model", default=None)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--raw-sample", type=int, default=0, help="chunks to time raw (0: all)")
    parser.add_argument(
        "--memory-series", type=Path, default=None, help="write memory over time to this file"
    )
    parser.add_argument("--embedding-backend", default=None)
    parser.add_argument("--backends", default=None, help="comma-separated: one run each")
    args = parser.parse_args()
    force_offline()
    if args.backends:
        arguments = [a for a in sys.argv[1:] if not a.startswith("--backends")]
        if args.backends in arguments:
            arguments.remove(args.backends)
        for backend in args.backends.split(","):
            subprocess.run(  # noqa: S603 (this interpreter, this script)
                [sys.executable, __file__, *arguments, "--embedding-backend", backend], check=True
            )
            print()
        return

    models_dir = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, object] = {"data_dir": Path(tmp), "models_dir": models_dir}
        if args.embedding_model:
            overrides["embedding_model"] = args.embedding_model
        if args.embedding_backend:
            overrides["embedding_backend"] = args.embedding_backend
        settings = Settings(**overrides)  # type: ignore[arg-type]
        lore = Lore(settings)
        _ = lore.embedder  # load the model before the clock starts, as a server would have
        with PeakMemory(args.memory_series) as memory:
            report = run_batch(lore, args.paths, "bench", BatchOptions(workers=args.workers))
        # Counted after the job, so that the PDF library this loads isn't counted in its memory.
        pages = sum(count_pages(f) for f, n in iter_files(args.paths) if not skip_reason(f, n))
        data = report.as_json()
        total = data["seconds"]["total"]

        texts = [
            chunk.embedding_text()
            for record in lore.manifest.documents("bench")
            for chunk in lore.store.document_chunks("bench", record.doc_id)
        ]
        if args.raw_sample and args.raw_sample < len(texts):
            texts = random.Random(0).sample(texts, args.raw_sample)  # noqa: S311 (a sample, not a secret)
        started = time.perf_counter()
        lore.embedder.embed_documents(texts)
        raw_seconds = time.perf_counter() - started
        backend = lore.embedding_backend
        dtype = str(getattr(lore.embedder, "dtype", "int8" if backend == "onnx" else "-"))

    pipeline_rate = data["chunks"] / total
    raw_rate = len(texts) / raw_seconds
    stages = {k: v for k, v in data["seconds"].items() if k != "total"}
    busy = sum(stages.values()) or 1.0
    command = "bench/ingest_throughput.py " + " ".join(
        ([f"--embedding-model {args.embedding_model}"] if args.embedding_model else [])
        + [f"--workers {args.workers}"]
        + ([f"--raw-sample {args.raw_sample}"] if args.raw_sample else [])
        + ([f"--embedding-backend {args.embedding_backend}"] if args.embedding_backend else [])
        + [str(p) for p in args.paths if p not in DEFAULT_PATHS]
    )
    print(f"Command: .venv/bin/python {command}")
    print(f"Embedder: {settings.embedding_model}, {backend}, {dtype}\n")
    print("| measure | value |\n|---|---|")
    print(f"| files / failed | {data['files']} / {data['failed']} |")
    print(f"| pages (see convention) | {pages:,.0f} |")
    print(f"| chunks | {data['chunks']:,} |")
    print(f"| wall time, whole job | {total:.1f} s |")
    print(f"| pages/s | {pages / total:.2f} |")
    print(f"| chunks/s, pipeline | {pipeline_rate:.2f} |")
    raw_label = f"chunks/s, the embedder alone on {len(texts):,} of the chunks"
    print(f"| {raw_label} | {raw_rate:.2f} |")
    print(f"| pipeline / raw | {pipeline_rate / raw_rate:.0%} |")
    for stage, seconds in stages.items():
        print(f"| {stage} time (share of stage time) | {seconds:.1f} s ({seconds / busy:.0%}) |")
    print(f"| peak RSS, job and parsers together | {memory.peak / 2**20:,.0f} MiB |")
    print(f"| peak RSS, main process (models, index) | {memory.peak_main / 2**20:,.0f} MiB |")
    print(f"| peak RSS, largest parsing process | {memory.peak_child / 2**20:,.0f} MiB |")
    anon, file = memory.peak_main_anon / 2**20, memory.peak_main_file / 2**20
    label = "peak of main process: anonymous / file-backed (weights)"
    print(f"| {label} | {anon:,.0f} / {file:,.0f} MiB |")
    bound = (memory.hwm_main + sum(memory.hwm_children.values())) / 2**20
    label = "upper bound: sum of each process's own peak (kernel VmHWM)"
    print(f"| {label} | {bound:,.0f} MiB |")
    private = memory.peak_private / 2**20
    print(f"| peak private memory (RSS less file-backed pages), all | {private:,.0f} MiB |")


if __name__ == "__main__":
    main()
