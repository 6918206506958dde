"""The end of a turn through the real Silero VAD and Smart Turn, on a real speaker with long
pauses: JFK's "And so, my fellow Americans, … ask not …". Smart Turn takes the first pause
(1.16 s, after "Americans") for an end (p ≈ 0.89); whisper's comma there is what keeps the turn
open."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from assistant.adapters.silero import SileroVad
from assistant.adapters.smart_turn import SmartTurn
from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ
from tests.support.fakes import SILENCE, WAKE, FakeMicrophone
from tests.support.models import require_model
from tests.support.rig import Rig
from tests.support.scenarios import (
    RECORDED_WORDS,
    concat,
    frames,
    locate,
    recording,
    silence,
    unpunctuated,
)

LEAD = [SILENCE] * 3 + [WAKE]  # FakeWakeWord fires on WAKE
JFK = RECORDED_WORDS["jfk"]
SENTENCE = " ".join(text for text, _, _ in JFK)


@dataclass
class WordsInAudio:
    """A transcriber that answers with the recording's words lying wholly inside the audio it is
    sent (whisper's punctuation kept, or not), as a transcriber hears a piece of a sentence."""

    heard: bytes
    """Everything the microphone gives: ``LEAD``, then the recording from its first sample."""
    punctuated: bool
    answers: list[str] = field(default_factory=list)

    async def transcribe(self, pcm: bytes) -> str:
        span = locate(pcm, self.heard)
        lead = len(LEAD) * FRAME_SAMPLES
        start_s, stop_s = ((i - lead) / SAMPLE_RATE_HZ for i in (span.start, span.stop))
        inside = [text for text, start, stop in JFK if start_s <= start and stop <= stop_s]
        answer = " ".join(inside) if self.punctuated else unpunctuated(" ".join(inside))
        self.answers.append(answer)
        return answer


@pytest.mark.parametrize(
    ("punctuated", "transcript"),
    [
        (True, SENTENCE),  # "… Americans," is unfinished: the pause may last up to the cap
        (False, "And so my fellow Americans"),  # neutral words: the audio ends it there
    ],
)
async def test_whispers_comma_keeps_a_real_speakers_pause_inside_the_turn(
    punctuated: bool, transcript: str
) -> None:
    models = require_model("openwakeword/silero_vad.onnx").parent.parent
    turn_model = SmartTurn(require_model("turn/smart-turn-v3.2-cpu.onnx"))
    speech = frames(concat(recording("jfk"), silence(2.5)))
    transcriber = WordsInAudio(b"".join([*LEAD, *speech]), punctuated)
    rig = Rig(
        FakeMicrophone([*LEAD, *speech]),
        turn_detector=turn_model,
        vad=SileroVad(VadConfig(), models),
        settings={"vad": {"speculate_seconds": 0.08}},  # the defaults: an early guess too
    )
    rig.transcriber = transcriber  # type: ignore[assignment]
    await rig.run(timeout_seconds=60)
    assert rig.recorder.transcripts == [transcript]
    first_pause = "And so my fellow Americans," if punctuated else "And so my fellow Americans"
    assert transcriber.answers[0] == first_pause  # the first pause was weighed on these words
