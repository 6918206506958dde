"""The real ``Runtime`` driven turn after turn on the fakes' tagged audio, as fast as it goes
(the soak in tests/support/soak.py, and bench/)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from assistant.config import Config
from assistant.core.commands import Phase
from assistant.core.ports import Chat, Synthesizer, Transcriber
from assistant.runtime.observer import Observer, TurnRecord
from assistant.runtime.runtime import Runtime
from tests.support.fakes import SILENCE, SPEECH, WAKE, FakeSpeaker, FakeVad, FakeWakeWord

# A turn on the fakes' tagged audio (tests/support/fakes.py): the wake word fires on WAKE, the VAD
# hears SPCH. The lead silence outlasts the runtime's deaf tail after speaking (0.3 s); the trailing
# silence outlasts the default hangover (0.7 s = 9 frames).
LEAD_FRAMES: Final = 5
SPEECH_FRAMES: Final = 10
TRAIL_FRAMES: Final = 12


def config(**sections: Mapping[str, Any]) -> Config:
    """A config for running turn after turn: no MQTT, no follow-up window (each turn starts with
    the wake word), and whatever ``sections`` override."""
    data: dict[str, Any] = {"mqtt": {"enabled": False}, "intents": {"follow_up_seconds": 0}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Config.model_validate(data)


def tagged_turn(speech: Sequence[bytes] = (SPEECH,) * SPEECH_FRAMES) -> list[bytes]:
    """One command in the fakes' tagged audio: silence, WAKE, ``speech``, silence."""
    return [SILENCE] * LEAD_FRAMES + [WAKE, *speech] + [SILENCE] * TRAIL_FRAMES


@dataclass
class TurnMicrophone:
    """Plays ``turn`` (a list of frames) ``turns`` times, as fast as the runtime takes it
    (not real time: the runtime reads a non-real-time input only in idle and listening)."""

    turn: Sequence[bytes]
    turns: int
    before_turn: Callable[[int], None] | None = None
    """Called with the turn's index (from 0) before its first frame."""

    @property
    def realtime(self) -> bool:
        return False

    async def frames(self) -> AsyncIterator[bytes]:
        for index in range(self.turns):
            if self.before_turn is not None:
                self.before_turn(index)
            for frame in self.turn:
                yield frame


@dataclass
class TurnLog(Observer):
    """Keeps finished turns (or only counts them), errors and the states entered."""

    keep: bool = True
    records: list[TurnRecord] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[int | None, str, str]] = field(default_factory=list)
    states: list[tuple[Phase, int, float, float]] = field(default_factory=list)
    """(phase, turn, t_seconds as the runtime reports it, monotonic seconds when entered)."""
    keep_states: bool = False
    on_turn: Callable[[TurnRecord], None] | None = None

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        if self.keep_states:
            self.states.append((phase, turn, t_seconds, time.monotonic()))

    def turn_finished(self, record: TurnRecord) -> None:
        outcome = str(record.outcome)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.keep:
            self.records.append(record)
        if self.on_turn is not None:
            self.on_turn(record)

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        if self.keep or len(self.errors) < 100:
            self.errors.append((turn, code, str(phase)))

    def answered(self) -> list[TurnRecord]:
        return [r for r in self.records if str(r.outcome) == "answered"]


async def run_tagged_turns(
    cfg: Config,
    *,
    transcriber: Transcriber,
    chat: Chat,
    synthesizer: Synthesizer,
    turns: int,
    log: TurnLog | None = None,
    speaker: FakeSpeaker | None = None,
    wake_word: FakeWakeWord | None = None,
    before_turn: Callable[[int], None] | None = None,
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> TurnLog:
    """``turns`` tagged-audio turns through the real ``Runtime`` (the fakes' wake word, VAD and
    speaker, unless given) into ``log`` (a new ``TurnLog`` without); ``before_turn(index)`` runs
    before each turn's first frame, ``closers`` afterwards whatever happens."""
    log = TurnLog() if log is None else log
    runtime = Runtime(
        cfg,
        microphone=TurnMicrophone(tagged_turn(), turns, before_turn),
        speaker=FakeSpeaker(sample_rate_hz=synthesizer.sample_rate_hz)
        if speaker is None
        else speaker,
        wake_word=FakeWakeWord() if wake_word is None else wake_word,
        vad=FakeVad(),
        transcriber=transcriber,
        chat=chat,
        synthesizer=synthesizer,
        observers=[log],
    )
    try:
        await asyncio.wait_for(runtime.run(), 60 + 5 * turns)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
    return log
