"""What the state machine asks the runtime to do. Imperative names, frozen data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """The conversation's states; the values are what MQTT and the event log show."""

    IDLE = "idle"
    WAKE = "wake"
    LISTENING = "listening"
    TRANSCRIBING = "transcribing"
    THINKING = "thinking"
    SPEAKING = "speaking"


class Earcon(StrEnum):
    AWAKE = "awake"
    ERROR = "error"


class Outcome(StrEnum):
    """How a turn ended."""

    ANSWERED = "answered"
    ANNOUNCED = "announced"
    NO_SPEECH = "no_speech"
    NOTHING_HEARD = "nothing_heard"  # the transcript was empty
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class EnterState:
    """A state was entered: log it, publish it, route audio by it."""

    phase: Phase
    turn: int


@dataclass(frozen=True, slots=True)
class SetTimeout:
    """Replace the running timeout; ``None`` clears it."""

    turn: int
    seconds: float | None


@dataclass(frozen=True, slots=True)
class PlayEarcon:
    turn: int
    earcon: Earcon


@dataclass(frozen=True, slots=True)
class StartListening:
    """Feed the VAD from the audio kept since the wake word, and decide where speech ends.

    ``no_speech_seconds`` overrides the configured wait for speech (a follow-up question's window).
    """

    turn: int
    no_speech_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Transcribe:
    turn: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """Think about ``text`` and speak the answer as it streams."""

    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class Announce:
    """Speak ``text`` as it is (a ``say`` request), without thinking."""

    turn: int
    text: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelTurn:
    """Stop the turn's work: requests in flight, synthesis, playback."""

    turn: int


@dataclass(frozen=True, slots=True)
class ReportError:
    turn: int
    code: str
    message: str
    phase: Phase


@dataclass(frozen=True, slots=True)
class FinishTurn:
    turn: int
    outcome: Outcome


Command = (
    EnterState
    | SetTimeout
    | PlayEarcon
    | StartListening
    | Transcribe
    | Reply
    | Announce
    | CancelTurn
    | ReportError
    | FinishTurn
)
