"""Running a blocking answer stream beside the event loop, stoppable and time-bounded.

The answerer is plain blocking Python (llama.cpp, torch). One thread per answer
advances it and hands each event to the event loop. When the client goes away, or
the wall-clock limit passes, the thread stops at the next event and closes the
stream there, which ends the model's generation and frees it for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from rag.errors import TimedOut

T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


_END = object()


def events_in_thread(
    start: Callable[[], Iterator[T]],
    *,
    timeout_s: float,
    on_finish: Callable[[], None] | None = None,
) -> AsyncIterator[T]:
    """The events of `start()`, produced in a worker thread started now (call this from
    the event loop).

    Iterating raises TimedOut once `timeout_s` passes, even while the stream is stuck
    inside a call that does not return (a model server that stopped sending), and
    re-raises what the stream raised. Stopping the iteration (a disconnect cancels it)
    stops the worker at its next event. `on_finish` runs in the worker when it is done,
    whichever way it ended, even if nobody ever iterates: the model is busy until then,
    not merely until the client has gone.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()
    deadline = time.monotonic() + timeout_s

    def hand_over(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        stream: Iterator[T] | None = None
        try:
            stream = start()
            for event in stream:
                if stop.is_set():
                    break
                hand_over(_Item(event))
                if time.monotonic() > deadline:
                    raise TimedOut(f"The answer took longer than {timeout_s:g} s and was stopped.")
        except BaseException as exc:  # handed to the caller, who re-raises it
            hand_over(_Failed(exc))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            if on_finish is not None:
                on_finish()
            hand_over(_END)

    # The worker sees the request's context (its request id, for the logs).
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(work,), name="lore-answer", daemon=True).start()
    return _received(queue, stop, deadline, timeout_s)


async def _received(
    queue: asyncio.Queue[object], stop: threading.Event, deadline: float, timeout_s: float
) -> AsyncIterator[T]:
    """What the worker hands over, until it ends or `deadline` (on `time.monotonic`)
    passes; stops the worker when abandoned."""
    try:
        while True:
            try:
                # A moment's grace: the worker's own check names the limit first.
                remaining = deadline - time.monotonic() + 1.0
                item = await asyncio.wait_for(queue.get(), timeout=max(remaining, 0.0))
            except TimeoutError:
                raise TimedOut(
                    f"The answer took longer than {timeout_s:g} s and was stopped."
                ) from None
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, _Item)  # noqa: S101 (the queue holds nothing else)
            yield item.value
    finally:
        stop.set()
