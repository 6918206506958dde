"""What Lingling does, as MQTT messages: the bridge's observer hooks and the states it retains.

The hooks run on the event loop and only queue (``_publish``, which the connection's side,
``assistant.mqtt.bridge.MqttBridge``, provides); the retained states are remembered so that they
are published again on every new connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from assistant.config import MqttConfig
from assistant.core.commands import Phase
from assistant.mqtt import hermes
from assistant.mqtt.discovery import MUTE_OFF, MUTE_ON, Topics
from assistant.runtime.observer import Observer, RecognizedIntent, TurnRecord


class Reports(Observer):
    """The bridge's observer hooks (a part of ``MqttBridge``)."""

    topics: Topics
    site: str
    _config: MqttConfig
    _lock: threading.RLock
    _retained: dict[str, str]
    """The states last published (retained), by topic: published again on reconnecting."""
    _dialogue: hermes.Dialogue
    _transcribing_since: float | None

    def _publish(self, topic: str, payload: str, *, qos: int, retain: bool = False) -> None:
        raise NotImplementedError  # the connection's part

    def _retain(self, topic: str, payload: str) -> None:
        """Publish a state, retained, and remember it for the next connection."""
        with self._lock:
            self._retained[topic] = payload
            self._publish(topic, payload, qos=1, retain=True)

    def _hermes(self, *messages: hermes.Message | None, qos: int = 0) -> None:
        if self._config.hermes:
            for message in messages:
                if message is not None:
                    self._publish(message[0], _json(message[1]), qos=qos)

    def publish(self, topic: str, payload: str, *, qos: int = 1, retain: bool = False) -> None:
        """Publish any message (an intent's MQTT action); queued like the rest, never raises."""
        self._publish(topic, payload, qos=qos, retain=retain)

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self._retain(self.topics.state, str(phase))
        if phase is Phase.TRANSCRIBING:
            self._transcribing_since = time.monotonic()

    def wake_detected(self, turn: int, wake_word: str | None, score: float | None) -> None:
        payload = {"wake_word": wake_word, "score": score, "turn": turn}
        self._publish(self.topics.wake, _json(payload), qos=0)
        with self._lock:
            self._hermes(*self._dialogue.began(turn, wake_word))

    def transcript_ready(self, turn: int, text: str) -> None:
        with self._lock:
            self._retain(self.topics.transcript, _json({"text": text, "turn": turn}))
            since = self._transcribing_since
            seconds = time.monotonic() - since if since is not None else 0.0
            self._hermes(self._dialogue.heard(turn, text, seconds))

    def intent_recognized(self, turn: int, intent: RecognizedIntent) -> None:
        payload = {
            "event_type": intent.name,  # what Home Assistant's event entity needs
            "intent": intent.name,
            "slots": dict(intent.slots),
            "text": intent.text,
            "source": intent.source,
            "turn": turn,
        }
        self._publish(self.topics.intent, _json(payload), qos=1)
        session = self._dialogue.session(turn)
        self._hermes(
            hermes.intent(self.site, session, intent.name, intent.slots, intent.text), qos=1
        )

    def intent_not_recognized(self, turn: int, text: str) -> None:
        self._hermes(hermes.intent_not_recognized(self.site, self._dialogue.session(turn), text))

    def response_ready(self, turn: int, text: str) -> None:
        self._retain(self.topics.response, _json({"text": text, "turn": turn}))

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        payload = {"code": code, "message": message, "state": str(phase), "turn": turn}
        self._publish(self.topics.error, _json(payload), qos=1)

    def turn_finished(self, record: TurnRecord) -> None:
        outcome = str(record.outcome) if record.outcome is not None else None
        payload = {"turn": record.turn, "outcome": outcome, **record.timings_ms()}
        self._publish(self.topics.timings, _json(payload), qos=1)
        self._hermes(self._dialogue.ended(record.turn, record.outcome, record.error))

    def action_requested(self, turn: int, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.publish(topic, payload, qos=qos, retain=retain)

    def mute_changed(self, muted: bool) -> None:
        self._retain(self.topics.mute, MUTE_ON if muted else MUTE_OFF)

    def timers_changed(
        self, timers: list[dict[str, Any]], change: Mapping[str, Any] | None
    ) -> None:
        self._retain(self.topics.timers, _json(timers))
        if change is not None:
            self._publish(self.topics.timer, _json(change), qos=1)

    def volume_changed(self, level: int) -> None:
        self._retain(self.topics.volume, str(level))

    def wake_word_changed(self, name: str) -> None:
        self._retain(self.topics.wake_word, name)

    def announcement_finished(self, request_id: str | None) -> None:
        with self._lock:
            self._hermes(self._dialogue.say_finished(request_id))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
