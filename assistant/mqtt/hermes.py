"""Rhasspy Hermes messages Lingling publishes (pure: topic and JSON payload, camelCase).

Every message carries ``siteId``; those of a turn carry its ``sessionId``. The commands Lingling
obeys (``hermes/tts/say``, ``hermes/hotword/toggleOn|toggleOff``) are parsed in ``remote``.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

from assistant.core.commands import Outcome
from assistant.mqtt.discovery import sanitize
from assistant.mqtt.requests import SayRequested

Message = tuple[str, dict[str, Any]]

SESSION_STARTED: Final = "hermes/dialogueManager/sessionStarted"
SESSION_ENDED: Final = "hermes/dialogueManager/sessionEnded"
TEXT_CAPTURED: Final = "hermes/asr/textCaptured"
INTENT_NOT_RECOGNIZED: Final = "hermes/nlu/intentNotRecognized"
SAY_FINISHED: Final = "hermes/tts/sayFinished"

NOMINAL: Final = "nominal"
ABORTED_BY_USER: Final = "abortedByUser"
INTENT_NOT_RECOGNIZED_REASON: Final = "intentNotRecognized"
TIMEOUT: Final = "timeout"
ERROR: Final = "error"
MAX_PENDING_SAYS: Final = 100


def hotword_detected_topic(wake_word: str) -> str:
    return f"hermes/hotword/{sanitize(wake_word) or 'default'}/detected"


def intent_topic(name: str) -> str:
    return f"hermes/intent/{sanitize(name) or 'unknown'}"


def hotword_detected(
    site: str, session_id: str, wake_word: str, *, sensitivity: float = 1.0
) -> Message:
    return hotword_detected_topic(wake_word), {
        "modelId": wake_word,
        "modelVersion": "",
        "modelType": "personal",
        "currentSensitivity": sensitivity,
        "siteId": site,
        "sessionId": session_id,
    }


def session_started(site: str, session_id: str) -> Message:
    return SESSION_STARTED, {"sessionId": session_id, "siteId": site, "customData": None}


def text_captured(
    site: str, session_id: str, text: str, *, seconds: float, wake_word: str | None
) -> Message:
    """``seconds``: how long transcription took."""
    return TEXT_CAPTURED, {
        "text": text,
        "likelihood": 1.0,
        "seconds": round(seconds, 3),
        "siteId": site,
        "sessionId": session_id,
        "wakewordId": wake_word,
    }


def intent(site: str, session_id: str, name: str, slots: Mapping[str, Any], text: str) -> Message:
    return intent_topic(name), {
        "input": text,
        "rawInput": text,
        "intent": {"intentName": name, "confidenceScore": 1.0},
        "slots": [_slot(key, value) for key, value in slots.items()],
        "siteId": site,
        "sessionId": session_id,
        "customData": None,
        "asrTokens": [],
    }


def _slot(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        value = str(value)
    kind = "Unknown" if isinstance(value, str) else "Number"
    return {
        "entity": name,
        "slotName": name,
        "rawValue": str(value),
        "value": {"kind": kind, "value": value},
        "confidence": 1.0,
    }


def intent_not_recognized(site: str, session_id: str, text: str) -> Message:
    return INTENT_NOT_RECOGNIZED, {
        "input": text,
        "siteId": site,
        "sessionId": session_id,
        "customData": None,
    }


def termination_reason(outcome: Outcome | None, error: str | None = None) -> str:
    """Hermes' ``termination.reason`` for how a turn ended (``TurnRecord.outcome``/``error``)."""
    if outcome in (Outcome.ANSWERED, Outcome.ANNOUNCED, Outcome.LOST):  # lost: answered elsewhere
        return NOMINAL
    if outcome is Outcome.CANCELLED:
        return ABORTED_BY_USER
    if outcome is Outcome.NOTHING_HEARD:
        return INTENT_NOT_RECOGNIZED_REASON
    if outcome is Outcome.NO_SPEECH or (error or "").startswith("timeout"):
        return TIMEOUT
    return ERROR


def session_ended(site: str, session_id: str, reason: str) -> Message:
    return SESSION_ENDED, {
        "termination": {"reason": reason},
        "sessionId": session_id,
        "siteId": site,
        "customData": None,
    }


def say_finished(site: str, request_id: str | None, session_id: str | None) -> Message:
    return SAY_FINISHED, {"id": request_id, "siteId": site, "sessionId": session_id}


class Dialogue:
    """Hermes' view of Lingling's turns: one session per turn, and the says it was asked for.

    Not thread-safe: the caller serialises access.
    """

    def __init__(self, site: str, run_id: str | None = None) -> None:
        self.site = site
        self._run_id = run_id or uuid.uuid4().hex[:8]  # session ids differ between runs
        self._wake_word: str | None = None
        self._says: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    def session(self, turn: int) -> str:
        return f"{self.site}-{self._run_id}-{turn}"

    def began(self, turn: int, wake_word: str | None) -> list[Message]:
        """A turn began, by ``wake_word`` or (None) by a request."""
        self._wake_word = wake_word
        session = self.session(turn)
        messages = [hotword_detected(self.site, session, wake_word)] if wake_word else []
        return [*messages, session_started(self.site, session)]

    def heard(self, turn: int, text: str, seconds: float) -> Message:
        return text_captured(
            self.site, self.session(turn), text, seconds=seconds, wake_word=self._wake_word
        )

    def ended(self, turn: int, outcome: Outcome | None, error: str | None) -> Message:
        return session_ended(self.site, self.session(turn), termination_reason(outcome, error))

    def say_requested(self, request: SayRequested) -> SayRequested:
        """Remember a ``hermes/tts/say``; the request returned always has an id to give back."""
        key = request.request_id or f"hermes-{uuid.uuid4().hex}"
        self._says[key] = (request.request_id, request.session_id)
        while len(self._says) > MAX_PENDING_SAYS:  # never answered: forget the oldest
            self._says.popitem(last=False)
        return SayRequested(request.text, request_id=key, session_id=request.session_id)

    def say_finished(self, request_id: str | None) -> Message | None:
        """``sayFinished`` if the announcement came from ``hermes/tts/say``."""
        said = self._says.pop(request_id, None) if request_id is not None else None
        if said is None:
            return None
        original_id, session_id = said
        return say_finished(self.site, original_id, session_id)
