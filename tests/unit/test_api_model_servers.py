"""The HTTP API over several model servers (llm_backend "openai", llm_base_urls): answers
survive a server that is down, a stream cut mid-way ends with an `error` event and a
stuck one within the time limit, and readiness needs one server answering."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from tests.fakes import FakeModelServer

pytestmark = pytest.mark.unit


@pytest.fixture
def fakes() -> Iterator[list[FakeModelServer]]:
    made: list[FakeModelServer] = []
    yield made
    for server in made:
        server.close()


def serve(settings: Settings, *servers: FakeModelServer, **changes: object) -> TestClient:
    """A client of Lore whose answers come from `servers`, over HTTP."""
    settings = settings.model_copy(
        update={
            "llm_backend": "openai",
            "llm_base_urls": [s.url for s in servers],
            **changes,
        }
    )
    embedder = HashingEmbedder()
    store = ChromaStore.embedded(settings.chroma_dir, embedder.name)
    lore = Lore(settings, embedder_override=embedder, store_override=store)
    return TestClient(create_app(lore=lore))


def upload(client: TestClient, docs: Path) -> None:
    with (docs / "ports.md").open("rb") as handle:
        made = client.post("/v1/documents", files={"file": ("ports.md", handle)})
    assert made.status_code == 201, made.text


def events(client: TestClient, question: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    got = []
    with client.stream("POST", "/v1/query", json={"question": question, "stream": True}) as r:
        assert r.status_code == 200
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                got.append((kind, json.loads(line.split(":", 1)[1])))
    return got


def test_answers_come_from_the_server_that_is_up(
    settings: Settings, docs: Path, fakes: list[FakeModelServer]
) -> None:
    fakes += [FakeModelServer("down"), FakeModelServer("ok")]
    with serve(settings, *fakes) as client:
        upload(client, docs)
        for _ in range(3):
            answered = client.post("/v1/query", json={"question": "Which port does Lore use?"})
            assert answered.status_code == 200, answered.text
            assert answered.json()["answer"].startswith("An answer from sources")
        ready = client.get("/v1/admin/readiness").json()
        assert ready["checks"]["model_servers"] == "2 of 2 answering"
    assert fakes[1].requests == 3
    assert fakes[0].requests == 1  # tried once, then left alone while down


def test_a_stream_cut_mid_answer_ends_with_an_error_event(
    settings: Settings, docs: Path, fakes: list[FakeModelServer]
) -> None:
    fakes.append(FakeModelServer("cut"))
    with serve(settings, *fakes) as client:
        upload(client, docs)
        got = events(client, "Which port does Lore use?")
    kinds = [kind for kind, _ in got]
    assert kinds[0] == "sources"
    assert "token" in kinds
    assert kinds[-1] == "error"
    assert got[-1][1]["code"] == "generation_failed"
    assert "middle of this answer" in got[-1][1]["message"]


def test_a_server_that_stops_sending_ends_the_stream_at_the_time_limit(
    settings: Settings, docs: Path, fakes: list[FakeModelServer]
) -> None:
    fakes.append(FakeModelServer("hang"))
    with serve(settings, *fakes, generation_timeout_s=1.0) as client:
        upload(client, docs)
        started = time.monotonic()
        got = events(client, "Which port does Lore use?")
        took = time.monotonic() - started
    assert got[-1][0] == "error"
    assert got[-1][1]["code"] in ("timeout", "generation_failed")
    assert took < 5


def test_not_ready_when_no_model_server_answers(
    settings: Settings, fakes: list[FakeModelServer]
) -> None:
    gone = FakeModelServer("ok")
    gone.close()
    with serve(settings, gone) as client:
        probe = client.get("/readyz")
        assert probe.status_code == 503
        detail = client.get("/v1/admin/readiness").json()
        assert detail["checks"]["model_servers"] == "0 of 1 answering"
        assert "127.0.0.1" not in json.dumps(detail)


def test_each_model_server_adds_a_generation_slot(
    settings: Settings, docs: Path, fakes: list[FakeModelServer]
) -> None:
    fakes += [FakeModelServer("ok"), FakeModelServer("ok")]
    with serve(settings, *fakes, generation_queue=1) as client:
        upload(client, docs)
        gate = client.app.state.gate  # type: ignore[attr-defined]
        admitted = [gate.enter() for _ in range(3)]  # two generating, one waiting
        refused = client.post("/v1/query", json={"question": "Which port?"})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        for entered in admitted:
            gate.leave(entered)


def test_no_model_server_able_to_answer_is_a_503_to_retry(
    settings: Settings, docs: Path, fakes: list[FakeModelServer]
) -> None:
    fakes += [FakeModelServer("down"), FakeModelServer("down")]
    with serve(settings, *fakes) as client:
        upload(client, docs)
        refused = client.post("/v1/query", json={"question": "Which port does Lore use?"})
    assert refused.status_code == 503
    assert refused.json()["code"] == "model_unavailable"
    assert refused.headers["retry-after"] == "5"
    assert [f.requests for f in fakes] == [1, 1]
