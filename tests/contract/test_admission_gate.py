"""The `AdmissionGate` contract (api/limits.py): how many generations are let in at once.

A new gate passes by subclassing `AdmissionGateContract` and giving the `gate` fixture:
a maker of fresh gates that admit one generation plus `queue` waiting, on the suite's
`clock`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from api.limits import AdmissionGate, GenerationGate
from rag.errors import Busy

pytestmark = pytest.mark.contract

MakeGate = Callable[[int], AdmissionGate]


class Clock:
    """A clock the test moves by hand, in seconds."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def refusal(gate: AdmissionGate) -> Busy:
    with pytest.raises(Busy) as refused:
        gate.enter()
    return refused.value


def answer(gate: AdmissionGate, clock: Clock, seconds: float) -> None:
    """One generation that takes `seconds`."""
    entered = gate.enter()
    clock.now += seconds
    gate.leave(entered)


class AdmissionGateContract:
    """What every `AdmissionGate` promises. `gate(queue)` gives a fresh one on `clock`."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def gate(self, clock: Clock) -> MakeGate:
        raise NotImplementedError("a subclass gives a maker of the gates to test")

    def test_a_new_gate_has_nobody_in(self, gate: MakeGate) -> None:
        assert gate(2).depth == 0

    @pytest.mark.parametrize("queue", [0, 1, 3])
    def test_admits_one_plus_its_queue_and_refuses_the_next_at_once(
        self, gate: MakeGate, queue: int
    ) -> None:
        full = gate(queue)
        for depth in range(1, queue + 2):
            full.enter()
            assert full.depth == depth
        refused = refusal(full)
        assert refused.retry_after_s >= 1
        assert full.depth == queue + 1

    def test_enter_returns_the_time_of_admission(self, gate: MakeGate, clock: Clock) -> None:
        assert gate(0).enter() == clock.now

    def test_leave_gives_the_place_back(self, gate: MakeGate) -> None:
        one = gate(0)
        entered = one.enter()
        refusal(one)
        one.leave(entered)
        assert one.depth == 0
        again = one.enter()
        assert one.depth == 1
        one.leave(again)
        assert one.depth == 0

    def test_a_refusal_takes_no_place(self, gate: MakeGate) -> None:
        two = gate(1)
        first, second = two.enter(), two.enter()
        for _ in range(5):
            refusal(two)
        two.leave(first)
        assert two.depth == 1
        two.enter()
        two.leave(second)
        assert two.depth == 1

    def test_retry_after_is_longer_when_recent_generations_were_slower(
        self, gate: MakeGate, clock: Clock
    ) -> None:
        fast, slow = gate(1), gate(1)
        for _ in range(20):
            answer(fast, clock, 1.0)
            answer(slow, clock, 60.0)
        for busy in (fast, slow):
            busy.enter()
            busy.enter()
        quick, long = refusal(fast).retry_after_s, refusal(slow).retry_after_s
        assert 1 <= quick < long

    def test_concurrent_entries_never_exceed_the_capacity(self, gate: MakeGate) -> None:
        shared = gate(2)
        lock = threading.Lock()
        inside, most = 0, 0
        start = threading.Barrier(8)

        def generate() -> None:
            nonlocal inside, most
            start.wait()
            for _ in range(200):
                try:
                    entered = shared.enter()
                except Busy:
                    continue
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)  # let the others try while this one is in
                with lock:
                    inside -= 1
                shared.leave(entered)

        threads = [threading.Thread(target=generate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert most <= 3
        assert shared.depth == 0


@pytest.mark.unit
class TestGenerationGate(AdmissionGateContract):
    @pytest.fixture
    def gate(self, clock: Clock) -> MakeGate:
        return lambda queue: GenerationGate(queue, clock=clock)
