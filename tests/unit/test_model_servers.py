"""Routing between several model servers (rag/components/model_servers.py): the least
busy first, a failed one skipped, a request retried only before its answer began."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rag.components.generation import OpenAICompatibleGenerator, TokenStream
from rag.components.model_servers import ModelServers
from rag.errors import GenerationFailed, ModelServerUnavailable, TimedOut
from tests.fakes import FakeModelServer

pytestmark = pytest.mark.unit

ASK = [{"role": "user", "content": "How long is the wall?"}]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A model server in memory: replies `name`, or fails as set in `fail`."""

    def __init__(self, name: str) -> None:
        self.base_url = f"http://{name}/v1"
        self.name = name
        self.fail: str | None = None  # "before": unavailable at once; "after": after a piece
        self.calls = 0

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        self.calls += 1
        if self.fail == "before":
            raise ModelServerUnavailable("connection refused")
        if self.fail == "refused":
            raise GenerationFailed("The model server answered 400 to a chat request.")
        yield self.name
        if self.fail == "after":
            raise ModelServerUnavailable("connection reset")
        yield " done"

    def reachable(self, timeout_s: float = 1.0) -> bool:
        return self.fail != "before"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def servers() -> list[Scripted]:
    return [Scripted("a"), Scripted("b")]


@pytest.fixture
def pool(servers: list[Scripted], clock: Clock) -> ModelServers:
    return ModelServers(servers, down_s=5.0, clock=clock)


def answer(pool: ModelServers) -> str:
    return "".join(pool.stream(ASK, 10))


def test_idle_servers_take_turns(pool: ModelServers) -> None:
    assert [answer(pool) for _ in range(4)] == ["a done", "b done", "a done", "b done"]


def test_a_request_goes_to_the_server_with_fewest_in_flight(pool: ModelServers) -> None:
    first = pool.stream(ASK, 10)
    assert next(first) == "a"  # a holds one request now
    assert answer(pool) == "b done"
    assert answer(pool) == "b done"  # a is still busy with the first
    assert [s.in_flight for s in pool.states()] == [1, 0]
    first.close()
    assert [s.in_flight for s in pool.states()] == [0, 0]


def test_a_server_that_fails_before_answering_is_skipped_and_the_request_retried(
    pool: ModelServers, servers: list[Scripted], clock: Clock
) -> None:
    servers[0].fail = "before"
    assert answer(pool) == "b done"
    assert [s.up for s in pool.states()] == [False, True]
    calls = servers[0].calls
    assert [answer(pool) for _ in range(3)] == ["b done"] * 3
    assert servers[0].calls == calls  # left alone while down
    servers[0].fail = None
    clock.now += 5.0
    assert {answer(pool) for _ in range(2)} == {"a done", "b done"}
    assert all(s.up and s.failures == 0 for s in pool.states())


def test_a_stream_cut_after_it_began_is_an_error_not_a_retry(
    pool: ModelServers, servers: list[Scripted]
) -> None:
    servers[0].fail = "after"
    pieces: list[str] = []
    with pytest.raises(GenerationFailed, match="middle of this answer"):
        pieces.extend(pool.stream(ASK, 10))
    assert pieces == ["a"]
    assert servers[1].calls == 0
    assert [s.up for s in pool.states()] == [False, True]


def test_a_refused_request_is_not_retried_elsewhere(
    pool: ModelServers, servers: list[Scripted]
) -> None:
    servers[0].fail = "refused"  # a 400: every server would refuse it alike
    with pytest.raises(GenerationFailed, match="400"):
        answer(pool)
    assert servers[1].calls == 0
    assert all(s.up for s in pool.states())


def test_every_server_down_is_tried_once_then_a_clear_error(
    pool: ModelServers, servers: list[Scripted]
) -> None:
    for server in servers:
        server.fail = "before"
    with pytest.raises(ModelServerUnavailable, match="No model server could take"):
        answer(pool)
    assert [s.calls for s in servers] == [1, 1]
    servers[1].fail = None
    assert answer(pool) == "b done"  # all down: tried anyway, the longest down first


def test_reachable_counts_servers_that_answer_and_leaves_out_the_others(
    pool: ModelServers, servers: list[Scripted], clock: Clock
) -> None:
    assert pool.reachable() == 2
    servers[1].fail = "before"
    assert pool.reachable() == 2  # probed at most every PROBE_EVERY_S: the last count
    clock.now += ModelServers.PROBE_EVERY_S
    assert pool.reachable() == 1
    assert [s.up for s in pool.states()] == [True, False]
    calls = servers[1].calls
    assert [answer(pool) for _ in range(2)] == ["a done", "a done"]
    assert servers[1].calls == calls  # no request had to fail on it first


@pytest.fixture
def fake_servers() -> Iterator[list[FakeModelServer]]:
    made: list[FakeModelServer] = []
    yield made
    for server in made:
        server.close()


def http_pool(*servers: FakeModelServer, timeout_s: float = 10.0) -> ModelServers:
    return ModelServers(
        [OpenAICompatibleGenerator(s.url, model="m", timeout_s=timeout_s) for s in servers]
    )


def test_over_http_a_down_server_is_skipped(fake_servers: list[FakeModelServer]) -> None:
    down, ok = FakeModelServer("down"), FakeModelServer("ok")
    fake_servers += [down, ok]
    pool = http_pool(down, ok)
    assert answer(pool) == "An answer from sources [1]."
    assert (down.requests, ok.requests) == (1, 1)
    assert pool.reachable() == 2  # a 503 to chat, but the server is up


def test_over_http_a_dropped_connection_mid_reply_is_an_error(
    fake_servers: list[FakeModelServer],
) -> None:
    cut = FakeModelServer("cut")
    fake_servers.append(cut)
    pieces: list[str] = []
    with pytest.raises(GenerationFailed, match="middle of this answer"):
        pieces.extend(http_pool(cut).stream(ASK, 10))
    assert "".join(pieces) == "An answer"


def test_over_http_a_reply_ended_before_it_finished_is_not_taken_for_whole(
    fake_servers: list[FakeModelServer],
) -> None:
    early = FakeModelServer("early")
    fake_servers.append(early)
    pieces: list[str] = []
    with pytest.raises(GenerationFailed, match="middle of this answer"):
        pieces.extend(http_pool(early).stream(ASK, 10))
    assert "".join(pieces) == "An answer"


def test_over_http_a_server_error_is_not_tried_on_every_server(
    fake_servers: list[FakeModelServer],
) -> None:
    broken, ok = FakeModelServer("error"), FakeModelServer("ok")
    fake_servers += [broken, ok]
    with pytest.raises(GenerationFailed, match="answered 500"):
        answer(http_pool(broken, ok))
    assert ok.requests == 0


def test_over_http_a_server_that_stops_sending_times_out(
    fake_servers: list[FakeModelServer],
) -> None:
    hung, ok = FakeModelServer("hang"), FakeModelServer("ok")
    fake_servers += [hung, ok]
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"sent nothing for 0\.5 s"):
        answer(http_pool(hung, ok, timeout_s=0.5))
    assert time.monotonic() - started < 3
    assert ok.requests == 0  # the answer's time is spent: no other server is tried


def test_over_http_an_unreachable_server_is_not_reachable(
    fake_servers: list[FakeModelServer],
) -> None:
    gone = FakeModelServer("ok")
    url = gone.url
    gone.close()
    assert not OpenAICompatibleGenerator(url, model="m").reachable(0.5)
