"""What keeps one client from exhausting the server: per-key rates, the generation queue,
and the size of a request body.

`RateLimit` and `AdmissionGate` state what any rate limit and generation gate promise.
`WindowRateLimit` counts in this process or in Redis, shared by every API replica;
`GenerationGate` bounds the generations of one process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from rag.errors import Busy, RateLimited

log = logging.getLogger("lore.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RateLimit(Protocol):
    """How many requests each key may make: at most `per_minute` in any minute (a moving
    window), so a burst gets exactly `per_minute` and each request spent comes back a
    minute after it was made. A limit of 0 or less means no limit at all.

    Keys are independent: one key's requests never spend another's allowance. A refused
    request spends nothing, so a client that keeps knocking is not kept out longer, and
    one that waits the `retry_after_s` it was told is let in (unless the same key spent
    the allowance meanwhile). tests/contract/test_rate_limit.py holds every
    implementation to these promises.
    """

    def check(self, key: str) -> None:
        """Spend one request of `key`'s allowance, or raise RateLimited, spending nothing,
        with `retry_after_s`: the whole seconds (at least 1) until `key` may make one."""
        ...

    def wait_s(self, key: str) -> int:
        """Seconds until `key` may make a request, 0 if now, spending nothing: what
        `check` would give as `retry_after_s` at this moment."""
        ...


class WindowRateLimit:
    """A `RateLimit` on the `limits` library's moving window, counted where `storage_url`
    says: `memory://` in this process, or a Redis server (`redis://host:6379/0`) shared by
    every API replica, so that a key gets its limit across all of them together.

    When Redis cannot be reached, requests are counted in this process until it can
    again (logged; Redis is asked again every RETRY_SHARED_S seconds): a lost Redis
    loosens the limit to one allowance per replica, it does not stop the service.
    `namespace` keeps limits of different kinds apart in one store.
    """

    def __init__(
        self,
        per_minute: int,
        storage_url: str = "memory://",
        *,
        namespace: str = "lore-requests",
        window_s: int = 60,
    ):
        from limits import RateLimitItemPerSecond
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self._per_minute = per_minute
        self._window_s = window_s
        self._namespace = namespace
        self._item = RateLimitItemPerSecond(max(per_minute, 1), window_s)
        shared = not storage_url.startswith("memory://")
        options: dict[str, Any] = (
            # A Redis that does not answer costs a request at most this much.
            {"socket_timeout": 0.5, "socket_connect_timeout": 0.5} if shared else {}
        )
        self._storage = storage_from_string(storage_url, wrap_exceptions=True, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._local = MovingWindowRateLimiter(storage_from_string("memory://")) if shared else None
        self._warned_at = -math.inf
        self._shared_down_until = -math.inf

    def check(self, key: str) -> None:
        if self._per_minute <= 0:
            return
        if not self._run(lambda limiter: limiter.hit(self._item, self._namespace, key)):
            wait = max(1, self.wait_s(key))
            raise RateLimited(
                f"This key allows {self._per_minute} requests a minute; try again in {wait} s.",
                retry_after_s=wait,
            )

    def wait_s(self, key: str) -> int:
        if self._per_minute <= 0:
            return 0

        def wait(limiter: Any) -> int:
            if limiter.test(self._item, self._namespace, key):
                return 0
            # The oldest request in the window leaves it just after `reset_at` (a request
            # exactly a window old still counts): the first whole second past that.
            reset_at, _ = limiter.get_window_stats(self._item, self._namespace, key)
            return max(1, math.floor(float(reset_at) - time.time()) + 1)

        return int(self._run(wait))

    # After the shared store fails, it is left alone this long: a Redis that hangs would
    # otherwise cost every request its socket timeout.
    RETRY_SHARED_S = 5.0

    def _run(self, call: Callable[[Any], Any]) -> Any:
        """`call(limiter)` on the shared store, or on this process's while it fails."""
        from limits.errors import StorageError

        if self._local is None:
            return call(self._limiter)
        if time.monotonic() >= self._shared_down_until:
            try:
                return call(self._limiter)
            except StorageError:
                now = time.monotonic()
                self._shared_down_until = now + self.RETRY_SHARED_S
                if now - self._warned_at > 60:
                    self._warned_at = now
                    log.warning(
                        "the rate-limit store cannot be reached; counting in this process "
                        "until it can"
                    )
        return call(self._local)


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
    """An `AdmissionGate` in this process: admits `slots` generations at a time (one for
    a model in this process, one a server for several model servers) plus `queue`
    waiting, and refuses the rest at once. `clock` gives the time in seconds
    (`time.monotonic`, which api/answers.py measures latencies on, by default).
    """

    def __init__(self, queue: int, *, slots: int = 1, clock: Callable[[], float] = time.monotonic):
        self._slots = max(1, slots)
        self._capacity = self._slots + queue
        self._clock = clock
        self._lock = threading.Lock()
        self._taken = 0
        self._recent_s = 5.0  # a running mean of answer durations, seconds

    @property
    def depth(self) -> int:
        """Requests admitted and not yet finished: those generating plus those waiting."""
        return self._taken

    def enter(self) -> float:
        """Take a place, or raise Busy; returns the time taken, for `leave`."""
        with self._lock:
            if self._taken >= self._capacity:
                wait = max(1, math.ceil(self._recent_s * self._taken / self._slots))
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
