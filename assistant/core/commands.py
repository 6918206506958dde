"""What the state machine asks the runtime to do. Imperative names, frozen data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from assistant.core.events import RecognizedIntent
from assistant.core.intents import MqttAction
from assistant.core.turn_end import EndReason, Words


class Phase(StrEnum):
    """The conversation's states; the values are what MQTT and the event log show."""

    IDLE = "idle"
    WAKE = "wake"
    """The awake earcon plays (and a claim to the wake word is decided, with arbitration)."""
    LISTENING = "listening"
    TRANSCRIBING = "transcribing"
    THINKING = "thinking"
    SPEAKING = "speaking"
    RINGING = "ringing"
    """A timer has finished: Lingling rings until stopped (not a turn)."""


class Earcon(StrEnum):
    AWAKE = "awake"
    ERROR = "error"
    RING = "ring"


class Outcome(StrEnum):
    """How a turn ended."""

    ANSWERED = "answered"
    ANNOUNCED = "announced"
    NO_SPEECH = "no_speech"
    NOTHING_HEARD = "nothing_heard"  # the transcript was empty
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # another satellite heard the wake word better and answers it


@dataclass(frozen=True, slots=True)
class StartTurn:
    """A turn begins: by a wake word, or (``wake_word`` None) by a request or a follow-up."""

    turn: int
    wake_word: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ClaimWake:
    """Claim the wake word from the other satellites, and after the window feed back
    ``ClaimWon`` or ``ClaimLost`` (at once ``ClaimWon`` when none can be asked)."""

    turn: int
    wake_word: str
    score: float
    level_dbfs: float | None


@dataclass(frozen=True, slots=True)
class EnterState:
    """A state was entered: log it, publish it, route audio by it."""

    phase: Phase
    turn: int
    previous: Phase | None = field(default=None, compare=False)
    """The state it came from (for the log), None for the first."""


@dataclass(frozen=True, slots=True)
class SetTimeout:
    """Replace the running timeout; ``None`` clears it."""

    turn: int
    seconds: float | None


@dataclass(frozen=True, slots=True)
class SetRingTimeout:
    """Replace the running timeout with the ring's: ``RingTimedOut(ring)`` after ``seconds``."""

    ring: int
    seconds: float


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
class Speculate:
    """Transcribe ``pcm`` already: speech has paused, perhaps for good (``complete``: with the
    whole trailing margin)."""

    turn: int
    pcm: bytes
    complete: bool = True


@dataclass(frozen=True, slots=True)
class WeighWords:
    """Tell the endpointer what the words at this pause say (it may end the command now)."""

    turn: int
    words: Words


@dataclass(frozen=True, slots=True)
class PrepareReply:
    """Start answering ``text`` already, holding every sound and every action until the command
    is confirmed (``Reply`` with the same text) or dropped."""

    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class DropSpeculation:
    """Speech went on: the early transcript and the prepared reply are of no use."""

    turn: int


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe the command (with the speculative transcript when it is of the same audio)."""

    turn: int
    pcm: bytes
    reason: EndReason | None = None
    """Why the command was taken to be over."""


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
class Ring:
    """Ring for the timers that finished, saying their names, until ``StopRing``."""

    names: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class StopRing:
    pass


@dataclass(frozen=True, slots=True)
class ResetWakeWord:
    """Clear the wake word's buffers (after any frame it is still scoring)."""


@dataclass(frozen=True, slots=True)
class StartDeafTail:
    """Keep the wake word deaf for ``seconds`` of audio, then feed back ``DeafTailEnded``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class TranscribeBurst:
    """Transcribe a short burst of speech heard while ringing or speaking (the stop word?)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class ReportError:
    """Tell the observers about an error; ``turn`` None for a request refused outside a turn."""

    turn: int | None
    code: str
    message: str
    phase: Phase


@dataclass(frozen=True, slots=True)
class ReportTranscript:
    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class ReportIntent:
    """Tell the observers about a recognised intent and publish its actions."""

    turn: int
    intent: RecognizedIntent
    actions: tuple[MqttAction, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportNoIntent:
    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class ReportResponse:
    turn: int
    text: str
    llm_timings: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class ReportMute:
    muted: bool


@dataclass(frozen=True, slots=True)
class ReportSayFinished:
    """A say request was spoken, cut short or refused."""

    request_id: str | None


@dataclass(frozen=True, slots=True)
class FinishTurn:
    turn: int
    outcome: Outcome


Report = (
    ReportError
    | ReportTranscript
    | ReportIntent
    | ReportNoIntent
    | ReportResponse
    | ReportMute
    | ReportSayFinished
)
"""Commands that only tell the observers (the runtime's ``Reporter`` carries them out)."""

Command = (
    StartTurn
    | ClaimWake
    | EnterState
    | SetTimeout
    | SetRingTimeout
    | PlayEarcon
    | StartListening
    | Speculate
    | WeighWords
    | PrepareReply
    | DropSpeculation
    | Transcribe
    | Reply
    | Announce
    | CancelTurn
    | Ring
    | StopRing
    | ResetWakeWord
    | StartDeafTail
    | TranscribeBurst
    | Report
    | FinishTurn
)
