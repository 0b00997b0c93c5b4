"""The `RateLimit` contract (api/limits.py): how much a key may ask, and when again.

A new rate limit passes by subclassing `RateLimitContract` and giving the `limit`
fixture: a maker of fresh limits of `per_minute` requests a minute. Time is the suite's
`clock`, which stands in for `time.time` (what the `limits` library reads, here and for
Redis alike).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from api.limits import RateLimit, WindowRateLimit
from rag.errors import RateLimited

pytestmark = pytest.mark.contract

MakeLimit = Callable[[int], RateLimit]


class Clock:
    """A clock the test moves by hand, in seconds since the epoch."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def admitted(limit: RateLimit, key: str, tries: int) -> int:
    """How many of `tries` requests at this moment `check` lets through."""
    count = 0
    for _ in range(tries):
        try:
            limit.check(key)
        except RateLimited:
            continue
        count += 1
    return count


def refusal(limit: RateLimit, key: str) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        limit.check(key)
    return refused.value


class RateLimitContract:
    """What every `RateLimit` promises. `limit(per_minute)` gives a fresh one."""

    @pytest.fixture
    def clock(self, monkeypatch: pytest.MonkeyPatch) -> Clock:
        clock = Clock()
        monkeypatch.setattr(time, "time", clock)
        return clock

    @pytest.fixture
    def limit(self, clock: Clock) -> MakeLimit:
        raise NotImplementedError("a subclass gives a maker of the limits to test")

    def test_a_new_key_may_make_per_minute_requests_at_once_and_no_more(
        self, limit: MakeLimit
    ) -> None:
        five = limit(5)
        assert five.wait_s("key:a") == 0
        assert admitted(five, "key:a", 8) == 5
        refused = refusal(five, "key:a")
        assert 1 <= refused.retry_after_s <= 61
        assert "5 requests a minute" in str(refused)

    def test_wait_s_is_the_retry_after_of_a_refusal_at_that_moment(
        self, limit: MakeLimit, clock: Clock
    ) -> None:
        four = limit(4)
        admitted(four, "key:a", 4)
        clock.now += 3.5
        wait = four.wait_s("key:a")
        assert 56 <= wait <= 57
        assert refusal(four, "key:a").retry_after_s == wait

    def test_wait_s_spends_nothing(self, limit: MakeLimit) -> None:
        two = limit(2)
        assert [two.wait_s("key:a") for _ in range(10)] == [0] * 10
        assert admitted(two, "key:a", 3) == 2

    def test_a_client_that_waits_its_retry_after_is_let_in(
        self, limit: MakeLimit, clock: Clock
    ) -> None:
        for per_minute in (1, 6, 7, 60):
            key = f"key:{per_minute}"
            limited = limit(per_minute)
            waits = []
            for _ in range(3 * per_minute):
                clock.now += 0.01
                wait = limited.wait_s(key)
                if wait:
                    waits.append(refusal(limited, key).retry_after_s)
                    clock.now += waits[-1]
                limited.check(key)
            assert waits
            assert min(waits) >= 1

    def test_refused_requests_spend_nothing(self, limit: MakeLimit, clock: Clock) -> None:
        six = limit(6)
        admitted(six, "key:a", 6)
        for _ in range(59):
            clock.now += 1
            assert admitted(six, "key:a", 3) == 0
        clock.now += 1.5
        assert admitted(six, "key:a", 20) == 6

    def test_each_request_comes_back_a_minute_after_it_was_made(
        self, limit: MakeLimit, clock: Clock
    ) -> None:
        six = limit(6)
        assert admitted(six, "key:a", 3) == 3
        clock.now += 30
        assert admitted(six, "key:a", 10) == 3
        clock.now += 30.5  # the first three are a minute old, the others half that
        assert admitted(six, "key:a", 10) == 3
        clock.now += 3600
        assert admitted(six, "key:a", 10) == 6

    def test_no_minute_holds_more_than_per_minute(self, limit: MakeLimit, clock: Clock) -> None:
        three = limit(3)
        let_in: list[float] = []
        for _ in range(600):  # ten minutes, a request a second
            if admitted(three, "key:a", 1):
                let_in.append(clock.now)
            clock.now += 1
        assert 27 <= len(let_in) <= 30
        for index in range(3, len(let_in)):
            assert let_in[index] - let_in[index - 3] > 60

    def test_keys_are_independent(self, limit: MakeLimit) -> None:
        two = limit(2)
        assert admitted(two, "key:a", 5) == 2
        assert two.wait_s("key:a") > 0
        assert two.wait_s("key:b") == 0
        assert admitted(two, "key:b", 5) == 2
        assert admitted(two, "address:127.0.0.1", 5) == 2

    @pytest.mark.parametrize("per_minute", [0, -1])
    def test_a_limit_of_zero_or_less_means_none(self, limit: MakeLimit, per_minute: int) -> None:
        unlimited = limit(per_minute)
        assert admitted(unlimited, "key:a", 1000) == 1000
        assert unlimited.wait_s("key:a") == 0


@pytest.mark.unit
class TestWindowRateLimitInMemory(RateLimitContract):
    @pytest.fixture
    def limit(self, clock: Clock) -> MakeLimit:
        return lambda per_minute: WindowRateLimit(
            per_minute, "memory://", namespace=uuid.uuid4().hex
        )


@pytest.mark.cluster
class TestWindowRateLimitInRedis(RateLimitContract):
    """The same promises with the counts in a real Redis server: what replicas share."""

    @pytest.fixture
    def limit(self, clock: Clock, redis_url: str) -> MakeLimit:
        return lambda per_minute: WindowRateLimit(per_minute, redis_url, namespace=uuid.uuid4().hex)
