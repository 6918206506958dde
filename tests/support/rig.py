"""The runtime on fakes, and an observer that notes what it tells: the rig of the runtime tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.adapters.earcons import earcon_pcm
from assistant.config import Config, IntentsConfig
from assistant.core.commands import Earcon, Phase
from assistant.core.events import RecognizedIntent
from assistant.core.intents import Intents
from assistant.core.ports import ClaimChannel, Microphone, Speaker, TurnDetector, Vad
from assistant.runtime.observer import Observer, TurnRecord
from assistant.runtime.runtime import Runtime
from tests.support.fakes import (
    SILENCE,
    SPEECH,
    WAKE,
    FakeChat,
    FakeMicrophone,
    FakeSpeaker,
    FakeSynthesizer,
    FakeTranscriber,
    FakeVad,
    FakeWakeWord,
    frames,
)

WHOLE_TURN = [
    "idle",
    "wake",
    "listening",
    "transcribing",
    "thinking",
    "speaking",
    "idle",
]
# 0.7 s of silence ends a command: 9 frames of 80 ms, and a little more.
ONE_REQUEST_PAUSE: dict[str, Any] = {"speculate_seconds": 0.16}
"""The rig's pause comes with the upload's margin (one request a pause, as before the default
pause came sooner): the tests of other things count on it. tests/test_speculation.py tests the
default pause, transcribed before the margin and again once it is heard."""
COMMAND = frames((SILENCE, 3), (WAKE, 1), (SPEECH, 10), (SILENCE, 14))


@dataclass
class Recorder(Observer):
    states: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    wakes: list[tuple[int, str | None]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    mutes: list[bool] = field(default_factory=list)
    announced: list[str | None] = field(default_factory=list)
    on_state: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Called (soon) when that state is first entered: a request made at that point of a turn."""

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self.states.append(str(phase))
        cue = self.on_state.pop(str(phase), None)
        if cue is not None:
            asyncio.get_running_loop().call_soon(cue)

    def turn_finished(self, record: TurnRecord) -> None:
        self.turns.append(record)

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        self.errors.append((code, str(phase)))

    def wake_detected(self, turn: int, wake_word: str | None, score: float | None) -> None:
        self.wakes.append((turn, wake_word))

    def transcript_ready(self, turn: int, text: str) -> None:
        self.transcripts.append(text)

    def response_ready(self, turn: int, text: str) -> None:
        self.responses.append(text)

    def mute_changed(self, muted: bool) -> None:
        self.mutes.append(muted)

    def announcement_finished(self, request_id: str | None) -> None:
        self.announced.append(request_id)


@dataclass
class Rig:
    mic: FakeMicrophone
    speaker: FakeSpeaker = field(default_factory=FakeSpeaker)
    wake_word: FakeWakeWord = field(default_factory=FakeWakeWord)
    transcriber: FakeTranscriber = field(default_factory=FakeTranscriber)
    chat: FakeChat = field(default_factory=FakeChat)
    synthesizer: FakeSynthesizer = field(default_factory=FakeSynthesizer)
    recorder: Recorder = field(default_factory=Recorder)
    settings: dict[str, Any] = field(default_factory=dict)
    intents: Intents | None = None
    turn_detector: TurnDetector | None = None
    vad: Vad = field(default_factory=FakeVad)
    audio_clock: bool = False
    claims: ClaimChannel | None = None
    """Where wake word claims go (arbitration); None: none are made."""

    _runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self._build()
        return self._runtime

    async def run(self, timeout_seconds: float = 5.0) -> Runtime:
        await asyncio.wait_for(self.runtime.run(), timeout_seconds)
        return self.runtime

    def _build(self) -> Runtime:
        vad = {**ONE_REQUEST_PAUSE, **self.settings.get("vad", {})}
        return Runtime(
            Config.model_validate({**self.settings, "vad": vad}),
            microphone=self.mic,
            speaker=self.speaker,
            wake_word=self.wake_word,
            vad=self.vad,
            transcriber=self.transcriber,
            chat=self.chat,
            synthesizer=self.synthesizer,
            observers=[self.recorder],
            intents=self.intents,
            turn_detector=self.turn_detector,
            audio_clock=self.audio_clock,
            claims=self.claims,
        )


def runtime_on_fakes(
    config: Config,
    *,
    microphone: Microphone,
    speaker: Speaker,
    observers: Sequence[Observer],
    **options: Any,
) -> Runtime:
    """A runtime whose models and servers are fakes (``options`` replaces any of them, or adds
    the runtime's other arguments)."""
    parts: dict[str, Any] = {
        "wake_word": FakeWakeWord(),
        "vad": FakeVad(),
        "transcriber": FakeTranscriber(),
        "chat": FakeChat(),
        "synthesizer": FakeSynthesizer(),
        **options,
    }
    return Runtime(config, microphone=microphone, speaker=speaker, observers=observers, **parts)


DEFAULT_INTENTS = Path(__file__).resolve().parents[2] / "intents"
AWAKE = earcon_pcm(Earcon.AWAKE, 16_000)
ERROR = earcon_pcm(Earcon.ERROR, 16_000)


@dataclass
class IntentLog(Recorder):
    intents: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    unrecognized: list[str] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)

    def intent_recognized(self, turn: int, intent: RecognizedIntent) -> None:
        self.intents.append((intent.name, dict(intent.slots), intent.source))

    def intent_not_recognized(self, turn: int, text: str) -> None:
        self.unrecognized.append(text)

    def action_requested(self, turn: int, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.actions.append((topic, payload))


def intents_rig(transcript: str, directory: Path = DEFAULT_INTENTS, **chat: Any) -> Rig:
    config = IntentsConfig(directory=directory)
    rig = Rig(
        FakeMicrophone(COMMAND),
        transcriber=FakeTranscriber(text=transcript),
        chat=FakeChat(**chat),
        recorder=IntentLog(),
    )
    rig.intents = Intents.load(config)
    return rig


def log(rig: Rig) -> IntentLog:
    assert isinstance(rig.recorder, IntentLog)
    return rig.recorder


def cued(parts: list[tuple[bytes, int]], cues: dict[int, Callable[[], None]]) -> FakeMicrophone:
    """A microphone that makes requests at given frames (a file: as fast as turns allow)."""
    return FakeMicrophone(frames(*parts), cues=cues)
