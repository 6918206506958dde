"""A timer set by voice through ``lingling run``, as a user meets it: a recording of "hey jarvis,
set a timer for five seconds", silence, then "stop". Real wake word, VAD, Smart Turn and Piper
voice; whisper-server's wire format; a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from assistant.adapters.earcons import earcon_pcm
from assistant.core.commands import Earcon
from tests.support.broker import Broker, Subscriber
from tests.support.broker import broker_fixture as broker_fixture  # the broker fixture
from tests.support.models import require_model
from tests.support.scenarios import Scenario, concat, recording, silence, speak, write_wav
from tests.support.servers import FakeWhisperServer

pytestmark = pytest.mark.models

SITE = "kitchen"
COMMAND = " Set a timer for five seconds.\n"
STOP_AFTER_SECONDS = 8.0
"""After the command: the timer (due 5 s after the answer) is ringing by then."""


def said(seconds: float) -> str:
    """What whisper hears: the command, or (a short burst while ringing) the stop word."""
    return COMMAND if seconds > 1.6 else " Stop.\n"


async def test_a_timer_set_by_voice_rings_when_due_and_the_stop_word_ends_it(
    tmp_path: Path, models_dir: Path, broker: Broker
) -> None:
    require_model("piper/en_US-joe-medium.onnx")
    scene = Scenario.build(
        "set a timer for five seconds", wake=recording("wyoming_hey_jarvis"), trail_seconds=0.0
    )
    stop = speak("stop")
    audio = concat(scene.samples, silence(STOP_AFTER_SECONDS), stop, silence(2.0))
    stop_ends = (scene.samples.size + int(STOP_AFTER_SECONDS * 16_000) + stop.size) / 16_000
    wav, out, events = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "events.jsonl"
    write_wav(wav, audio)
    with FakeWhisperServer(text_for=said) as whisper:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"models_dir: {models_dir}\n"
            "tts: {voice: en_US-joe-medium}\n"
            f"stt: {{url: '{whisper.v1_url}', server: null}}\n"
            "llm: {url: 'http://127.0.0.1:9/v1', server: null}\n"  # a local intent: no LLM
            "vad: {speculate_seconds: 0.16}\n"  # one request a pause: they are counted below
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}, site: {SITE}}}\n",
            encoding="utf-8",
        )
        async with Subscriber(broker, f"lingling/{SITE}/timer") as watcher:
            command = [sys.executable, "-m", "assistant", "run", "-c", str(config)]
            command += ["--input", str(wav), "--output", str(out), "--events", str(events)]
            done = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=90, check=False
            )
            assert done.returncode == 0, done.stderr
            timer_events = [m.json() for m in watcher.received(f"lingling/{SITE}/timer")]

    lines = [json.loads(line) for line in events.read_text().splitlines()]
    states = [(line["state"], line["t"]) for line in lines if line["event"] == "state"]
    (turn,) = [line for line in lines if line["event"] == "turn"]
    assert turn["transcript"] == COMMAND.strip()
    assert turn["response"] == "The timer is set for 5 seconds."
    spoken_at = next(t for state, t in states if state == "speaking")
    ringing_at = next(t for state, t in states if state == "ringing")
    assert 4.5 <= ringing_at - spoken_at <= 5.6  # set when the answer was confirmed, due 5 s on
    assert [e["event"] for e in timer_events] == ["started", "finished"]
    assert timer_events[-1]["seconds"] == 5

    # The stop word ended the ring (not timers.ring_seconds, 60 s): within a second of "stop".
    after_ring = states[[state for state, _ in states].index("ringing") + 1]
    assert after_ring[0] == "idle"
    assert stop_ends <= after_ring[1] <= stop_ends + 1.0
    assert len(whisper.requests) == 2  # the command, then the burst: the ring is not speech

    with wave.open(str(out), "rb") as reader:  # the alarm is in the output, whole
        played = reader.readframes(reader.getnframes())
        assert earcon_pcm(Earcon.RING, reader.getframerate()) in played
