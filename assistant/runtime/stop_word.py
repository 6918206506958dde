"""The stop word's I/O: a short burst of speech, heard while ringing or speaking, transcribed.

The machine asks (``TranscribeBurst``); what the burst said comes back as ``BurstTranscribed``
and the machine decides. A burst belongs to the state it was heard in: when the state changes,
a transcription still running is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assistant.core.events import BurstTranscribed, Event
from assistant.core.ports import Transcriber
from assistant.errors import AssistantError

_LOGGER = logging.getLogger(__name__)


class BurstChecker:
    def __init__(self, transcriber: Transcriber, feed: Callable[[Event], None]) -> None:
        self._transcriber = transcriber
        self._feed = feed
        self._task: asyncio.Task[None] | None = None
        self.checked = 0
        """Bursts sent to the transcriber so far."""

    def check(self, pcm: bytes) -> None:
        """Transcribe ``pcm`` (dropping a burst still being transcribed) and feed its words."""
        self.drop()
        self.checked += 1
        self._task = asyncio.get_running_loop().create_task(self._transcribe(pcm))

    def drop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _transcribe(self, pcm: bytes) -> None:
        try:
            text = await self._transcriber.transcribe(pcm)
        except AssistantError as err:  # the stop word is a nicety: the ring goes on
            _LOGGER.warning("could not check for the stop word: %s", err)
            return
        _LOGGER.info("heard %r while busy", text.strip())
        self._feed(BurstTranscribed(text))
