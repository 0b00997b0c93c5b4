"""Interchangeable API replicas behind nginx, a shared rate limit and several model servers
(issue 17), with every server a process of its own on an address of its own: a replica or
a model server killed under load, both replicas restarted in turn, a rate limit counted
across replicas, a key revoked through one replica and refused by the other.

The cluster (PostgreSQL, a Chroma server, Redis, two llama.cpp servers, two `lore serve`
replicas and nginx with the shipped docs/deploy/nginx.conf) is built once for the module.
Answers are generated for real on the small chat model but kept short (max_tokens 24),
and the embedder is the hashing one: these tests are about failover, not answer quality.

Every key spends under `RATE_LIMIT` requests a minute (the limit is a setting shared by
the replicas), so only the rate-limit test meets it: the load below takes a fresh key
every `KEY_BUDGET` requests.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from rag.config import Settings
from rag.container import Lore
from rag.models import get_spec, verify
from tests.servers import (
    ChromaServer,
    LlamaServer,
    LoreReplica,
    Nginx,
    PostgresServer,
    RedisServer,
    installed_models_dir,
    lore_env,
    run_lore,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

# Each server on a loopback address of its own, as on a host of its own.
POSTGRES_HOST = "127.0.0.2"
CHROMA_HOST = "127.0.0.3"
REDIS_HOST = "127.0.0.4"
REPLICA_HOSTS = ("127.0.0.5", "127.0.0.6")
MODEL_HOSTS = ("127.0.0.7", "127.0.0.8")
NGINX_HOST = "127.0.0.9"

COLLECTION = "failover"
RATE_LIMIT = 40  # requests a minute a key, for every replica
KEY_BUDGET = 30  # requests a load thread makes with one key before taking a fresh one
RETRIES = 3  # what a client does with a failed idempotent request: try again, 3 times
RETRY_PAUSE_S = 0.5
FAIL_TIMEOUT_S = 5  # the shipped upstream's fail_timeout: how long nginx avoids a failed replica
QUERY_TIMEOUT_S = 150  # no answer may take longer: past it, the client calls it a hang
QUESTION = "Which port does the Lore server listen on by default?"

DOCUMENTS = {
    "ports.md": "# Ports\n\nThe Lore server listens on port 8000 by default. "
    "Set another port with the port setting.\n",
    "backups.md": "# Backups\n\nThe database is backed up every night at two o'clock. "
    "Backups are kept for thirty days.\n",
    "keys.md": "# Keys\n\nAn administrator makes API keys with lore keys create. "
    "A revoked key is refused at once.\n",
}


@dataclass
class Cluster:
    postgres: PostgresServer
    database_url: str
    chroma: ChromaServer
    redis: RedisServer
    models: list[LlamaServer]
    replicas: list[LoreReplica]
    nginx: Nginx
    env: dict[str, str]
    admin_key: str
    lore: Lore  # this process's view of the shared state: keys, the audit log
    _key_lock: threading.Lock = field(default_factory=threading.Lock)
    _keys_made: int = 0

    def new_key(self, role: str = "reader") -> str:
        """A fresh key (reader of the test collection, or admin), none of its allowance spent."""
        with self._key_lock:
            self._keys_made += 1
            name = f"failover-{self._keys_made}"
        _, key = self.lore.keys.create(name, role, [] if role == "admin" else [COLLECTION])
        return key

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`lore ARGS...` with the cluster's settings, as an operator runs it on any host."""
        return run_lore(self.env, *args)

    def heal(self) -> None:
        """Start again whatever server an earlier test left dead."""
        for model in self.models:
            if not model.alive:
                model.start()
        for replica in self.replicas:
            if not replica.alive:
                replica.start()


class KeyRing:
    """The keys of one client thread: a fresh one every KEY_BUDGET requests, so that none
    meets the rate limit however long the client runs."""

    def __init__(self, cluster: Cluster):
        self._cluster = cluster
        self._key = ""
        self._spent = KEY_BUDGET

    def next(self) -> str:
        """The key to send the next request with."""
        if self._spent >= KEY_BUDGET:
            self._key, self._spent = self._cluster.new_key(), 0
        self._spent += 1
        return self._key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def chat_models_dir() -> Path:
    """Where the chat model the model servers run is installed (the embedder is hashing)."""
    folder = installed_models_dir()
    verify(get_spec(Settings().chat_model), folder)  # raises ModelMissing naming the fix
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, chat_models_dir: Path) -> Iterator[Cluster]:
    """The whole cluster, built once; every server is stopped at the end, however the
    tests went (each is registered for closing as soon as it runs)."""
    models_dir = chat_models_dir
    folder = tmp_path_factory.mktemp("failover")
    with ExitStack() as stack:
        postgres = PostgresServer(POSTGRES_HOST)
        stack.callback(postgres.close)
        database_url = postgres.database()  # Lore's schema, migrated
        chroma = ChromaServer(folder / "chroma", CHROMA_HOST)
        chroma.folder.mkdir()
        stack.callback(chroma.stop)
        chroma.start()
        redis = RedisServer(REDIS_HOST)
        stack.callback(redis.close)
        models: list[LlamaServer] = []
        for host in MODEL_HOSTS:
            model = LlamaServer(host, models_dir, threads=1, folder=folder / f"llama-{host}")
            stack.callback(model.close)
            models.append(model)
        env = {
            **lore_env(folder / "cli", models_dir),
            "LORE_DATABASE_URL": database_url,
            "LORE_CHROMA_HOST": chroma.host,
            "LORE_CHROMA_PORT": str(chroma.port),
            "LORE_RATE_LIMIT_URL": redis.url,
            "LORE_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "LORE_LLM_BACKEND": "openai",
            "LORE_LLM_BASE_URLS": ",".join(m.base_url for m in models),
            "LORE_EMBEDDING_BACKEND": "hashing",
            "LORE_TRANSLATE_QUESTIONS": "false",
            "LORE_INJECTION_CLASSIFIER": "false",
            "LORE_MAX_TOKENS": "24",
            "LORE_TRUSTED_PROXIES": NGINX_HOST,
            "LORE_COLLECTION": COLLECTION,
            "LORE_INGEST_ROOTS": json.dumps([str(folder / "docs")]),
            # With the hashing embedder every question gets passages and goes to a model
            # server: nothing is declined by its search scores alone.
            "LORE_MIN_SCORE": "0.0",
            "LORE_MIN_EVIDENCE": "0.0",
            "LORE_MIN_SUPPORT": "0.0",
        }
        (folder / "cli").mkdir()
        made = run_lore(env, "keys", "create", "failover-admin", "--role", "admin", "--json")
        assert made.returncode == 0, made.stderr
        admin_key = json.loads(made.stdout)["key"]
        docs = folder / "docs"
        docs.mkdir()
        for name, text in DOCUMENTS.items():
            (docs / name).write_text(text, encoding="utf-8")
        ingested = run_lore(env, "ingest", str(docs), "--collection", COLLECTION, "--workers", "1")
        assert ingested.returncode == 0, ingested.stderr[-3000:]
        replicas: list[LoreReplica] = []
        for host in REPLICA_HOSTS:
            replica = LoreReplica(host, env, folder=folder / f"replica-{host}")
            stack.callback(replica.close)
            replicas.append(replica)
        upstreams = [f"{r.host}:{r.port}" for r in replicas]
        nginx = Nginx(NGINX_HOST, upstreams, folder=folder / "nginx")
        stack.callback(nginx.close)
        lore = Lore(
            Settings(
                data_dir=folder / "tests",
                database_url=SecretStr(database_url),
                chroma_host=chroma.host,
                chroma_port=chroma.port,
                embedding_backend="hashing",
            )
        )
        stack.callback(lore.database.close)
        listed = httpx.get(f"{nginx.url}/v1/documents", headers=bearer(admin_key), timeout=30)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == len(DOCUMENTS), listed.text
        cluster = Cluster(
            postgres, database_url, chroma, redis, models, replicas, nginx, env, admin_key, lore
        )
        yield cluster


@pytest.fixture
def healthy(cluster: Cluster) -> Cluster:
    """The cluster with every server running, whatever an earlier test left."""
    cluster.heal()
    return cluster


# -- clients ---------------------------------------------------------------------------


def worth_retrying(response: httpx.Response) -> bool:
    """What a client retries of an idempotent request: the balancer's or a server's
    momentary failure (a 5xx), never a refusal of the request itself."""
    return response.status_code >= 500


class IdempotentLoad:
    """Threads sending GETs through `base_url` until stopped (or `limit_s` passes), each
    request retried `RETRIES` times, `RETRY_PAUSE_S` apart, after a transport error or a
    5xx. `failures` are the requests that failed every time; `done` counts the others."""

    PATHS = (
        "/v1/collections",
        f"/v1/documents?collection={COLLECTION}",
        f"/v1/collections/{COLLECTION}",
    )

    def __init__(
        self, cluster: Cluster, base_url: str, threads: int = 3, pause_s: float = 0.1,
        limit_s: float = 180,
    ):  # fmt: skip
        self.cluster = cluster
        self.base_url = base_url
        self.pause_s = pause_s
        self.deadline = time.monotonic() + limit_s
        self.failures: list[str] = []
        self.done = 0
        self.retried = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> IdempotentLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a load thread hung"

    def _run(self, index: int) -> None:
        try:
            self._requests(index)
        except Exception as exc:  # a broken client: the test fails saying so
            with self._lock:
                self.failures.append(f"load thread {index}: {exc!r}")

    def _requests(self, index: int) -> None:
        keys = KeyRing(self.cluster)
        n = 0
        with httpx.Client(base_url=self.base_url, timeout=20) as client:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                path = self.PATHS[(index + n) % len(self.PATHS)]
                n += 1
                problem = ""
                for attempt in range(1 + RETRIES):
                    if attempt:
                        with self._lock:
                            self.retried += 1
                        time.sleep(RETRY_PAUSE_S)
                    try:
                        response = client.get(path, headers=bearer(keys.next()))
                    except httpx.TransportError as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                        continue
                    problem = (
                        ""
                        if response.status_code == 200
                        else (f"{response.status_code} {response.text[:200]}")
                    )
                    if not worth_retrying(response):
                        break
                with self._lock:
                    if problem:
                        self.failures.append(f"GET {path}: {problem}")
                    else:
                        self.done += 1
                self._stop.wait(self.pause_s)


@dataclass
class Outcome:
    """How one question ended, as its client saw it."""

    status: int | None = None  # None: no HTTP response at all
    request_id: str = ""
    body: Any = None
    events: list[tuple[str, Any]] = field(default_factory=list)  # a stream's events
    problem: str = ""  # what makes it neither an answer nor a clear error
    started: float = 0.0

    @property
    def answered(self) -> bool:
        if self.problem or self.status != 200:
            return False
        return not self.events or self.events[-1][0] == "done"

    def __repr__(self) -> str:
        shown = self.body.get("code") or "answer" if isinstance(self.body, dict) else self.body
        if self.events:
            names = [name for name, _ in self.events]
            shown = f"{names[0]}, {names.count('token')} tokens, {names[-1]}"
            if names[-1] == "error":
                shown += f" {self.events[-1][1]}"
        return f"<{self.status} {shown}{' PROBLEM: ' + self.problem if self.problem else ''}>"


def check_answer(body: Any) -> str:
    """'' when `body` is a whole answer to QUESTION; else what is wrong with it."""
    if not isinstance(body, dict):
        return f"not an answer object: {body!r}"
    for name, kind in (("answer", str), ("declined", bool), ("citations", list),
                       ("sources", list)):  # fmt: skip
        if not isinstance(body.get(name), kind):
            return f"answer without a {kind.__name__} `{name}`: {body!r}"
    if body.get("question") != QUESTION:
        return f"the answer is to another question: {body!r}"
    return ""


def check_error(body: Any) -> str:
    """'' when `body` is a JSON error as Lore's and the shipped nginx's are; else what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return f"not a JSON error with a code: {body!r}"
    if not isinstance(body.get("message"), str) or "Traceback" in body["message"]:
        return f"a JSON error without a plain message: {body!r}"
    return ""


def ask(
    base_url: str, key: str, stream: bool, first_token: threading.Event | None = None
) -> Outcome:
    """One question through `base_url`, non-streaming or streaming, read to its end or to
    QUERY_TIMEOUT_S; the outcome says how it ended and whether that was clear. A stream
    sets `first_token` once a token event has come."""
    outcome = Outcome(started=time.monotonic())
    deadline = outcome.started + QUERY_TIMEOUT_S
    payload = {"question": QUESTION, "collection": COLLECTION, "stream": stream}
    timeout = httpx.Timeout(QUERY_TIMEOUT_S, connect=10)
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream(
                "POST", f"{base_url}/v1/query", json=payload, headers=bearer(key)
            ) as response,
        ):
            outcome.status = response.status_code
            outcome.request_id = response.headers.get("x-request-id", "")
            is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
            if stream and response.status_code == 200 and is_sse:
                outcome.events = read_events(response, deadline, first_token)
                outcome.problem = check_stream(outcome.events)
                return outcome
            text = response.read().decode("utf-8", errors="replace")
    except httpx.TimeoutException as exc:
        outcome.problem = f"hung: no end within {QUERY_TIMEOUT_S} s ({type(exc).__name__})"
        return outcome
    except httpx.TransportError as exc:
        # Cut off with no HTTP answer: not clear to the client, so a problem.
        outcome.problem = f"no clear answer: {type(exc).__name__}: {exc}"
        return outcome
    except TimeoutError as exc:
        outcome.problem = f"hung: {exc}"
        return outcome
    try:
        outcome.body = json.loads(text)
    except ValueError:
        outcome.problem = f"{outcome.status} with a body that is not JSON: {text[:300]!r}"
        return outcome
    if outcome.status == 200:
        outcome.problem = check_answer(outcome.body)
    else:
        outcome.problem = check_error(outcome.body)
    return outcome


def read_events(
    response: httpx.Response, deadline: float, first_token: threading.Event | None = None
) -> list[tuple[str, Any]]:
    """The server-sent events of `response` until it ends (TimeoutError past `deadline`);
    `first_token` is set at the first token event."""
    events: list[tuple[str, Any]] = []
    name, data = "message", ""
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream did not end within {QUERY_TIMEOUT_S} s")
        if line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data += line[len("data:") :].strip()
        elif line == "":
            if data:
                try:
                    events.append((name, json.loads(data)))
                except ValueError:
                    events.append((name, data))
                if name == "token" and first_token is not None:
                    first_token.set()
            name, data = "message", ""
    return events


def check_stream(events: list[tuple[str, Any]]) -> str:
    """'' when a stream ended clearly: with a whole answer (`done`) or an `error` event."""
    if not events:
        return "a stream with no event"
    last, data = events[-1]
    if last == "done":
        return check_answer(data)
    if last == "error":
        return check_error(data)
    return f"a stream cut off after {[n for n, _ in events][-5:]} with no `done` or `error`"


def queue_depth(replica: LoreReplica, keys: KeyRing) -> int:
    """The replica's generations admitted and not finished, from its /metrics."""
    try:
        text = httpx.get(f"{replica.url}/metrics", headers=bearer(keys.next()), timeout=5).text
    except httpx.TransportError:
        return 0
    found = re.search(r"^lore_generation_queue_depth\S*\s+([0-9.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def wait_for(condition: Any, timeout: float, what: str, pause_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(pause_s)


class ReadinessWatch:
    """A thread polling each replica's /readyz until stopped; `bad` holds every answer
    that was not 200 (or no answer at all)."""

    def __init__(self, replicas: list[LoreReplica], pause_s: float = 0.25):
        self.replicas = replicas
        self.pause_s = pause_s
        self.bad: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                for replica in self.replicas:
                    try:
                        status = client.get(f"{replica.url}/readyz").status_code
                        problem = "" if status == 200 else f"{status}"
                    except httpx.TransportError as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                    self.polls += 1
                    if problem:
                        self.bad.append(f"{replica.host}: {problem}")
                self._stop.wait(self.pause_s)


def audited_queries(cluster: Cluster, request_id: str) -> int:
    """How many audit entries record a `query` answered under `request_id`."""
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit_entries WHERE request_id = %s AND operation = 'query'",
            (request_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def check_audit_chain(cluster: Cluster) -> None:
    """The audit log verifies (`lore audit verify`), and is one unforked line: seq has no
    gap and no two entries follow the same one."""
    verified = cluster.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT prev_hash), min(seq), max(seq) FROM audit_entries"
        ).fetchone()
    assert row is not None
    entries, heads, first, last = row
    assert entries == heads, f"{entries} entries but {heads} distinct prev_hash: a fork"
    assert last - first + 1 == entries, f"seq {first}..{last} for {entries} entries: a gap"


# -- the tests -------------------------------------------------------------------------


def test_no_request_is_lost_when_a_replica_is_killed_under_load(healthy: Cluster) -> None:
    cluster = healthy
    victim = cluster.replicas[0]
    query_key, watch_keys = cluster.new_key(), KeyRing(cluster)
    with IdempotentLoad(cluster, cluster.nginx.url) as load, ThreadPoolExecutor(6) as pool:
        time.sleep(1)
        asked = [pool.submit(ask, cluster.nginx.url, query_key, False) for _ in range(5)]
        # nginx spreads them over both replicas (least_conn): one is being answered on
        # the victim when it dies.
        wait_for(lambda: queue_depth(victim, watch_keys) >= 1, 60, "no question on the victim")
        victim.kill()
        time.sleep(FAIL_TIMEOUT_S + 2)  # the load goes on past nginx's pause for the victim
        outcomes = [f.result(timeout=QUERY_TIMEOUT_S + 30) for f in asked]
    print(f"idempotent: {load.done} ok, {load.retried} retried; queries: {outcomes}")
    assert load.failures == [], load.failures[:10]
    assert load.done > 20, "the load hardly ran"
    assert [o for o in outcomes if o.problem] == []
    # A POST is not sent again by nginx: a question on the victim ends in nginx's JSON 502.
    cut = [o for o in outcomes if o.status == 502 and o.body["code"] == "upstream_failed"]
    assert cut, f"no question was cut off by the kill: {outcomes}"
    answered = [o for o in outcomes if o.status == 200]
    assert answered, f"no question was answered by the surviving replica: {outcomes}"

    victim.start()
    check_audit_chain(cluster)
    for o in answered:
        assert o.request_id, o
        assert audited_queries(cluster, o.request_id) == 1, o.request_id


def test_rate_limit_is_shared_across_replicas(healthy: Cluster) -> None:
    cluster = healthy
    key = cluster.new_key()
    statuses: list[int] = []
    retry_after: list[str] = []
    began = time.monotonic()
    with httpx.Client(timeout=10) as client:
        for n in range(2 * RATE_LIMIT):
            replica = cluster.replicas[n % 2]
            response = client.get(f"{replica.url}/v1/collections", headers=bearer(key))
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(response.headers.get("Retry-After", ""))
                assert response.json()["code"], response.text
    elapsed = time.monotonic() - began
    assert elapsed < 20, f"{2 * RATE_LIMIT} requests took {elapsed:.1f} s"
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) == RATE_LIMIT, (statuses, f"{elapsed:.1f} s")
    assert statuses.count(429) == RATE_LIMIT, statuses
    # The allowance is spent first, then every request is refused, on either replica.
    assert statuses[:RATE_LIMIT] == [200] * RATE_LIMIT, statuses
    assert all(r.isdigit() and int(r) >= 1 for r in retry_after), retry_after


def test_rolling_restart_of_both_replicas_loses_no_idempotent_request(
    healthy: Cluster,
) -> None:
    cluster = healthy
    with IdempotentLoad(cluster, cluster.nginx.url) as load:
        time.sleep(1)
        for replica in cluster.replicas:
            replica.stop()  # SIGTERM: it finishes what it has in hand, takes nothing new
            replica.start()  # returns once /readyz answers 200
            # nginx left the stopped replica out for fail_timeout; once that is over it
            # sends to it again, and only then may the other one go.
            time.sleep(FAIL_TIMEOUT_S + 1)
    print(f"idempotent: {load.done} ok, {load.retried} retried")
    assert load.failures == [], load.failures[:10]
    assert load.done > 20, "the load hardly ran"


def test_a_key_revoked_through_one_replica_is_refused_by_the_other_at_once(
    healthy: Cluster,
) -> None:
    cluster = healthy
    a, b = cluster.replicas
    admin = bearer(cluster.admin_key)
    made = httpx.post(
        f"{b.url}/v1/keys",
        json={"name": "revoked-soon", "role": "reader", "collections": [COLLECTION]},
        headers=admin,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["key_id"]
    for replica in (a, b):  # both have seen it, valid
        seen = httpx.get(f"{replica.url}/v1/collections", headers=bearer(key), timeout=10)
        assert seen.status_code == 200, seen.text

    revoked = httpx.delete(f"{b.url}/v1/keys/{key_id}", headers=admin, timeout=10)
    assert revoked.status_code == 200, revoked.text

    refused = httpx.get(f"{a.url}/v1/collections", headers=bearer(key), timeout=10)
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"], refused.text
    again = httpx.get(f"{b.url}/v1/collections", headers=bearer(key), timeout=10)
    assert again.status_code == 401, again.text


def test_what_one_replica_took_any_other_serves(healthy: Cluster) -> None:
    cluster = healthy
    a, b = cluster.replicas
    admin = bearer(cluster.admin_key)
    text = b"The north warehouse keeps the safety goggles on shelf twelve."
    made = httpx.post(
        f"{a.url}/v1/documents",
        files={"file": ("goggles.txt", text)},
        data={"collection": COLLECTION},
        headers=admin,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    listed = httpx.get(f"{b.url}/v1/documents", headers=admin, timeout=30).json()
    assert made.json()["doc_id"] in [d["doc_id"] for d in listed]
    found = httpx.post(
        f"{b.url}/v1/search",
        json={"question": "Where are the safety goggles kept?", "collection": COLLECTION},
        headers=admin,
        timeout=30,
    )
    assert found.status_code == 200, found.text
    assert "goggles.txt" in found.text

    folder = json.loads(cluster.env["LORE_INGEST_ROOTS"])[0]
    job = httpx.post(
        f"{a.url}/v1/ingest/jobs",
        data={"folder": folder, "collection": COLLECTION},
        headers=admin,
        timeout=30,
    )
    assert job.status_code == 202, job.text
    seen = httpx.get(f"{b.url}/v1/ingest/jobs/{job.json()['id']}", headers=admin, timeout=30)
    assert seen.status_code == 200, seen.text
    assert seen.json()["id"] == job.json()["id"]
    assert seen.json()["status"] == "queued"  # no worker runs in this cluster

    streamed = ask(cluster.nginx.url, cluster.new_key(), stream=True)
    assert streamed.problem == "", streamed.problem
    assert streamed.events[-1][0] == "done"


def test_answers_go_on_when_a_model_server_is_killed_under_load(healthy: Cluster) -> None:
    cluster = healthy
    victim, survivor = cluster.models
    key = cluster.new_key()
    url = cluster.nginx.url
    served_before, victim_before = chat_requests(survivor), chat_requests(victim)
    first_token = threading.Event()
    with ReadinessWatch(cluster.replicas) as readiness, ThreadPoolExecutor(8) as pool:
        before: list[Future[Outcome]] = [
            pool.submit(ask, url, key, stream, first_token) for stream in (True, False) * 2
        ]
        # Mid-generation: tokens are coming, and the victim has begun a completion (it
        # logs one as its response starts; the others wait behind it).
        assert first_token.wait(QUERY_TIMEOUT_S), "no token came from either model server"
        wait_for(lambda: chat_requests(victim) > victim_before, 60, "the victim got no question")
        victim.kill()
        after = [pool.submit(ask, url, key, stream) for stream in (True, False) * 2]
        early = [f.result(timeout=QUERY_TIMEOUT_S + 30) for f in before]
        late = [f.result(timeout=QUERY_TIMEOUT_S + 30) for f in after]
        time.sleep(1)
    print(f"in flight: {early}\nafter the kill: {late}\nreadyz polls: {readiness.polls}")
    assert [o for o in early if o.problem] == [], "an answer in flight ended unclearly"
    assert [o for o in late if not o.answered] == [], "a question after the kill failed"
    assert readiness.polls > 4
    assert readiness.bad == [], readiness.bad[:10]
    # The survivor generated the answers asked after the kill.
    assert chat_requests(survivor) - served_before >= len(late)
    victim.start()


def chat_requests(model: LlamaServer) -> int:
    """How many chat completions the model server has been asked for (its access log)."""
    log = model.folder / "llama.log"
    return log.read_text(errors="replace").count("POST /v1/chat/completions")
