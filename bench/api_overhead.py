"""What the HTTP API adds over a direct library call, and where backpressure begins.

    .venv/bin/python bench/api_overhead.py [--searches 40] [--answers 6] [--seconds 40]

With the default models loaded once, ingests the demo corpus into a throwaway data
directory and serves it with uvicorn on loopback, in this process, over the very same
components (auth on, one admin key). Then, alternating call by call so both sides see the
same machine:
- search: `Retriever.search` against `POST /v1/search`;
- answers: `Answerer.ask` against `POST /v1/query`, and the first token of
  `Answerer.stream` against the first `token` event of a streamed `/v1/query`;
- load: closed-loop clients (each asks again as soon as it is answered) at rising
  concurrency for `--seconds` each, counting answers per second and 503 refusals.
Prints Markdown tables with the command.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
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


def serve(lore: Lore, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(create_app(lore=lore), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def p50(values: list[float]) -> float:
    return statistics.median(values)


def load_level(url: str, headers: dict[str, str], clients: int, seconds: float) -> Counter[int]:
    """Statuses of the answers `clients` closed-loop clients got in `seconds`."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(timeout=600) as http:
            turn = index
            while time.monotonic() < stop:
                question = QUESTIONS[turn % len(QUESTIONS)]
                turn += 1
                response = http.post(
                    f"{url}/v1/query", json={"question": question}, headers=headers
                )
                with lock:
                    statuses[response.status_code] += 1
                if response.status_code == 503:
                    time.sleep(1.0)  # a polite client waits (Retry-After is longer)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=40)
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--levels", default="1,4,9,10,14")
    args = parser.parse_args()
    models_dir = Path(os.environ.get("LORE_MODELS_DIR") or default_data_dir() / "models")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), models_dir=models_dir, rate_limit_per_minute=0)
        lore = Lore(settings)
        _ = lore.embedder, lore.generator
        ingest_paths(lore, [REPO / "demo"], settings.collection)
        _, key = lore.keys.create("bench", "admin")
        headers = {"Authorization": f"Bearer {key}"}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        server = serve(lore, port)
        url = f"http://127.0.0.1:{port}"
        http = httpx.Client(timeout=600)
        collection = settings.collection

        direct_search, api_search = [], []
        for i in range(args.searches):
            question = QUESTIONS[i % len(QUESTIONS)]
            began = time.perf_counter()
            lore.retriever.search(question, collection, 5)
            direct_search.append(time.perf_counter() - began)
            began = time.perf_counter()
            response = http.post(
                f"{url}/v1/search", json={"question": question, "top_k": 5}, headers=headers
            )
            api_search.append(time.perf_counter() - began)
            response.raise_for_status()

        # llama.cpp reuses the previous prompt's cache, so a question asked twice in a row
        # answers faster the second time. Each call asks a question other than the call
        # before it, and each side gets every question equally often.
        direct_answer, api_answer, direct_first, api_first = [], [], [], []
        for i in range(args.answers):
            mine, theirs = QUESTIONS[i % 4], QUESTIONS[(i + 2) % 4]
            began = time.perf_counter()
            lore.answerer.ask(mine, collection)
            direct_answer.append(time.perf_counter() - began)
            began = time.perf_counter()
            http.post(f"{url}/v1/query", json={"question": theirs}, headers=headers)
            api_answer.append(time.perf_counter() - began)
        for i in range(args.answers):
            mine, theirs = QUESTIONS[(i + 1) % 4], QUESTIONS[(i + 3) % 4]
            began = time.perf_counter()
            for event in lore.answerer.stream(mine, collection):
                if isinstance(event, TokenEvent):
                    direct_first.append(time.perf_counter() - began)
                    break
            began = time.perf_counter()
            body = {"question": theirs, "stream": True}
            with http.stream("POST", f"{url}/v1/query", json=body, headers=headers) as r:
                for line in r.iter_lines():
                    if line.startswith("event: token"):
                        api_first.append(time.perf_counter() - began)
                        break

        levels = {}
        for clients in (int(n) for n in args.levels.split(",") if n):
            levels[clients] = load_level(url, headers, clients, args.seconds)
        server.should_exit = True

    print(
        f"Command: .venv/bin/python bench/api_overhead.py --searches {args.searches} "
        f"--answers {args.answers} --seconds {args.seconds:g} --levels {args.levels}\n"
    )
    print("| call | direct p50 | API p50 | API overhead |\n|---|---|---|---|")
    for name, direct, api in (
        (f"search (top 5), {args.searches} calls", direct_search, api_search),
        (f"answer, complete, {args.answers} calls", direct_answer, api_answer),
        (f"answer, first token (stream), {args.answers} calls", direct_first, api_first),
    ):
        d, a = p50(direct), p50(api)
        print(f"| {name} | {d * 1000:.1f} ms | {a * 1000:.1f} ms | {(a - d) * 1000:+.1f} ms |")
    if not levels:
        return
    print("\n| clients | answers/s (200) | 503 refusals/s | share refused |\n|---|---|---|---|")
    for clients, statuses in levels.items():
        served = statuses[200] / args.seconds
        refused = statuses[503] / args.seconds
        total = sum(statuses.values()) or 1
        print(f"| {clients} | {served:.2f} | {refused:.2f} | {statuses[503] / total:.0%} |")


if __name__ == "__main__":
    main()
