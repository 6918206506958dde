"""Wake word claims over MQTT: the topic every satellite of a ``topic_prefix`` shares, the claim's
wire format (JSON, parsed strictly), and each satellite's decision for debugging.

- ``<topic_prefix>/_arbitration/claims`` (QoS 1, not retained): each claim, as ``claim_json``
  (``site``, ``wake_id``, ``wake_word``, ``level_dbfs``, ``score``);
- ``<topic_prefix>/<site>/arbitration`` (QoS 1, not retained): how this satellite's claim was
  decided (``decision_json``: won, verdict, winner, its claim and the rivals').

A site name never begins with ``_`` (``discovery.sanitize``), so ``_arbitration`` is no site.
The rule itself is ``assistant.core.arbitration``; the window, ``assistant.runtime.arbiter``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from assistant.core.arbitration import Decision, WakeClaim, claim_json, decision_json
from assistant.runtime.observer import Observer

if TYPE_CHECKING:
    from assistant.mqtt.bridge import MqttBridge

_LOGGER = logging.getLogger(__name__)

MAX_NAME_CHARS: Final = 128
"""The longest site, wake id or wake word name accepted in a claim."""
PREVIEW_BYTES: Final = 80


def claims_topic(topic_prefix: str) -> str:
    return f"{topic_prefix}/_arbitration/claims"


def decision_topic(base: str) -> str:
    """Under the site's own topics (``<topic_prefix>/<site>``)."""
    return f"{base}/arbitration"


def parse_claim(payload: bytes, *, max_payload_bytes: int) -> WakeClaim:
    """The claim in ``payload``; ValueError (with a reason fit for a log line) if it is none."""
    if len(payload) > max_payload_bytes:
        raise ValueError(f"payload of {len(payload)} bytes is over the {max_payload_bytes} limit")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, RecursionError, ValueError) as err:
        raise ValueError(f"not valid JSON ({type(err).__name__})") from err
    if not isinstance(data, dict):
        raise ValueError(f"JSON must be an object, not {type(data).__name__}")
    return WakeClaim(
        site=_name(data, "site"),
        wake_id=_name(data, "wake_id"),
        wake_word=_name(data, "wake_word"),
        level_dbfs=_number(data, "level_dbfs", -200.0, 10.0),
        score=_number(data, "score", 0.0, 1.0),
    )


def _name(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{key} is longer than {MAX_NAME_CHARS} characters")
    return value


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return number


class ClaimExchange(Observer):
    """The MQTT side of arbitration, through the bridge's connection: this satellite's claims
    out (``ClaimChannel``), the rivals' claims in (to ``on_claim``, on the event loop), and each
    decision shown (an observer of ``claim_decided``)."""

    def __init__(
        self,
        bridge: MqttBridge,
        *,
        loop: asyncio.AbstractEventLoop,
        on_claim: Callable[[WakeClaim], None],
        max_payload_bytes: int,
    ) -> None:
        self._bridge = bridge
        self.topic = claims_topic(bridge.topics.prefix)
        self._decisions = decision_topic(bridge.topics.base)
        self._loop = loop
        self._on_claim = on_claim
        self._max_payload_bytes = max_payload_bytes
        bridge.route(self.topic, self._heard)

    @property
    def site(self) -> str:
        return self._bridge.site

    @property
    def connected(self) -> bool:
        return self._bridge.connected

    def publish_claim(self, claim: WakeClaim) -> None:
        self._bridge.publish(self.topic, json.dumps(claim_json(claim)), qos=1)

    def claim_decided(self, turn: int, claim: WakeClaim, decision: Decision) -> None:
        self._bridge.publish(self._decisions, json.dumps(decision_json(turn, claim, decision)))

    def _heard(self, payload: bytes) -> None:
        """A claim on the shared topic (paho's thread): parsed here, handed to the loop."""
        try:
            claim = parse_claim(payload, max_payload_bytes=self._max_payload_bytes)
        except ValueError as err:
            _LOGGER.warning("MQTT: ignored a claim: %s; payload %r", err, payload[:PREVIEW_BYTES])
            return
        try:
            self._loop.call_soon_threadsafe(self._on_claim, claim)
        except RuntimeError:  # the loop is closed: Lingling is shutting down
            _LOGGER.debug("MQTT: event loop closed; claim dropped")
