"""Hermes payloads (pure): topics, camelCase keys, siteId and sessionId."""

from __future__ import annotations

import pytest

from assistant.core.commands import Outcome
from assistant.mqtt import hermes
from assistant.mqtt.requests import SayRequested


def test_hotword_detected() -> None:
    topic, payload = hermes.hotword_detected("kitchen", "s1", "hey_jarvis")
    assert topic == "hermes/hotword/hey_jarvis/detected"
    assert payload == {
        "modelId": "hey_jarvis",
        "modelVersion": "",
        "modelType": "personal",
        "currentSensitivity": 1.0,
        "siteId": "kitchen",
        "sessionId": "s1",
    }
    assert hermes.hotword_detected_topic("models/my word.onnx") == (
        "hermes/hotword/models_my_word_onnx/detected"
    )


def test_text_captured() -> None:
    topic, payload = hermes.text_captured(
        "kitchen", "s1", "what time is it", seconds=0.4321, wake_word="hey_jarvis"
    )
    assert topic == "hermes/asr/textCaptured"
    assert payload == {
        "text": "what time is it",
        "likelihood": 1.0,
        "seconds": 0.432,
        "siteId": "kitchen",
        "sessionId": "s1",
        "wakewordId": "hey_jarvis",
    }


def test_intent_slots_in_hermes_shape() -> None:
    slots = {"name": "kitchen light", "brightness": 50, "on": True, "when": None}
    topic, payload = hermes.intent("kitchen", "s1", "HassLightSet", slots, "kitchen light to 50")
    assert topic == "hermes/intent/HassLightSet"
    assert payload["input"] == "kitchen light to 50"
    assert payload["intent"] == {"intentName": "HassLightSet", "confidenceScore": 1.0}
    assert (payload["siteId"], payload["sessionId"]) == ("kitchen", "s1")
    assert payload["slots"] == [
        {
            "entity": "name",
            "slotName": "name",
            "rawValue": "kitchen light",
            "value": {"kind": "Unknown", "value": "kitchen light"},
            "confidence": 1.0,
        },
        {
            "entity": "brightness",
            "slotName": "brightness",
            "rawValue": "50",
            "value": {"kind": "Number", "value": 50},
            "confidence": 1.0,
        },
        {
            "entity": "on",
            "slotName": "on",
            "rawValue": "True",
            "value": {"kind": "Unknown", "value": "True"},
            "confidence": 1.0,
        },
        {
            "entity": "when",
            "slotName": "when",
            "rawValue": "None",
            "value": {"kind": "Unknown", "value": "None"},
            "confidence": 1.0,
        },
    ]


def test_intent_not_recognized() -> None:
    assert hermes.intent_not_recognized("kitchen", "s1", "sing") == (
        "hermes/nlu/intentNotRecognized",
        {"input": "sing", "siteId": "kitchen", "sessionId": "s1", "customData": None},
    )


def test_sessions() -> None:
    assert hermes.session_started("kitchen", "s1") == (
        "hermes/dialogueManager/sessionStarted",
        {"sessionId": "s1", "siteId": "kitchen", "customData": None},
    )
    assert hermes.session_ended("kitchen", "s1", "nominal") == (
        "hermes/dialogueManager/sessionEnded",
        {
            "termination": {"reason": "nominal"},
            "sessionId": "s1",
            "siteId": "kitchen",
            "customData": None,
        },
    )


@pytest.mark.parametrize(
    ("outcome", "error", "reason"),
    [
        (Outcome.ANSWERED, None, "nominal"),
        (Outcome.ANNOUNCED, None, "nominal"),
        (Outcome.LOST, None, "nominal"),  # another satellite answered the wake word
        (Outcome.CANCELLED, None, "abortedByUser"),
        (Outcome.NOTHING_HEARD, None, "intentNotRecognized"),
        (Outcome.NO_SPEECH, None, "timeout"),
        (Outcome.FAILED, "timeout: no progress in thinking after 30 s", "timeout"),
        (Outcome.FAILED, "stt: server unreachable", "error"),
        (None, None, "error"),
    ],
)
def test_termination_reason(outcome: Outcome | None, error: str | None, reason: str) -> None:
    assert hermes.termination_reason(outcome, error) == reason


def test_say_finished() -> None:
    assert hermes.say_finished("kitchen", "abc", None) == (
        "hermes/tts/sayFinished",
        {"id": "abc", "siteId": "kitchen", "sessionId": None},
    )


def test_a_dialogue_has_one_session_per_turn() -> None:
    dialogue = hermes.Dialogue("kitchen", run_id="r1")
    assert [topic for topic, _ in dialogue.began(1, "hey_jarvis")] == [
        "hermes/hotword/hey_jarvis/detected",
        "hermes/dialogueManager/sessionStarted",
    ]
    assert dialogue.heard(1, "hello", 0.5)[1]["wakewordId"] == "hey_jarvis"
    assert dialogue.ended(1, Outcome.ANSWERED, None)[1]["sessionId"] == "kitchen-r1-1"
    assert [topic for topic, _ in dialogue.began(2, None)] == [
        "hermes/dialogueManager/sessionStarted"
    ]
    assert dialogue.heard(2, "hello", 0.5)[1]["wakewordId"] is None
    assert hermes.Dialogue("kitchen").session(1) != hermes.Dialogue("kitchen").session(1)


def test_a_dialogue_answers_only_the_says_hermes_asked_for() -> None:
    dialogue = hermes.Dialogue("kitchen")
    asked = dialogue.say_requested(SayRequested("Hi", request_id="abc", session_id="s"))
    assert asked == SayRequested("Hi", request_id="abc", session_id="s")
    anonymous = dialogue.say_requested(SayRequested("Ho"))
    assert anonymous.request_id is not None
    assert dialogue.say_finished(None) is None
    assert dialogue.say_finished("someone-else") is None
    assert dialogue.say_finished("abc") == (
        "hermes/tts/sayFinished",
        {"id": "abc", "siteId": "kitchen", "sessionId": "s"},
    )
    assert dialogue.say_finished("abc") is None  # once
    assert dialogue.say_finished(anonymous.request_id) == (
        "hermes/tts/sayFinished",
        {"id": None, "siteId": "kitchen", "sessionId": None},
    )


def test_a_dialogue_forgets_says_that_never_end() -> None:
    dialogue = hermes.Dialogue("kitchen")
    for number in range(hermes.MAX_PENDING_SAYS + 1):
        dialogue.say_requested(SayRequested("x", request_id=str(number)))
    assert dialogue.say_finished("0") is None
    assert dialogue.say_finished("1") is not None
