"""Requests that come from outside (MQTT), and the pure parser that makes them from messages.

``parse`` raises only ``ValueError`` (with a reason fit for a log line); ``NotForThisSite`` (a
``ValueError``) marks a well-formed Hermes message addressed to another site.
"""

from __future__ import annotations

import json
from typing import Any, Final

from assistant.core.events import (
    CancelRequested,
    ListenRequested,
    MuteRequested,
    Request,
    SayRequested,
    StopRequested,
    VolumeRequested,
    WakeWordChosen,
    WakeWordToggled,
)
from assistant.mqtt.discovery import MUTE_OFF, MUTE_ON, Topics

DEFAULT_MAX_PAYLOAD_BYTES: Final = 65_536
HERMES_SAY: Final = "hermes/tts/say"
HERMES_TOGGLE_ON: Final = "hermes/hotword/toggleOn"
HERMES_TOGGLE_OFF: Final = "hermes/hotword/toggleOff"
HERMES_COMMANDS: Final = (HERMES_SAY, HERMES_TOGGLE_ON, HERMES_TOGGLE_OFF)
HERMES_DEFAULT_SITE: Final = "default"
"""The siteId Rhasspy assumes when a message has none."""


# The requests are the machine's own events (assistant.core.events); re-exported here.
__all__ = [
    "CancelRequested",
    "ListenRequested",
    "MuteRequested",
    "RemoteRequest",
    "SayRequested",
    "StopRequested",
    "VolumeRequested",
    "WakeWordToggled",
]

RemoteRequest = Request


class NotForThisSite(ValueError):
    """A Hermes message for another siteId: not an error, just not ours."""


def parse(
    topic: str,
    payload: bytes,
    topics: Topics,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> RemoteRequest:
    """The request a message on ``topic`` asks for.

    ``topic`` is a full topic (``lingling/kitchen/say``, ``hermes/tts/say``) or a command relative
    to ``topics.base`` (``say``, ``listen``, ``mute/set``, ``cancel``, ``stop``,
    ``volume/set``, ``wake_word/set``).
    """
    if len(payload) > max_payload_bytes:
        raise ValueError(f"payload of {len(payload)} bytes is over the {max_payload_bytes} limit")
    command = topic.removeprefix(f"{topics.base}/")
    if command == "say":
        return _say(_text(payload))
    if command == "listen":
        return ListenRequested()
    if command == "cancel":
        return CancelRequested()
    if command == "stop":
        return StopRequested()
    if command == "volume/set":
        return VolumeRequested(_volume(_text(payload)))
    if command == "wake_word/set":
        name = _text(payload).strip()
        if not name:
            raise ValueError("wake_word/set needs the name of a wake word")
        return WakeWordChosen(name)
    if command == "mute/set":
        value = _text(payload).strip().upper()
        if value not in (MUTE_ON, MUTE_OFF):
            raise ValueError(f"mute must be ON or OFF, not {_excerpt(value)}")
        return MuteRequested(muted=value == MUTE_ON)
    if topic == HERMES_SAY:
        message = _hermes(payload, topics.site, empty_allowed=False)
        text = message.get("text")
        if not isinstance(text, str):
            raise ValueError("hermes say needs a string 'text'")
        return SayRequested(
            _speakable(text),
            request_id=_optional_str(message, "id"),
            session_id=_optional_str(message, "sessionId"),
        )
    if topic in (HERMES_TOGGLE_ON, HERMES_TOGGLE_OFF):
        _hermes(payload, topics.site, empty_allowed=True)
        return WakeWordToggled(enabled=topic == HERMES_TOGGLE_ON)
    raise ValueError(f"not a command topic: {_excerpt(topic)}")


def _say(text: str) -> SayRequested:
    """Plain text, or a JSON object with "text"."""
    stripped = text.strip()
    if stripped.startswith("{"):
        message = _json_object(stripped)
        value = message.get("text")
        if not isinstance(value, str):
            raise ValueError("say needs a string 'text'")
        stripped = value
    return SayRequested(_speakable(stripped))


def _volume(text: str) -> int:
    """0-100, as Home Assistant's number entity sends it ("40" or "40.0")."""
    try:
        level = float(text.strip())
    except ValueError as err:
        raise ValueError(f"volume must be a number from 0 to 100, not {_excerpt(text)}") from err
    if not 0 <= level <= 100:
        raise ValueError(f"volume must be from 0 to 100, not {level:g}")
    return round(level)


def _speakable(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("nothing to say")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate, from a JSON escape such as \ud800
        raise ValueError("text is not valid Unicode") from err
    return text


def _hermes(payload: bytes, site: str, *, empty_allowed: bool) -> dict[str, Any]:
    text = _text(payload)
    message = {} if empty_allowed and not text.strip() else _json_object(text)
    site_id = message.get("siteId", HERMES_DEFAULT_SITE)
    if site_id is None:
        site_id = HERMES_DEFAULT_SITE
    if not isinstance(site_id, str):
        raise ValueError("siteId must be a string")
    if site_id != site:
        raise NotForThisSite(f"for site {_excerpt(site_id)}, not {site}")
    return message


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start})") from err


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at {err.pos})") from err
    except ValueError as err:  # e.g. an integer over Python's digit limit
        raise ValueError(f"not valid JSON ({err})") from err
    except RecursionError as err:  # deeply nested arrays or objects
        raise ValueError("JSON nested too deeply") from err
    if not isinstance(value, dict):
        raise ValueError(f"JSON must be an object, not {type(value).__name__}")
    return value


def _optional_str(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key} must be a string")


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
