"""The roles the runtime talks to. Adapters implement them; tests pass fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.core.arbitration import WakeClaim


@dataclass(frozen=True, slots=True)
class Detection:
    """A wake word fired on the frame just processed."""

    wake_word: str
    score: float


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asked to call: ``arguments`` is its JSON text, unchecked."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed reply. The last one may carry llama.cpp's ``timings``.

    ``tool_calls`` holds the reply's complete tool calls, all in one chunk once the model has
    finished them (before the timings).
    """

    text: str = ""
    timings: Mapping[str, float] | None = field(default=None)
    tool_calls: tuple[ToolCall, ...] = ()


Message = Mapping[str, Any]
"""An OpenAI chat message: ``role`` and ``content``, and ``tool_calls`` / ``tool_call_id``."""


class Microphone(Protocol):
    """16 kHz mono int16 audio in 80 ms frames (FRAME_BYTES each)."""

    @property
    def realtime(self) -> bool:
        """False when frames come only as fast as they are taken (a file read with --fast)."""
        ...

    def frames(self) -> AsyncIterator[bytes]: ...


class Speaker(Protocol):
    sample_rate_hz: int

    async def play(self, pcm: bytes) -> None:
        """Play mono int16 PCM at ``sample_rate_hz``; return once it has been played or stopped."""
        ...

    def stop(self) -> None:
        """Stop what is playing now; the pending ``play`` returns."""
        ...


class WakeWord(Protocol):
    def process(self, frame: bytes) -> Detection | None:
        """Score one 80 ms frame; return a detection when a wake word fires."""
        ...

    def reset(self) -> None: ...


class Vad(Protocol):
    def process(self, frame: bytes) -> float:
        """Speech probability (0..1) of one 80 ms frame."""
        ...

    def reset(self) -> None: ...


class Transcriber(Protocol):
    async def transcribe(self, pcm: bytes) -> str:
        """Transcribe 16 kHz mono int16 PCM; raise TranscriptionError on failure."""
        ...


class Chat(Protocol):
    def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncIterator[ChatChunk]:
        """Stream a reply to ``messages``, offering ``tools``; raise ChatError on failure."""
        ...


class Synthesizer(Protocol):
    sample_rate_hz: int

    def synthesize(self, text: str) -> bytes:
        """Mono int16 PCM at ``sample_rate_hz`` (blocking CPU work: run it off the loop)."""
        ...


class TurnDetector(Protocol):
    def probability(self, pcm: bytes) -> float:
        """How likely the turn is complete (0..1), from its audio so far: 16 kHz mono int16 PCM
        (blocking CPU work: run it off the loop)."""
        ...


class ClaimChannel(Protocol):
    """Where this satellite's wake word claims go to the others (the MQTT bridge)."""

    @property
    def site(self) -> str:
        """This satellite's name: the claims' ``site``."""
        ...

    @property
    def connected(self) -> bool:
        """Whether claims can be exchanged now (the broker is there)."""
        ...

    def publish_claim(self, claim: WakeClaim) -> None:
        """Send ``claim`` to every satellite; never blocks, never raises."""
        ...
