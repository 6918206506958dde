"""Faults from the servers, through the real HTTP adapters and the real runtime: every one ends
the turn within its timeout, plays the error earcon, reports the error, returns to idle, and the
next turn works."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from assistant.adapters.earcons import earcon_pcm
from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import Config
from assistant.core.commands import Earcon, Phase
from assistant.runtime.observer import Observer, TurnRecord
from tests.support.fakes import (
    SILENCE,
    SPEECH,
    WAKE,
    FakeSpeaker,
    frames,
    run_with_clients,
)
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

TIMEOUT_SECONDS = 0.6
SLOW_SECONDS = 60.0
# Two commands; the second one only starts after the first turn has ended, whatever it took.
COMMAND = frames((SILENCE, 2), (WAKE, 1), (SPEECH, 8), (SILENCE, 12))
ERROR = earcon_pcm(Earcon.ERROR, 16_000)


@dataclass
class Watch(Observer):
    """Notes states with their time, errors, and finished turns; clears the fault when the
    first turn has ended so the second one can work."""

    heal: Callable[[], None]
    states: list[tuple[str, float]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self.states.append((str(phase), t_seconds))

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        self.errors.append((code, str(phase)))

    def turn_finished(self, record: TurnRecord) -> None:
        self.turns.append(record)
        self.heal()


@pytest.fixture
def whisper() -> Iterator[FakeWhisperServer]:
    with FakeWhisperServer(" What is the weather like?\n") as server:
        yield server


@pytest.fixture
def llama() -> Iterator[FakeLlamaServer]:
    with FakeLlamaServer("Sunny. Warm, too.", tokens_per_second=200) as server:
        yield server


def heal(server: FakeWhisperServer | FakeLlamaServer) -> None:
    server.release()
    server.hang = False
    server.error_status = None
    server.garbage = None
    server.delay_seconds = 0.0
    if isinstance(server, FakeLlamaServer):
        server.error_after_tokens = None
        server.stall_after_tokens = None


async def run_two_turns(
    whisper_url: str, llama_url: str, heal_fault: Callable[[], None]
) -> tuple[Watch, FakeSpeaker]:
    config = Config.model_validate(
        {
            "stt": {"url": whisper_url, "timeout_seconds": TIMEOUT_SECONDS},
            "llm": {"url": llama_url, "timeout_seconds": TIMEOUT_SECONDS},
            "intents": {"enabled": False},
        }
    )
    watch = Watch(heal_fault)
    speaker = FakeSpeaker()
    await run_with_clients(
        config,
        COMMAND * 2,
        transcriber=WhisperTranscriber(config.stt),
        chat=LlamaChat(config.llm),
        observers=[watch],
        speaker=speaker,
    )
    return watch, speaker


def assert_failed_then_recovered(watch: Watch, speaker: FakeSpeaker, phase: str) -> None:
    assert watch.errors[0][1] == phase
    assert ERROR in speaker.played
    assert [str(turn.outcome) for turn in watch.turns] == ["failed", "answered"]
    states = [state for state, _ in watch.states]
    assert states.count("idle") == 3  # start, after the failure, after the second turn


STT_FAULTS: dict[str, Callable[[FakeWhisperServer], None]] = {
    "refusing": lambda s: setattr(s, "error_status", 500),
    "bad-request": lambda s: setattr(s, "error_status", 400),
    "hanging": lambda s: setattr(s, "hang", True),
    # Far longer than run_two_turns' guard: the turn must end by its own timeout, not the server.
    "too-slow": lambda s: setattr(s, "delay_seconds", SLOW_SECONDS),
    "garbage": lambda s: setattr(s, "garbage", b"<html>oops</html>"),
}


@pytest.mark.parametrize("fault", list(STT_FAULTS), ids=list(STT_FAULTS))
async def test_a_failing_whisper_server_ends_the_turn(
    fault: str, whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> None:
    STT_FAULTS[fault](whisper)
    watch, speaker = await run_two_turns(whisper.v1_url, llama.v1_url, lambda: heal(whisper))
    assert_failed_then_recovered(watch, speaker, "transcribing")


async def test_a_whisper_server_that_is_down_ends_the_turn(llama: FakeLlamaServer) -> None:
    server = FakeWhisperServer(" What is the weather like?\n").start()
    url, port = server.v1_url, server.port
    server.stop()  # nothing listens on that port now

    def come_back() -> None:
        server.start(port)

    watch, speaker = await run_two_turns(url, llama.v1_url, come_back)
    try:
        assert_failed_then_recovered(watch, speaker, "transcribing")
    finally:
        server.stop()


LLM_FAULTS: dict[str, tuple[Callable[[FakeLlamaServer], None], str]] = {
    "refusing": (lambda s: setattr(s, "error_status", 500), "thinking"),
    "hanging": (lambda s: setattr(s, "hang", True), "thinking"),
    "too-slow": (lambda s: setattr(s, "delay_seconds", SLOW_SECONDS), "thinking"),
    "garbage": (lambda s: setattr(s, "garbage", b"data: {not json\n\n"), "thinking"),
    "dies-mid-stream": (lambda s: setattr(s, "error_after_tokens", 2), "speaking"),
    "stalls-mid-stream": (lambda s: setattr(s, "stall_after_tokens", 2), "speaking"),
}


@pytest.mark.parametrize("fault", list(LLM_FAULTS), ids=list(LLM_FAULTS))
async def test_a_failing_llama_server_ends_the_turn(
    fault: str, whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> None:
    inject, phase = LLM_FAULTS[fault]
    inject(llama)
    watch, speaker = await run_two_turns(whisper.v1_url, llama.v1_url, lambda: heal(llama))
    assert watch.errors[0][1] == phase
    assert ERROR in speaker.played
    assert [str(turn.outcome) for turn in watch.turns] == ["failed", "answered"]


async def test_a_slow_server_within_its_timeout_is_waited_for(
    whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> None:
    whisper.delay_seconds = TIMEOUT_SECONDS / 3
    watch, _ = await run_two_turns(whisper.v1_url, llama.v1_url, lambda: None)
    assert watch.errors == []
    assert [str(turn.outcome) for turn in watch.turns] == ["answered", "answered"]
