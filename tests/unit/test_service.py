"""The service under load and abuse: limits, backpressure, timeouts, disconnects,
metrics, and the OpenAI client. Against a real uvicorn on loopback, with fake models."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from rag.components.generation import TokenStream
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.unit


class SlowGenerator(ScriptedGenerator):
    """A scripted model that takes `delay` seconds a token and notes how each run ended."""

    def __init__(self, delay: float, words: int = 40):
        super().__init__(" ".join(["word"] * (words - 1)) + " [1].")
        self.delay = delay
        self.finished = 0
        self.stopped = 0
        self.running = threading.Event()

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        completed = False
        self.running.set()
        try:
            for piece in super().stream(messages, max_tokens):
                time.sleep(self.delay)
                yield piece
            completed = True
        finally:
            self.running.clear()
            if completed:
                self.finished += 1
            else:
                self.stopped += 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def live(
    settings: Settings, generator: ScriptedGenerator, docs: Path, key: str | None = None
) -> Iterator[str]:
    """A real uvicorn serving Lore (hashing embedder, `generator`) in a thread, holding
    docs/ports.md (uploaded with `key` when auth is on); yields its URL."""
    embedder = HashingEmbedder()
    lore = Lore(
        settings,
        embedder_override=embedder,
        store_override=ChromaStore.embedded(settings.chroma_dir, embedder.name),
        generator_override=generator,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(lore=lore), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    with (docs / "ports.md").open("rb") as handle:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        uploaded = httpx.post(  # a busy machine may take a while to parse the first file
            f"{url}/v1/documents",
            files={"file": ("ports.md", handle)},
            headers=headers,
            timeout=120,
        )
    assert uploaded.status_code == 201, uploaded.text
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


def _stream_until_first_token(url: str, body: dict[str, Any]) -> None:
    with httpx.stream("POST", f"{url}/v1/query", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: token"):
                return


def test_a_full_queue_answers_503_with_retry_after_and_health_stays_fast(
    settings: Settings, docs: Path
) -> None:
    generator = SlowGenerator(delay=0.05)
    with live(_settings(settings, generation_queue=1), generator, docs) as url:
        results: list[httpx.Response] = []

        def ask() -> None:
            body = {"question": "Which port does Lore use?"}
            results.append(httpx.post(f"{url}/v1/query", json=body, timeout=60))

        first = threading.Thread(target=ask)
        first.start()
        assert generator.running.wait(10)
        second = threading.Thread(target=ask)  # waits in the queue
        second.start()
        time.sleep(0.3)
        refused = httpx.post(f"{url}/v1/query", json={"question": "port?"}, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["code"] == "busy"
        assert int(refused.headers["Retry-After"]) >= 1
        began = time.perf_counter()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert time.perf_counter() - began < 0.5
        first.join()
        second.join()
        assert [r.status_code for r in results] == [200, 200]
        assert generator.finished == 2


def test_a_client_that_disconnects_stops_its_generation(settings: Settings, docs: Path) -> None:
    generator = SlowGenerator(delay=0.1, words=200)  # 20 s if it ran to the end
    with live(_settings(settings, generation_queue=0), generator, docs) as url:
        began = time.perf_counter()
        _stream_until_first_token(url, {"question": "Which port does Lore use?"})
        deadline = time.monotonic() + 5
        while generator.stopped == 0:
            assert time.monotonic() < deadline, "generation went on after the client left"
            time.sleep(0.05)
        assert time.perf_counter() - began < 10
        # The model is free again: the next question is admitted, not refused.
        generator.delay = 0.0
        after = httpx.post(f"{url}/v1/query", json={"question": "port?"}, timeout=30)
        assert after.status_code == 200, after.text


def test_generation_past_its_time_limit_is_stopped(settings: Settings, docs: Path) -> None:
    generator = SlowGenerator(delay=0.1, words=100)
    with live(_settings(settings, generation_timeout_s=0.5), generator, docs) as url:
        plain = httpx.post(f"{url}/v1/query", json={"question": "Which port?"}, timeout=30)
        assert plain.status_code == 504
        assert plain.json()["code"] == "timeout"
        events = []
        body = {"question": "Which port?", "stream": True}
        with httpx.stream("POST", f"{url}/v1/query", json=body, timeout=30) as response:
            events = [line for line in response.iter_lines() if line.startswith("event:")]
        assert events[0] == "event: sources"
        assert events[-1] == "event: error"
        assert generator.stopped == 2


def test_rate_limit_per_key_is_429_with_retry_after(settings: Settings, lore: Lore) -> None:
    limited = Lore(
        _settings(settings, rate_limit_per_minute=3),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    with TestClient(create_app(lore=limited)) as client:
        codes = [client.get("/v1/collections").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = client.get("/v1/collections")
        assert refused.json()["code"] == "rate_limited"
        # The first request leaves the minute's window a minute after it was made.
        assert 55 <= int(refused.headers["Retry-After"]) <= 61
        assert client.get("/healthz").status_code == 200  # never limited


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/query", {"question": "x" * 2001}, 422, "invalid_input"),
        ("/v1/query", {"question": "port?", "top_k": 51}, 422, "invalid_request"),
        (
            "/v1/query",
            {"question": "port?", "history": [{"role": "user", "content": "hi"}] * 51},
            422,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            {"model": "lore", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9999},
            422,
            "invalid_input",
        ),
        (
            "/v1/chat/completions",
            {"model": "lore", "messages": [{"role": "assistant", "content": "hi"}]},
            422,
            "invalid_input",
        ),
        ("/v1/embeddings", {"model": "x", "input": ["a"] * 257}, 413, "limit_exceeded"),
    ],
)
def test_requests_over_the_limits_are_refused(
    lore: Lore, docs: Path, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    with TestClient(create_app(lore=lore)) as client:
        with (docs / "ports.md").open("rb") as handle:
            client.post("/v1/documents", files={"file": ("ports.md", handle)})
        response = client.post(path, json=body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_a_body_over_the_limit_is_413_before_it_is_read(settings: Settings, lore: Lore) -> None:
    small = Lore(
        _settings(settings, max_body_mb=1),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    big = json.dumps({"question": "x", "padding": "y" * (1024 * 1024)})
    with TestClient(create_app(lore=small)) as client:
        declared = client.post(
            "/v1/query", content=big, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["code"] == "limit_exceeded"

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(big), 65536):
                yield big[start : start + 65536].encode()

        chunked = client.post(
            "/v1/query", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413


def test_metrics_and_readiness(settings: Settings, docs: Path) -> None:
    with live(settings, SlowGenerator(delay=0.0, words=5), docs) as url:
        httpx.post(f"{url}/v1/query", json={"question": "Which port?"}, timeout=30)
        httpx.post(f"{url}/v1/search", json={"question": "Which port?"}, timeout=30)
        ready = httpx.get(f"{url}/readyz")  # no key: a probe's view, no detail
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        detail = httpx.get(f"{url}/v1/admin/readiness")  # auth is off: an admin
        assert detail.json()["checks"] == {"models": "ok", "vector_store": "ok", "manifest": "ok"}
        text = httpx.get(f"{url}/metrics").text
        for name in (
            'lore_http_requests_total{method="POST",route="/v1/query",status="200"} 1.0',
            "lore_time_to_first_token_seconds_count 1.0",
            "lore_generation_tokens_per_second_count 1.0",
            "lore_retrieval_seconds_count 2.0",
            'lore_ingest_files_total{outcome="added"} 1.0',
            "lore_generation_queue_depth 0.0",
        ):
            assert name in text, name


def test_the_openai_client_works_against_lore(settings: Settings, docs: Path) -> None:
    from openai import NotFoundError, OpenAI

    # No marker from the model: Lore adds it, to the stream as to the plain content.
    generator = ScriptedGenerator("Lore listens on port 8000.")
    with live(settings, generator, docs) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused-with-auth-off", max_retries=0)
        assert [m.id for m in client.models.list()] == ["lore:default"]

        reply = client.chat.completions.create(
            model="lore:default",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Which port does Lore use?"},
            ],
        )
        assert reply.choices[0].message.content == "Lore listens on port 8000. [1]"
        assert reply.usage is not None
        assert reply.usage.prompt_tokens > 50  # the whole prompt, not the question
        citations = (reply.model_extra or {})["citations"]
        assert citations[0]["source"].endswith("ports.md")

        pieces = []
        last: Any = None
        usage: Any = None
        for chunk in client.chat.completions.create(
            model="lore:default",
            messages=[{"role": "user", "content": "Which port does Lore use?"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices:
                last = chunk
                pieces.append(chunk.choices[0].delta.content or "")
            else:
                usage = chunk.usage
        assert "".join(pieces) == reply.choices[0].message.content
        assert last.choices[0].finish_reason == "stop"
        assert (last.model_extra or {})["citations"][0]["number"] == 1
        assert usage == reply.usage

        vectors = client.embeddings.create(model="lore", input=["port", "长城"])
        assert len(vectors.data) == 2
        assert len(vectors.data[0].embedding) == HashingEmbedder().dimension

        with pytest.raises(NotFoundError):
            client.chat.completions.create(
                model="lore:nowhere", messages=[{"role": "user", "content": "hi"}]
            )


def test_logs_are_json_lines_with_the_request_id(
    lore: Lore, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from api.observability import configure_json_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_json_logging()
    try:
        with TestClient(create_app(lore=lore)) as client:
            response = client.post("/v1/query", json={"question": "port?", "collection": "nope"})
            logging.getLogger("lore.api").info("after the request")
        request_id = response.headers["X-Request-ID"]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines
    assert all({"time", "level", "logger", "message", "request_id"} <= set(x) for x in lines)
    warned = [x for x in lines if "AUTH IS OFF" in x["message"]]
    assert warned
    assert warned[0]["level"] == "WARNING"
    served = [x for x in lines if x["request_id"] == request_id]
    assert served
    assert served[0]["message"] == f"POST /v1/query 404 {served[0]['message'].split()[-2]} ms"
    assert served[0]["actor"] == "key:local"
    after = next(x for x in lines if x["message"] == "after the request")
    assert after["request_id"] == ""  # logged outside any request
