"""What happened: the facts the runtime feeds the state machine. Past tense, frozen data.

Each event class is one trigger of ``assistant.core.machine.TRANSITIONS``, named in snake case
(``SpeechEnded`` → ``speech_ended``). Events that carry ``turn`` are results of that turn's work:
the machine drops them once the turn has ended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from assistant.core.intents import MqttAction
from assistant.core.turn_end import EndReason, Words


@dataclass(frozen=True, slots=True)
class RecognizedIntent:
    """An intent that will be (or was) acted on: matched locally or asked for by the LLM."""

    name: str
    slots: Mapping[str, Any]
    text: str
    """The transcript it was recognised in."""
    source: str
    """``local`` (the template matcher) or ``llm`` (a validated tool call)."""


# -- from the audio ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WakeDetected:
    wake_word: str
    score: float
    level_dbfs: float | None = None
    """The speech level of the wake word (dBFS over its frames): how near the speaker is."""


@dataclass(frozen=True, slots=True)
class DeafTailEnded:
    """The echo of Lingling's own voice has died away: the wake word may listen again."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    turn: int


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """Speech paused long enough that the command may have ended: ``pcm`` is the command so far.
    ``complete``: it holds the upload's whole trailing margin (it is what the end would send);
    a pause announced sooner is announced again once the margin is heard."""

    turn: int
    pcm: bytes
    complete: bool = True


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech went on after a pause: it was not the end."""

    turn: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    turn: int
    pcm: bytes
    reason: EndReason | None = None
    """Why the command was taken to be over (the words, the audio, the silence…)."""


@dataclass(frozen=True, slots=True)
class NoSpeechHeard:
    """Nobody spoke in the window for a command."""

    turn: int


# -- from the turn's work ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EarconFinished:
    turn: int


@dataclass(frozen=True, slots=True)
class ClaimWon:
    """This satellite answers the wake word: its claim was the best heard (or it is alone)."""

    turn: int


@dataclass(frozen=True, slots=True)
class ClaimLost:
    """Another satellite heard the wake word better and answers it."""

    turn: int


@dataclass(frozen=True, slots=True)
class Transcribed:
    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class PauseTranscribed:
    """The transcript of the command so far, made at a pause, and what its words say.
    ``complete``: of audio with the whole trailing margin (else its last sound may be missing)."""

    turn: int
    text: str
    words: Words
    complete: bool = True


@dataclass(frozen=True, slots=True)
class IntentRecognized:
    """An intent was recognised and is acted on: its actions are to be published now."""

    turn: int
    intent: RecognizedIntent
    actions: tuple[MqttAction, ...] = ()


@dataclass(frozen=True, slots=True)
class IntentNotRecognized:
    """The transcript matched no local intent: it goes to the LLM."""

    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallRefused:
    """The LLM asked for a call that names no declared intent or slot value: nothing was done."""

    turn: int
    message: str


@dataclass(frozen=True, slots=True)
class SpeakingStarted:
    turn: int


@dataclass(frozen=True, slots=True)
class SentencePlayed:
    turn: int


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """The whole reply was spoken. ``follow_up_seconds``: it asks something, listen that long."""

    turn: int
    response: str
    follow_up_seconds: float | None = None
    llm_timings: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    turn: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    turn: int


@dataclass(frozen=True, slots=True)
class RingTimedOut:
    """The ring has rung its time. ``ring`` is the ring's own number (a ring is not a turn)."""

    ring: int


# -- requests from outside (MQTT, the command line) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class SayRequested:
    """Speak ``text`` (an announcement), from idle."""

    text: str
    request_id: str | None = None
    """Given back in ``Observer.announcement_finished`` (Hermes ``id``)."""
    session_id: str | None = None
    """The Hermes session the request belongs to, if any."""


@dataclass(frozen=True, slots=True)
class ListenRequested:
    """Start a turn without the wake word."""


@dataclass(frozen=True, slots=True)
class MuteRequested:
    muted: bool


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Stop whatever the turn is doing and go back to idle."""


@dataclass(frozen=True, slots=True)
class WakeWordToggled:
    enabled: bool


@dataclass(frozen=True, slots=True)
class StopRequested:
    """Stop ringing (and, with barge-in, speaking): the stop word, or a stop command."""


@dataclass(frozen=True, slots=True)
class BurstHeard:
    """A short burst of speech while ringing or speaking: perhaps the stop word."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class BurstTranscribed:
    """What a short burst of speech said."""

    text: str


@dataclass(frozen=True, slots=True)
class VolumeRequested:
    """Play everything at ``level`` (0-100)."""

    level: int


@dataclass(frozen=True, slots=True)
class WakeWordChosen:
    """Listen for the wake word ``name`` (a model in the models folder) from now on."""

    name: str


@dataclass(frozen=True, slots=True)
class TimerFinished:
    name: str | None


Request = (
    SayRequested
    | ListenRequested
    | MuteRequested
    | CancelRequested
    | WakeWordToggled
    | StopRequested
    | VolumeRequested
    | WakeWordChosen
)
"""What may be asked from outside (MQTT, the command line)."""

Event = (
    WakeDetected
    | DeafTailEnded
    | SpeechStarted
    | SpeechPaused
    | SpeechResumed
    | SpeechEnded
    | NoSpeechHeard
    | EarconFinished
    | ClaimWon
    | ClaimLost
    | Transcribed
    | PauseTranscribed
    | IntentRecognized
    | IntentNotRecognized
    | ToolCallRefused
    | SpeakingStarted
    | SentencePlayed
    | ReplyFinished
    | Failed
    | TimedOut
    | RingTimedOut
    | SayRequested
    | ListenRequested
    | MuteRequested
    | CancelRequested
    | WakeWordToggled
    | StopRequested
    | TimerFinished
    | BurstHeard
    | BurstTranscribed
)

_CAMEL: Final = re.compile(r"(?<!^)(?=[A-Z])")


def trigger_of(event: Event | type[Event]) -> str:
    """The machine's trigger for an event (or event class): ``SpeechEnded`` → ``speech_ended``."""
    cls = event if isinstance(event, type) else type(event)
    return _CAMEL.sub("_", cls.__name__).lower()


def turn_of(event: Event) -> int | None:
    """The turn whose work produced ``event``; None for events that are not a turn's result."""
    turn: int | None = getattr(event, "turn", None)
    return turn
