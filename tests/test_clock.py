"""tests/support/clock.py: the virtual clock jumps over idle waits, and waits for real work."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from tests.support.clock import VirtualClockLoop, run_virtual, virtual_clock

T = TypeVar("T")
GUARD_SECONDS = 30.0
"""Real seconds a virtual run may take before the test gives up on it (it takes milliseconds)."""


def run_guarded(main: Coroutine[Any, Any, T]) -> T:
    """``run_virtual(main)`` on a thread, so that a clock that really sleeps fails, not hangs."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(run_virtual(main)), daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    assert not thread.is_alive(), "the virtual clock slept for real"
    return results[0]


def test_sleeps_and_timers_happen_at_their_virtual_times() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        seen: list[tuple[str, float]] = [("start", loop.time())]
        loop.call_later(2.5, lambda: seen.append(("timer", loop.time())))
        await asyncio.sleep(1.0)
        seen.append(("slept 1", loop.time()))
        await asyncio.sleep(3600.0)
        seen.append(("slept an hour", loop.time()))
        return seen

    assert run_guarded(main()) == [
        ("start", 0.0),
        ("slept 1", 1.0),
        ("timer", 2.5),
        ("slept an hour", 3601.0),
    ]


def test_a_timeout_fires_at_its_virtual_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.Event().wait()
        return loop.time()

    assert run_guarded(main()) == 5.0


def test_work_that_is_ready_takes_no_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for item in range(100):
            queue.put_nowait(item)
            await asyncio.sleep(0)
        assert [queue.get_nowait() for _ in range(100)] == list(range(100))
        return loop.time()

    assert run_virtual(main()) == 0.0


def test_a_job_in_the_executor_is_waited_for_not_skipped() -> None:
    # Were the clock to jump while the thread works, the 10 s guard would fire at once.
    def work() -> str:
        time.sleep(0.05)
        return "done"

    async def main() -> str:
        return await asyncio.wait_for(asyncio.to_thread(work), 10)

    assert run_virtual(main()) == "done"


def test_a_registered_socket_is_waited_for_not_skipped() -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        sender = threading.Timer(0.05, theirs.sendall, [b"hello"])
        sender.start()
        try:
            return await asyncio.wait_for(loop.sock_recv(ours, 5), 10)
        finally:
            sender.join()
            ours.close()
            theirs.close()

    assert run_virtual(main()) == b"hello"


def test_a_callback_from_another_thread_wakes_an_idle_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        thread = threading.Timer(0.05, loop.call_soon_threadsafe, [future.set_result, "woken"])
        thread.start()
        try:
            return await future  # no timer pending: the loop waits for real
        finally:
            thread.join()

    assert run_guarded(main()) == "woken"


@virtual_clock
async def test_the_decorator_runs_a_test_with_its_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINGLING_CLOCK_TEST", "set by the fixture")
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    await asyncio.sleep(0.25)
    assert loop.time() == 0.25
    assert os.environ["LINGLING_CLOCK_TEST"] == "set by the fixture"
