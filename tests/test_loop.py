"""The whole loop on real audio: real openWakeWord, Silero VAD and Piper models, and loopback
servers that speak whisper.cpp's and llama.cpp's wire formats."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.adapters.earcons import earcon_pcm
from assistant.config_files import load_config
from assistant.core.commands import Earcon, Phase
from assistant.runtime.observer import Observer, TurnRecord
from assistant.service.serve import RunOptions, serve
from tests.support.broker import Broker, Subscriber, eventually
from tests.support.broker import broker_fixture as broker_fixture  # the broker fixture
from tests.support.scenarios import Scenario, concat, recording, silence, write_wav
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

pytestmark = pytest.mark.models

WHOLE_TURN = ["idle", "wake", "listening", "transcribing", "thinking", "speaking", "idle"]
REPLY = "Sure. The kitchen light is on now. Anything else?"
QUESTION = "Is the kitchen light on?"
RATE = 16_000


@dataclass
class Clock(Observer):
    """Observer noting when (monotonic) each state was entered."""

    states: list[tuple[str, float]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self.states.append((str(phase), time.monotonic()))

    def turn_finished(self, record: TurnRecord) -> None:
        self.turns.append(record)

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        raise AssertionError(f"unexpected error {code}: {message}")


@pytest.fixture
def whisper() -> Iterator[FakeWhisperServer]:
    # Not a local intent: the question goes to the LLM.
    with FakeWhisperServer(f" {QUESTION}\n") as server:
        yield server


@pytest.fixture
def llama() -> Iterator[FakeLlamaServer]:
    # 20 tokens/s: the reply takes ~0.6 s to stream, long enough to see speech start before it ends.
    with FakeLlamaServer(REPLY, tokens_per_second=20) as server:
        yield server


@pytest.fixture
def config_file(
    tmp_path: Path, models_dir: Path, whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"models_dir: {models_dir}\n"
        "tts: {voice: tone_voice}\n"
        "intents: {follow_up_seconds: 0}\n"
        "mqtt: {enabled: false}\n"
        # The pause with the margin: one request a pause, which the tests count (the default
        # pause, sooner, is tested in test_speculation.py).
        "vad: {speculate_seconds: 0.16}\n"
        f"stt: {{url: '{whisper.v1_url}'}}\n"
        f"llm: {{url: '{llama.v1_url}', model: tiny}}\n",
        encoding="utf-8",
    )
    return path


def run_loop(config_file: Path, wav: Path, tmp_path: Path) -> Clock:
    clock = Clock()
    options = RunOptions(input=wav, output=tmp_path / "out.wav", fast=True)
    config = load_config(config_file, env={})
    asyncio.run(asyncio.wait_for(serve(config, options, [clock]), 60))
    return clock


def locate(upload: bytes, source: np.ndarray) -> tuple[int, int]:
    """Where (in samples) the uploaded PCM lies in the source audio: it is an exact slice."""
    offset = source.astype("<i2").tobytes().find(upload)
    assert offset >= 0, "the upload is not a slice of the input"
    assert offset % 2 == 0, "the upload is not sample-aligned"
    return offset // 2, (offset + len(upload)) // 2


@pytest.mark.parametrize(
    ("wake", "command", "pause_seconds", "noise_rms"),
    [
        ("hey jarvis", "turn on the kitchen light", 0.3, 0.0),
        ("hey jarvis", "turn on the kitchen light", 0.0, 0.0),
        (recording("wyoming_hey_jarvis"), "what is the weather like tomorrow", 0.0, 0.0),
        ("hey jarvis", "set a timer for ten minutes", 0.5, 300.0),
        (recording("wyoming_hey_jarvis"), "turn off the lights in the living room", 0.2, 600.0),
    ],
    ids=["espeak-pause", "espeak-no-pause", "recorded-wake-word", "noise", "recorded-noise"],
)
def test_one_command_gives_exactly_one_whole_turn(
    tmp_path: Path,
    config_file: Path,
    whisper: FakeWhisperServer,
    llama: FakeLlamaServer,
    wake: str | np.ndarray,
    command: str,
    pause_seconds: float,
    noise_rms: float,
) -> None:
    scenario = Scenario.build(
        command, wake=wake, pause_seconds=pause_seconds, noise_rms=noise_rms, seed=7
    )
    wav = tmp_path / "in.wav"
    write_wav(wav, scenario.samples)
    clock = run_loop(config_file, wav, tmp_path)

    assert [state for state, _ in clock.states] == WHOLE_TURN
    (upload,) = whisper.requests
    assert (upload.sample_rate_hz, upload.channels, upload.sample_width_bytes) == (RATE, 1, 2)
    start, end = locate(upload.pcm, scenario.samples)
    assert start <= scenario.command_start, "the command's start was cut"
    assert end >= scenario.command_end, "the command's end was cut"
    assert (end - scenario.command_end) / RATE <= 0.4, "too much trailing silence uploaded"

    (request,) = llama.requests
    assert request.body["stream"] is True
    assert request.body["messages"][-1] == {"role": "user", "content": QUESTION}
    speaking_at = dict(clock.states)["speaking"]
    assert request.finished_at is not None
    assert speaking_at < request.finished_at, "speech must begin while the reply still streams"

    (turn,) = clock.turns
    assert (turn.wake_word, turn.transcript, turn.response) == (
        "hey_jarvis",
        QUESTION,
        REPLY,
    )
    assert turn.llm_timings is not None
    assert "predicted_n" in turn.llm_timings


def test_the_output_holds_the_earcon_then_the_spoken_reply(
    tmp_path: Path, config_file: Path
) -> None:
    wav = tmp_path / "in.wav"
    write_wav(wav, Scenario.build("what time is it").samples)
    run_loop(config_file, wav, tmp_path)
    with wave.open(str(tmp_path / "out.wav"), "rb") as out:
        rate = out.getframerate()
        played = out.readframes(out.getnframes())
    awake = earcon_pcm(Earcon.AWAKE, rate)
    assert played.startswith(awake)
    speech = np.frombuffer(played[len(awake) :], dtype="<i2")
    # tone_voice speaks a tone whose length follows the text: three sentences, a second or more.
    assert len(speech) / rate > 1.0
    assert np.abs(speech).max() > 1000


def test_speech_without_the_wake_word_gives_no_turn(
    tmp_path: Path, config_file: Path, whisper: FakeWhisperServer
) -> None:
    wav = tmp_path / "in.wav"
    no_wake = Scenario.build("turn on the kitchen light", wake=None)
    write_wav(wav, concat(recording("jfk"), no_wake.samples))
    clock = run_loop(config_file, wav, tmp_path)
    assert [state for state, _ in clock.states] == ["idle"]
    assert whisper.requests == []


def test_two_commands_give_two_turns_with_history(
    tmp_path: Path, config_file: Path, whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> None:
    first = Scenario.build("turn on the kitchen light")
    second = Scenario.build("what time is it", wake=recording("wyoming_hey_jarvis"))
    wav = tmp_path / "in.wav"
    write_wav(wav, concat(first.samples, silence(1.0), second.samples))
    clock = run_loop(config_file, wav, tmp_path)
    assert [state for state, _ in clock.states] == WHOLE_TURN + WHOLE_TURN[1:]
    assert len(whisper.requests) == 2
    roles = [m["role"] for m in llama.requests[1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_the_command_line_contract(
    tmp_path: Path, config_file: Path, whisper: FakeWhisperServer
) -> None:
    wav = tmp_path / "in.wav"
    write_wav(wav, Scenario.build("turn on the kitchen light").samples)
    events = tmp_path / "events.jsonl"
    out = tmp_path / "out.wav"
    command = [sys.executable, "-m", "assistant", "run", "-c", str(config_file)]
    done = subprocess.run(
        [*command, "--input", str(wav), "--output", str(out), "--fast", "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LINGLING_MODELS": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    states = [line for line in lines if line["event"] == "state"]
    assert [s["state"] for s in states] == WHOLE_TURN
    times = [s["t"] for s in states]
    assert times == sorted(times)
    # t is audio time: the wake word ends ~1.9 s into the file.
    assert 1.5 < times[1] < 2.5
    (turn,) = [line for line in lines if line["event"] == "turn"]
    assert turn["wake_word"] == "hey_jarvis"
    assert turn["transcript"] == QUESTION
    assert turn["response"] == REPLY
    assert set(turn["timings_ms"]) >= {"stt", "llm_first_token", "speech_end_to_first_audio"}
    assert out.stat().st_size > 44
    assert "idle→wake" in done.stderr


def test_a_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("wake:\n  threshold: 1.5\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "lingling: wake.threshold: must be between 0 and 1\n"


def test_a_local_intent_never_reaches_the_llm(
    tmp_path: Path, config_file: Path, whisper: FakeWhisperServer, llama: FakeLlamaServer
) -> None:
    whisper.text = " Turn on the kitchen light.\n"
    wav = tmp_path / "in.wav"
    write_wav(wav, Scenario.build("turn on the kitchen light").samples)
    clock = run_loop(config_file, wav, tmp_path)
    assert [state for state, _ in clock.states] == WHOLE_TURN
    assert llama.requests == []
    (turn,) = clock.turns
    assert turn.response == "Turned on the kitchen light."


@pytest.mark.parametrize(
    ("text", "output", "code"),
    [
        (
            "Turn on the kitchen light.",
            {"intent": "HassTurnOn", "slots": {"name": "kitchen light"}},
            0,
        ),
        ("unlock the front door", {"intent": None}, 1),
    ],
)
def test_lingling_intent_prints_the_match(text: str, output: dict[str, Any], code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "intent", text],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout) == output


async def test_home_automation_follows_a_turn_over_mqtt(
    tmp_path: Path,
    models_dir: Path,
    whisper: FakeWhisperServer,
    llama: FakeLlamaServer,
    broker: Broker,
) -> None:
    whisper.text = " Turn on the kitchen light.\n"
    path = tmp_path / "mqtt.yaml"
    path.write_text(
        f"models_dir: {models_dir}\n"
        "tts: {voice: tone_voice}\n"
        f"stt: {{url: '{whisper.v1_url}'}}\n"
        f"llm: {{url: '{llama.v1_url}'}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, site: den}}\n",
        encoding="utf-8",
    )
    wav = tmp_path / "in.wav"
    write_wav(wav, Scenario.build("turn on the kitchen light", trail_seconds=1.0).samples)
    # In real time, as from a microphone: the bridge is connected before the wake word.
    options = RunOptions(input=wav, output=tmp_path / "out.wav")
    async with Subscriber(broker, "lingling/den/#", "homeassistant/#") as watcher:
        await asyncio.wait_for(serve(load_config(path, env={}), options), 30)
        await eventually(lambda: "offline" in watcher.texts("lingling/den/availability"))
    states = [s for s, _ in itertools.groupby(watcher.texts("lingling/den/state"))]
    assert states == WHOLE_TURN
    (intent,) = [m.json() for m in watcher.received("lingling/den/intent")]
    assert intent["intent"] == "HassTurnOn"
    assert intent["slots"] == {"name": "kitchen light"}
    assert intent["source"] == "local"
    # Someone who looks later finds the device, its last state and that it is offline.
    async with Subscriber(broker, "lingling/den/#", "homeassistant/#") as late:
        await eventually(lambda: late.texts("lingling/den/availability") == ["offline"])
        assert late.texts("lingling/den/state") == ["idle"]
        assert late.received("homeassistant/device/lingling_den/config")[0].json()["dev"]


STORY = " ".join(["Once upon a time a small robot lived in a quiet kitchen."] * 12)


@pytest.mark.parametrize("barge_in", [True, False], ids=["barge-in", "no-barge-in"])
def test_the_wake_word_during_speech_interrupts_only_with_barge_in(
    tmp_path: Path,
    config_file: Path,
    whisper: FakeWhisperServer,
    llama: FakeLlamaServer,
    barge_in: bool,
) -> None:
    llama.script = [STORY]  # a long first answer, then the usual short one
    config_file.write_text(
        config_file.read_text() + f"barge_in: {str(barge_in).lower()}\n", encoding="utf-8"
    )
    first = Scenario.build("tell me a story", trail_seconds=2.0)
    second = Scenario.build("what time is it", lead_seconds=0.0, trail_seconds=1.2)
    wav = tmp_path / "in.wav"
    write_wav(wav, concat(first.samples, second.samples))
    # In real time, as from a microphone: the second wake word comes while the story plays.
    clock = Clock()
    options = RunOptions(input=wav, output=tmp_path / "out.wav")
    asyncio.run(asyncio.wait_for(serve(load_config(config_file, env={}), options, [clock]), 60))
    states = [state for state, _ in clock.states]
    if barge_in:
        assert states == [*WHOLE_TURN[:6], *WHOLE_TURN[1:]]
        assert [str(turn.outcome) for turn in clock.turns] == ["cancelled", "answered"]
        # Playback stopped at once: far less than the story's tone was written.
        story_seconds = len(STORY) * 0.01
        with wave.open(str(tmp_path / "out.wav"), "rb") as out:
            assert out.getnframes() / out.getframerate() < story_seconds
        assert len(whisper.requests) == 2
    else:
        assert states == WHOLE_TURN
        assert [str(turn.outcome) for turn in clock.turns] == ["answered"]


def test_listen_runs_one_turn_without_the_wake_word_and_stops(
    tmp_path: Path, config_file: Path, whisper: FakeWhisperServer
) -> None:
    command = Scenario.build("what is the weather like", wake=None, lead_seconds=0.3)
    later = Scenario.build("turn on the kitchen light")  # not listened to: one turn only
    wav = tmp_path / "in.wav"
    write_wav(wav, concat(command.samples, later.samples))
    clock = Clock()
    options = RunOptions(input=wav, output=tmp_path / "out.wav", fast=True, listen_once=True)
    asyncio.run(asyncio.wait_for(serve(load_config(config_file, env={}), options, [clock]), 60))
    assert [state for state, _ in clock.states] == WHOLE_TURN
    (turn,) = clock.turns
    assert turn.wake_word is None
    (upload,) = whisper.requests
    start, end = locate(upload.pcm, command.samples)
    assert start <= command.command_start
    assert end >= command.command_end
