"""Answers per second with one and with two model servers behind the same API (issue 17).

    PYTHONPATH=. .venv/bin/python bench/model_servers.py [--questions 12] [--clients 4]
        [--max-tokens 48] [--rounds 2]

Two llama.cpp servers (`python -m llama_cpp.server`, the default 0.5B chat model, one
thread each, `--interrupt_requests False`) run on addresses of their own. One `lore serve`
over three English XQuAD documents answers closed-loop clients (each asks again as soon
as it has its answer), once with `llm_base_urls` naming the first server and once naming
both; the two set-ups alternate `--rounds` times, so both see the same machine. The
embedder is the model-free hashing one and every evidence gate is open, so each question
costs the model servers one generation and the API little: what is measured is how
answers scale with model servers.

Beside it, the ceiling: the same number of chat requests of the same size (three XQuAD
paragraphs and a question, `--max-tokens` tokens) sent straight to the servers, one
server against two, with no Lore in between. On a small machine the servers compete
for cores and memory bandwidth, so two servers never give twice one; Lore's ratio is
to be read against this one. The CPU seconds the API process spent per answer are shown
too (they compete with the servers). Prints Markdown tables with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import (
    LlamaServer,
    LoreReplica,
    installed_models_dir,
    lore_env,
    run_lore,
)

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "xquad"
DOCS = ("en-000-Super_Bowl_50.md", "en-001-Warsaw.md", "en-002-Normans.md")
API_HOST = "127.0.0.5"
MODEL_HOSTS = ("127.0.0.7", "127.0.0.8")


def questions(count: int) -> list[str]:
    """The first `count` English questions about the documents served."""
    found = []
    with (EVAL / "questions.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item["doc"] in DOCS:
                found.append(item["question"])
            if len(found) == count:
                break
    return found


def chat_prompts(count: int) -> list[list[dict[str, str]]]:
    """`count` chat requests about the size of Lore's: three paragraphs and a question.

    No two share a paragraph, so that no request finds the one before it in a server's
    prompt cache (XQuAD asks several questions of each paragraph)."""
    contexts: dict[str, str] = {}  # paragraph -> its first question
    with (EVAL / "questions.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item["lang"] == "en":
                contexts.setdefault(item["context"], item["question"])
            if len(contexts) == 3 * count:
                break
    paragraphs = list(contexts)
    prompts = []
    for index in range(count):
        chosen = paragraphs[3 * index : 3 * index + 3]
        passages = "\n\n".join(f"[{n + 1}] {text}" for n, text in enumerate(chosen))
        question = contexts[chosen[0]]
        prompts.append(
            [
                {"role": "system", "content": "Answer from the numbered passages only."},
                {"role": "user", "content": f"{passages}\n\nQuestion: {question}"},
            ]
        )
    return prompts


def closed_loop(clients: list[Callable[[Any], bool]], items: list[Any]) -> tuple[float, int]:
    """Seconds for the `clients` (one thread each) to get through `items`, each taking the
    next item as soon as it has done the last; how many of their calls failed (False)."""
    pending = list(items)
    lock = threading.Lock()
    failures = [0]

    def run(call: Callable[[Any], bool]) -> None:
        while True:
            with lock:
                if not pending:
                    return
                item = pending.pop()
            if not call(item):
                with lock:
                    failures[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(call,)) for call in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, failures[0]


def direct(
    urls: list[str], prompts: list[list[dict[str, str]]], clients: int, tokens: int
) -> float:
    """Seconds for `clients` closed-loop clients to get every chat reply straight from the
    servers at `urls`, each client keeping to one server (clients split evenly)."""
    https = [httpx.Client(base_url=urls[i % len(urls)], timeout=600) for i in range(clients)]

    def ask(http: httpx.Client) -> Callable[[Any], bool]:
        def call(messages: Any) -> bool:
            body = {"messages": messages, "max_tokens": tokens, "temperature": 0}
            http.post("/chat/completions", json=body).raise_for_status()
            return True

        return call

    try:
        return closed_loop([ask(http) for http in https], prompts)[0]
    finally:
        for http in https:
            http.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children so far."""
    process = psutil.Process(pid)
    total = float(sum(process.cpu_times()[:2]))
    for child in process.children(recursive=True):
        total += float(sum(child.cpu_times()[:2]))
    return total


def answer_all(url: str, asked: list[str], clients: int) -> tuple[float, int]:
    """Seconds for `clients` closed-loop clients to get every answer of `asked`; failures."""
    https = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]

    def ask(http: httpx.Client) -> Callable[[Any], bool]:
        def call(question: Any) -> bool:
            reply = http.post("/v1/query", json={"question": question})
            return reply.status_code == 200 and bool(reply.json().get("answer"))

        return call

    try:
        return closed_loop([ask(http) for http in https], asked)
    finally:
        for http in https:
            http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asked = questions(args.questions)
    models_dir = installed_models_dir()
    scratch = Path(tempfile.mkdtemp(prefix="lore-bench-models-"))
    api_folder = scratch / "api"
    corpus = scratch / "corpus"
    corpus.mkdir()
    for name in DOCS:
        shutil.copy(EVAL / "docs" / name, corpus / name)

    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        servers = [LlamaServer(host, models_dir, threads=1) for host in MODEL_HOSTS]
        for server in servers:
            stack.callback(server.close)
        env = {
            **lore_env(api_folder / "data", models_dir),
            "LORE_AUTH": "false",
            "LORE_EMBEDDING_BACKEND": "hashing",
            "LORE_LLM_BACKEND": "openai",
            "LORE_LLM_BASE_URLS": servers[0].base_url,
            "LORE_MAX_TOKENS": str(args.max_tokens),
            "LORE_TRANSLATE_QUESTIONS": "false",
            "LORE_INJECTION_CLASSIFIER": "false",
            "LORE_RATE_LIMIT_PER_MINUTE": "0",
            "LORE_GENERATION_QUEUE": str(2 * args.clients),
            "LORE_MIN_SCORE": "0",
            "LORE_MIN_SCORE_TRANSLATED": "0",
            "LORE_MIN_EVIDENCE": "0",
            "LORE_MIN_EVIDENCE_TRANSLATED": "0",
            "LORE_FIRM_EVIDENCE": "1e9",
            "LORE_MIN_SUPPORT": "0",
            "LORE_MIN_SUPPORT_TRANSLATED": "0",
        }
        ingested = run_lore(env, "ingest", str(corpus))
        if ingested.returncode != 0:
            raise RuntimeError(f"lore ingest failed:\n{ingested.stderr[-3000:]}")

        prompts = chat_prompts(len(asked))
        # (round, servers, seconds through Lore, failures, API CPU s, seconds direct)
        rows: list[tuple[int, int, float, int, float, float]] = []
        for round_ in range(1, args.rounds + 1):
            for count in (1, 2):
                urls = [s.base_url for s in servers[:count]]
                straight = direct(urls, prompts, args.clients, args.max_tokens)
                api = LoreReplica(
                    API_HOST, {**env, "LORE_LLM_BASE_URLS": ",".join(urls)}, api_folder
                )
                try:
                    answer_all(api.url, asked[:2], 2)  # warm: prompt caches, connections
                    pid = api._server.process.pid  # type: ignore[union-attr]
                    spent = cpu_seconds(pid)
                    seconds, failed = answer_all(api.url, asked, args.clients)
                    spent = cpu_seconds(pid) - spent
                finally:
                    api.stop()
                rows.append((round_, count, seconds, failed, spent, straight))
                print(
                    f"round {round_}, {count} server(s): {len(asked) / seconds:.3f} answers/s "
                    f"through Lore, {len(prompts) / straight:.3f} replies/s direct"
                )

    rate = {
        count: statistics.mean(len(asked) / row[2] for row in rows if row[1] == count)
        for count in (1, 2)
    }
    ceiling = {
        count: statistics.mean(len(prompts) / row[5] for row in rows if row[1] == count)
        for count in (1, 2)
    }
    command = (
        f"PYTHONPATH=. .venv/bin/python bench/model_servers.py --questions {args.questions} "
        f"--clients {args.clients} --max-tokens {args.max_tokens} --rounds {args.rounds}"
    )
    print(f"\n`{command}` ({os.cpu_count()} cores)\n")
    print(
        "| round | model servers | answers | seconds | answers/s through Lore | failed "
        "| API CPU s an answer | replies/s straight to the servers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for round_, count, seconds, failed, spent, straight in rows:
        print(
            f"| {round_} | {count} | {len(asked)} | {seconds:.1f} | "
            f"{len(asked) / seconds:.3f} | {failed} | {spent / len(asked):.2f} | "
            f"{len(prompts) / straight:.3f} |"
        )
    print(
        f"\nTwo model servers / one, through Lore: **{rate[2] / rate[1]:.2f} times**; "
        f"straight to the servers (this machine's ceiling): **{ceiling[2] / ceiling[1]:.2f} "
        "times** (means of the rounds)."
    )


if __name__ == "__main__":
    main()
