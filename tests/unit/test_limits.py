"""What the in-process rate limiter keeps in memory (its promises are in tests/contract)."""

from __future__ import annotations

import pytest

from api.limits import RateLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keys_whose_buckets_refill_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)
    for address in range(RateLimiter.SWEEP_EVERY - 1):
        limiter.check(f"10.0.{address // 256}.{address % 256}")
    assert limiter.tracked == RateLimiter.SWEEP_EVERY - 1
    clock.now += 60.0  # every bucket is full again
    limiter.check("10.9.9.9")  # the request that sweeps
    assert limiter.tracked == 1
    # A key forgotten when full is a key with a full bucket: all six requests pass.
    for _ in range(6):
        limiter.check("10.0.0.1")


def test_a_key_still_refilling_is_kept() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)
    limiter.check("busy")
    for address in range(RateLimiter.SWEEP_EVERY - 2):
        limiter.check(f"other-{address}")
    clock.now += 5.0  # half a token back: "busy" is not full
    limiter.check("last")
    assert limiter.tracked == RateLimiter.SWEEP_EVERY
    clock.now += 60.0
    for address in range(RateLimiter.SWEEP_EVERY):
        limiter.check(f"new-{address}")
    assert limiter.tracked <= RateLimiter.SWEEP_EVERY
