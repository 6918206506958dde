"""The stop word: the words that count, the bursts the VAD cuts, the machine, and the runtime
stopping a ring in audio time; real Silero VAD on a spoken "stop" and on Lingling's own voice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from assistant.adapters.earcons import earcon_pcm
from assistant.adapters.silero import SileroVad
from assistant.config import Config, VadConfig
from assistant.core.audioformat import FRAME_BYTES
from assistant.core.commands import (
    CancelTurn,
    Earcon,
    EnterState,
    Outcome,
    Phase,
    StopRing,
    TranscribeBurst,
)
from assistant.core.events import (
    BurstHeard,
    BurstTranscribed,
    EarconFinished,
    MuteRequested,
    ReplyFinished,
    SpeakingStarted,
    SpeechEnded,
    TimerFinished,
    Transcribed,
    WakeDetected,
)
from assistant.core.machine import Assistant
from assistant.core.stop_word import STOP_WORDS, BurstPolicy, Bursts, is_stop_phrase
from tests.support.fakes import SILENCE, SPEECH, FakeChat, FakeMicrophone, frames
from tests.support.models import require_model
from tests.support.rig import COMMAND, Rig
from tests.support.scenarios import Audio, concat, speak, speak_piper
from tests.support.scenarios import frames as scenario_frames
from tests.test_timers import timer_rig


@pytest.mark.parametrize(
    ("text", "stops"),
    [
        ("stop", True),
        (" Stop.", True),
        ("Stop it!", True),
        ("OK, stop.", True),
        ("Please stop", True),
        ("That's enough.", True),
        ("That\u2019s enough", True),
        ("Be quiet, please.", True),
        ("Cancel", True),
        ("Cancel the timer.", True),
        ("Stop the alarm", True),
        ("", False),
        ("Don't stop.", False),
        ("Stop the music in the kitchen please now", False),  # too long for a stop word
        ("What time is it?", False),
        ("Your timer is done.", False),
        ("stopwatch", False),
        ("It's enough to make it stop", False),
    ],
)
def test_a_stop_word_counts_only_said_alone(text: str, stops: bool) -> None:
    assert is_stop_phrase(text) is stops


def test_the_stop_words_are_those_the_config_names() -> None:
    assert tuple(Config().stop_words) == STOP_WORDS
    assert is_stop_phrase("halt", ("halt",))
    assert not is_stop_phrase("stop", ("halt",))


def _frame(tag: int) -> bytes:
    return bytes([tag]) * FRAME_BYTES


def _bursts(probabilities: Sequence[float]) -> list[list[int]]:
    """The frames (by index) of each burst cut from frames with these speech probabilities."""
    bursts = Bursts(BurstPolicy(min_seconds=0.16, max_seconds=0.8, end_seconds=0.24))
    found = []
    for index, probability in enumerate(probabilities):
        burst = bursts.process(probability, _frame(index))
        if burst is not None:
            found.append([burst[i] for i in range(0, len(burst), FRAME_BYTES)])
    return found


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        # a word of 3 frames: the frame before it, the word, and the 3 frames of silence ending it
        ([0, 0, 1, 1, 1, 0, 0, 0, 0], [[1, 2, 3, 4, 5, 6, 7]]),
        # a click (1 frame) is not a word
        ([0, 1, 0, 0, 0, 0], []),
        # a sentence (12 frames) is not a stop word, and keeps nothing
        ([0, *[1] * 12, 0, 0, 0], []),
        # a short pause inside a word does not cut it; two words apart make two bursts
        ([0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0],
         [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]]),
        # still talking when the audio ends: nothing yet
        ([0, 1, 1, 1], []),
    ],
)  # fmt: skip
def test_bursts_are_short_speech_between_silences(
    probabilities: list[float], expected: list[list[int]]
) -> None:
    assert _bursts(probabilities) == expected


# -- the machine -----------------------------------------------------------------------------------


def _ringing(**kwargs: object) -> Assistant:
    machine = Assistant(**kwargs)  # type: ignore[arg-type]
    machine.handle(TimerFinished("pasta"))
    assert machine.phase is Phase.RINGING
    return machine


def _speaking(**kwargs: object) -> Assistant:
    machine = Assistant(**kwargs)  # type: ignore[arg-type]
    machine.handle(WakeDetected("hey_jarvis", 0.9))
    machine.handle(EarconFinished(1))
    machine.handle(SpeechEnded(1, b"pcm"))
    machine.handle(Transcribed(1, "tell me a story"))
    machine.handle(SpeakingStarted(1))
    assert machine.phase is Phase.SPEAKING
    return machine


def test_a_burst_while_ringing_is_transcribed_and_stop_ends_the_ring() -> None:
    machine = _ringing()
    assert machine.stop_word_listens
    assert machine.handle(BurstHeard(b"stop")) == [TranscribeBurst(b"stop")]
    assert machine.handle(BurstTranscribed("What time is it?")) == []
    assert machine.phase is Phase.RINGING
    commands = machine.handle(BurstTranscribed(" Stop."))
    assert StopRing() in commands
    assert EnterState(Phase.IDLE, 0) in commands


def test_while_speaking_the_stop_word_needs_barge_in() -> None:
    machine = _speaking()
    assert not machine.stop_word_listens
    assert machine.handle(BurstHeard(b"stop")) == []
    assert machine.handle(BurstTranscribed("stop")) == []
    assert machine.phase is Phase.SPEAKING

    machine = _speaking(barge_in=True)
    assert machine.stop_word_listens
    assert machine.handle(BurstHeard(b"stop")) == [TranscribeBurst(b"stop")]
    commands = machine.handle(BurstTranscribed("that's enough"))
    assert CancelTurn(1) in commands
    assert EnterState(Phase.IDLE, 1) in commands
    # the reply's last event comes too late: the turn is over
    assert machine.handle(ReplyFinished(1, "Once upon a time")) == []


def test_no_stop_word_while_idle_muted_or_turned_off() -> None:
    assert not Assistant().stop_word_listens
    assert Assistant().handle(BurstTranscribed("stop")) == []
    machine = _ringing()
    machine.handle(MuteRequested(True))
    assert not machine.stop_word_listens
    assert machine.handle(BurstHeard(b"stop")) == []
    machine = _ringing(stop_words=())
    assert not machine.stop_word_listens
    assert machine.handle(BurstTranscribed("stop")) == []
    assert machine.phase is Phase.RINGING


# -- the runtime: a ring stopped by voice, in audio time -----------------------------------------


@dataclass
class Answers:
    """A transcriber that answers each request with the next text."""

    texts: list[str]
    received: list[int] = field(default_factory=list)

    async def transcribe(self, pcm: bytes) -> str:
        self.received.append(len(pcm))
        return self.texts.pop(0) if self.texts else ""


# The command (a 2 s timer), 3 s of silence (it rings), a short word, then silence.
SAID = frames((SILENCE, 40), (SPEECH, 4), (SILENCE, 40))
WORD_ENDS = len(COMMAND) + 44


@pytest.mark.parametrize(("said", "stops"), [("Stop!", True), ("Is it done?", False)])
async def test_the_stop_word_ends_a_ring_in_audio_time(said: str, stops: bool) -> None:
    stopped = asyncio.Event()
    audio = [*COMMAND, *SAID]
    rig = timer_rig("Set a timer for two seconds.", audio)
    if stops:  # the frame after the 0.24 s of silence that ends the word waits for the ring's end
        rig.mic = FakeMicrophone(audio, waits={WORD_ENDS + 3: stopped.wait})
    rig.settings = {"timers": {"ring_seconds": 60.0 if stops else 2.0}}
    answers = Answers(["Set a timer for two seconds.", said])
    rig.transcriber = answers  # type: ignore[assignment]
    idle_at: list[int] = []

    def rang() -> None:
        def ended() -> None:
            idle_at.append(rig.runtime.listener.frame_index)
            stopped.set()

        rig.recorder.on_state["idle"] = ended

    rig.recorder.on_state["ringing"] = rang
    await rig.run(timeout_seconds=5)
    assert len(answers.received) == 2  # the command, then the burst: the ring is not speech
    assert rig.recorder.states[-2:] == ["ringing", "idle"]
    if stops:
        assert idle_at == [WORD_ENDS + 3]
    else:  # it rang on until ring_seconds, long after the audio (read at once) had ended
        assert idle_at == [len(audio)]


# -- real Silero VAD: a spoken "stop" over the ring, and Lingling's own voice ---------------------


def _real_bursts(audio: Audio) -> list[bytes]:
    root = require_model("openwakeword/silero_vad.onnx").parent.parent
    vad = SileroVad(VadConfig(), root)
    bursts = Bursts()
    found = [
        b for f in scenario_frames(audio) if (b := bursts.process(vad.process(f), f)) is not None
    ]
    return found


def _rings(times: int) -> Audio:
    ring = np.frombuffer(earcon_pcm(Earcon.RING, 16_000), np.int16)
    return np.tile(ring // 2, times)  # the ring as the microphone hears it


@pytest.mark.parametrize("word", ["stop", "enough", "quiet"])
def test_real_vad_takes_a_spoken_stop_over_the_ring_and_not_the_ring(word: str) -> None:
    rings = _rings(3)
    assert _real_bursts(rings) == []
    said = speak(word)
    at = len(rings) // 3
    mixed = rings.astype(np.int32)
    mixed[at : at + len(said)] += said
    assert len(_real_bursts(np.clip(mixed, -32768, 32767).astype(np.int16))) == 1


def test_real_vad_takes_none_of_lingling_s_own_sentences() -> None:
    voice = require_model("piper/en_US-joe-medium.onnx")
    texts = ("The timer is set for ten minutes.", "It is twenty past three in the afternoon.")
    said = concat(*(speak_piper(text, voice) for text in texts))
    assert _real_bursts(said) == []


async def test_with_barge_in_the_stop_word_cuts_the_reply_short() -> None:
    """A long reply is being spoken; "stop" said over it ends the turn: the rest is not played."""
    speaking = asyncio.Event()
    word = frames((SPEECH, 4), (SILENCE, 3))
    audio = [*COMMAND, *frames((SILENCE, 2)), *word, *frames((SILENCE, 20))]
    rig = Rig(FakeMicrophone(audio, waits={len(COMMAND) + 2: speaking.wait}))
    rig.settings = {"barge_in": True}
    rig.speaker.seconds_per_play = 0.5  # each sentence takes a while: "stop" comes during one
    rig.chat = FakeChat(pieces=("One.", " Two.", " Three.", " Four.", " Five."))
    rig.transcriber = Answers(["tell me a story", "Stop it."])  # type: ignore[assignment]
    rig.recorder.on_state["speaking"] = speaking.set
    await rig.run(timeout_seconds=5)
    assert rig.recorder.states[-2:] == ["speaking", "idle"]
    (turn,) = rig.recorder.turns
    assert turn.outcome is Outcome.CANCELLED
    assert len(rig.speaker.played) < 5 + 1  # the awake earcon and fewer than five sentences
