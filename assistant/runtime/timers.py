"""The timers' I/O: the state file, the clock that makes them due, and who is told.

``TimerService`` applies confirmed timer intents to the pure ``TimerBook``, keeps the book in a
JSON state file (written atomically, so a timer set survives a restart; one that finished while
Lingling was down rings at start, once), and, when ``tick`` finds a timer due, feeds
``TimerFinished`` to the state machine, which owns the ringing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from assistant.core.events import Event, TimerFinished
from assistant.core.ports import Speaker
from assistant.core.timers import Change, Changed, TimerBook
from assistant.runtime.state_files import write_json

_LOGGER = logging.getLogger(__name__)

STATE_DIRECTORY_ENV: Final = "STATE_DIRECTORY"
TICK_SECONDS: Final = 1.0
PUBLISH_TICKS: Final = 10
"""While a timer runs, its state is published every 10 ticks (10 s)."""

TimerList = list[dict[str, Any]]
Tell = Callable[[TimerList, Mapping[str, Any] | None], None]
"""Observers' ``timers_changed(timers, change)``: the whole list, and what just happened."""


def default_state_file(env: Mapping[str, str] = os.environ) -> Path:
    """``$STATE_DIRECTORY/timers.json`` under systemd, else ``~/.local/state/lingling/``."""
    directory = env.get(STATE_DIRECTORY_ENV, "").split(":")[0]
    if directory:
        return Path(directory) / "timers.json"
    return Path.home() / ".local" / "state" / "lingling" / "timers.json"


class TimerService:
    def __init__(
        self,
        now: Callable[[], float],
        *,
        state_file: Path | None = None,
        feed: Callable[[Event], None] | None = None,
        tell: Tell | None = None,
    ) -> None:
        self._now = now
        self._state_file = state_file
        self.feed = feed
        self.tell = tell
        self.book = TimerBook()

    def load(self) -> None:
        """Read the state file; a damaged one is set aside (``.bad``) and timers start afresh."""
        path = self._state_file
        if path is None or not path.exists():
            return
        try:
            self.book = TimerBook.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            _LOGGER.warning("timers: cannot read %s (%s); starting with none", path, err)
            path.replace(path.with_suffix(".bad"))
            return
        _LOGGER.info("timers: %d kept from before", len(self.book.timers))

    def timers(self) -> TimerList:
        now = self._now()
        return [timer.as_json(now) for timer in self.book.timers.values()]

    def preview(self, intent: str, slots: Mapping[str, Any]) -> str:
        """What the intent would do, said, without doing it (the turn is not confirmed yet)."""
        return self.book.preview(intent, slots, self._now())

    def apply(self, intent: str, slots: Mapping[str, Any]) -> None:
        """Do what a confirmed timer intent asks."""
        _, changes = self.book.apply(intent, slots, self._now())
        self._changed(changes)

    def tick(self) -> None:
        """Ring the timers whose time has come."""
        due = self.book.next_due()
        if due is None or due > self._now():
            return
        changes = self.book.due(self._now())
        self._changed(changes)
        for change in changes:
            _LOGGER.info("timer %s finished", change.timer.name or change.timer.id)
            if self.feed is not None:
                self.feed(TimerFinished(change.timer.name))

    async def keep_time(self) -> None:
        """Timers come due even when no audio comes; while one runs, say so every 10 s."""
        seconds = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick()
            seconds += 1
            if seconds % PUBLISH_TICKS == 0 and self.book.next_due() is not None:
                self.publish()

    def publish(self) -> None:
        """Tell the observers where the timers stand (every few seconds while one runs)."""
        if self.tell is not None:
            self.tell(self.timers(), None)

    def _changed(self, changes: list[Changed]) -> None:
        if not changes:
            return
        self._save()
        if self.tell is None:
            return
        listed = self.timers()
        for change in changes:
            seconds = change.timer.total_seconds
            if change.change is not Change.FINISHED:
                seconds = change.timer.remaining(self._now())
            event = {
                "event": str(change.change),
                "id": change.timer.id,
                "name": change.timer.name,
                "seconds": round(seconds, 1),
            }
            self.tell(listed, event)

    def _save(self) -> None:
        write_json(self._state_file, self.book.to_json(), "timers")


RING_PAUSE_SECONDS: Final = 1.0
"""Between one ring (the alarm, then the timers' names) and the next."""


class Ringer:
    """Rings for the timers that finished — the alarm, then their names — until ``stop()``."""

    def __init__(
        self, speaker: Speaker, alarm: bytes, speech: Callable[[str], Awaitable[bytes]]
    ) -> None:
        self._speaker = speaker
        self._alarm = alarm
        self._speech = speech
        self._task: asyncio.Task[None] | None = None

    def ring(self, names: tuple[str | None, ...]) -> None:
        self.stop()
        self._task = asyncio.get_running_loop().create_task(self._ring(names))

    async def _ring(self, names: tuple[str | None, ...]) -> None:
        said = [f"The {name} timer is done." if name else "Your timer is done." for name in names]
        speech = [await self._speech(text) for text in said]
        while True:
            await self._speaker.play(self._alarm)
            for pcm in speech:
                await self._speaker.play(pcm)
            await asyncio.sleep(RING_PAUSE_SECONDS)

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._speaker.stop()
        self._task = None
