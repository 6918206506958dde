"""The runtime on fakes: what it executes, what it feeds back, and that it never gets stuck."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from assistant.app import Runtime
from assistant.commands import Earcon, Phase
from assistant.config import Config
from assistant.earcons import earcon_pcm
from assistant.errors import AudioError, ChatError, TranscriptionError
from assistant.events import Observer, TurnRecord
from tests.fakes import (
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
COMMAND = frames((SILENCE, 3), (WAKE, 1), (SPEECH, 10), (SILENCE, 14))


@dataclass
class Recorder(Observer):
    states: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self.states.append(str(phase))

    def turn_finished(self, record: TurnRecord) -> None:
        self.turns.append(record)

    def error_reported(self, turn: int, code: str, message: str, phase: Phase) -> None:
        self.errors.append((code, str(phase)))


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

    async def run(self, timeout_seconds: float = 5.0) -> Runtime:
        runtime = Runtime(
            Config.model_validate(self.settings),
            microphone=self.mic,
            speaker=self.speaker,
            wake_word=self.wake_word,
            vad=FakeVad(),
            transcriber=self.transcriber,
            chat=self.chat,
            synthesizer=self.synthesizer,
            observers=[self.recorder],
        )
        await asyncio.wait_for(runtime.run(), timeout_seconds)
        return runtime


AWAKE = earcon_pcm(Earcon.AWAKE, 16_000)
ERROR = earcon_pcm(Earcon.ERROR, 16_000)


async def test_a_whole_turn() -> None:
    rig = Rig(FakeMicrophone(COMMAND))
    await rig.run()
    assert rig.recorder.states == WHOLE_TURN
    assert rig.speaker.played == [AWAKE, b"Sure.\x00", b"The light is on."]
    (record,) = rig.recorder.turns
    assert (record.wake_word, record.transcript) == ("hey_jarvis", "turn on the kitchen light")
    assert record.response == "Sure. The light is on."
    assert record.llm_timings == {"prompt_n": 3.0, "cache_n": 10.0}
    assert set(record.timings_ms()) == {
        "wake_to_listening",
        "speech_end_to_upload",
        "stt",
        "llm_first_token",
        "llm_first_sentence",
        "tts_first_sentence",
        "speech_end_to_first_audio",
        "total",
    }
    assert rig.chat.requests[0][-1] == {"role": "user", "content": "turn on the kitchen light"}


async def test_the_upload_is_the_speech_with_its_margin_and_no_hangover() -> None:
    rig = Rig(FakeMicrophone(COMMAND))
    await rig.run()
    (pcm,) = rig.transcriber.received
    # 10 speech frames with 2 frames (0.16 s) of margin on each side: the margin before reaches
    # back into the wake detection frame, where a command said without a pause begins.
    assert pcm == SILENCE + WAKE + SPEECH * 10 + SILENCE * 2


async def test_a_command_said_without_a_pause_after_the_wake_word_is_not_cut() -> None:
    # Frames that arrive while the earcon plays are kept and fed to the VAD first.
    rig = Rig(FakeMicrophone(COMMAND, realtime=True, seconds_per_frame=0.002))
    rig.speaker.seconds_per_play = 0.012  # the earcon takes ~6 frames of the 12 kept
    await rig.run()
    (pcm,) = rig.transcriber.received
    assert pcm.startswith(SILENCE + WAKE + SPEECH * 10)


async def test_the_conversation_carries_history_into_the_next_turn() -> None:
    rig = Rig(FakeMicrophone(COMMAND * 2))
    await rig.run()
    assert rig.recorder.states == WHOLE_TURN + WHOLE_TURN[1:]
    second = rig.chat.requests[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Sure. The light is on."


async def test_the_wake_word_is_not_fed_while_speaking() -> None:
    rig = Rig(FakeMicrophone(COMMAND, realtime=True, seconds_per_frame=0.005))
    rig.speaker.seconds_per_play = 0.1
    await rig.run()
    # Frames during the turn never reach the wake word; it is reset on returning to idle.
    assert rig.wake_word.processed.count(SPEECH) == 0
    assert rig.wake_word.resets >= 1


async def test_an_empty_transcript_ends_the_turn_quietly() -> None:
    rig = Rig(FakeMicrophone(COMMAND), transcriber=FakeTranscriber(text=""))
    await rig.run()
    assert rig.recorder.states == ["idle", "wake", "listening", "transcribing", "idle"]
    assert rig.chat.requests == []
    assert rig.speaker.played == [AWAKE]
    assert rig.recorder.errors == []


async def test_no_speech_goes_back_to_idle() -> None:
    rig = Rig(FakeMicrophone(frames((WAKE, 1), (SILENCE, 70))))
    await rig.run()
    assert rig.recorder.states == ["idle", "wake", "listening", "idle"]
    assert rig.transcriber.received == []
    assert str(rig.recorder.turns[0].outcome) == "no_speech"


# The stream dies after the first sentence has started playing.
CUT_MID_STREAM = FakeChat(error_after=2, error=ChatError("cut"), delay_seconds=0.02)


@pytest.mark.parametrize(
    ("transcriber", "chat", "code", "phase"),
    [
        (FakeTranscriber(error=TranscriptionError("down")), FakeChat(), "stt", "transcribing"),
        (FakeTranscriber(), FakeChat(error_after=0, error=ChatError("down")), "llm", "thinking"),
        (FakeTranscriber(), CUT_MID_STREAM, "llm", "speaking"),
    ],
    ids=["stt-down", "llm-down", "llm-dies-mid-stream"],
)
async def test_a_failing_server_ends_the_turn_and_the_next_turn_works(
    transcriber: FakeTranscriber, chat: FakeChat, code: str, phase: str
) -> None:
    rig = Rig(FakeMicrophone(COMMAND * 2), transcriber=transcriber, chat=chat)
    await rig.run()
    assert rig.recorder.errors[0] == (code, phase)
    assert ERROR in rig.speaker.played
    assert rig.recorder.states.count("idle") == 3  # start, after the failure, after turn 2
    assert len(rig.recorder.turns) == 2


async def test_a_hanging_server_times_out_and_late_results_are_ignored() -> None:
    rig = Rig(
        FakeMicrophone(COMMAND),
        transcriber=FakeTranscriber(delay_seconds=0.5),
        settings={"stt": {"timeout_seconds": 0.1}},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.run()
    assert rig.recorder.errors == [("timeout", "transcribing")]
    assert rig.recorder.states[-2:] == ["transcribing", "idle"]
    assert loop.time() - started < 0.45  # the hanging request was cancelled, not awaited
    assert rig.chat.requests == []


async def test_a_crash_in_an_adapter_is_an_error_not_a_stuck_turn() -> None:
    class Broken(FakeSynthesizer):
        def synthesize(self, text: str) -> bytes:
            raise RuntimeError("bug")

    rig = Rig(FakeMicrophone(COMMAND), synthesizer=Broken())
    await rig.run()
    assert rig.recorder.errors == [("internal", "thinking")]
    assert rig.recorder.states[-1] == "idle"


async def test_a_failing_microphone_is_reopened_and_the_turn_it_broke_ends() -> None:
    @dataclass
    class FlakyMicrophone(FakeMicrophone):
        opened: int = 0

        async def frames(self) -> AsyncIterator[bytes]:
            self.opened += 1
            if self.opened == 1:  # dies in the middle of a command
                for item in frames((WAKE, 1), (SPEECH, 3)):
                    yield item
                raise AudioError("device unplugged")
            async for item in super().frames():
                yield item

    mic = FlakyMicrophone(COMMAND)
    rig = Rig(mic)
    await rig.run()
    assert mic.opened == 2
    assert rig.recorder.errors[0] == ("audio", "listening")
    assert rig.recorder.states == ["idle", "wake", "listening", "idle", *WHOLE_TURN[1:]]
