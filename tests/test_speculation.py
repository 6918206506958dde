"""Work started at a pause: the early transcript, the end decided from evidence, and the reply
prepared while the speaker pauses — held until the end is confirmed, dropped if speech resumes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.support.fakes import (
    SILENCE,
    SPEECH,
    WAKE,
    FailingTurnDetector,
    FakeMicrophone,
    FakeTranscriber,
    FakeTurnDetector,
    HeldTurnDetector,
    frames,
)
from tests.support.rig import AWAKE, COMMAND, WHOLE_TURN, IntentLog, Rig, intents_rig, log

# COMMAND's speech ends with frame 13: the pause is at frame 15 (0.16 s of silence), the fixed
# hangover (0.7 s = 9 frames) would end it at frame 22.
HANGOVER_END = 13 + 9
# A command whose speaker pauses for 4 frames (0.32 s) after 10 frames of speech, then goes on.
PAUSED = frames((SILENCE, 3), (WAKE, 1), (SPEECH, 10), (SILENCE, 4), (SPEECH, 6), (SILENCE, 14))
RESUMED_AT = 3 + 1 + 10 + 4


def end_frames(rig: Rig) -> list[int]:
    """Where (in frames heard) each command was taken to be over."""
    ends: list[int] = []
    rig.recorder.on_state["transcribing"] = lambda: ends.append(rig.runtime.listener.frame_index)
    return ends


async def test_a_pause_starts_the_transcription_and_the_end_uses_it() -> None:
    rig = Rig(FakeMicrophone(COMMAND), transcriber=FakeTranscriber(delay_seconds=0.05))
    await rig.run()
    # One request, sent at the pause (0.16 s of silence), before the end was decided (0.72 s).
    assert rig.transcriber.received == [SILENCE + WAKE + SPEECH * 10 + SILENCE * 2]
    (record,) = rig.recorder.turns
    assert record.timings_ms()["speech_end_to_upload"] < 0
    assert rig.recorder.states == WHOLE_TURN


async def test_speech_after_the_pause_drops_the_early_transcription() -> None:
    command = frames((SILENCE, 2), (WAKE, 1), (SPEECH, 6), (SILENCE, 5), (SPEECH, 4), (SILENCE, 14))
    rig = Rig(FakeMicrophone(command), transcriber=FakeTranscriber(delay_seconds=0.05))
    await rig.run()
    early, final = rig.transcriber.received
    assert early.count(SPEECH) == 6
    assert final.count(SPEECH) == 10  # the whole command, pause included
    assert rig.recorder.transcripts == ["turn on the kitchen light"]
    assert rig.recorder.states == WHOLE_TURN


async def test_without_speculation_the_upload_waits_for_the_end() -> None:
    rig = Rig(FakeMicrophone(COMMAND), settings={"vad": {"speculate_seconds": 0}})
    await rig.run()
    assert len(rig.transcriber.received) == 1
    (record,) = rig.recorder.turns
    assert record.timings_ms()["speech_end_to_upload"] >= 0


async def test_a_complete_request_ends_at_the_pause_and_its_prepared_reply_is_heard() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.turn_detector = FakeTurnDetector(0.3)  # the audio is unsure; the words are complete
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "words"
    assert ends[0] < HANGOVER_END
    assert record.speculation == {"transcripts": 1, "replies": 1, "used": "reply"}
    assert log(rig).intents == [("HassTurnOn", {"name": "kitchen light"}, "local")]
    assert rig.synthesizer.sentences == ["Turned on the kitchen light."]
    assert rig.speaker.played == [AWAKE, b"Turned on the kitchen light."]
    assert rig.recorder.states == WHOLE_TURN
    # the model heard the command so far: from its start (less the margin) to the pause
    (heard,) = rig.turn_detector.heard
    assert heard == SILENCE + WAKE + SPEECH * 10 + SILENCE * 2


async def test_confident_audio_ends_a_neutral_request_at_the_pause() -> None:
    rig = Rig(FakeMicrophone(COMMAND), turn_detector=FakeTurnDetector(0.9))
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "audio"
    assert ends[0] < HANGOVER_END
    assert len(rig.chat.requests) == 1
    assert record.speculation == {"transcripts": 1, "replies": 1, "used": "reply"}


async def test_no_words_at_a_pause_are_not_ended_by_the_audio_alone() -> None:
    # A click or a breath made the pause: the model may be sure, but there is nothing to answer.
    rig = Rig(
        FakeMicrophone(COMMAND),
        transcriber=FakeTranscriber(text=""),
        turn_detector=FakeTurnDetector(0.98),
    )
    ends = end_frames(rig)
    await rig.run()
    assert ends[0] >= HANGOVER_END


async def test_a_failing_end_of_turn_model_leaves_the_words_and_the_hangover_to_decide(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = FailingTurnDetector()
    rig = Rig(FakeMicrophone(COMMAND), turn_detector=detector)
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "silence"
    assert ends[0] >= HANGOVER_END
    assert rig.recorder.states == WHOLE_TURN  # answered; the runtime goes on
    assert detector.calls >= 1
    assert "end-of-turn model failed at a pause" in caplog.text


async def test_complete_words_end_the_turn_at_the_pause_when_the_model_fails() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.turn_detector = FailingTurnDetector()
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "words"
    assert ends[0] < HANGOVER_END
    assert log(rig).intents == [("HassTurnOn", {"name": "kitchen light"}, "local")]


@pytest.mark.parametrize(
    ("text", "probability"),
    [
        ("Set a timer for", 0.97),  # unfinished words, whatever the audio says
        ("What is the weather like", 0.02),  # the audio is sure the speaker goes on
    ],
)
async def test_a_sentence_not_over_waits_past_the_hangover_up_to_the_cap(
    text: str, probability: float
) -> None:
    command = frames((SILENCE, 3), (WAKE, 1), (SPEECH, 10), (SILENCE, 30))
    rig = Rig(
        FakeMicrophone(command),
        transcriber=FakeTranscriber(text=text),
        turn_detector=FakeTurnDetector(probability),
    )
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "cap"
    assert ends[0] >= 13 + 19  # max_pause_seconds, 1.5 s = 19 frames of silence


# A hesitation longer than the hangover: 12 frames (0.96 s) of silence inside the command.
HESITATING = frames(
    (SILENCE, 3), (WAKE, 1), (SPEECH, 10), (SILENCE, 12), (SPEECH, 6), (SILENCE, 30)
)


@pytest.mark.parametrize(
    ("probability", "speech_heard", "reason"),
    [
        (0.02, 16, "cap"),  # the audio is sure the speaker goes on: the hesitation is kept
        (0.2, 10, "silence"),  # not sure: the hangover ends it at the hesitation
    ],
)
async def test_audio_sure_the_speaker_goes_on_waits_past_the_hangover(
    probability: float, speech_heard: int, reason: str
) -> None:
    rig = Rig(
        FakeMicrophone(HESITATING),
        transcriber=FakeTranscriber(text="What is the weather like"),
        turn_detector=FakeTurnDetector(probability),
    )
    await rig.run()
    (record,) = rig.recorder.turns
    assert rig.transcriber.received[-1].count(SPEECH) == speech_heard
    assert record.end_reason == reason


async def test_speech_resuming_drops_the_prepared_reply_unheard_and_closes_its_stream() -> None:
    rig = Rig(
        FakeMicrophone(PAUSED),
        transcriber=FakeTranscriber(text="What is the weather like"),
        turn_detector=FakeTurnDetector(0.2),  # not sure: wait for the hangover
        recorder=IntentLog(),
    )
    rig.chat.delay_seconds = 60  # the prepared reply is still streaming when speech resumes

    def resume() -> None:
        rig.chat.delay_seconds = 0

    rig.mic.waits = {RESUMED_AT: rig.chat.requested.wait}  # once the early request has arrived
    rig.mic.cues = {RESUMED_AT: resume}
    await rig.run()
    (record,) = rig.recorder.turns
    assert len(rig.chat.requests) == 2
    assert rig.chat.closed == 1  # the early stream was closed: llama.cpp stops generating
    assert rig.speaker.played == [AWAKE, b"Sure.\x00", b"The light is on."]  # heard once
    assert rig.recorder.responses == ["Sure. The light is on."]
    assert log(rig).unrecognized == ["What is the weather like"]  # reported once
    assert record.end_reason == "silence"
    assert record.speculation == {"transcripts": 2, "replies": 2, "used": "reply"}
    assert rig.recorder.states == WHOLE_TURN


async def test_a_complete_request_does_not_wait_for_the_audios_verdict() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    # The model would veto the words (sure the speaker goes on), but answers only late.
    detector = rig.turn_detector = HeldTurnDetector(0.01)
    rig.recorder.on_state["speaking"] = detector.release
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "words"
    assert ends[0] < HANGOVER_END
    assert len(detector.heard) == 1
    assert rig.speaker.played == [AWAKE, b"Turned on the kitchen light."]


def until(condition: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    """A wait for ``condition()`` to hold, polled on the loop (the caller bounds it)."""

    async def wait() -> None:
        # No event to wait on: what is polled is the runtime's own state.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    return wait


async def test_a_local_intent_prepared_at_a_pause_acts_only_once_the_end_is_confirmed() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.mic = FakeMicrophone(PAUSED)
    # The audio is sure the speaker goes on, and says so before the words come: the complete
    # words wait for the hangover (speech resumes before it)...
    rig.turn_detector = FakeTurnDetector(0.01)
    rig.transcriber.gate = until(lambda: rig.runtime.listener.pause_audio is not None)
    # ...and the reply is prepared at each pause before speech resumes, or the hangover ends.
    rig.mic.waits = {
        RESUMED_AT: until(lambda: rig.synthesizer.sentences),
        RESUMED_AT + 6 + 2: until(lambda: len(rig.synthesizer.sentences) == 2),
    }
    published: list[int] = []
    rig.mic.cues = {RESUMED_AT: lambda: published.append(len(log(rig).intents))}
    await rig.run()
    assert published == [0]  # prepared at the pause, but nothing published before the end
    assert log(rig).intents == [("HassTurnOn", {"name": "kitchen light"}, "local")]
    assert rig.speaker.played == [AWAKE, b"Turned on the kitchen light."]
    (record,) = rig.recorder.turns
    assert record.speculation == {"transcripts": 2, "replies": 2, "used": "reply"}


async def test_end_of_turn_silence_is_the_fixed_hangover_with_no_reply_prepared() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.settings = {"vad": {"end_of_turn": "silence"}}
    rig.turn_detector = FakeTurnDetector(0.99)
    ends = end_frames(rig)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.end_reason == "silence"
    assert ends[0] >= HANGOVER_END
    assert record.speculation == {"transcripts": 1, "replies": 0, "used": "transcript"}
    assert rig.turn_detector.heard == []


# -- a pause announced before the upload's trailing margin is heard --------------------------------

EARLY = {"vad": {"speculate_seconds": 0.08}}
"""A pause after one frame of silence; the margin (0.16 s) is heard one frame later."""
MARGIN_AT = 3 + 1 + 10 + 1  # COMMAND's frame that completes the margin


@dataclass
class Answers(FakeTranscriber):
    """A transcriber that answers ``answers`` in turn (the last one from then on)."""

    answers: tuple[str, ...] = ()

    async def transcribe(self, pcm: bytes) -> str:
        self.text = self.answers[min(len(self.received), len(self.answers) - 1)]
        return await super().transcribe(pcm)


async def test_an_early_pause_prepares_the_reply_and_the_margins_words_end_the_command() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.settings = EARLY
    rig.turn_detector = FakeTurnDetector(0.3)  # the audio is unsure; the words are complete
    rig.mic.waits = {MARGIN_AT: until(lambda: rig.synthesizer.sentences)}
    ends = end_frames(rig)
    await rig.run()
    early, whole = rig.transcriber.received
    assert early == SILENCE + WAKE + SPEECH * 10 + SILENCE  # what there was at the pause
    assert whole == early + SILENCE  # the whole margin: the upload at the end
    assert rig.turn_detector.heard == [whole]  # the audio model hears the pause with its margin
    # The early words (known before the margin's frame) did not end it; the margin's words did.
    assert MARGIN_AT < ends[0] < HANGOVER_END
    (record,) = rig.recorder.turns
    assert record.end_reason == "words"
    # The reply prepared from the early words is the one heard: the margin's words are the same.
    assert record.speculation == {"transcripts": 2, "replies": 1, "used": "reply"}
    assert rig.synthesizer.sentences == ["Turned on the kitchen light."]
    assert log(rig).intents == [("HassTurnOn", {"name": "kitchen light"}, "local")]
    assert rig.speaker.played == [AWAKE, b"Turned on the kitchen light."]


async def test_an_early_transcript_that_lost_its_last_sound_is_redone_from_the_margins() -> None:
    rig = intents_rig("")
    rig.transcriber = Answers(answers=("Turn on the", "Turn on the kitchen light."))
    rig.settings = EARLY
    rig.turn_detector = FakeTurnDetector(0.9)
    rig.mic.waits = {MARGIN_AT: until(lambda: rig.chat.requests)}
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.transcript == "Turn on the kitchen light."
    assert record.speculation == {"transcripts": 2, "replies": 2, "used": "reply"}
    assert log(rig).intents == [("HassTurnOn", {"name": "kitchen light"}, "local")]
    assert rig.speaker.played == [AWAKE, b"Turned on the kitchen light."]  # not the LLM's


async def test_a_slow_transcriber_gets_no_request_before_the_margin() -> None:
    # The early request at the first pause answers after the margin's frame (0.1 s, more than
    # its 0.08 s): at the next pause the transcriber is asked only once the margin is heard.
    words = ("turn on the", "turn on the", "turn on the kitchen light")
    rig = Rig(FakeMicrophone(PAUSED), transcriber=Answers(delay_seconds=0.1, answers=words))
    rig.settings = EARLY
    rig.turn_detector = FakeTurnDetector(0.9)
    rig.mic.waits = {MARGIN_AT: lambda: asyncio.sleep(0.15)}  # the early answer comes first
    await rig.run()
    trailing = [len(pcm.rsplit(SPEECH, 1)[1]) // len(SILENCE) for pcm in rig.transcriber.received]
    assert trailing == [1, 2, 2]
    assert rig.recorder.transcripts == ["turn on the kitchen light"]


async def test_a_slow_transcriber_timed_at_start_gets_no_early_request_at_all() -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.settings = EARLY
    rig.transcriber.delay_seconds = 0.1  # slower than the 0.08 s between pause and margin
    rig.turn_detector = FakeTurnDetector(0.9)
    await rig.runtime.work.time_transcriber()  # what lingling run does at start
    assert len(rig.transcriber.received) == 1  # half a second of silence
    await rig.runtime.work.time_transcriber()  # once: it is known now
    assert len(rig.transcriber.received) == 1
    await rig.run()
    _, *turn = rig.transcriber.received
    assert len(turn) == 1  # the margin's request only: no guess before it
    assert rig.recorder.transcripts == ["Turn on the kitchen light."]


async def test_the_transcriber_is_not_timed_without_early_guesses() -> None:
    rig = intents_rig("Turn on the kitchen light.")  # speculate_seconds at the margin
    rig.settings = {"vad": {"speculate_seconds": 0.16}}
    await rig.runtime.work.time_transcriber()
    assert rig.transcriber.received == []
