"""What the rate limits do beyond their contract (tests/contract/test_rate_limit.py)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from api.limits import WindowRateLimit
from rag.errors import RateLimited

pytestmark = pytest.mark.unit


def test_a_lost_redis_loosens_the_limit_to_this_process_but_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limit = WindowRateLimit(2, f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="lore.api"):
        limit.check("key:a")
        limit.check("key:a")
        with pytest.raises(RateLimited) as refused:
            limit.check("key:a")
    assert 1 <= refused.value.retry_after_s <= 61
    warnings = [r for r in caplog.records if "rate-limit store cannot be reached" in r.message]
    assert len(warnings) == 1  # once, not once a request


def test_a_redis_that_does_not_answer_is_left_alone_for_a_while() -> None:
    # A server that accepts connections and never answers: each call to it would wait
    # out the socket timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        limit = WindowRateLimit(100, f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        started = time.monotonic()
        limit.check("key:a")  # waits for the timeout once, then counts here
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            limit.check("key:a")
        assert time.monotonic() - started < first  # not once more, let alone 20 times
