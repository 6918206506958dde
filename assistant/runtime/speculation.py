"""Work started at a pause, before the command is known to be over: held, then used or dropped.

``Outlet`` is where a reply's events go and when it may sound: at once, or — for a reply
prepared at a pause — only once the end of the command is confirmed (``release``). Until then
nothing is played and nothing acts: intents, actions and tool calls wait in the outlet, in order.
``Speculation`` keeps the early transcript and the prepared reply of the turn in progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from assistant.core.events import Event
from assistant.runtime.observer import Stopwatch

REPLY_MARKS: Final = ("llm_request", "first_token", "first_sentence", "first_tts")
"""Instants a dropped reply had noted: the reply that is used notes them again."""


class Outlet:
    def __init__(self, feed: Callable[[Event], None], *, held: bool = False) -> None:
        self._feed = feed
        self._held: list[Event] | None = [] if held else None
        self._open = asyncio.Event()
        if not held:
            self._open.set()

    def feed(self, event: Event) -> None:
        if self._held is None:
            self._feed(event)
        else:
            self._held.append(event)

    def release(self) -> None:
        """The command is over: what was held happens now, in order."""
        held, self._held = self._held or [], None
        for event in held:
            self._feed(event)
        self._open.set()

    async def opened(self) -> None:
        """Return once the reply may be heard."""
        await self._open.wait()


@dataclass(slots=True)
class Guess:
    """An early transcript of ``pcm``, asked for at ``started_at`` (loop time)."""

    pcm: bytes
    task: asyncio.Task[str]
    started_at: float


@dataclass(slots=True)
class Prepared:
    """A reply to ``text`` under way, held in ``outlet``."""

    text: str
    task: asyncio.Task[None]
    outlet: Outlet
    watch: Stopwatch


@dataclass(slots=True)
class SpeculationStats:
    """What ran early in a turn, and whether it was used (reported with the turn's timings)."""

    transcripts: int = 0
    replies: int = 0
    used: str | None = None
    """``reply`` (the prepared reply was heard), ``transcript`` (only the early transcript)."""

    def as_dict(self) -> dict[str, int | str | None]:
        return {"transcripts": self.transcripts, "replies": self.replies, "used": self.used}


@dataclass(slots=True)
class Speculation:
    guess: Guess | None = None
    prepared: Prepared | None = None
    stats: SpeculationStats = field(default_factory=SpeculationStats)

    def take_guess(self, pcm: bytes) -> Guess | None:
        """The early transcript, when it is of exactly this audio (dropped otherwise)."""
        guess, self.guess = self.guess, None
        if guess is not None and guess.pcm != pcm:
            _discard(guess.task)
            return None
        return guess

    def take_prepared(self, text: str) -> Prepared | None:
        """The prepared reply, when it answers exactly this text (dropped otherwise)."""
        prepared, self.prepared = self.prepared, None
        if prepared is not None and prepared.text != text:
            self._drop_reply(prepared)
            return None
        return prepared

    def drop_guess(self) -> None:
        """The early transcript is of no use (a newer one replaces it)."""
        if self.guess is not None:
            _discard(self.guess.task)
            self.guess = None

    def drop(self) -> None:
        """Speech went on, or the turn ended: what was started early is of no use."""
        self.drop_guess()
        if self.prepared is not None:
            self._drop_reply(self.prepared)
            self.prepared = None

    @staticmethod
    def _drop_reply(prepared: Prepared) -> None:
        _discard(prepared.task)  # closes the LLM stream: the server stops generating
        prepared.watch.unmark(*REPLY_MARKS)


def _discard(task: asyncio.Task[str] | asyncio.Task[None]) -> None:
    task.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a failed guess is not an error of its own
