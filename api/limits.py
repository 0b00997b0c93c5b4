"""What keeps one client from exhausting the server: per-key rates, the generation queue,
and the size of a request body.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from rag.errors import Busy, RateLimited

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int):
        self._per_minute = per_minute
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def wait_s(self, key: str) -> int:
        """Seconds until `key` may make a request again, without taking one; 0: now."""
        if self._per_minute <= 0:
            return 0
        rate = self._per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self._per_minute), now))
        tokens = min(float(self._per_minute), tokens + (now - last) * rate)
        return 0 if tokens >= 1.0 else math.ceil((1.0 - tokens) / rate)

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimited with the wait."""
        if self._per_minute <= 0:
            return
        rate = self._per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self._per_minute), now))
            tokens = min(float(self._per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate)
                raise RateLimited(
                    f"This key allows {self._per_minute} requests a minute; try again in {wait} s.",
                    retry_after_s=wait,
                )
            self._buckets[key] = (tokens - 1.0, now)


class GenerationGate:
    """Admits one generation at a time plus `queue` waiting; refuses the rest at once.

    A refused request gets Busy (503) with a Retry-After estimated from how long recent
    answers took, so clients back off instead of piling up behind the model.
    """

    def __init__(self, queue: int):
        self._capacity = 1 + queue
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
        return time.monotonic()

    def leave(self, entered: float) -> None:
        """Give the place back (call exactly once per successful `enter`)."""
        with self._lock:
            self._taken -= 1
            self._recent_s = 0.8 * self._recent_s + 0.2 * (time.monotonic() - entered)


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
