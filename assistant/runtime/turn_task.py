"""The task of a turn's current stage: at most one at a time, so a timeout or a cancel is one
``cancel()``; a failure becomes a ``Failed`` event, never a stuck turn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from assistant.core.events import Event, Failed
from assistant.errors import AssistantError

_LOGGER = logging.getLogger(__name__)


class TurnTask:
    def __init__(self, feed: Callable[[Event], None]) -> None:
        self._feed = feed
        self._task: asyncio.Task[None] | None = None

    def start(self, turn: int, work: Coroutine[Any, Any, None]) -> None:
        if self._task is not None:
            self._task.cancel()  # a stage's task has always ended before the next starts
        # The coroutine is the task itself: cancelled before it starts, it is closed cleanly.
        self._task = asyncio.get_running_loop().create_task(work)
        self._task.add_done_callback(lambda task: self._done(turn, task))

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def _done(self, turn: int, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (err := task.exception()) is None:
            return
        if isinstance(err, AssistantError):
            self._feed(Failed(turn, err.code, err.message))
        else:  # a bug must end the turn, never leave it stuck
            _LOGGER.error("turn %d crashed", turn, exc_info=err)
            self._feed(Failed(turn, "internal", repr(err)))
