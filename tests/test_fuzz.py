"""Fuzzing what comes from outside: config files, and whatever the servers answer. Nothing but
the stage's own error escapes, and the runtime always returns to idle."""

from __future__ import annotations

import asyncio
import json
import string
from pathlib import Path
from typing import Any

import httpx2
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import Config, LlmConfig, SttConfig
from assistant.config_files import load_config
from assistant.core.commands import Phase
from assistant.errors import ChatError, ConfigError, TranscriptionError
from assistant.runtime.observer import Observer
from tests.support.fakes import (
    SILENCE,
    SPEECH,
    WAKE,
    frames,
    run_with_clients,
)

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- config files ---------------------------------------------------------------------------

KEYS = st.sampled_from(
    [*Config.model_fields, "wake", "models", "threshold", "url", "voice", "port", "tls", "x"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SECTIONS = st.dictionaries(KEYS, VALUES, max_size=6)


@FUZZ
@given(document=SECTIONS)
def test_any_config_either_loads_or_names_one_problem(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    try:
        config = load_config(path, env={})
    except ConfigError as err:
        message = str(err)
        assert message
        assert "\n" not in message
    else:
        assert isinstance(config, Config)


@FUZZ
@given(text=st.text(string.printable + "\t{}[]:-&*!|>'\"%@`#,?", max_size=200))
def test_any_file_text_either_loads_or_names_one_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, env={})
    except ConfigError as err:
        assert "\n" not in str(err)  # noqa: PT017


# -- what the servers answer ----------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["choices", "delta", "content", "text", "timings", "error", "tool_calls", "index"]
            )
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)
SSE_LINES = st.lists(
    st.one_of(
        JSON_VALUES.map(lambda value: "data: " + json.dumps(value)),
        st.just("data: [DONE]"),
        st.just(": ping"),
        st.just(""),
        st.text(max_size=30),
        st.just('data: {"choices":[{"index":0,"delta":{"content":"Hi."}}]}'),
    ),
    max_size=12,
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()), st.binary(max_size=200)
)
STATUSES = st.sampled_from([200, 200, 200, 400, 404, 500, 503])


class StateLog(Observer):
    def __init__(self) -> None:
        self.states: list[str] = []

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self.states.append(str(phase))


def client(status: int, body: bytes, content_type: str) -> httpx2.AsyncClient:
    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"Content-Type": content_type}, content=body)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(reply))


@FUZZ
@given(status=STATUSES, lines=SSE_LINES)
def test_any_llm_stream_gives_text_or_a_chat_error(status: int, lines: list[str]) -> None:
    body = "\n\n".join(lines).encode()

    async def consume() -> None:
        chat = LlamaChat(
            LlmConfig(url="http://llama.test/v1"),
            http_client=client(status, body, "text/event-stream"),
        )
        try:
            async for chunk in chat.stream([{"role": "user", "content": "hi"}]):
                assert isinstance(chunk.text, str)
        except ChatError:
            pass
        finally:
            await chat.aclose()

    asyncio.run(consume())


@FUZZ
@given(status=STATUSES, body=BODIES)
def test_any_transcription_answer_gives_text_or_a_transcription_error(
    status: int, body: bytes
) -> None:
    async def consume() -> None:
        stt = WhisperTranscriber(
            SttConfig(url="http://whisper.test/v1"),
            http_client=client(status, body, "application/json"),
        )
        try:
            assert isinstance(await stt.transcribe(SPEECH), str)
        except TranscriptionError:
            pass
        finally:
            await stt.aclose()

    asyncio.run(consume())


@settings(max_examples=40, deadline=None)
@given(stt_status=STATUSES, stt_body=BODIES, llm_status=STATUSES, lines=SSE_LINES)
def test_whatever_the_servers_answer_the_turn_ends_in_idle(
    stt_status: int, stt_body: bytes, llm_status: int, lines: list[str]
) -> None:
    async def turn() -> list[str]:
        config = Config.model_validate(
            {"stt": {"timeout_seconds": 2}, "llm": {"timeout_seconds": 2}}
        )
        stt = WhisperTranscriber(
            config.stt, http_client=client(stt_status, stt_body, "application/json")
        )
        chat = LlamaChat(
            config.llm,
            http_client=client(llm_status, "\n\n".join(lines).encode(), "text/event-stream"),
        )
        watch = StateLog()
        command = frames((WAKE, 1), (SPEECH, 5), (SILENCE, 12))
        await run_with_clients(config, command, transcriber=stt, chat=chat, observers=[watch])
        return watch.states

    states = asyncio.run(turn())
    assert states[-1] == "idle"
    assert states.count("idle") == 2
