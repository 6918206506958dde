"""Several satellites on a real mosquitto (tests/support/broker.py), all hearing one wake word at
different levels: exactly one answers. Each a whole ``Runtime`` on fakes with its own MQTT bridge,
and last, two real ``lingling run`` processes on one recording (the short form of bench.rooms)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from assistant.config import Config
from assistant.core.arbitration import Decision, Verdict, WakeClaim
from assistant.core.audioformat import FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS
from assistant.core.commands import Outcome
from assistant.mqtt.arbitration import ClaimExchange, claims_topic
from assistant.mqtt.bridge import MqttBridge
from assistant.runtime.runtime import Runtime
from tests.support.broker import (
    Broker,
    Subscriber,
    broker_fixture,  # noqa: F401 (the broker fixture)
    eventually,
)
from tests.support.fakes import (
    SILENCE,
    SPEECH,
    FakeMicrophone,
    FakeSpeaker,
)
from tests.support.rig import AWAKE, Recorder, runtime_on_fakes
from tests.support.scenarios import Scenario, noise, recording, write_wav
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

CLAIMS = claims_topic("lingling")
SECONDS_PER_FRAME = FRAME_SECONDS / 2  # paced like a microphone, at twice its speed


def voiced(tag: bytes, amplitude: float) -> bytes:
    """An 80 ms frame tagged ``tag`` (the fakes read the tag) that sounds at ``amplitude``."""
    n = FRAME_SAMPLES - len(tag) // 2
    tone = amplitude * np.sin(2 * np.pi * 400 * np.arange(n) / 16_000)
    return tag + np.round(tone).astype("<i2").tobytes()


def heard_at(gain_db: float) -> list[bytes]:
    """One person saying the wake word and a command, as a room heard it (0 dB: the nearest)."""
    amplitude = 8000 * 10 ** (gain_db / 20)
    word = [voiced(b"WORD", amplitude)] * 6  # the wake word (not speech to the fake VAD)
    wake = [voiced(b"WAKE", amplitude)]  # the frame the wake word fires on
    frames = [SILENCE] * 3 + word + wake + [SPEECH] * 10 + [SILENCE] * 14
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    return frames


@dataclass
class SatelliteLog(Recorder):
    decisions: list[Decision] = field(default_factory=list)
    heard: list[WakeClaim] = field(default_factory=list)
    """Claims that reached the runtime from the broker."""

    def claim_decided(self, turn: int, claim: WakeClaim, decision: Decision) -> None:
        self.decisions.append(decision)


@dataclass
class Satellite:
    site: str
    runtime: Runtime
    bridge: MqttBridge
    log: SatelliteLog
    speaker: FakeSpeaker

    @property
    def answered(self) -> bool:
        return [t.outcome for t in self.log.turns] == [Outcome.ANSWERED]


def satellite(
    broker: Broker,
    site: str,
    audio: list[bytes],
    waits: Mapping[int, Callable[[], Awaitable[object]]] | None = None,
    **mqtt_settings: Any,
) -> Satellite:
    loop = asyncio.get_running_loop()
    settings = {"host": broker.host, "port": broker.port, "site": site, "discovery": False}
    config = Config.model_validate({"mqtt": {**settings, **mqtt_settings}})
    log = SatelliteLog()
    bridge = MqttBridge(config.mqtt, on_request=lambda request: None, loop=loop)

    def heard(claim: WakeClaim) -> None:
        log.heard.append(claim)
        runtime.arbiter.heard(claim)

    claims = ClaimExchange(
        bridge,
        loop=loop,
        on_claim=heard,
        max_payload_bytes=config.mqtt.max_payload_bytes,
    )
    speaker = FakeSpeaker()
    microphone = FakeMicrophone(
        audio, realtime=True, seconds_per_frame=SECONDS_PER_FRAME, waits=waits or {}
    )
    runtime = runtime_on_fakes(
        config,
        microphone=microphone,
        speaker=speaker,
        observers=[log, bridge, claims],
        claims=claims if config.mqtt.arbitration else None,
    )
    return Satellite(site, runtime, bridge, log, speaker)


@contextlib.asynccontextmanager
async def connected(broker: Broker, *satellites: Satellite) -> AsyncIterator[None]:
    """Start the satellites' bridges and wait until each has subscribed (its retained mute
    state, published after subscribing, has reached the broker)."""
    for each in satellites:
        each.bridge.start()
    try:
        await eventually(lambda: all(s.bridge.connected for s in satellites), 5.0, "connected")
        for each in satellites:
            async with Subscriber(broker, f"lingling/{each.site}/mute") as probe:
                await eventually(probe.received, 3.0, f"{each.site} subscribed")
        yield
    finally:
        for each in satellites:
            await asyncio.wait_for(each.bridge.stop(), 2)


async def run_all(*satellites: Satellite) -> None:
    await asyncio.wait_for(asyncio.gather(*(s.runtime.run() for s in satellites)), 15)


@pytest.mark.parametrize(
    "rooms",
    [
        {"kitchen": 0.0, "hall": -12.0},
        {"kitchen": -12.0, "hall": 0.0},
        {"attic": -12.0, "kitchen": 0.0, "lounge": -6.0},
        {"attic": -6.0, "kitchen": -12.0, "lounge": 0.0},
    ],
    ids=["two-kitchen-nearest", "two-hall-nearest", "three-middle-nearest", "three-last-nearest"],
)
async def test_one_wake_word_heard_in_several_rooms_gets_one_answer_from_the_nearest(
    broker: Broker, rooms: dict[str, float]
) -> None:
    nearest = max(rooms, key=lambda site: rooms[site])
    satellites = [satellite(broker, site, heard_at(gain)) for site, gain in rooms.items()]
    async with Subscriber(broker, "lingling/#") as sub, connected(broker, *satellites):
        await run_all(*satellites)
        await eventually(lambda: len(sub.received(CLAIMS)) == len(rooms), 3.0, "every claim")
        decided = [f"lingling/{s.site}/arbitration" for s in satellites]
        await eventually(lambda: all(sub.received(t) for t in decided), 3.0, "every decision")
    assert [s.site for s in satellites if s.answered] == [nearest]
    claimed = {m.json()["site"]: m.json() for m in sub.received(CLAIMS)}
    assert set(claimed) == set(rooms)
    loudness = sorted(rooms, key=lambda site: -claimed[site]["level_dbfs"])
    assert loudness == sorted(
        rooms, key=lambda site: -rooms[site]
    )  # the level tells the rooms apart
    for each in satellites:
        topic = f"lingling/{each.site}"
        (decided,) = [m.json() for m in sub.received(f"{topic}/arbitration")]
        assert (decided["won"], decided["winner"]) == (each.site == nearest, nearest)
        if each.site == nearest:
            assert decided["verdict"] == Verdict.BEST
            assert len(decided["rivals"]) == len(rooms) - 1
            assert sub.received(f"{topic}/transcript")
            continue
        # The others went back to idle quietly: nothing but their earcon, cut short.
        assert decided["verdict"] == Verdict.BEATEN
        assert sub.texts(f"{topic}/state", live_only=True) == ["idle", "wake", "idle"]
        for quiet in ("transcript", "response", "intent", "error"):
            assert not sub.received(f"{topic}/{quiet}"), quiet
        (timings,) = [m.json() for m in sub.received(f"{topic}/timings")]
        assert timings["outcome"] == "lost"
        assert each.speaker.played == [AWAKE]
        assert each.speaker.stops >= 1
        assert each.log.transcripts == []
        assert each.log.errors == []


async def test_with_the_broker_down_a_satellite_answers_alone_without_waiting(
    tmp_path: Path,
) -> None:
    away = Broker(tmp_path / "away")  # never started
    alone = satellite(away, "kitchen", heard_at(-12.0), reconnect_max_seconds=1)
    alone.bridge.start()
    try:
        await run_all(alone)
    finally:
        await asyncio.wait_for(alone.bridge.stop(), 2)
    assert alone.answered
    (decision,) = alone.log.decisions
    assert (decision.won, decision.verdict) == (True, Verdict.OFFLINE)  # decided at once


async def test_arbitration_off_answers_every_wake_word(broker: Broker) -> None:
    satellites = [
        satellite(broker, "kitchen", heard_at(0.0), arbitration=False),
        satellite(broker, "hall", heard_at(-12.0), arbitration=False),
    ]
    async with Subscriber(broker, CLAIMS) as sub, connected(broker, *satellites):
        await run_all(*satellites)
    assert all(s.answered for s in satellites)
    assert sub.received() == []
    assert all(s.log.decisions == [] for s in satellites)


async def publish(broker: Broker, topic: str, *payloads: bytes, retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=1, retain=retain)
            await eventually(info.is_published, 3.0, f"published on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


BAD = [b"", b"{not json", b"[]", b'{"site": "hall"}', json.dumps({"site": "x" * 300}).encode()]


async def test_bad_claims_are_logged_and_ignored_and_a_late_claim_changes_nothing(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    loud = {"site": "hall", "wake_id": "h1", "wake_word": "hey_jarvis", "score": 1.0}
    late = json.dumps({**loud, "level_dbfs": 0.0}).encode()  # louder than anything
    await publish(broker, CLAIMS, late, retain=True)  # an old claim, replayed on subscribing

    async def decided_then_a_rival_claims() -> None:
        await eventually(lambda: alone.log.decisions, 3.0, "decided")
        await publish(broker, CLAIMS, late)

    audio = heard_at(-12.0)
    alone = satellite(broker, "kitchen", audio, waits={12: decided_then_a_rival_claims})
    caplog.set_level(logging.WARNING, logger="assistant.mqtt.arbitration")
    async with connected(broker, alone):
        await publish(broker, CLAIMS, *BAD)
        await eventually(lambda: len(caplog.records) == len(BAD), 3.0, "every bad claim logged")
        await run_all(alone)
    assert all("ignored a claim" in r.getMessage() for r in caplog.records)
    assert alone.answered
    (decision,) = alone.log.decisions
    assert (decision.won, decision.verdict) == (True, Verdict.ALONE)
    # the retained one was never heard; the live one was, after the decision
    await eventually(lambda: [c.site for c in alone.log.heard] == ["kitchen", "hall"], 3.0)
    await publish(broker, CLAIMS, b"", retain=True)  # the broker forgets the retained claim


# -- two real `lingling run` processes ------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
LEAD_SECONDS = 3.0
"""Room noise before the wake word: both processes get ready within it."""


def room_wav(path: Path, scene: Scenario, gain_db: float, seed: int) -> Path:
    voice = scene.samples.astype(np.float64) * 10 ** (gain_db / 20)
    heard = voice + noise(scene.samples.size / 16_000, 30.0, seed).astype(np.float64)
    write_wav(path, np.clip(np.round(heard), -32768, 32767).astype(np.int16))
    return path


@pytest.mark.models
def test_two_lingling_processes_hearing_one_voice_answer_once_from_the_nearer(
    tmp_path: Path, models_dir: Path, broker: Broker
) -> None:
    scene = Scenario.build(
        "turn on the kitchen light",
        wake=recording("wyoming_hey_jarvis"),
        lead_seconds=LEAD_SECONDS,
        pause_seconds=0.2,
        trail_seconds=1.0,
    )
    rooms = {"hall": -12.0, "kitchen": 0.0}
    with FakeWhisperServer() as whisper, FakeLlamaServer("OK.") as llama:
        start = time.time()  # both files play from now; each process listens once it is ready
        processes = []
        for index, (site, gain) in enumerate(rooms.items()):
            config = tmp_path / f"{site}.yaml"
            config.write_text(
                f"models_dir: {models_dir}\n"
                "tts: {voice: tone_voice}\n"
                f"stt: {{url: '{whisper.v1_url}'}}\n"
                f"llm: {{url: '{llama.v1_url}', model: tiny}}\n"
                f"mqtt: {{host: {broker.host}, port: {broker.port}, site: {site}, "
                "discovery: false}\n",
                encoding="utf-8",
            )
            wav = room_wav(tmp_path / f"{site}.wav", scene, gain, seed=index)
            command = [sys.executable, "-m", "assistant", "run", "-c", str(config)]
            command += ["--input", str(wav), "--output", str(tmp_path / f"{site}-out.wav")]
            command += [
                "--input-start",
                f"{start:.6f}",
                "--events",
                str(tmp_path / f"{site}.jsonl"),
            ]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT), "LINGLING_MODELS": ""},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        try:
            errors = [process.communicate(timeout=60)[1] for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
    assert [p.returncode for p in processes] == [0, 0], errors
    ended: dict[str, list[str]] = {}
    for site in rooms:
        events = [
            json.loads(line) for line in (tmp_path / f"{site}.jsonl").read_text().splitlines()
        ]
        ended[site] = [e["outcome"] for e in events if e["event"] == "turn"]
        (decision,) = [e for e in events if e["event"] == "arbitration"]
        assert decision["winner"] == "kitchen", (site, decision, errors)
        assert len(decision["rivals"]) == 1  # each weighed the other's claim
    assert ended == {"hall": ["lost"], "kitchen": ["answered"]}
    assert "arbitration: lost wake" in errors[0]  # in the log too
