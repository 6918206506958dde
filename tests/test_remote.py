"""The command parser: what each message asks for, and a clear ValueError for everything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.mqtt.discovery import Topics
from assistant.mqtt.requests import (
    HERMES_COMMANDS,
    CancelRequested,
    ListenRequested,
    MuteRequested,
    NotForThisSite,
    RemoteRequest,
    SayRequested,
    WakeWordToggled,
    parse,
)

TOPICS = Topics("lingling", "kitchen")


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("lingling/kitchen/say", b"Dinner is ready", SayRequested("Dinner is ready")),
        ("say", b"  Dinner is ready\n", SayRequested("Dinner is ready")),
        ("say", '{"text": "Bonne nuit ☾"}'.encode(), SayRequested("Bonne nuit ☾")),
        ("say", b'{"text": "hi", "extra": [1, 2]}', SayRequested("hi")),
        ("say", b"It costs $5 {roughly}", SayRequested("It costs $5 {roughly}")),
        ("lingling/kitchen/listen", b"PRESS", ListenRequested()),
        ("listen", b"", ListenRequested()),
        ("cancel", b"anything", CancelRequested()),
        ("mute/set", b"ON", MuteRequested(muted=True)),
        ("mute/set", b" on\n", MuteRequested(muted=True)),
        ("lingling/kitchen/mute/set", b"Off", MuteRequested(muted=False)),
        (
            "hermes/tts/say",
            b'{"text": "Hello", "id": "42", "siteId": "kitchen", "sessionId": "s", "lang": null}',
            SayRequested("Hello", request_id="42", session_id="s"),
        ),
        ("hermes/tts/say", b'{"text": "Hello", "siteId": "kitchen"}', SayRequested("Hello")),
        (
            "hermes/hotword/toggleOff",
            b'{"siteId": "kitchen", "reason": ""}',
            WakeWordToggled(False),
        ),
        ("hermes/hotword/toggleOn", b'{"siteId": "kitchen"}', WakeWordToggled(True)),
    ],
)
def test_commands(topic: str, payload: bytes, expected: RemoteRequest) -> None:
    assert parse(topic, payload, TOPICS) == expected


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("say", b"", "nothing to say"),
        ("say", b"   \n", "nothing to say"),
        ("say", b'{"text": ""}', "nothing to say"),
        ("say", b'{"text": 3}', "string 'text'"),
        ("say", b'{"words": "hi"}', "string 'text'"),
        ("say", b"{broken", "not valid JSON"),
        ("say", b'{"text": "\\ud800"}', "not valid Unicode"),
        ("say", b"\xff\xfe", "not UTF-8"),
        ("say", b"[" * 100_000, "limit"),
        ("mute/set", b"maybe", "ON or OFF"),
        ("mute/set", b"", "ON or OFF"),
        ("hermes/tts/say", b"Hello", "not valid JSON"),
        ("hermes/tts/say", b'["Hello"]', "must be an object"),
        ("hermes/tts/say", b'{"siteId": "kitchen"}', "string 'text'"),
        ("hermes/tts/say", b'{"text": "x", "siteId": "kitchen", "id": 7}', "id must be a string"),
        ("hermes/tts/say", b'{"text": "x", "siteId": 1}', "siteId must be a string"),
        ("lingling/kitchen/reboot", b"", "not a command topic"),
        ("lingling/hall/say", b"hi", "not a command topic"),
    ],
)
def test_malformed_commands_say_why(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(topic, payload, TOPICS)


def test_oversized_payloads_are_refused_before_anything_else() -> None:
    with pytest.raises(ValueError, match="payload of 17 bytes is over the 16 limit"):
        parse("say", b"x" * 17, TOPICS, max_payload_bytes=16)
    assert parse("say", b"x" * 16, TOPICS, max_payload_bytes=16) == SayRequested("x" * 16)


def test_deeply_nested_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="JSON"):
        parse("say", b"{" + b'"a":[' * 60_000, TOPICS, max_payload_bytes=10**6)
    with pytest.raises(ValueError, match="JSON"):
        parse("say", b'{"text": ' + b"9" * 5000 + b"}", TOPICS)  # over Python's digit limit


@pytest.mark.parametrize(
    "payload",
    [
        b'{"text": "Hello", "siteId": "hall"}',
        b'{"text": "Hello"}',
        b'{"text": "x", "siteId": null}',
    ],
)
def test_hermes_messages_for_other_sites_are_not_ours(payload: bytes) -> None:
    # No siteId means Rhasspy's "default".
    with pytest.raises(NotForThisSite):
        parse("hermes/tts/say", payload, TOPICS)


def test_a_hermes_message_without_site_is_for_the_default_site() -> None:
    default = Topics("lingling", "default")
    assert parse("hermes/tts/say", b'{"text": "Hi"}', default) == SayRequested("Hi")
    assert parse("hermes/hotword/toggleOn", b"", default) == WakeWordToggled(True)


TOPIC_NAMES = st.sampled_from(
    [*TOPICS.commands, "say", "listen", "mute/set", "cancel", *HERMES_COMMANDS, "other/topic"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "text": JSON_VALUES,
        "siteId": st.sampled_from(["kitchen", "hall", None, 3]),
        "id": JSON_VALUES,
        "sessionId": JSON_VALUES,
    },
)
PAYLOADS = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"ON", b"off", b"{", b'{"text":', b"[" * 3000]),
    MESSAGES.map(lambda message: json.dumps(message).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=1000, database=None)
@given(topic=TOPIC_NAMES, payload=PAYLOADS)
def test_parse_raises_nothing_but_value_error(topic: str, payload: bytes) -> None:
    try:
        request = parse(topic, payload, TOPICS, max_payload_bytes=1024)
    except ValueError as err:
        reason = str(err)
    else:
        assert isinstance(request, RemoteRequest)
        if isinstance(request, SayRequested):
            assert request.text == request.text.strip()
            assert request.text
            request.text.encode("utf-8")
        return
    assert reason  # always a reason for the log
