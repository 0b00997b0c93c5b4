"""Cluster ingest with one `lore worker` and with two, side by side; and queue latency.

    PYTHONPATH=. .venv/bin/python bench/worker_scaling.py [--docs DIR] [--rounds 1]
        [--latency-jobs 40] [--embedding-backend sentence_transformers|hashing]

Starts a throwaway PostgreSQL and `chroma run` on loopback (tests/servers.py), then:

1. **Throughput.** For each round, in the order 1, 2, 2, 1 workers (so that a drift of
   the machine's load over the run touches both alike), a fresh database and
   collection, and `lore worker --concurrency 1 --parse-workers 1` processes with one
   thread each for torch and llama.cpp (OMP_NUM_THREADS=1). One warm-up job of one
   file a worker loads each worker's model; then DIR is submitted as one job and timed
   from its `started_at` to its `finished_at` (the job rows' own clocks).
2. **Queue latency per document**, enqueued to started (`created_at` to `started_at`),
   with two idle workers and the hashing embedder: LATENCY_JOBS single-file jobs
   submitted one every 0.5 s (a queue keeping up), then LATENCY_JOBS at once (a burst,
   whose later jobs wait behind the earlier ones).

The default DIR is XQuAD's 48 documents (314 chunks with the default embedder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.jobs import Job  # noqa: E402
from ingest.queue import ClusterJobQueue  # noqa: E402
from rag.config import Settings, load_settings  # noqa: E402
from rag.container import Lore  # noqa: E402
from tests.servers import ChromaServer, PostgresServer, lore_env  # noqa: E402

XQUAD = REPO.parent / "shared" / "eval" / "xquad" / "docs"
FINISHED = ("done", "failed", "cancelled")


def cluster_settings(base: Settings, url: str, chroma: ChromaServer, backend: str) -> Settings:
    return base.model_copy(
        update={
            "database_url": SecretStr(url),
            "chroma_host": chroma.host,
            "chroma_port": chroma.port,
            "embedding_backend": backend,
        }
    )


def worker_env(settings: Settings) -> dict[str, str]:
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return {
        **lore_env(settings.data_dir, settings.resolved_models_dir),
        "LORE_DATABASE_URL": url,
        "LORE_CHROMA_HOST": str(settings.chroma_host),
        "LORE_CHROMA_PORT": str(settings.chroma_port),
        "LORE_EMBEDDING_BACKEND": settings.embedding_backend,
        "LORE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[None]:
    command = [sys.executable, "-m", "api.cli", "worker", "--concurrency", "1"]
    command += ["--parse-workers", "1", "--poll", "0.5"]
    processes = []
    for number in range(count):
        sink = (logs / f"worker-{count}-{number}-{time.time_ns()}.log").open("wb")
        processes.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
        )
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def wait(queue: ClusterJobQueue, job_id: str, timeout: float = 3600) -> Job:
    deadline = time.monotonic() + timeout
    while (job := queue.get(job_id)).status not in FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(job.as_json())
        time.sleep(0.2)
    if job.status != "done":
        raise RuntimeError(f"job {job.id} ended {job.status}: {job.error}")
    return job


def one_file_folders(files: list[Path], into: Path) -> list[Path]:
    """Each of `files` alone in a folder of its own (a job of one document)."""
    folders = []
    for number, file in enumerate(files):
        folder = into / f"one-{number}"
        folder.mkdir(parents=True)
        shutil.copy(file, folder / file.name)
        folders.append(folder)
    return folders


def throughput(
    count: int, base: Settings, postgres: PostgresServer, chroma: ChromaServer, docs: Path,
    scratch: Path, backend: str,
) -> tuple[float, int]:  # fmt: skip
    """Seconds the job over `docs` took with `count` workers, and its chunks."""
    settings = cluster_settings(base, postgres.database(), chroma, backend)
    lore = Lore(settings)
    queue = ClusterJobQueue(lore)
    collection = f"scale-{count}-{time.time_ns()}"
    warm = one_file_folders(sorted(docs.iterdir())[:count], scratch / f"warm-{time.time_ns()}")
    with workers(count, worker_env(settings), scratch):
        warmups = [queue.submit(f"warm-{collection}", [folder]) for folder in warm]
        for job in warmups:
            wait(queue, job.id)
        job = wait(queue, queue.submit(collection, [docs]).id)
    lore.database.close()
    report = job.report or {}
    return (job.finished_at or 0.0) - (job.started_at or 0.0), int(report.get("chunks", 0))


def latencies(
    base: Settings, postgres: PostgresServer, chroma: ChromaServer, docs: Path, scratch: Path,
    jobs: int,
) -> dict[str, list[float]]:  # fmt: skip
    """Enqueued-to-started seconds of single-document jobs: paced, then in a burst."""
    settings = cluster_settings(base, postgres.database(), chroma, "hashing")
    lore = Lore(settings)
    queue = ClusterJobQueue(lore, max_queued=jobs + 8)
    files = sorted(docs.iterdir())
    folders = one_file_folders([files[i % len(files)] for i in range(2 * jobs)], scratch / "lat")
    result: dict[str, list[float]] = {}
    with workers(2, worker_env(settings), scratch):
        wait(queue, queue.submit("lat-warm", [folders[0]]).id)
        paced = []
        for folder in folders[:jobs]:
            paced.append(queue.submit("lat-paced", [folder]).id)
            time.sleep(0.5)
        burst = [queue.submit("lat-burst", [folder]).id for folder in folders[jobs:]]
        for name, ids in (("paced", paced), ("burst", burst)):
            ended = [wait(queue, job_id) for job_id in ids]
            result[name] = [(j.started_at or 0.0) - j.created_at for j in ended]
    lore.database.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=Path, default=XQUAD)
    parser.add_argument("--rounds", type=int, default=1, help="1, 2, 2, 1 workers per round")
    parser.add_argument("--latency-jobs", type=int, default=40)
    parser.add_argument("--embedding-backend", default="sentence_transformers")
    args = parser.parse_args()

    base = load_settings()
    scratch = Path(tempfile.mkdtemp(prefix="lore-scaling-"))
    postgres = PostgresServer()
    chroma = ChromaServer(scratch / "chroma")
    chroma.folder.mkdir()
    chroma.start()
    runs: dict[int, list[tuple[float, int]]] = {1: [], 2: []}
    try:
        for _ in range(args.rounds):
            for count in (1, 2, 2, 1):
                seconds, chunks = throughput(
                    count, base, postgres, chroma, args.docs, scratch, args.embedding_backend
                )
                runs[count].append((seconds, chunks))
                print(f"{count} worker(s): {chunks} chunks in {seconds:.1f} s", flush=True)
        lat = latencies(base, postgres, chroma, args.docs, scratch, args.latency_jobs)
    finally:
        chroma.stop()
        postgres.close()
        shutil.rmtree(scratch, ignore_errors=True)

    rate = {n: [chunks / seconds for seconds, chunks in r] for n, r in runs.items()}
    one = float(np.mean(rate[1]))
    embedder = "hashing" if args.embedding_backend == "hashing" else base.embedding_model
    print("\nCommand: PYTHONPATH=. .venv/bin/python bench/worker_scaling.py", *sys.argv[1:])
    print(
        f"Embedder: {embedder}; corpus {args.docs} ({runs[1][0][1]} chunks); "
        f"load average now {os.getloadavg()[0]:.2f}\n"
    )
    print("| workers (1 thread each) | runs, chunks/s | mean chunks/s | ratio to one worker |")
    print("|---|---|---|---|")
    for n in (1, 2):
        cells = ", ".join(f"{r:.2f}" for r in rate[n])
        mean = float(np.mean(rate[n]))
        print(f"| {n} | {cells} | {mean:.2f} | {mean / one:.2f} |")
    print("\n| queue latency, enqueued to started | jobs | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, values in lat.items():
        ms = np.array(values) * 1000
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        print(f"| {name} | {len(ms)} | {p50:.0f} | {p95:.0f} | {ms.max():.0f} |")


if __name__ == "__main__":
    main()
