"""Real-time stand-ins for benchmarks that run the real ``Runtime``: a microphone paced like a real
one, a transcriber that is busy like whisper-server, a chat model that streams at a given speed,
and an end-of-turn model that keeps what it was asked.

Every instant is ``time.monotonic()``, the clock of asyncio's loop, so they compare with the
``TurnRecord`` marks.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.core.audioformat import FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.ports import ChatChunk, Message, TurnDetector


@dataclass
class PacedMicrophone:
    """Frames at real time (frame ``i`` is handed over at the end of its 80 ms, as a sound card
    does); notes when each frame was handed over. Ends early once ``until()`` is true."""

    items: Sequence[bytes]
    until: Callable[[], bool] | None = None
    realtime: bool = True
    started_at: float | None = None
    """When the first sample was heard (monotonic seconds)."""
    delivered: list[float] = field(default_factory=list)

    def heard_at(self, sample: int) -> float:
        """When sample ``sample`` (an index into the frames' audio) was spoken."""
        assert self.started_at is not None
        return self.started_at + sample / SAMPLE_RATE_HZ

    async def frames(self) -> AsyncIterator[bytes]:
        self.started_at = start = time.monotonic()
        for index, item in enumerate(self.items):
            await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_SECONDS - time.monotonic()))
            if self.until is not None and self.until():
                return
            self.delivered.append(time.monotonic())
            yield item


@dataclass(frozen=True, slots=True)
class Request:
    """One transcription request: its audio, when it came and when its answer was ready."""

    pcm: bytes
    asked_at: float
    answered_at: float
    text: str


class OneAtATime:
    """A transcriber like whisper-server: one request at a time, each taking ``seconds``, and
    each finished even when the client has dropped it (it still occupies the server).
    ``words(pcm)`` is what the request's audio says."""

    def __init__(self, seconds: float, words: Callable[[bytes], str]) -> None:
        self.seconds = seconds
        self.words = words
        self.requests: list[Request] = []
        self._busy_until = 0.0

    async def transcribe(self, pcm: bytes) -> str:
        now = time.monotonic()
        self._busy_until = max(now, self._busy_until) + self.seconds
        request = Request(pcm, now, self._busy_until, self.words(pcm))
        self.requests.append(request)
        await asyncio.sleep(self._busy_until - time.monotonic())
        return request.text


_TOKEN = re.compile(r"\s*\S+")


@dataclass
class TimedChat:
    """A chat model that streams ``reply`` a word a token: the first after
    ``first_token_seconds``, then ``tokens_per_second``. A stream closed early counts in
    ``closed`` (llama.cpp then stops generating)."""

    reply: str
    first_token_seconds: float
    tokens_per_second: float
    requests: int = 0
    closed: int = 0

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncIterator[ChatChunk]:
        self.requests += 1
        try:
            await asyncio.sleep(self.first_token_seconds)
            for index, token in enumerate(_TOKEN.findall(self.reply)):
                if index:
                    await asyncio.sleep(1.0 / self.tokens_per_second)
                yield ChatChunk(text=token)
        except (GeneratorExit, asyncio.CancelledError):
            self.closed += 1
            raise


@dataclass(frozen=True, slots=True)
class Score:
    """One question to the end-of-turn model: the audio it heard, its answer, when it ran."""

    pcm: bytes
    probability: float
    started_at: float
    finished_at: float


@dataclass
class RecordingTurnDetector:
    """Wraps an end-of-turn model and keeps every question and answer (called from the
    runtime's worker thread)."""

    model: TurnDetector
    scores: list[Score] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def probability(self, pcm: bytes) -> float:
        started = time.monotonic()
        probability = self.model.probability(pcm)
        with self._lock:
            self.scores.append(Score(pcm, probability, started, time.monotonic()))
        return probability
