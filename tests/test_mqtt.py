"""The MQTT bridge against a real mosquitto (tests/support/broker.py), one broker per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from assistant.config import MqttConfig, MqttTlsConfig
from assistant.core.commands import Outcome, Phase
from assistant.errors import ConfigError
from assistant.mqtt.bridge import MqttBridge
from assistant.mqtt.requests import (
    CancelRequested,
    ListenRequested,
    MuteRequested,
    RemoteRequest,
    SayRequested,
    StopRequested,
    WakeWordToggled,
)
from assistant.runtime.observer import RecognizedIntent, TurnRecord
from tests.support.broker import (
    Broker,
    Subscriber,
    TlsFiles,
    broker_fixture,  # noqa: F401 (the broker fixture)
    eventually,
    make_tls_files,
    running_broker,
)

ROOT = Path(__file__).resolve().parent.parent
SITE = "test"
BASE = f"lingling/{SITE}"
WHOLE_TURN = ["idle", "wake", "listening", "transcribing", "thinking", "speaking", "idle"]
LIGHT_ON = RecognizedIntent(
    name="HassTurnOn",
    slots={"name": "kitchen light"},
    text="turn on the kitchen light",
    source="local",
)


class Requests:
    """``on_request``: what arrived, and on which thread."""

    def __init__(self) -> None:
        self.items: list[RemoteRequest] = []
        self.threads: set[int] = set()

    def __call__(self, request: RemoteRequest) -> None:
        self.items.append(request)
        self.threads.add(threading.get_ident())


def mqtt_config(broker: Broker, **changes: Any) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, site=SITE, **changes)


@contextlib.asynccontextmanager
async def running_bridge(
    config: MqttConfig, *, connect: bool = True, **options: Any
) -> AsyncIterator[tuple[MqttBridge, Requests]]:
    requests = Requests()
    bridge = MqttBridge(
        config,
        on_request=requests,
        loop=asyncio.get_running_loop(),
        rediscovery_delay_seconds=0.05,
        **options,
    )
    bridge.start()
    try:
        if connect:
            await eventually(lambda: bridge.connected, 5.0, "connected")
        yield bridge, requests
    finally:
        await asyncio.wait_for(bridge.stop(), 1)
        # stop() does not wait for paho's thread if it sleeps before a retry; let it end here,
        # so that what it still holds goes during this test.
        await eventually(lambda: not paho_threads(), 3.0, "paho's thread ended")


async def settled(broker: Broker, last: str = f"{BASE}/mute") -> None:
    """Wait until the bridge's messages up to one on ``last`` have reached the broker.

    The default is the last message the bridge publishes on connecting.
    """
    async with Subscriber(broker, last) as probe:
        await eventually(probe.received, 3.0, f"{last} published")


def paho_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"paho-mqtt-client-lingling-{SITE}"]


def begin_turn(bridge: MqttBridge, turn: int = 1) -> None:
    """What the runtime calls from idle up to the transcript, in its order."""
    bridge.wake_detected(turn, "hey_jarvis", 0.93)
    bridge.state_entered(Phase.WAKE, turn, 1.0)
    bridge.state_entered(Phase.LISTENING, turn, 1.2)
    bridge.state_entered(Phase.TRANSCRIBING, turn, 2.5)


def end_turn(bridge: MqttBridge, turn: int = 1) -> None:
    bridge.transcript_ready(turn, LIGHT_ON.text)
    bridge.intent_recognized(turn, LIGHT_ON)
    bridge.state_entered(Phase.THINKING, turn, 2.9)
    bridge.state_entered(Phase.SPEAKING, turn, 3.0)
    bridge.response_ready(turn, "The kitchen light is on.")
    bridge.state_entered(Phase.IDLE, turn, 4.0)
    record = TurnRecord(turn=turn, wake_word="hey_jarvis", outcome=Outcome.ANSWERED)
    record.marks.update(wake=0.0, listening=0.2, end=3.0)
    bridge.turn_finished(record)


async def test_a_whole_turn_as_a_subscriber_sees_it(broker: Broker) -> None:
    async with (
        running_bridge(mqtt_config(broker)) as (bridge, _),
        Subscriber(broker, f"{BASE}/#") as sub,
    ):
        bridge.state_entered(Phase.IDLE, 0, 0.0)
        begin_turn(bridge)
        end_turn(bridge)
        await eventually(lambda: sub.received(f"{BASE}/timings"))
        assert sub.texts(f"{BASE}/state", live_only=True) == WHOLE_TURN
        events = {"wake", "transcript", "intent", "response", "timings"}
        topics = [m.topic.removeprefix(f"{BASE}/") for m in sub.received()]
        assert [t for t in topics if t in events] == [
            "wake",
            "transcript",
            "intent",
            "response",
            "timings",
        ]
        (wake,) = sub.received(f"{BASE}/wake")
        assert wake.json() == {"wake_word": "hey_jarvis", "score": 0.93, "turn": 1}
        (intent,) = sub.received(f"{BASE}/intent")
        assert (intent.qos, intent.retain) == (1, False)
        assert intent.json() == {
            "event_type": "HassTurnOn",
            "intent": "HassTurnOn",
            "slots": {"name": "kitchen light"},
            "text": "turn on the kitchen light",
            "source": "local",
            "turn": 1,
        }
        assert sub.received(f"{BASE}/transcript")[-1].json() == {
            "text": "turn on the kitchen light",
            "turn": 1,
        }
        assert sub.received(f"{BASE}/response")[-1].json()["text"] == "The kitchen light is on."
        timings = sub.received(f"{BASE}/timings")[0].json()
        assert timings == {
            "turn": 1,
            "outcome": "answered",
            "wake_to_listening": 200.0,
            "total": 3000.0,
        }
        bridge.error_reported(2, "stt", "server unreachable", Phase.TRANSCRIBING)
        await eventually(lambda: sub.received(f"{BASE}/error"))
        assert sub.received(f"{BASE}/error")[0].json() == {
            "code": "stt",
            "message": "server unreachable",
            "state": "transcribing",
            "turn": 2,
        }


async def test_a_late_subscriber_sees_the_retained_state_and_availability(broker: Broker) -> None:
    async with (
        running_bridge(mqtt_config(broker)) as (bridge, _),
        Subscriber(broker, f"{BASE}/mute") as probe,
    ):
        begin_turn(bridge)
        bridge.transcript_ready(1, "what time is it")
        bridge.state_entered(Phase.THINKING, 1, 3.0)
        bridge.mute_changed(True)
        bridge.mute_changed(False)
        bridge.mute_changed(True)
        # Everything has reached the broker once the last mute has come round.
        await eventually(lambda: probe.texts(f"{BASE}/mute")[-3:] == ["ON", "OFF", "ON"])
        async with Subscriber(broker, f"{BASE}/#") as sub:
            await eventually(lambda: len(sub.received()) >= 4)
            assert all(m.retain for m in sub.received())
            assert sub.texts(f"{BASE}/availability") == ["online"]
            assert sub.texts(f"{BASE}/state") == ["thinking"]
            assert sub.texts(f"{BASE}/mute") == ["ON"]
            assert json.loads(sub.texts(f"{BASE}/transcript")[0])["text"] == "what time is it"
            assert not sub.received(f"{BASE}/wake")  # events are not retained
    async with Subscriber(broker, f"{BASE}/availability") as sub:  # stopped: offline, retained
        await eventually(lambda: sub.received())
        assert [(m.text, m.retain) for m in sub.received()] == [("offline", True)]


CHILD = """
import asyncio, sys
from assistant.core.commands import Phase
from assistant.config import MqttConfig
from assistant.mqtt.bridge import MqttBridge

async def main() -> None:
    config = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), site="test", discovery=False)
    bridge = MqttBridge(config, on_request=print, loop=asyncio.get_running_loop())
    bridge.start()
    while not bridge.connected:
        await asyncio.sleep(0.01)
    bridge.state_entered(Phase.LISTENING, 1, 0.0)
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_last_will_says_offline_when_the_process_is_killed(broker: Broker) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(broker.port),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"ready\n"
        async with Subscriber(broker, f"{BASE}/#") as sub:
            await eventually(lambda: sub.texts(f"{BASE}/state") == ["listening"])
            assert sub.texts(f"{BASE}/availability") == ["online"]
            child.kill()  # SIGKILL: no goodbye, only the will
            await asyncio.wait_for(child.communicate(), 5)
            await eventually(lambda: sub.texts(f"{BASE}/availability") == ["online", "offline"])
    finally:
        if child.returncode is None:
            child.kill()
            await asyncio.wait_for(child.communicate(), 5)
    async with Subscriber(broker, f"{BASE}/#") as late:
        await eventually(lambda: len(late.received()) >= 3)
        assert [(m.text, m.retain) for m in late.received(f"{BASE}/availability")] == [
            ("offline", True)
        ]
        assert late.texts(f"{BASE}/state") == ["listening"]


async def publish(broker: Broker, topic: str, payload: bytes | str, retain: bool = False) -> None:
    """Publish once (QoS 1) from a short-lived client and wait for the broker's ack."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        await eventually(info.is_published, 3.0, f"published on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


async def test_every_command_topic_reaches_on_request_on_the_loop(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    await publish(broker, f"{BASE}/say", "stale", retain=True)  # replayed on subscribing: ignored
    async with running_bridge(mqtt_config(broker, max_payload_bytes=64)) as (_, requests):
        await eventually(lambda: "retained" in caplog.text)
        caplog.clear()
        commands: list[tuple[str, str | bytes]] = [
            ("say", "Dinner is ready"),
            ("say", '{"text": "  Time for bed  "}'),
            ("listen", "PRESS"),
            ("mute/set", "ON"),
            ("mute/set", "off"),
            ("cancel", ""),
            ("stop", "PRESS"),
        ]
        for topic, payload in commands:
            await publish(broker, f"{BASE}/{topic}", payload)
        expected = [
            SayRequested("Dinner is ready"),
            SayRequested("Time for bed"),
            ListenRequested(),
            MuteRequested(muted=True),
            MuteRequested(muted=False),
            CancelRequested(),
            StopRequested(),
        ]
        await eventually(lambda: len(requests.items) == len(expected))
        assert requests.items == expected
        assert requests.threads == {threading.get_ident()}  # the loop's thread, not paho's

        requests.items.clear()
        malformed: list[tuple[str, str | bytes]] = [
            ("say", ""),
            ("say", '{"text": 3}'),
            ("say", "{not json"),
            ("mute/set", "maybe"),
            ("mute/set", b"\xff\xfe"),
            ("say", "x" * 1000),
        ]
        with caplog.at_level(logging.WARNING, logger="assistant.mqtt.bridge"):
            for topic, payload in malformed:
                await publish(broker, f"{BASE}/{topic}", payload)
            await publish(broker, f"{BASE}/listen", "PRESS")
            await eventually(lambda: requests.items == [ListenRequested()])
        warnings = [r.getMessage() for r in caplog.records if r.name == "assistant.mqtt.bridge"]
        assert len(warnings) == 6, warnings
        assert "over the 64 limit" in warnings[5]
        assert "(1000 bytes)" in warnings[5]
        assert len(warnings[5]) < 250  # the payload is cut short in the log


async def test_discovery_is_announced_and_repeated_when_home_assistant_comes_online(
    broker: Broker,
) -> None:
    config = mqtt_config(broker)
    topic = "homeassistant/device/lingling_test/config"
    async with running_bridge(config, intent_names=["PlayMusic"]) as (bridge, _):
        bridge.state_entered(Phase.IDLE, 0, 0.0)
        await settled(broker, f"{BASE}/state")
        async with Subscriber(broker, "homeassistant/#", f"{BASE}/state") as sub:
            await eventually(lambda: sub.received(topic))
            (announced,) = sub.received(topic)
            assert announced.retain
            device = announced.json()
            assert device["dev"]["identifiers"] == ["lingling_test"]
            assert set(device["cmps"]) == {
                "state",
                "mute",
                "listen",
                "stop",
                "volume",
                "timers",
                "say",
                "transcript",
                "response",
                "intent",
            }
            assert device["cmps"]["intent"]["event_types"][-1] == "PlayMusic"
            assert device["cmps"]["intent"]["state_topic"] == f"{BASE}/intent"

            sub.clear()
            await publish(broker, "homeassistant/status", "online")
            await eventually(lambda: sub.received(f"{BASE}/state"))
            order = [m.topic for m in sub.received() if m.topic != "homeassistant/status"]
            assert order == [topic, f"{BASE}/state"]  # discovery first, then the states
            assert sub.received(topic)[0].json() == device

            sub.clear()
            await publish(broker, "homeassistant/status", "offline")
            await asyncio.sleep(0.2)
            assert not sub.received(topic)


async def test_discovery_off_removes_an_announced_device(broker: Broker) -> None:
    topic = "homeassistant/device/lingling_test/config"
    async with running_bridge(mqtt_config(broker)):
        pass
    async with running_bridge(mqtt_config(broker, discovery=False)):
        async with Subscriber(broker, topic) as probe:  # sees the empty config if it came late
            await eventually(lambda: not probe.received() or probe.received()[-1].payload == b"")
        async with Subscriber(broker, "homeassistant/#") as late:
            await asyncio.sleep(0.2)
            assert not late.received(topic)  # the retained announcement is gone


async def test_a_broker_restart_mid_turn_loses_no_intent(tmp_path: Path) -> None:
    # The witness has a persistent session in a persistent broker: whatever reaches the broker
    # after its restart is kept for the witness even before the witness itself is back.
    with running_broker(tmp_path / "broker", persistence=True) as broker:
        witness = Subscriber(broker, f"{BASE}/#", client_id="witness", clean_session=False)
        async with running_bridge(mqtt_config(broker)) as (bridge, _), witness:
            begin_turn(bridge)
            await eventually(lambda: "transcribing" in witness.texts(f"{BASE}/state"))
            broker.stop()
            await eventually(lambda: not bridge.connected, 3.0, "disconnected")
            witness.clear()
            # The broker is away: these are queued by paho.
            bridge.transcript_ready(1, LIGHT_ON.text)
            for turn in (1, 2, 3):
                bridge.intent_recognized(turn, LIGHT_ON)
            bridge.state_entered(Phase.THINKING, 1, 3.0)
            bridge.state_entered(Phase.SPEAKING, 1, 3.1)
            assert not bridge.connected
            broker.start()
            await eventually(lambda: bridge.connected, 5.0, "reconnected")
            await eventually(lambda: len(witness.received(f"{BASE}/intent")) >= 3, 5.0)
            intents = [m.json()["turn"] for m in witness.received(f"{BASE}/intent")]
            assert intents == [1, 2, 3]
            assert "online" in witness.texts(f"{BASE}/availability")  # said again
            assert witness.texts(f"{BASE}/state")[-1] == "speaking"
            async with Subscriber(broker, f"{BASE}/state", f"{BASE}/transcript") as late:
                await eventually(lambda: len(late.received()) == 2)
                assert late.texts(f"{BASE}/state") == ["speaking"]
            # The turn goes on as if nothing had happened.
            bridge.state_entered(Phase.IDLE, 1, 4.0)
            await eventually(lambda: witness.texts(f"{BASE}/state")[-1] == "idle")


async def test_states_are_published_again_after_a_broker_restart(broker: Broker) -> None:
    # The broker keeps nothing (persistence false): what a late subscriber sees after the restart
    # was published again by the bridge when it reconnected.
    async with running_bridge(mqtt_config(broker)) as (bridge, _):
        bridge.state_entered(Phase.LISTENING, 1, 0.0)
        bridge.response_ready(0, "Good morning.")
        broker.stop()
        await eventually(lambda: not bridge.connected, 3.0, "disconnected")
        broker.start()
        await eventually(lambda: bridge.connected, 5.0, "reconnected")
        async with Subscriber(broker, f"{BASE}/response") as probe:  # the last one published
            await eventually(lambda: probe.received(), 3.0, "published again")
        async with Subscriber(broker, f"{BASE}/#", "homeassistant/#") as late:
            await eventually(lambda: len(late.received()) >= 5)
            assert all(m.retain for m in late.received())
            assert late.texts(f"{BASE}/availability") == ["online"]
            assert late.texts(f"{BASE}/state") == ["listening"]
            assert late.texts(f"{BASE}/mute") == ["OFF"]
            assert json.loads(late.texts(f"{BASE}/response")[0])["text"] == "Good morning."
            assert late.received("homeassistant/device/lingling_test/config")


async def test_hermes_topics(broker: Broker) -> None:
    async with (
        running_bridge(mqtt_config(broker, hermes=True)) as (bridge, requests),
        Subscriber(broker, "hermes/#") as sub,
    ):
        begin_turn(bridge)
        end_turn(bridge)
        bridge.wake_detected(2, None, None)  # asked to listen: no hotword
        bridge.state_entered(Phase.TRANSCRIBING, 2, 5.0)
        bridge.transcript_ready(2, "sing a song")
        bridge.intent_not_recognized(2, "sing a song")
        record = TurnRecord(turn=2, outcome=Outcome.FAILED, error="timeout: no progress")
        bridge.turn_finished(record)
        await eventually(lambda: len(sub.received("hermes/dialogueManager/sessionEnded")) == 2)
        topics = [m.topic for m in sub.received()]
        assert topics == [
            "hermes/hotword/hey_jarvis/detected",
            "hermes/dialogueManager/sessionStarted",
            "hermes/asr/textCaptured",
            "hermes/intent/HassTurnOn",
            "hermes/dialogueManager/sessionEnded",
            "hermes/dialogueManager/sessionStarted",
            "hermes/asr/textCaptured",
            "hermes/nlu/intentNotRecognized",
            "hermes/dialogueManager/sessionEnded",
        ]
        messages = [m.json() for m in sub.received()]
        assert all(m["siteId"] == SITE for m in messages)
        first, second = messages[1]["sessionId"], messages[5]["sessionId"]
        assert first != second
        assert {m["sessionId"] for m in messages[:5]} == {first}
        assert messages[3]["slots"][0]["slotName"] == "name"
        assert messages[3]["slots"][0]["value"] == {"kind": "Unknown", "value": "kitchen light"}
        assert messages[4]["termination"] == {"reason": "nominal"}
        assert messages[8]["termination"] == {"reason": "timeout"}

        sub.clear()
        await publish(
            broker,
            "hermes/tts/say",
            json.dumps({"text": "Hello", "id": "abc", "siteId": SITE, "sessionId": "s1"}),
        )
        await publish(broker, "hermes/tts/say", json.dumps({"text": "Hi", "siteId": "other"}))
        await publish(broker, "hermes/hotword/toggleOff", json.dumps({"siteId": SITE}))
        await publish(broker, "hermes/hotword/toggleOn", json.dumps({"siteId": SITE}))
        await eventually(lambda: len(requests.items) == 3)
        assert requests.items == [
            SayRequested("Hello", request_id="abc", session_id="s1"),
            WakeWordToggled(enabled=False),
            WakeWordToggled(enabled=True),
        ]
        bridge.announcement_finished(None)  # a say from lingling/…/say: nothing for Hermes
        bridge.announcement_finished("abc")
        await eventually(lambda: sub.received("hermes/tts/sayFinished"))
        assert sub.received("hermes/tts/sayFinished")[0].json() == {
            "id": "abc",
            "siteId": SITE,
            "sessionId": "s1",
        }


async def test_username_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-Pa55"
    with running_broker(tmp_path / "broker", passwords={"lingling": secret}) as broker:
        config = mqtt_config(broker, username="lingling", password_env="TEST_MQTT_PASSWORD")
        async with running_bridge(config, env={"TEST_MQTT_PASSWORD": secret}) as (bridge, _):
            assert bridge.connected
            assert secret not in repr(bridge)
        caplog.clear()
        wrong = {"TEST_MQTT_PASSWORD": "wrong"}
        async with running_bridge(config, env=wrong, connect=False) as (bridge, _):
            await eventually(lambda: caplog.records, 3.0, "a warning")
            assert not bridge.connected
        refusals = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(refusals) == 1
        assert "refused" in refusals[0].getMessage()
        assert secret not in caplog.text
        assert "wrong" not in caplog.text


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


async def test_tls_with_a_private_certificate_authority(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    files = tls_files
    with running_broker(tmp_path / "broker", tls=files) as broker:
        config = mqtt_config(broker, tls=MqttTlsConfig(ca_file=files.ca_file))
        async with (
            running_bridge(config) as (bridge, _),
            Subscriber(broker, f"{BASE}/state", ca_file=files.ca_file) as sub,
        ):
            bridge.state_entered(Phase.LISTENING, 1, 0.0)
            await eventually(lambda: sub.texts(f"{BASE}/state") == ["listening"])


# paho 2.2 does not close the TLS socket when the handshake fails (Client._ssl_wrap_socket).
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
async def test_tls_refuses_a_broker_it_does_not_trust(
    tmp_path: Path, tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    files = tls_files
    with running_broker(tmp_path / "broker", tls=files) as broker:
        config = mqtt_config(broker, tls=MqttTlsConfig())  # the system's CAs only
        async with running_bridge(config, connect=False) as (bridge, _):
            await eventually(lambda: "unreachable" in caplog.text)
            await asyncio.sleep(0.2)
            assert not bridge.connected


async def test_without_a_broker_it_works_on_warns_once_and_connects_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assistant.mqtt.bridge")
    broker = Broker(tmp_path / "broker")  # not started yet
    config = mqtt_config(broker, reconnect_max_seconds=1)
    async with running_bridge(config, connect=False) as (bridge, _):
        bridge.state_entered(Phase.IDLE, 0, 0.0)
        begin_turn(bridge)  # the hooks only queue
        await asyncio.sleep(1.3)  # two attempts: at once and after 1 s
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "unreachable" in warnings[0].getMessage()
        broker.start()
        try:
            await eventually(lambda: bridge.connected, 5.0, "connected")
            async with Subscriber(broker, f"{BASE}/state") as sub:
                # what was queued while away arrives (the retained state, then any still queued)
                await eventually(lambda: sub.texts(f"{BASE}/state")[-1:] == ["transcribing"])
            assert any("connected" in r.getMessage() for r in caplog.records)
        finally:
            await asyncio.wait_for(bridge.stop(), 1)
            broker.stop()


async def test_stop_returns_and_pahos_thread_ends_with_or_without_a_broker(
    broker: Broker, tmp_path: Path
) -> None:
    for config in (mqtt_config(broker), mqtt_config(Broker(tmp_path / "none"))):
        bridge = MqttBridge(config, on_request=print, loop=asyncio.get_running_loop())
        bridge.start()
        await asyncio.sleep(0.2)  # connected, or waiting to try again
        await asyncio.wait_for(bridge.stop(), 1)
        assert not bridge.connected
        await eventually(lambda: not paho_threads(), 3.0, "paho's thread ended")


# -- fuzzing ----------------------------------------------------------------------------------

COMMAND_TOPICS = [
    f"{BASE}/{c}" for c in ("say", "listen", "mute/set", "cancel", "stop", "volume/set")
] + [
    "hermes/tts/say",
    "hermes/hotword/toggleOn",
    "hermes/hotword/toggleOff",
    "homeassistant/status",
]
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.dictionaries(
        st.sampled_from(["text", "siteId", "id", "sessionId"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.just(SITE)),
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=300, deadline=None, database=None)
@given(topic=st.sampled_from(COMMAND_TOPICS), payload=PAYLOADS, retain=st.booleans())
def test_fuzzed_messages_never_escape_into_pahos_thread(
    topic: str, payload: bytes, retain: bool
) -> None:
    loop = asyncio.new_event_loop()
    try:
        requests = Requests()
        config = MqttConfig(site=SITE, hermes=True, max_payload_bytes=256)
        bridge = MqttBridge(config, on_request=requests, loop=loop)  # never started
        message = mqtt.MQTTMessage(topic=topic.encode())
        message.payload = payload
        message.retain = retain
        assert bridge.client.on_message is not None
        bridge.client.on_message(bridge.client, None, message)  # as paho's thread calls it
        loop.run_until_complete(asyncio.sleep(0))
        assert len(requests.items) <= 1
    finally:
        loop.close()


def test_fuzzed_commands_through_a_live_bridge(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # The bridge's loop runs on its own thread so that hypothesis (synchronous) can wait on it.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    delivered: queue.Queue[RemoteRequest] = queue.Queue()
    config = mqtt_config(broker, hermes=True, max_payload_bytes=256)
    bridge = MqttBridge(config, on_request=delivered.put, loop=loop)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2)

    @settings(max_examples=60, deadline=None, database=None)
    @given(topic=st.sampled_from(COMMAND_TOPICS), payload=PAYLOADS)
    def check(topic: str, payload: bytes) -> None:
        sender.publish(topic, payload, qos=1).wait_for_publish(2)
        sender.publish(f"{BASE}/say", "sentinel", qos=1).wait_for_publish(2)
        while (request := delivered.get(timeout=2)) != SayRequested("sentinel"):
            assert isinstance(request, RemoteRequest)
        assert bridge.connected

    try:
        bridge.start()
        deadline = time.monotonic() + 5
        while not bridge.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.connected
        sender.connect(broker.host, broker.port)
        sender.loop_start()
        check()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        sender.disconnect()
        sender.loop_stop()
        asyncio.run_coroutine_threadsafe(bridge.stop(), loop).result(2)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2)
        loop.close()


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        config = MqttConfig(tls=MqttTlsConfig(ca_file=tmp_path / "missing.crt"))
        with pytest.raises(ConfigError, match=r"^mqtt\.tls: "):
            MqttBridge(config, on_request=print, loop=loop)
    finally:
        loop.close()


def test_the_client_comes_from_the_factory_with_the_site_in_its_id() -> None:
    loop = asyncio.new_event_loop()
    made: list[str] = []

    def factory(client_id: str) -> mqtt.Client:
        made.append(client_id)
        return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)

    try:
        bridge = MqttBridge(
            MqttConfig(site="Living Room"), on_request=print, loop=loop, client_factory=factory
        )
        assert made == ["lingling-Living_Room"]
        assert bridge.topics.base == "lingling/Living_Room"
        assert repr(bridge) == "MqttBridge(site='Living_Room', broker=127.0.0.1:1883)"
    finally:
        loop.close()
