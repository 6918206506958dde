"""Topic names, the site name and the Home Assistant discovery payload (pure)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from assistant import __version__
from assistant.mqtt.discovery import DEFAULT_INTENTS, Topics, device_config, event_types, site_name

TOPICS = Topics("lingling", "kitchen")


def test_topics() -> None:
    assert TOPICS.availability == "lingling/kitchen/availability"
    assert TOPICS.state == "lingling/kitchen/state"
    assert TOPICS.intent == "lingling/kitchen/intent"
    assert TOPICS.commands == (
        "lingling/kitchen/say",
        "lingling/kitchen/listen",
        "lingling/kitchen/mute/set",
        "lingling/kitchen/cancel",
        "lingling/kitchen/stop",
        "lingling/kitchen/volume/set",
        "lingling/kitchen/wake_word/set",
    )
    assert TOPICS.timers == "lingling/kitchen/timers"
    assert TOPICS.timer == "lingling/kitchen/timer"
    assert TOPICS.discovery == "homeassistant/device/lingling_kitchen/config"
    assert TOPICS.ha_status == "homeassistant/status"
    assert Topics("ll", "hall", "ha").discovery == "ha/device/lingling_hall/config"


@pytest.mark.parametrize(
    ("configured", "hostname", "expected"),
    [
        (None, "Kitchen-Pi.local", "kitchen-pi"),
        (None, "raspberrypi", "raspberrypi"),
        (None, "my host+#/x", "my_host_x"),
        (None, "", "lingling"),
        (None, "...", "lingling"),
        ("Living Room", "ignored", "Living_Room"),
        ("hall/#", "ignored", "hall"),
        ("+", "pi", "pi"),  # nothing usable: the host name
    ],
)
def test_site_name(configured: str | None, hostname: str, expected: str) -> None:
    assert site_name(configured, hostname) == expected


def test_the_default_site_is_this_host() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", site_name())


def test_event_types_start_with_the_default_intents() -> None:
    assert event_types() == list(DEFAULT_INTENTS)
    assert event_types(["PlayMusic", "HassTurnOn", "PlayMusic"]) == [*DEFAULT_INTENTS, "PlayMusic"]


def test_device_config() -> None:
    config = device_config(
        TOPICS,
        ["PlayMusic"],
        wake_words=["alexa", "hey_jarvis"],
        origin_url="https://example.org/lingling",
    )
    json.dumps(config)  # it is what gets published
    assert config["dev"] == {
        "identifiers": ["lingling_kitchen"],
        "name": "Lingling kitchen",
        "manufacturer": "Lingling",
        "model": "Voice assistant",
        "sw_version": __version__,
    }
    assert config["o"] == {
        "name": "Lingling",
        "sw": __version__,
        "url": "https://example.org/lingling",
    }
    components: dict[str, dict[str, Any]] = config["cmps"]
    assert {key: c["p"] for key, c in components.items()} == {
        "state": "sensor",
        "mute": "switch",
        "listen": "button",
        "stop": "button",
        "volume": "number",
        "wake_word": "select",
        "timers": "sensor",
        "say": "notify",
        "transcript": "sensor",
        "response": "sensor",
        "intent": "event",
    }
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(uid.startswith("lingling_kitchen_") for uid in unique_ids)
    for component in components.values():
        assert component["availability_topic"] == "lingling/kitchen/availability"
        assert component["payload_available"] == "online"
        assert component["payload_not_available"] == "offline"

    state = components["state"]
    assert state["state_topic"] == "lingling/kitchen/state"
    assert state["device_class"] == "enum"
    assert state["options"] == [
        "idle",
        "wake",
        "listening",
        "transcribing",
        "thinking",
        "speaking",
        "ringing",
    ]
    mute = components["mute"]
    assert (mute["command_topic"], mute["state_topic"]) == (
        "lingling/kitchen/mute/set",
        "lingling/kitchen/mute",
    )
    assert (mute["payload_on"], mute["payload_off"]) == ("ON", "OFF")
    assert (mute["state_on"], mute["state_off"]) == ("ON", "OFF")
    assert components["listen"]["command_topic"] == "lingling/kitchen/listen"
    assert components["say"]["command_topic"] == "lingling/kitchen/say"
    for key in ("transcript", "response"):
        sensor = components[key]
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == f"lingling/kitchen/{key}"
        assert sensor["value_template"] == "{{ value_json.text[:255] }}"
    intent = components["intent"]
    assert intent["state_topic"] == "lingling/kitchen/intent"
    assert intent["event_types"] == [*DEFAULT_INTENTS, "PlayMusic"]
    assert {"HassTurnOn", "HassNevermind", "HassGetCurrentDate", "HassStartTimer"} <= set(
        intent["event_types"]
    )


def test_device_config_without_an_origin_url() -> None:
    assert "url" not in device_config(TOPICS)["o"]


def test_the_timers_sensor_counts_them_and_lists_them_in_its_attributes() -> None:
    components = device_config(TOPICS)["cmps"]
    timers = components["timers"]
    assert timers["state_topic"] == timers["json_attributes_topic"] == "lingling/kitchen/timers"
    assert timers["value_template"] == "{{ value_json | count }}"
    assert "value_json" in timers["json_attributes_template"]
    stop = components["stop"]
    assert (stop["command_topic"], stop["payload_press"]) == ("lingling/kitchen/stop", "PRESS")


def test_the_wake_word_select_lists_the_models_and_is_left_out_without_any() -> None:
    select = device_config(TOPICS, wake_words=["alexa", "hey_jarvis"])["cmps"]["wake_word"]
    assert select["options"] == ["alexa", "hey_jarvis"]
    assert select["command_topic"] == "lingling/kitchen/wake_word/set"
    assert select["state_topic"] == "lingling/kitchen/wake_word"
    assert "wake_word" not in device_config(TOPICS)["cmps"]  # a select needs options
