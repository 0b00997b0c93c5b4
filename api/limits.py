"""What keeps one client from exhausting the server: per-key rates, the generation queue,
and the size of a request body.

`RateLimit` and `AdmissionGate` state what any rate limit and generation gate promise,
so that servers sharing their counts (issue 17) can keep the same promises;
`RateLimiter` and `GenerationGate` are the ones in this process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from rag.errors import Busy, RateLimited

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RateLimit(Protocol):
    """How many requests each key may make: `per_minute` at once after a quiet minute,
    and after that one more every 60/`per_minute` seconds, never more than `per_minute`
    stored up. A limit of 0 or less means no limit at all.

    Keys are independent: one key's requests never spend another's allowance. A refused
    request spends nothing, so a client that keeps knocking is not kept out longer, and
    one that waits the `retry_after_s` it was told is let in (unless the same key spent
    the allowance meanwhile). Time is the limit's own clock, in seconds.
    tests/contract/test_rate_limit.py holds every implementation to these promises;
    `RateLimiter` is the one in this process.
    """

    def check(self, key: str) -> None:
        """Spend one request of `key`'s allowance, or raise RateLimited, spending nothing,
        with `retry_after_s`: the whole seconds (at least 1) until `key` may make one."""
        ...

    def wait_s(self, key: str) -> int:
        """Seconds until `key` may make a request, 0 if now, spending nothing: what
        `check` would give as `retry_after_s` at this moment."""
        ...


_ROUNDING = 1e-9


class RateLimiter:
    """A `RateLimit` in this process: a token bucket per key, `per_minute` requests a
    minute in bursts of up to that many. `clock` gives the time in seconds."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens left, when the last request let in was)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._let_in = 0

    # A full bucket and no bucket are the same; full ones are dropped every this many
    # requests let in, so that many keys (the failed-key throttle's client addresses)
    # cannot grow the table without bound.
    SWEEP_EVERY = 1024

    @property
    def tracked(self) -> int:
        """How many keys hold a bucket (full ones go at the next sweep)."""
        with self._lock:
            return len(self._buckets)

    def wait_s(self, key: str) -> int:
        """Seconds until `key` may make a request again, without taking one; 0: now."""
        if self._per_minute <= 0:
            return 0
        now = self._clock()
        with self._lock:
            return self._wait_s(self._tokens(key, now))

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimited with the wait."""
        if self._per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            wait = self._wait_s(tokens)
            if wait:
                raise RateLimited(
                    f"This key allows {self._per_minute} requests a minute; try again in {wait} s.",
                    retry_after_s=wait,
                )
            self._buckets[key] = (tokens - 1.0, now)
            self._let_in += 1
            if self._let_in % self.SWEEP_EVERY == 0:
                full = float(self._per_minute) - _ROUNDING
                self._buckets = {
                    k: bucket for k, bucket in self._buckets.items() if self._tokens(k, now) < full
                }

    def _tokens(self, key: str, now: float) -> float:
        """`key`'s tokens at `now`. Only a request let in is stored, so the refill since
        then is one product, never a sum of a refused request's rounded steps."""
        tokens, last = self._buckets.get(key, (float(self._per_minute), now))
        return min(float(self._per_minute), tokens + (now - last) * self._per_minute / 60.0)

    def _wait_s(self, tokens: float) -> int:
        # Within _ROUNDING of a token counts as a token: a client that waited the whole
        # seconds it was told is let in, whatever the floating point made of the refill.
        if tokens >= 1.0 - _ROUNDING:
            return 0
        return math.ceil((1.0 - tokens) * 60.0 / self._per_minute)


class AdmissionGate(Protocol):
    """Admission to the model: at most a fixed number of generations admitted at once
    (the one generating plus those queued behind it); beyond that a request is refused
    at once, never kept waiting, so that the refusal comes before any response begins.

    A refusal is Busy (a 503) with a Retry-After estimated from how long recent
    generations took, so clients back off instead of piling up behind the model. Every
    admission is given back by exactly one `leave`, however the generation ended.
    tests/contract/test_admission_gate.py holds every implementation to these promises;
    `GenerationGate` is the one in this process.
    """

    @property
    def depth(self) -> int:
        """How many are admitted and have not left: from 0 up to the gate's capacity."""
        ...

    def enter(self) -> float:
        """Admit one more, or raise Busy, admitting nothing, with `retry_after_s` (at
        least 1), longer when recent generations took longer. Returns the time of
        admission on the gate's clock, in seconds: `leave` needs it, and callers measure
        latencies from it."""
        ...

    def leave(self, entered: float) -> None:
        """Give back the place that the `enter` which returned `entered` took: exactly once
        per admission, whether the generation finished, failed, timed out or was
        abandoned by its client."""
        ...


class GenerationGate:
    """An `AdmissionGate` in this process: admits one generation at a time plus `queue`
    waiting, and refuses the rest at once. `clock` gives the time in seconds
    (`time.monotonic`, which api/answers.py measures latencies on, by default).
    """

    def __init__(self, queue: int, *, clock: Callable[[], float] = time.monotonic):
        self._capacity = 1 + queue
        self._clock = clock
        self._lock = threading.Lock()
        self._taken = 0
        self._recent_s = 5.0  # a running mean of answer durations, seconds

    @property
    def depth(self) -> int:
        """Requests admitted and not yet finished: the one generating plus those waiting."""
        return self._taken

    def enter(self) -> float:
        """Take a place, or raise Busy; returns the time taken, for `leave`."""
        with self._lock:
            if self._taken >= self._capacity:
                wait = max(1, math.ceil(self._recent_s * self._taken))
                raise Busy(
                    f"The server is answering as many questions as it can; try again in {wait} s.",
                    retry_after_s=wait,
                )
            self._taken += 1
        return self._clock()

    def leave(self, entered: float) -> None:
        """Give the place back (call exactly once per successful `enter`)."""
        with self._lock:
            self._taken -= 1
            self._recent_s = 0.8 * self._recent_s + 0.2 * (self._clock() - entered)


class BodyLimit:
    """ASGI middleware: a request body over its limit is a 413, and is never read in full.

    Uploads (multipart forms) are bounded by `upload_bytes`, which leaves room for the
    form's framing around a file of `max_upload_mb`; other bodies by `json_bytes`. A
    declared Content-Length over the limit is refused before the body is read. A body
    sent without one (chunked) is read here up to the limit, and then handed on.
    """

    def __init__(
        self, app: ASGIApp, *, json_bytes: int, upload_bytes: int, refuse: ASGIApp
    ) -> None:
        self._app = app
        self._json_bytes = json_bytes
        self._upload_bytes = upload_bytes
        self._refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        multipart = headers.get("content-type", "").startswith("multipart/")
        limit = self._upload_bytes if multipart else self._json_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                await self._refuse(scope, receive, send)
                return
            await self._app(scope, receive, send)
            return
        if headers.get("transfer-encoding", "").lower() != "chunked":
            await self._app(scope, receive, send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)
