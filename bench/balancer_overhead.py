"""Per-request overhead of the balancer plus a replica, against one embedded process (issue 17).

    .venv/bin/python bench/balancer_overhead.py [--requests 200] [--warmup 10] [--docs 48]
        [--rate-limit 1000000]

The same documents (the first DOCS of XQuAD's 48, English and Chinese) and the same
embedder, the hashing one (LORE_EMBEDDING_BACKEND=hashing, so that the figures are of the
serving path and not of a model), served two ways, each server a process of its own on a
loopback address of its own (tests/servers.py):

- (a) embedded: one `lore serve` on 127.0.0.5 over SQLite files and a Chroma folder;
- (b) a cluster: PostgreSQL on 127.0.0.2, a Chroma server on 127.0.0.3, Redis on 127.0.0.4
  counting the rate limits, one `lore serve` replica on 127.0.0.6, and nginx on 127.0.0.9
  with the shipped docs/deploy/nginx.conf in front of it. The replica is asked both
  through nginx, (b), and directly, (b'), so that b - b' is nginx's part and b' - a the
  cluster stores' part.

Auth is on (one admin key a side) and the rate limit is a high one that no request meets,
so that each request is still counted (in the process for (a), in Redis for (b)); a limit
of 0 would skip the counting altogether. The chat model is loaded by each server but never
used: no route asked generates. One keep-alive HTTP client a path; after WARMUP rounds,
REQUESTS rounds of GET /healthz, GET /v1/collections and POST /v1/search, each request
sent to (a), (b') and (b) in turn, in an order rotated every round, so that all three see
the same machine and none always goes first. Prints Markdown tables with the command.
Every server started is stopped at the end, on an error or Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.config import Settings  # noqa: E402
from rag.models import get_spec, verify  # noqa: E402
from tests.servers import (  # noqa: E402
    ChromaServer,
    LoreReplica,
    Nginx,
    PostgresServer,
    RedisServer,
    installed_models_dir,
    lore_env,
    run_lore,
)

XQUAD = REPO.parent / "shared" / "eval" / "xquad"
POSTGRES_HOST = "127.0.0.2"
CHROMA_HOST = "127.0.0.3"
REDIS_HOST = "127.0.0.4"
EMBEDDED_HOST = "127.0.0.5"
REPLICA_HOST = "127.0.0.6"
NGINX_HOST = "127.0.0.9"
COLLECTION = "bench"
T = TypeVar("T")
# The three ways a request goes, in the tables' order.
PATHS = ("embedded", "replica", "nginx")
LABELS = {
    "embedded": "(a) embedded",
    "replica": "(b') cluster replica, direct",
    "nginx": "(b) nginx + cluster replica",
}


def lore_output(env: dict[str, str], *args: str) -> str:
    """`lore ARGS...` in `env`; its output, or RuntimeError with its error output."""
    done = run_lore(env, *args)
    if done.returncode != 0:
        raise RuntimeError(f"lore {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def admin_key_and_corpus(env: dict[str, str], docs: Path) -> str:
    """An admin key made with `env`'s settings, once `docs` are ingested into COLLECTION."""
    made = lore_output(env, "keys", "create", "bench-admin", "--role", "admin", "--json")
    lore_output(env, "ingest", str(docs), "--collection", COLLECTION, "--workers", "1")
    return str(json.loads(made)["key"])


def corpus(count: int, into: Path) -> tuple[Path, list[str]]:
    """A folder with the first `count` XQuAD documents, and XQuAD's questions about them
    (at most 40, taken evenly from all of them, so both languages are asked)."""
    files = sorted((XQUAD / "docs").iterdir())[:count]
    if not files:
        raise SystemExit(f"no documents in {XQUAD / 'docs'}")
    folder = into / "docs"
    folder.mkdir()
    for file in files:
        shutil.copy(file, folder / file.name)
    names = {file.name for file in files}
    rows = [json.loads(line) for line in (XQUAD / "questions.jsonl").open(encoding="utf-8")]
    questions = [row["question"] for row in rows if row["doc"] in names]
    step = max(1, len(questions) // 40)
    return folder, questions[::step][:40]


def common_env(models_dir: Path, rate_limit: int) -> dict[str, str]:
    """The settings both sides share, over the usual environment."""
    return {
        **lore_env(models_dir, models_dir),  # LORE_DATA_DIR is set per server below
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_TRANSLATE_QUESTIONS": "false",  # a search would ask the chat model
        "LORE_INJECTION_CLASSIFIER": "false",  # fit to another embedder
        "LORE_RATE_LIMIT_PER_MINUTE": str(rate_limit),
        "LORE_COLLECTION": COLLECTION,
        "LORE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }


def request(client: httpx.Client, route: str, question: str) -> tuple[float, httpx.Response]:
    """Seconds one request on `route` took, and its response (RuntimeError unless 200)."""
    began = time.perf_counter()
    if route == "search":
        response = client.post("/v1/search", json={"question": question, "top_k": 5})
    else:
        response = client.get("/healthz" if route == "healthz" else "/v1/collections")
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"{route} on {client.base_url}: {response.status_code} {response.text}")
    return elapsed, response


def measure(
    clients: dict[str, httpx.Client], questions: list[str], rounds: int, warmup: int,
    progress: Callable[[int], None],
) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Seconds of each request, by route and by path: `rounds` rounds after `warmup`."""
    routes = ("healthz", "collections", "search")
    seconds: dict[str, dict[str, list[float]]] = {r: {p: [] for p in PATHS} for r in routes}
    for n in range(warmup + rounds):
        order = PATHS[n % 3 :] + PATHS[: n % 3]
        question = questions[n % len(questions)]
        for route in routes:
            for path in order:
                elapsed, _ = request(clients[path], route, question)
                if n >= warmup:
                    seconds[route][path].append(elapsed)
        progress(n)
    return seconds


def differences(clients: dict[str, httpx.Client], questions: list[str]) -> list[str]:
    """How the passages found for each question (source and text, best first) differ from
    the embedded server's on the other paths; nothing when all paths find the same ones,
    as both sides should when they do the same work."""
    found: list[str] = []
    for question in questions:
        passages = {
            path: [(p["source"], p["text"]) for p in request(client, "search", question)[1].json()]
            for path, client in clients.items()
        }
        mine = passages["embedded"]
        notes = []
        for path in PATHS[1:]:
            theirs = passages[path]
            if theirs == mine:
                continue
            shared = len(set(theirs) & set(mine))
            if shared == len(mine) == len(theirs):
                notes.append(f"{path}: the same {shared} in another order")
            else:
                notes.append(f"{path}: {shared} of its {len(theirs)} among the {len(mine)}")
        if notes or not mine:
            found.append(f"{question!r} ({'; '.join(notes) or 'none found'})")
    return found


def started(stack: ExitStack, start: Callable[[], T], stop: Callable[[T], object]) -> T:
    """The server `start()` returns, registered on `stack` to be stopped by `stop`.

    A Ctrl-C or SIGTERM that comes while it starts (which may take a minute) is held until
    it is up and registered, then raised: no server is left running unregistered.
    """
    held: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _: held.append(number))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server = start()
        stack.callback(stop, server)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        raise KeyboardInterrupt
    return server


def start_embedded(
    stack: ExitStack, scratch: Path, base: dict[str, str], docs: Path
) -> tuple[str, LoreReplica]:
    """(a): one `lore serve` over files of its own, and its admin key."""
    folder = scratch / "embedded"
    env = {**base, "LORE_DATA_DIR": str(folder / "data")}
    key = admin_key_and_corpus(env, docs)
    # LoreReplica keeps the same LORE_DATA_DIR: folder / "data".
    server = started(stack, lambda: LoreReplica(EMBEDDED_HOST, env, folder), LoreReplica.close)
    return key, server


def start_cluster(
    stack: ExitStack, scratch: Path, base: dict[str, str], docs: Path
) -> tuple[str, LoreReplica, Nginx]:
    """(b): the stores, one replica and nginx in front of it; and the admin key."""
    postgres = started(stack, lambda: PostgresServer(POSTGRES_HOST), PostgresServer.close)
    chroma = ChromaServer(scratch / "chroma", CHROMA_HOST)
    chroma.folder.mkdir()
    stack.callback(chroma.stop)
    chroma.start()
    redis = started(stack, lambda: RedisServer(REDIS_HOST), RedisServer.close)
    env = {
        **base,
        "LORE_DATA_DIR": str(scratch / "cli"),
        "LORE_DATABASE_URL": postgres.database(),
        "LORE_CHROMA_HOST": chroma.host,
        "LORE_CHROMA_PORT": str(chroma.port),
        "LORE_RATE_LIMIT_URL": redis.url,
        "LORE_TRUSTED_PROXIES": NGINX_HOST,
    }
    (scratch / "cli").mkdir()
    key = admin_key_and_corpus(env, docs)
    replica = started(
        stack, lambda: LoreReplica(REPLICA_HOST, env, scratch / "replica"), LoreReplica.close
    )
    upstream = [f"{replica.host}:{replica.port}"]
    nginx = started(stack, lambda: Nginx(NGINX_HOST, upstream, scratch / "nginx"), Nginx.close)
    return key, replica, nginx


ROUTE_NAMES = {
    "healthz": "GET /healthz (HTTP alone)",
    "collections": "GET /v1/collections (key + a database read)",
    "search": "POST /v1/search, top 5 (key + keyword index + vectors + audit)",
}


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def print_tables(seconds: dict[str, dict[str, list[float]]]) -> None:
    print("| route | " + " | ".join(f"{LABELS[p]} p50 / p95" for p in PATHS) + " |")
    print("|---|---|---|---|")
    for route, by_path in seconds.items():
        cells = " | ".join(f"{ms(by_path[p], 50):.2f} / {ms(by_path[p], 95):.2f} ms" for p in PATHS)
        print(f"| {ROUTE_NAMES[route]} | {cells} |")
    print(
        "\n| route | b - a, all of it (p50 / p95) | b' - a, the cluster stores "
        "(p50 / p95) | b - b', nginx (p50 / p95) |\n|---|---|---|---|"
    )
    for route, by_path in seconds.items():
        deltas = []
        for high, low in (("nginx", "embedded"), ("replica", "embedded"), ("nginx", "replica")):
            d50 = ms(by_path[high], 50) - ms(by_path[low], 50)
            d95 = ms(by_path[high], 95) - ms(by_path[low], 95)
            deltas.append(f"{d50:+.2f} / {d95:+.2f} ms")
        print(f"| {ROUTE_NAMES[route]} | {' | '.join(deltas)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured rounds a route")
    parser.add_argument("--warmup", type=int, default=10, help="rounds not measured, first")
    parser.add_argument("--docs", type=int, default=48, help="the first DOCS XQuAD documents")
    parser.add_argument(
        "--rate-limit", type=int, default=1_000_000, help="requests a minute a key (0: none)"
    )
    args = parser.parse_args()
    # `kill` as Ctrl-C: the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    models_dir = installed_models_dir()
    verify(get_spec(Settings().chat_model), models_dir)  # each server loads it (unused)
    base = common_env(models_dir, args.rate_limit)
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="lore-balancer-"))
        stack.callback(shutil.rmtree, scratch, True)
        docs, questions = corpus(args.docs, scratch)
        print(f"Starting the servers ({args.docs} documents, {len(questions)} questions)...")
        embedded_key, embedded = start_embedded(stack, scratch, base, docs)
        cluster_key, replica, nginx = start_cluster(stack, scratch, base, docs)
        urls = {"embedded": embedded.url, "replica": replica.url, "nginx": nginx.url}
        keys = {"embedded": embedded_key, "replica": cluster_key, "nginx": cluster_key}
        clients = {
            path: stack.enter_context(
                httpx.Client(
                    base_url=urls[path],
                    headers={"Authorization": f"Bearer {keys[path]}"},
                    timeout=30,
                )
            )
            for path in PATHS
        }
        listed = {p: request(c, "collections", "")[1].json() for p, c in clients.items()}
        chunks = {
            p: sum(c["chunks"] for c in v if c["name"] == COLLECTION) for p, v in listed.items()
        }
        differ = differences(clients, questions)
        step = max(1, (args.warmup + args.requests) // 10)

        def progress(n: int) -> None:
            if (n + 1) % step == 0:
                print(f"  round {n + 1} of {args.warmup + args.requests}", flush=True)

        seconds = measure(clients, questions, args.requests, args.warmup, progress)

    limit = (
        f"a rate limit of {args.rate_limit} a minute a key, never met (each request counted "
        "in the process for (a), in Redis for (b))"
        if args.rate_limit
        else "no rate limit (nothing counted)"
    )
    print("\nCommand: .venv/bin/python bench/balancer_overhead.py", *sys.argv[1:])
    print(
        f"Corpus: the first {args.docs} XQuAD documents ({chunks['embedded']} chunks embedded, "
        f"{chunks['replica']} in the cluster), {len(questions)} of their questions in turn. "
        "Embedder: hashing (LORE_EMBEDDING_BACKEND=hashing), so these are the serving path's "
        "costs, not a model's. "
        f"Auth on; {limit}. "
        f"{args.requests} requests a route and path after {args.warmup} warm-up rounds, "
        "one keep-alive client a path, the paths in turn; everything on one machine "
        f"({os.cpu_count()} cores, load average now {os.getloadavg()[0]:.2f}).\n"
    )
    print_tables(seconds)
    if differ:
        print(f"\nSearches whose passages differ from the embedded server's ({len(differ)}):")
        for line in differ:
            print(f"- {line}")


if __name__ == "__main__":
    main()
