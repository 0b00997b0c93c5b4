"""Several model servers behind one `Generator`: each request goes to the least busy
server that is up; a server that fails is skipped for a few seconds, and a request it
failed before writing anything is tried on the next.

What one process knows: the requests it has sent itself. Several API replicas each route
their own requests, so a server's load is the sum of theirs (docs/deploy.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rag.components.generation import TokenStream, estimate_tokens
from rag.errors import (
    GenerationInterrupted,
    ModelServerStalled,
    ModelServerUnavailable,
    TimedOut,
)

log = logging.getLogger("lore.generation")


class ModelServer(Protocol):
    """One server as the pool uses it (`OpenAICompatibleGenerator` is one)."""

    base_url: str

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        """The reply, piece by piece; `ModelServerUnavailable` when the server cannot
        serve (another may), `GenerationFailed` for any other failure."""
        ...

    def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers HTTP within `timeout_s`."""
        ...


@dataclass
class _Server:
    generator: ModelServer
    in_flight: int = 0
    down_until: float = 0.0  # on the pool's clock: skipped until then
    failures: int = 0  # in a row


@dataclass(frozen=True)
class ServerState:
    """One server as this process sees it, for readiness and metrics."""

    url: str
    in_flight: int
    up: bool
    failures: int


class ModelServers:
    """A `Generator` over OpenAI-compatible model servers (llama.cpp's server, vLLM).

    Routing: the server with the fewest requests in flight from this process among those
    up, taking turns among equals. A server that fails (unreachable, 5xx, 429, a stream
    cut) is down for `down_s` seconds; when every server left to try is down, they are
    tried anyway, the one down longest first, since one may be back.

    Retrying: a request is tried on each server at most once, and only until the first
    piece of the reply has been handed on; a failure after that ends the stream with
    `GenerationInterrupted`, since the caller already holds part of a reply. A server
    that took the request and then stalled for the read timeout ends it with `TimedOut`:
    the time the answer had is spent.
    """

    def __init__(
        self,
        servers: Sequence[ModelServer],
        *,
        down_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not servers:
            raise ValueError("ModelServers needs at least one server")
        self._servers = [_Server(generator) for generator in servers]
        self._down_s = down_s
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0
        self._probe_lock = threading.Lock()
        self._probed_at = -float("inf")
        self._answering = 0

    def __len__(self) -> int:
        return len(self._servers)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        tried: set[int] = set()
        while True:
            index = self._take(tried)
            if index is None:
                raise ModelServerUnavailable(
                    f"No model server could take the request ({len(tried)} tried); "
                    "try again shortly."
                )
            tried.add(index)
            server = self._servers[index]
            written = False
            try:
                for piece in server.generator.stream(messages, max_tokens):
                    written = True
                    yield piece
            except ModelServerStalled as exc:
                # The read timeout is the time an answer may take: it is spent.
                self._failed(index)
                raise TimedOut(str(exc)) from exc
            except ModelServerUnavailable as exc:
                self._failed(index)
                if written:
                    raise GenerationInterrupted(
                        "The model server stopped in the middle of this answer; ask again."
                    ) from exc
                log.warning(
                    "model server %s failed (%s); trying the next",
                    server.generator.base_url,
                    exc,
                )
                continue
            finally:
                self._release(index)
            self._succeeded(index)
            return

    def states(self) -> list[ServerState]:
        """Each server's requests in flight from this process, and whether it is up."""
        now = self._clock()
        with self._lock:
            return [
                ServerState(s.generator.base_url, s.in_flight, s.down_until <= now, s.failures)
                for s in self._servers
            ]

    # Readiness probes come every few seconds from each balancer and orchestrator: one
    # round of asking the servers serves them all for this long.
    PROBE_EVERY_S = 2.0

    def reachable(self, timeout_s: float = 1.0) -> int:
        """How many servers answer HTTP, each asked with `timeout_s` (in parallel), at most
        every PROBE_EVERY_S seconds (in between, the last count). One that does not
        answer is left out for `down_s`, as after a failed request, so that a balancer's
        probes keep requests off a dead server before one fails on it."""
        with self._probe_lock:
            now = self._clock()
            if now - self._probed_at < self.PROBE_EVERY_S:
                return self._answering
            self._answering = self._probe(timeout_s)
            self._probed_at = self._clock()
            return self._answering

    def _probe(self, timeout_s: float) -> int:
        results = [False] * len(self._servers)

        def probe(i: int) -> None:
            results[i] = self._servers[i].generator.reachable(timeout_s)
            if not results[i]:
                self._failed(i)

        threads = [
            threading.Thread(target=probe, args=(i,), daemon=True)
            for i in range(len(self._servers))
        ]
        for thread in threads:
            thread.start()
        # httpx's timeout bounds the connection and the reply apart: twice it, in all.
        deadline = time.monotonic() + 2 * timeout_s + 0.5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(results)

    def _take(self, tried: set[int]) -> int | None:
        """The index of the server to try next (counted in flight now), or None."""
        now = self._clock()
        with self._lock:
            left = [i for i in range(len(self._servers)) if i not in tried]
            if not left:
                return None
            up = [i for i in left if self._servers[i].down_until <= now]
            if up:
                count = len(self._servers)
                # The fewest in flight; among equals, the first from this turn's start.
                chosen = min(
                    up,
                    key=lambda i: (self._servers[i].in_flight, (i - self._turn) % count),
                )
                self._turn = (chosen + 1) % count
            else:
                chosen = min(left, key=lambda i: self._servers[i].down_until)
            self._servers[chosen].in_flight += 1
            return chosen

    def _release(self, index: int) -> None:
        with self._lock:
            self._servers[index].in_flight -= 1

    def _failed(self, index: int) -> None:
        with self._lock:
            server = self._servers[index]
            server.failures += 1
            server.down_until = self._clock() + self._down_s

    def _succeeded(self, index: int) -> None:
        with self._lock:
            server = self._servers[index]
            server.failures = 0
            server.down_until = 0.0
