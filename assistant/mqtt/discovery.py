"""MQTT topic names and the Home Assistant discovery payload (pure: no I/O).

Lingling appears in Home Assistant as one device, announced with device-based discovery
(``<discovery_prefix>/device/lingling_<site>/config``, Home Assistant 2024.11 and later).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from assistant import __version__
from assistant.core.commands import Phase

ONLINE: Final = "online"
OFFLINE: Final = "offline"
MUTE_ON: Final = "ON"
MUTE_OFF: Final = "OFF"
LISTEN_PRESS: Final = "PRESS"
STOP_PRESS: Final = "PRESS"

# Intents Lingling ships with (intents/*.yaml); the intent event entity accepts these at least.
DEFAULT_INTENTS: Final = (
    "HassTurnOn",
    "HassTurnOff",
    "HassLightSet",
    "HassStartTimer",
    "HassCancelTimer",
    "HassCancelAllTimers",
    "HassTimerStatus",
    "HassIncreaseTimer",
    "HassDecreaseTimer",
    "HassPauseTimer",
    "HassUnpauseTimer",
    "HassSetVolume",
    "HassSetVolumeRelative",
    "HassGetCurrentTime",
    "HassGetCurrentDate",
    "HassNevermind",
)
HA_STATE_MAX_CHARS: Final = 255
ORIGIN_NAME: Final = "Lingling"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize(name: str) -> str:
    """``name`` made safe for a topic level and a Home Assistant id: ``[A-Za-z0-9_-]``."""
    return _UNSAFE.sub("_", name).strip("_-")


def site_name(configured: str | None = None, hostname: str | None = None) -> str:
    """The site: ``configured`` if set, else this machine's short host name, both sanitized."""
    if configured is not None and sanitize(configured):
        return sanitize(configured)
    host = socket.gethostname() if hostname is None else hostname
    return sanitize(host.split(".", 1)[0].lower()) or "lingling"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic Lingling publishes or obeys under ``<prefix>/<site>``."""

    prefix: str
    site: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    # published
    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def wake(self) -> str:
        return f"{self.base}/wake"

    @property
    def transcript(self) -> str:
        return f"{self.base}/transcript"

    @property
    def intent(self) -> str:
        return f"{self.base}/intent"

    @property
    def response(self) -> str:
        return f"{self.base}/response"

    @property
    def timings(self) -> str:
        return f"{self.base}/timings"

    @property
    def error(self) -> str:
        return f"{self.base}/error"

    @property
    def mute(self) -> str:
        return f"{self.base}/mute"

    @property
    def timers(self) -> str:
        """Retained: the timers as they stand (a JSON list)."""
        return f"{self.base}/timers"

    @property
    def timer(self) -> str:
        """What just happened to a timer: started, updated, cancelled, paused, resumed, finished."""
        return f"{self.base}/timer"

    # obeyed
    @property
    def say(self) -> str:
        return f"{self.base}/say"

    @property
    def listen(self) -> str:
        return f"{self.base}/listen"

    @property
    def mute_set(self) -> str:
        return f"{self.base}/mute/set"

    @property
    def cancel(self) -> str:
        return f"{self.base}/cancel"

    @property
    def stop(self) -> str:
        return f"{self.base}/stop"

    @property
    def volume(self) -> str:
        """Retained: the output volume, 0-100."""
        return f"{self.base}/volume"

    @property
    def volume_set(self) -> str:
        return f"{self.base}/volume/set"

    @property
    def wake_word(self) -> str:
        """Retained: the wake word listened for."""
        return f"{self.base}/wake_word"

    @property
    def wake_word_set(self) -> str:
        return f"{self.base}/wake_word/set"

    @property
    def commands(self) -> tuple[str, ...]:
        return (
            self.say,
            self.listen,
            self.mute_set,
            self.cancel,
            self.stop,
            self.volume_set,
            self.wake_word_set,
        )

    # Home Assistant
    @property
    def device_id(self) -> str:
        return f"lingling_{self.site}"

    @property
    def discovery(self) -> str:
        return f"{self.discovery_prefix}/device/{self.device_id}/config"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"


def event_types(intent_names: Sequence[str] = ()) -> list[str]:
    """The default intents followed by ``intent_names``, without repeats."""
    return list(dict.fromkeys([*DEFAULT_INTENTS, *intent_names]))


def device_config(
    topics: Topics,
    intent_names: Sequence[str] = (),
    *,
    wake_words: Sequence[str] = (),
    version: str = __version__,
    origin_url: str | None = None,
) -> dict[str, Any]:
    """The retained payload for ``topics.discovery``: the device and all its entities.

    ``origin_url`` is the support address Home Assistant shows for the origin (left out if None);
    ``wake_words`` are the options of the wake word select (no select without them).
    """
    uid = topics.device_id
    availability = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
    }

    def component(platform: str, key: str, name: str, **options: Any) -> dict[str, Any]:
        return {"p": platform, "name": name, "unique_id": f"{uid}_{key}", **availability, **options}

    def long_text(key: str, name: str, topic: str, icon: str) -> dict[str, Any]:
        # A sensor's state may hold 255 characters; the whole text is the "text" attribute.
        return component(
            "sensor",
            key,
            name,
            state_topic=topic,
            value_template=f"{{{{ value_json.text[:{HA_STATE_MAX_CHARS}] }}}}",
            json_attributes_topic=topic,
            icon=icon,
        )

    components = {
        "state": component(
            "sensor",
            "state",
            "State",
            state_topic=topics.state,
            device_class="enum",
            options=[str(phase) for phase in Phase],
            icon="mdi:account-voice",
        ),
        "mute": component(
            "switch",
            "mute",
            "Mute",
            command_topic=topics.mute_set,
            state_topic=topics.mute,
            payload_on=MUTE_ON,
            payload_off=MUTE_OFF,
            state_on=MUTE_ON,
            state_off=MUTE_OFF,
            qos=1,
            icon="mdi:microphone-off",
        ),
        "listen": component(
            "button",
            "listen",
            "Listen",
            command_topic=topics.listen,
            payload_press=LISTEN_PRESS,
            qos=1,
            icon="mdi:microphone-message",
        ),
        "stop": component(
            "button",
            "stop",
            "Stop",
            command_topic=topics.stop,
            payload_press=STOP_PRESS,
            qos=1,
            icon="mdi:alarm-off",
        ),
        "volume": component(
            "number",
            "volume",
            "Volume",
            command_topic=topics.volume_set,
            state_topic=topics.volume,
            min=0,
            max=100,
            step=1,
            mode="slider",
            unit_of_measurement="%",
            qos=1,
            icon="mdi:volume-high",
        ),
        "wake_word": component(
            "select",
            "wake_word",
            "Wake word",
            command_topic=topics.wake_word_set,
            state_topic=topics.wake_word,
            options=list(wake_words),
            qos=1,
            icon="mdi:account-voice",
        ),
        "timers": component(
            "sensor",
            "timers",
            "Timers",
            state_topic=topics.timers,
            value_template="{{ value_json | count }}",
            json_attributes_topic=topics.timers,
            json_attributes_template="{{ {'timers': value_json} | tojson }}",
            icon="mdi:timer-outline",
        ),
        "say": component(
            "notify",
            "say",
            "Say",
            command_topic=topics.say,
            qos=1,
            icon="mdi:bullhorn",
        ),
        "transcript": long_text(
            "transcript", "Last transcript", topics.transcript, "mdi:text-recognition"
        ),
        "response": long_text("response", "Last response", topics.response, "mdi:message-reply"),
        "intent": component(
            "event",
            "intent",
            "Intent",
            state_topic=topics.intent,
            event_types=event_types(intent_names),
            qos=1,
            icon="mdi:lightning-bolt",
        ),
    }
    if not wake_words:  # a select needs options: none known, no select
        del components["wake_word"]
    origin = {"name": ORIGIN_NAME, "sw": version}
    if origin_url is not None:
        origin["url"] = origin_url
    return {
        "dev": {
            "identifiers": [uid],
            "name": f"Lingling {topics.site}",
            "manufacturer": "Lingling",
            "model": "Voice assistant",
            "sw_version": version,
        },
        "o": origin,
        "cmps": components,
    }
