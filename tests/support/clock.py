"""An asyncio event loop on a virtual clock, for code that paces itself with the loop's clock.

``loop.time()`` starts at 0 and moves only when the loop would otherwise wait: when nothing is
ready, the wait for the next timer returns at once and the clock jumps to that timer. So
``asyncio.sleep(0.5)``, ``asyncio.timeout(…)`` and ``loop.call_later(…)`` take no real time, and a
test can assert exactly when, on the loop's clock, something happened:

    @virtual_clock
    async def test_pacing(tmp_path: Path) -> None:      # fixtures work as usual
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)
        assert loop.time() == 0.5

or ``run_virtual(coroutine)`` from a synchronous test.

Real work the loop waits for is not skipped: while a job runs in the loop's executor
(``asyncio.to_thread``, ``run_in_executor``) or a socket or pipe is registered with the loop, the
loop waits for real and the clock moves by the real time waited. Callbacks from threads the loop
does not know about (``call_soon_threadsafe`` from a library's own thread) still arrive, but the
clock does not wait for them while a timer is pending: keep such threads out of these tests.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, TypeVarTuple, Unpack

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

_P = ParamSpec("_P")
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module's docstring)."""

    def __init__(self) -> None:
        self._now = 0.0
        self._in_executor = 0
        self._selector_wrapper = _VirtualSelector(self, selectors.DefaultSelector())
        super().__init__(self._selector_wrapper)
        # the loop's own wake-up pipe is always registered; anything else is real I/O
        self._own_fds = frozenset(self._selector_wrapper.get_map())

    def time(self) -> float:
        return self._now

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[_Ts]], _T], *args: *_Ts
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._in_executor += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, future: asyncio.Future[Any]) -> None:
        self._in_executor -= 1

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncio's signature)
        # From Python 3.12 on, asyncio.run joins the executor's threads from a thread of its own,
        # under a timeout on this clock (300 s): that wait is real work, not a jump to the timeout.
        self._in_executor += 1
        try:
            if sys.version_info >= (3, 12):
                await super().shutdown_default_executor(timeout)
            else:
                await super().shutdown_default_executor()
        finally:
            self._in_executor -= 1

    def _advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    def _waits_for_real_work(self) -> bool:
        return self._in_executor > 0 or not self._selector_wrapper.get_map().keys() <= self._own_fds


class _VirtualSelector(selectors.BaseSelector):
    """A real selector whose waits with a timeout advance the loop's virtual clock instead."""

    def __init__(self, loop: VirtualClockLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._real.select(0)
        if self._loop._waits_for_real_work():
            started = time.monotonic()
            ready = self._real.select(timeout)
            self._loop._advance(time.monotonic() - started)
            return ready
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:  # no timer at all: only another thread can wake the loop
            return self._real.select(None)
        self._loop._advance(timeout)
        return []


def run_virtual(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a fresh ``VirtualClockLoop`` (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main)


def virtual_clock(test: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, _T]:
    """Make an ``async def`` test a synchronous one that runs on a virtual clock."""

    @functools.wraps(test)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return run_virtual(test(*args, **kwargs))

    return run
