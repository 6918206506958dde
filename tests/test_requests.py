"""Requests over MQTT reach the state machine, which decides: the runtime (on fakes) behind the
real bridge, on a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.publish as publish

from assistant.adapters.openwakeword import OpenWakeWord
from assistant.config import Config
from assistant.mqtt.bridge import MqttBridge
from assistant.runtime.runtime import Runtime
from assistant.runtime.wake_words import WakeWordChoice
from tests.support.broker import Broker, Subscriber, eventually
from tests.support.broker import broker_fixture as broker_fixture  # the broker fixture
from tests.support.fakes import (
    EndlessMicrophone,
    FakeSpeaker,
)
from tests.support.models import require_model
from tests.support.rig import runtime_on_fakes

SITE = "hall"
BASE = f"lingling/{SITE}"


@contextlib.asynccontextmanager
async def satellite(
    broker: Broker, wake_words: WakeWordChoice | None = None
) -> AsyncIterator[tuple[Runtime, FakeSpeaker]]:
    """A runtime on silence with its MQTT bridge, connected and in its first state."""
    mqtt = {"host": broker.host, "port": broker.port, "site": SITE}
    config = Config.model_validate({"mqtt": mqtt, "vad": {"no_speech_seconds": 0.5}})
    speaker = FakeSpeaker()
    mic = EndlessMicrophone()
    runtime: Runtime | None = None
    bridge = MqttBridge(
        config.mqtt,
        on_request=lambda request: runtime.request(request) if runtime else None,
        loop=asyncio.get_running_loop(),
        wake_words=wake_words.options if wake_words is not None else (),
    )
    runtime = runtime_on_fakes(
        config,
        microphone=mic,
        speaker=speaker,
        observers=[bridge],
        wake_words=wake_words,
    )
    bridge.start()
    running = asyncio.get_running_loop().create_task(runtime.run())
    try:
        await eventually(lambda: bridge.connected, 5.0, "connected")
        await asyncio.wait_for(runtime.started.wait(), 1)
        yield runtime, speaker
    finally:
        mic.stop()
        await asyncio.wait_for(running, 5)
        await asyncio.wait_for(bridge.stop(), 1)


def send(broker: Broker, topic: str, payload: str) -> None:
    publish.single(topic, payload, qos=1, hostname=broker.host, port=broker.port)


async def test_listen_while_muted_is_refused_at_once_and_the_state_stays_idle(
    broker: Broker,
) -> None:
    async with (
        satellite(broker) as (runtime, speaker),
        Subscriber(broker, f"{BASE}/#") as watcher,
    ):
        await asyncio.to_thread(send, broker, f"{BASE}/mute/set", "ON")
        await eventually(lambda: "ON" in watcher.texts(f"{BASE}/mute", live_only=True))
        await asyncio.to_thread(send, broker, f"{BASE}/listen", "PRESS")
        await eventually(lambda: watcher.received(f"{BASE}/error"), 5.0, "an error")
        (error,) = [m.json() for m in watcher.received(f"{BASE}/error")]
        assert error["code"] == "muted"
        assert error["state"] == "idle"
        assert error["turn"] is None
        assert "muted" in error["message"]
        assert runtime.machine.phase == "idle"
        assert runtime.machine.turn == 0
        # Unmuted, the same request starts a turn: the refusal was the mute's doing.
        await asyncio.to_thread(send, broker, f"{BASE}/mute/set", "OFF")
        await eventually(lambda: "OFF" in watcher.texts(f"{BASE}/mute", live_only=True))
        assert speaker.played == []  # no earcon, not even the error one
        await asyncio.to_thread(send, broker, f"{BASE}/listen", "PRESS")
        await eventually(lambda: "listening" in watcher.texts(f"{BASE}/state"))
    states = [s for s, _ in itertools.groupby(watcher.texts(f"{BASE}/state", live_only=True))]
    assert states[:2] == ["wake", "listening"]  # only after unmuting
    assert len(watcher.received(f"{BASE}/error")) == 1


async def test_timers_are_seen_on_mqtt_and_the_stop_button_ends_the_ring(broker: Broker) -> None:
    async with (
        satellite(broker) as (runtime, speaker),
        Subscriber(broker, f"{BASE}/#") as watcher,
    ):
        runtime.timers.apply("HassStartTimer", {"seconds": 0.5, "name": "tea"})
        await eventually(lambda: "ringing" in watcher.texts(f"{BASE}/state"), 5.0, "ringing")
        events = [m.json() for m in watcher.received(f"{BASE}/timer")]
        assert [(e["event"], e["name"]) for e in events] == [
            ("started", "tea"),
            ("finished", "tea"),
        ]
        lists = [m.json() for m in watcher.received(f"{BASE}/timers")]
        assert lists[0] == []  # at start: no timers
        assert [t["name"] for t in lists[1]] == ["tea"]
        assert lists[-1] == []  # retained: what Home Assistant's timers sensor shows
        await asyncio.to_thread(send, broker, f"{BASE}/stop", "PRESS")
        await eventually(lambda: watcher.texts(f"{BASE}/state")[-1:] == ["idle"], 5.0, "idle")
    assert speaker.stops >= 1


async def test_the_volume_is_set_from_home_assistant_and_echoed(broker: Broker) -> None:
    async with (
        satellite(broker) as (runtime, _),
        Subscriber(broker, f"{BASE}/volume") as watcher,
    ):
        await eventually(lambda: watcher.texts(f"{BASE}/volume")[-1:] == ["100"])  # at start
        await asyncio.to_thread(send, broker, f"{BASE}/volume/set", "40.0")
        await eventually(lambda: watcher.texts(f"{BASE}/volume")[-1:] == ["40"], 5.0, "40")
        assert runtime.volume.level == 40
        await asyncio.to_thread(send, broker, f"{BASE}/volume/set", "loud")  # logged, ignored
        await asyncio.to_thread(send, broker, f"{BASE}/volume/set", "10")
        await eventually(lambda: watcher.texts(f"{BASE}/volume")[-1:] == ["10"], 5.0, "10")


async def test_the_wake_word_is_chosen_from_home_assistant_kept_and_echoed(
    broker: Broker, tmp_path: Path
) -> None:
    models_dir = require_model("openwakeword/hey_jarvis_v0.1.onnx").parent.parent
    config = Config()  # hey_jarvis
    kept = tmp_path / "wake_word.json"
    choice = WakeWordChoice(config.wake, models_dir, OpenWakeWord, state_file=kept)
    discovery = f"homeassistant/device/lingling_{SITE}/config"
    async with (
        Subscriber(broker, discovery) as announced,
        satellite(broker, choice) as (runtime, _),
        Subscriber(broker, f"{BASE}/wake_word") as watcher,
    ):
        await eventually(lambda: watcher.texts(f"{BASE}/wake_word")[-1:] == ["hey_jarvis"])
        await eventually(lambda: bool(announced.received(discovery)), 5.0, "discovery")
        select = announced.received(discovery)[-1].json()["cmps"]["wake_word"]
        assert select["p"] == "select"
        assert select["options"] == ["alexa", "hey_jarvis", "hey_mycroft"]
        assert select["command_topic"] == f"{BASE}/wake_word/set"
        listening = runtime.listener.wake_word

        await asyncio.to_thread(send, broker, f"{BASE}/wake_word/set", "alexa")
        await eventually(lambda: watcher.texts(f"{BASE}/wake_word")[-1:] == ["alexa"], 5.0)
        now = runtime.listener.wake_word
        assert now is not listening  # applied without a restart
        assert isinstance(now, OpenWakeWord)
        assert now.wake_words == ["alexa"]

        for bad in ("melspectrogram", "ok_google", ""):  # logged and ignored
            await asyncio.to_thread(send, broker, f"{BASE}/wake_word/set", bad)
        await asyncio.to_thread(send, broker, f"{BASE}/wake_word/set", "hey_mycroft")
        await eventually(lambda: watcher.texts(f"{BASE}/wake_word")[-1:] == ["hey_mycroft"], 5.0)
        assert "melspectrogram" not in watcher.texts(f"{BASE}/wake_word")

    # kept: the next start listens for the wake word chosen
    again = WakeWordChoice(config.wake, models_dir, OpenWakeWord, state_file=kept)
    assert again.selected == "hey_mycroft"
    assert [word.model for word in again.config().words()] == ["hey_mycroft"]
