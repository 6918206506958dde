"""Fakes of the ports, passed through constructors. Audio is tagged by content:
a frame starting with b"WAKE" fires the wake word, one starting with b"SPCH" is speech."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import Config
from assistant.core.audioformat import FRAME_BYTES
from assistant.core.ports import ChatChunk, Detection, Message, ToolCall
from assistant.errors import AssistantError, ModelError
from assistant.runtime.observer import Observer

SILENCE = bytes(FRAME_BYTES)


def frame(tag: bytes) -> bytes:
    return tag + bytes(FRAME_BYTES - len(tag))


WAKE = frame(b"WAKE")
SPEECH = frame(b"SPCH")


def frames(*parts: tuple[bytes, int]) -> list[bytes]:
    """``frames((SILENCE, 3), (WAKE, 1))`` → a flat list of frames."""
    return [piece for piece, count in parts for _ in range(count)]


@dataclass
class FakeMicrophone:
    """Yields ``items``; ``cues[i]`` is called just before frame ``i`` (a request said at that
    point of the audio, whatever the machine's speed)."""

    items: Sequence[bytes]
    realtime: bool = False
    seconds_per_frame: float = 0.0
    cues: Mapping[int, Callable[[], None]] = field(default_factory=dict)
    waits: Mapping[int, Callable[[], Awaitable[object]]] = field(default_factory=dict)
    """Awaited just before frame ``i``: the speaker goes on only once something has happened."""

    async def frames(self) -> AsyncIterator[bytes]:
        for index, item in enumerate(self.items):
            if self.seconds_per_frame:
                await asyncio.sleep(self.seconds_per_frame)
            if index in self.waits:
                await asyncio.wait_for(self.waits[index](), 2)
            if index in self.cues:
                self.cues[index]()
            yield item


@dataclass
class EndlessMicrophone:
    """Silence in real time (10 ms a frame) until ``stop()``."""

    realtime: bool = True
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def frames(self) -> AsyncIterator[bytes]:
        while not self.stopped.is_set():
            await asyncio.sleep(0.01)
            yield SILENCE

    def stop(self) -> None:
        self.stopped.set()


@dataclass
class FakeSpeaker:
    sample_rate_hz: int = 16_000
    seconds_per_play: float = 0.0
    played: list[bytes] = field(default_factory=list)
    stops: int = 0

    async def play(self, pcm: bytes) -> None:
        self.played.append(pcm)
        if self.seconds_per_play:
            await asyncio.sleep(self.seconds_per_play)

    def stop(self) -> None:
        self.stops += 1


@dataclass
class FakeWakeWord:
    processed: list[bytes] = field(default_factory=list)
    resets: int = 0

    def process(self, frame: bytes) -> Detection | None:
        self.processed.append(frame)
        return Detection("hey_jarvis", 0.93) if frame.startswith(b"WAKE") else None

    def reset(self) -> None:
        self.resets += 1


@dataclass
class FakeVad:
    def process(self, frame: bytes) -> float:
        return 0.95 if frame.startswith(b"SPCH") else 0.02

    def reset(self) -> None:
        pass


@dataclass
class FakeTranscriber:
    text: str = "turn on the kitchen light"
    delay_seconds: float = 0.0
    error: AssistantError | None = None
    received: list[bytes] = field(default_factory=list)
    cancelled: int = 0
    """Requests cancelled while they ran."""
    gate: Callable[[], Awaitable[object]] | None = None
    """Awaited before each answer: the transcript comes only once something has happened."""

    async def transcribe(self, pcm: bytes) -> str:
        self.received.append(pcm)
        if self.gate is not None:
            await asyncio.wait_for(self.gate(), 2)
        if self.delay_seconds:
            try:
                await asyncio.sleep(self.delay_seconds)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.error is not None:
            raise self.error
        return self.text


@dataclass
class FakeChat:
    pieces: Sequence[str] = ("Sure.", " The light", " is on.")
    delay_seconds: float = 0.0
    error_after: int | None = None
    error: AssistantError = field(default_factory=lambda: AssistantError("boom", code="llm"))
    tool_calls: list[tuple[ToolCall, ...]] = field(default_factory=list)
    """Replies made of tool calls, used (first to last) before the text reply."""
    requests: list[list[Message]] = field(default_factory=list)
    tools: list[Sequence[Mapping[str, Any]] | None] = field(default_factory=list)
    closed: int = 0
    """Streams closed by the client before their end (llama.cpp then stops generating)."""
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a request has arrived."""

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncIterator[ChatChunk]:
        self.requests.append(list(messages))
        self.tools.append(tools)
        self.requested.set()
        if self.tool_calls:
            yield ChatChunk(tool_calls=self.tool_calls.pop(0))
            return
        try:
            for index, piece in enumerate(self.pieces):
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                if self.error_after is not None and index == self.error_after:
                    raise self.error
                yield ChatChunk(text=piece)
            yield ChatChunk(timings={"prompt_n": 3.0, "cache_n": 10.0})
        except (GeneratorExit, asyncio.CancelledError):
            self.closed += 1
            raise


@dataclass
class FakeSynthesizer:
    """Speech is the sentence's own bytes, so tests can read what was said."""

    sample_rate_hz: int = 16_000
    sentences: list[str] = field(default_factory=list)

    def synthesize(self, text: str) -> bytes:
        self.sentences.append(text)
        data = text.encode()
        return data + b"\x00" * (len(data) % 2)


async def run_with_clients(
    config: Config,
    items: Sequence[bytes],
    *,
    transcriber: WhisperTranscriber,
    chat: LlamaChat,
    observers: Sequence[Observer],
    speaker: FakeSpeaker | None = None,
    timeout_seconds: float = 10.0,
) -> None:
    """Run the real runtime on tagged audio with real HTTP clients, then close the clients."""
    from assistant.runtime.runtime import Runtime

    runtime = Runtime(
        config,
        microphone=FakeMicrophone(items),
        speaker=speaker or FakeSpeaker(),
        wake_word=FakeWakeWord(),
        vad=FakeVad(),
        transcriber=transcriber,
        chat=chat,
        synthesizer=FakeSynthesizer(),
        observers=observers,
    )
    try:
        await asyncio.wait_for(runtime.run(), timeout_seconds)
    finally:
        await transcriber.aclose()
        await chat.aclose()


@dataclass
class HeldTurnDetector:
    """An end-of-turn model that answers ``probability`` only once ``release()`` is called
    (it runs in the listener's worker thread): its verdict comes after everything else."""

    probability_of_end: float
    heard: list[bytes] = field(default_factory=list)
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    def probability(self, pcm: bytes) -> float:
        self.heard.append(pcm)
        if not self._released.wait(timeout=5):
            raise TimeoutError("HeldTurnDetector was never released")
        return self.probability_of_end


@dataclass
class FailingTurnDetector:
    """An end-of-turn model whose every call fails as onnxruntime's would (a ``ModelError``)."""

    calls: int = 0

    def probability(self, pcm: bytes) -> float:
        self.calls += 1
        raise ModelError("turn model failed: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")


@dataclass
class FakeTurnDetector:
    """An end-of-turn model that says ``probability`` of every pause, and keeps what it heard."""

    probability_of_end: float = 0.9
    heard: list[bytes] = field(default_factory=list)

    def probability(self, pcm: bytes) -> float:
        self.heard.append(pcm)
        return self.probability_of_end
