"""Loopback HTTP servers that speak whisper.cpp's and llama.cpp's wire formats (stdlib only).

Each server runs a ``ThreadingHTTPServer`` on 127.0.0.1 with a free port in a daemon thread:

    with FakeWhisperServer() as whisper:
        transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))

They answer like the real servers (checked against whisper.cpp 1.9.1's ``whisper-server`` and
llama.cpp's ``llama-server``, see tests/test_real_servers.py) and record every request. Public
attributes set before or during a test inject faults: ``delay_seconds``, ``error_status``,
``hang`` / ``stall_after_tokens`` (released by ``stop()``). A request the server holds notices
when its client hangs up (a timed-out or cancelled request) and counts it in ``hang_ups``.
``FakeLlamaServer.script`` scripts replies per request, tool calls included (``FakeReply``,
``FakeToolCall``); ``hold_after_tokens`` pauses a stream until ``resume()``.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import select
import socket
import string
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final, Self

JSON_TYPE: Final = "application/json"
LLAMA_JSON_TYPE: Final = "application/json; charset=utf-8"
LLAMA_FINGERPRINT: Final = "b1-0000000"
HANG_UP_POLL_SECONDS: Final = 0.02
"""How often a held request looks whether its client has closed the connection."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    allow_reuse_address = True  # a restarted server gets its port back at once

    def __init__(self, owner: LoopbackServer, port: int = 0) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like cpp-httplib
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HttpServer
    hung_up = False
    """The client closed the connection while the server held its request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def peer_closed(self) -> bool:
        """Whether the client has closed the connection (it sends nothing while it waits)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_GET(self) -> None:
        self.server.owner.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner.handle(self, "POST")

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(
        self,
        status: int,
        content: bytes | str,
        content_type: str = JSON_TYPE,
        *,
        close: bool = False,
    ) -> None:
        data = content.encode() if isinstance(content, str) else content
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def answer_json(
        self, status: int, value: object, content_type: str = JSON_TYPE, *, close: bool = False
    ) -> None:
        self.answer(status, json.dumps(value, separators=(",", ":")), content_type, close=close)


class LoopbackServer:
    """Start/stop and the shared fault hooks; subclasses implement ``handle``."""

    def __init__(self) -> None:
        self.delay_seconds = 0.0
        """Wait this long before answering (``stop()`` cuts it short)."""
        self.hang = False
        """Never answer: the request waits until ``stop()``."""
        self.error_status: int | None = None
        """Answer every API request with this HTTP status and the server's error body."""
        self.garbage: bytes | None = None
        """Answer every API request with 200 and this body (not what the client expects)."""
        self._changed = threading.Condition()  # held requests wait on it
        self._releases = 0  # release() calls so far
        self._stopped = False
        self._arrivals = threading.Condition()
        self._arrived = 0
        self.health_checks: list[int] = []
        """The client port of each ``GET /health`` (which connection asked)."""
        self._hang_ups = 0
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1_url(self) -> str:
        """The base URL an OpenAI client needs."""
        return f"{self.url}/v1"

    @property
    def hang_ups(self) -> int:
        """Requests whose client closed the connection while the server held them."""
        with self._arrivals:
            return self._hang_ups

    def start(self, port: int = 0) -> Self:
        """Serve on ``port`` (0: a free one; a stopped server can start again on its old port)."""
        with self._changed:
            self._stopped = False
        self._httpd = _HttpServer(self, port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def release(self) -> None:
        """Let go of requests held by ``hang`` or ``delay_seconds`` (they answer nothing)."""
        with self._changed:
            self._releases += 1
            self._changed.notify_all()

    def stop(self) -> None:
        """Stop serving, release hung requests and close every connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        httpd.shutdown()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(
        self,
        seconds: float | None,
        handler: _Handler | None = None,
        *,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Hold a request up to ``seconds`` (None: for good); True when cut short: by ``stop()``,
        ``release()``, ``until()`` becoming true or, given the request's ``handler``, by its
        client hanging up (then ``handler.hung_up`` is set and the hang-up counted)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._changed:
            releases = self._releases
            while True:
                if self._stopped or self._releases != releases or (until and until()):
                    return True
                if handler is not None and handler.peer_closed():
                    handler.hung_up = True
                    self._note(hang_up=True)
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if handler is not None:
                    left = HANG_UP_POLL_SECONDS if left is None else min(left, HANG_UP_POLL_SECONDS)
                self._changed.wait(left)

    def wait_for_requests(self, count: int = 1, timeout_seconds: float = 1.0) -> None:
        """Block until ``count`` API requests have arrived (call it via ``asyncio.to_thread``)."""
        with self._arrivals:
            if not self._arrivals.wait_for(lambda: self._arrived >= count, timeout_seconds):
                raise TimeoutError(f"{self._arrived} of {count} requests arrived")

    def wait_for_hang_ups(self, count: int = 1, timeout_seconds: float = 1.0) -> None:
        """Block until the clients of ``count`` held requests have hung up (via ``to_thread``)."""
        with self._arrivals:
            if not self._arrivals.wait_for(lambda: self._hang_ups >= count, timeout_seconds):
                raise TimeoutError(f"{self._hang_ups} of {count} clients hung up")

    def _note(self, *, hang_up: bool = False) -> None:
        """Count an API request's arrival, or a held request's client hanging up."""
        with self._arrivals:
            if hang_up:
                self._hang_ups += 1
            else:
                self._arrived += 1
            self._arrivals.notify_all()

    def _notify_held(self) -> None:
        """Wake held requests to look at ``until()`` again."""
        with self._changed:
            self._changed.notify_all()

    def handle(self, handler: _Handler, method: str) -> None:
        raise NotImplementedError


# --- whisper.cpp ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhisperRequest:
    """One upload as ``whisper-server`` received it."""

    wav: bytes
    pcm: bytes
    sample_rate_hz: int
    channels: int
    sample_width_bytes: int
    filename: str | None
    fields: dict[str, str]
    arrived_at: float
    client_port: int


class FakeWhisperServer(LoopbackServer):
    """``whisper-server --inference-path /v1/audio/transcriptions`` answering ``text``.

    Like the real server with the scripted test model: ``text`` once per started 30 s window
    (whisper's segments), and ``""`` for audio shorter than ``MIN_AUDIO_SECONDS``.
    """

    INFERENCE_PATH: ClassVar[str] = "/v1/audio/transcriptions"
    MIN_AUDIO_SECONDS: ClassVar[float] = 0.12  # measured: 110 ms gives "", 120 ms gives text
    WINDOW_SECONDS: ClassVar[float] = 30.0

    def __init__(
        self,
        text: str = " turn on the kitchen light\n",
        text_for: Callable[[float], str] | None = None,
    ) -> None:
        super().__init__()
        self.text = text
        self.text_for = text_for
        """What audio of that many seconds says (instead of ``text``): a scripted conversation."""
        self.requests: list[WhisperRequest] = []
        self._mutex = threading.Lock()  # the real server runs one inference at a time

    def handle(self, handler: _Handler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        body = handler.body()
        if method == "GET" and path == "/health":
            self.health_checks.append(int(handler.client_address[1]))
            handler.answer_json(200, {"status": "ok"})
        elif method == "POST" and path == self.INFERENCE_PATH:
            with self._mutex:
                self._transcribe(handler, body)
        else:
            handler.answer(404, f"File Not Found ({path})", "text/plain")

    def _transcribe(self, handler: _Handler, body: bytes) -> None:
        arrived_at = time.monotonic()
        parts = parse_multipart(handler.headers.get("Content-Type", ""), body)
        # whisper-server's error handler replaces the body of every 400 with this text
        if parts is None or "file" not in parts:
            handler.answer(400, "Invalid request", "text/plain")
            return
        filename, wav = parts.pop("file")
        try:
            with wave.open(io.BytesIO(wav), "rb") as reader:
                audio = reader.readframes(reader.getnframes())
                rate, channels = reader.getframerate(), reader.getnchannels()
                width = reader.getsampwidth()
        except (wave.Error, EOFError):
            handler.answer(400, "Invalid request", "text/plain")
            return
        fields = {name: value.decode() for name, (_, value) in parts.items()}
        self.requests.append(
            WhisperRequest(
                wav=wav,
                pcm=audio,
                sample_rate_hz=rate,
                channels=channels,
                sample_width_bytes=width,
                filename=filename,
                fields=fields,
                arrived_at=arrived_at,
                client_port=int(handler.client_address[1]),
            )
        )
        self._note()
        if self.hang:
            self.wait(None, handler)
            return
        if self.wait(self.delay_seconds, handler):
            return
        if self.garbage is not None:
            handler.answer(200, self.garbage, "application/json")
            return
        if self.error_status == 400:
            handler.answer(400, "Invalid request", "text/plain")
            return
        if self.error_status is not None:
            handler.answer_json(self.error_status, {"error": "failed to process audio"})
            return
        seconds = len(audio) / max(1, rate * channels * width)
        windows = 0 if seconds < self.MIN_AUDIO_SECONDS else -int(-seconds // self.WINDOW_SECONDS)
        text = (self.text if self.text_for is None else self.text_for(seconds)) * windows
        response_format = fields.get("response_format", "json")
        if response_format == "text":
            handler.answer(200, text, "text/html; charset=utf-8")
        elif response_format == "verbose_json":
            handler.answer_json(
                200,
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": seconds,
                    "text": text,
                    "segments": [],
                },
            )
        else:  # json, and like the real server any format it does not know
            handler.answer_json(200, {"text": text})


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """``multipart/form-data`` fields as ``{name: (filename, content)}``; None if not multipart."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or boundary is None:
        return None
    delimiter = b"\r\n--" + boundary.group(1).encode()
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 2 or sections[0]:
        return None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for section in sections[1:]:
        if section.startswith(b"--"):  # the closing delimiter
            return fields
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            (
                line.split(":", 1)[1]
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            "",
        )
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r';\s*filename="([^"]*)"', disposition)
        if name is not None:
            fields[name.group(1)] = (filename.group(1) if filename else None, content)
    return None  # no closing delimiter: a truncated body


# --- llama.cpp -----------------------------------------------------------------------------------


@dataclass(slots=True)
class LlamaRequest:
    """One request as ``llama-server`` received it, with its stream's monotonic times."""

    path: str
    body: dict[str, Any]
    arrived_at: float
    started_at: float | None = None
    """When the response headers and the first chunk were sent."""
    finished_at: float | None = None
    """When ``data: [DONE]`` (or the whole non-streamed answer) was sent."""
    chunks: list[dict[str, Any]] = field(default_factory=list)
    """Every JSON object sent as ``data:`` in a stream."""
    client_disconnected: bool = False
    """The client closed the connection before the answer was complete."""
    client_port: int = 0
    """Which connection it came on."""


_TOKEN: Final = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[str]:
    """Words with their leading space and trailing punctuation (``"Sure."``, ``" The"``), as the
    tiny test models' tokenizer streams them."""
    return _TOKEN.findall(text)


_ARGUMENT_PIECE: Final = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call the fake model makes.

    ``arguments`` is the JSON text the model generates (it need not be valid: a model's is not
    always), split into word-sized fragments, or the exact fragments. ``id`` None: a random
    32-character id, as llama.cpp's ``gen_tool_call_id()`` makes when the template has none.
    """

    name: str
    arguments: str | Sequence[str] = "{}"
    id: str | None = None

    def fragments(self) -> list[str]:
        if isinstance(self.arguments, str):
            return _ARGUMENT_PIECE.findall(self.arguments)
        return list(self.arguments)


@dataclass(frozen=True, slots=True)
class FakeReply:
    """One scripted answer: ``text`` (a string split into tokens, or the exact tokens), then
    ``tool_calls``."""

    text: str | Sequence[str] = ""
    tool_calls: Sequence[FakeToolCall] = ()

    def deltas(self) -> list[dict[str, Any]]:
        """One ``delta`` per generated token, as llama.cpp streams them.

        llama.cpp parses the output after every token and sends the difference
        (``common_chat_msg_diff::compute_diffs``, ``server_chat_msg_diff_to_json_oaicompat``):
        a new call comes whole, ``index``, ``id``, ``type`` and ``function.name`` (its
        ``arguments`` left out while empty), then each new piece of its arguments as
        ``{"index": i, "function": {"arguments": piece}}``.
        """
        tokens = tokenize(self.text) if isinstance(self.text, str) else list(self.text)
        deltas: list[dict[str, Any]] = [{"content": token} for token in tokens]
        for index, call in enumerate(self.tool_calls):
            head = {"index": index, "id": call.id or _random_id(32), "type": "function"}
            deltas.append({"tool_calls": [{**head, "function": {"name": call.name}}]})
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in call.fragments()
            ]
        return deltas


class FakeLlamaServer(LoopbackServer):
    """``llama-server`` with one slot whose model always answers ``reply``.

    ``reply`` may be a string (split into word-piece tokens) or the exact token list. ``script``
    answers the next requests in turn, one item each (a string, a token list or a ``FakeReply``
    with tool calls), before ``reply`` takes over again. Requests are checked like llama.cpp
    checks them (messages with ``tool_calls`` and ``tool`` results, ``tools``, ``tool_choice``).
    ``tokens_per_second`` paces the deltas; ``first_token_delay_seconds`` stands for the
    prompt processing that comes before the response headers. Like the real server it keeps the
    last prompt's tokens, so ``timings.cache_n`` counts the prefix shared with the previous
    request.
    """

    MODEL: ClassVar[str] = "/models/two-sentences.gguf"
    """The model path the server was started with; replies name it whatever the request says."""

    def __init__(
        self,
        reply: str | Sequence[str] = "Sure. The kitchen light is on now. Anything else?",
        *,
        tokens_per_second: float | None = None,
        first_token_delay_seconds: float = 0.0,
        script: Sequence[str | Sequence[str] | FakeReply] = (),
    ) -> None:
        super().__init__()
        self.tokens = tokenize(reply) if isinstance(reply, str) else list(reply)
        self.script: list[str | Sequence[str] | FakeReply] = list(script)
        """Replies for the next requests, in order; each is used once."""
        self.tokens_per_second = tokens_per_second
        self.first_token_delay_seconds = first_token_delay_seconds
        self.error_after_tokens: int | None = None
        """Send llama.cpp's in-stream ``data: {"error": ...}`` after this many content tokens."""
        self.stall_after_tokens: int | None = None
        """Stop sending after this many content tokens until ``stop()`` (a stuck stream)."""
        self.hold_after_tokens: int | None = None
        """Pause the stream after this many content tokens until ``resume()``, then go on."""
        self._resumed = threading.Event()
        self.requests: list[LlamaRequest] = []
        self._cached_prompt: list[str] = []
        self._mutex = threading.Lock()  # one slot

    def resume(self) -> None:
        """Let streams paused by ``hold_after_tokens`` go on (and pause no later one)."""
        self._resumed.set()
        self._notify_held()

    def handle(self, handler: _Handler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        raw = handler.body()
        if method == "GET" and path in ("/health", "/v1/health"):
            self.health_checks.append(int(handler.client_address[1]))
            handler.answer_json(200, {"status": "ok"}, LLAMA_JSON_TYPE)
        elif method == "GET" and path in ("/models", "/v1/models"):
            handler.answer_json(200, self._models(), LLAMA_JSON_TYPE)
        elif method == "POST" and path in ("/chat/completions", "/v1/chat/completions"):
            try:
                body = json.loads(raw)
            except ValueError as err:
                self._error(handler, 500, f"parse error: {err}")
                return
            messages = body.get("messages") if isinstance(body, dict) else None
            if messages is None:
                self._error(handler, 400, "'messages' is required", "invalid_request_error")
                return
            if not isinstance(messages, list):
                problem = "Expected 'messages' to be an array"
                self._error(handler, 400, problem, "invalid_request_error")
                return
            refused = _check_chat_request(body)
            if refused is not None:
                self._error(handler, *refused)
                return
            with self._mutex:
                self._complete(handler, path, body)
        else:
            self._error(handler, 404, "File Not Found", "not_found_error")

    @staticmethod
    def _error(handler: _Handler, status: int, message: str, kind: str = "server_error") -> None:
        # llama-server closes the connection after an error
        handler.answer_json(
            status, _llama_error(status, message, kind), LLAMA_JSON_TYPE, close=True
        )

    def _models(self) -> dict[str, Any]:
        return {
            "models": [{"name": self.MODEL, "model": self.MODEL, "type": "model"}],
            "object": "list",
            "data": [
                {
                    "id": self.MODEL,
                    "aliases": [self.MODEL],
                    "tags": [],
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "llamacpp",
                    "meta": {"n_vocab": 272, "n_ctx": 512, "n_ctx_train": 512},
                }
            ],
        }

    def _complete(self, handler: _Handler, path: str, body: dict[str, Any]) -> None:
        request = LlamaRequest(
            path=path,
            body=body,
            arrived_at=time.monotonic(),
            client_port=int(handler.client_address[1]),
        )
        self.requests.append(request)
        self._note()
        if self.hang:
            request.client_disconnected = self.wait(None, handler) and handler.hung_up
            return
        if self.wait(self.delay_seconds + self.first_token_delay_seconds, handler):
            request.client_disconnected = handler.hung_up
            return
        if self.garbage is not None:
            handler.answer(200, self.garbage, "text/event-stream")
            return
        if self.error_status is not None:
            self._error(handler, self.error_status, "the fake server was told to fail")
            return
        prompt = _render_prompt(body["messages"])
        cache_n = _common_prefix(prompt, self._cached_prompt)
        cache_n = min(cache_n, len(prompt) - 1)  # the last prompt token is always evaluated
        reply = self.script.pop(0) if self.script else self.tokens
        deltas = (reply if isinstance(reply, FakeReply) else FakeReply(reply)).deltas()
        if not body.get("tools") or body.get("tool_choice") == "none":
            deltas = [delta for delta in deltas if "tool_calls" not in delta]
        finish_reason = "tool_calls" if any("tool_calls" in d for d in deltas) else "stop"
        max_tokens = body.get("max_tokens", body.get("n_predict"))
        if isinstance(max_tokens, int) and 0 <= max_tokens < len(deltas):
            deltas, finish_reason = deltas[:max_tokens], "length"
        message = _message(deltas)
        # the slot's cache holds the prompt and what was generated after it
        self._cached_prompt = prompt + _PROMPT_TOKEN.findall(_render_output(message))
        stopped = finish_reason != "length"  # a natural stop also generated end-of-text
        usage: dict[str, Any] = {
            "completion_tokens": len(deltas) + stopped,
            "prompt_tokens": len(prompt),
            "total_tokens": len(deltas) + stopped + len(prompt),
            "prompt_tokens_details": {"cached_tokens": cache_n},
        }
        meta = _Meta(
            id="chatcmpl-" + "".join(random.choices(string.ascii_letters + string.digits, k=32)),
            model=self.MODEL,
            prompt_n=len(prompt) - cache_n,
            cache_n=cache_n,
            prompt_ms=max(0.001, self.first_token_delay_seconds * 1000),
        )
        if body.get("stream"):
            self._stream(handler, request, meta, deltas, finish_reason, usage)
            return
        answer = {
            "choices": [{"finish_reason": finish_reason, "index": 0, "message": message}],
            "created": int(time.time()),
            "model": meta.model,
            "system_fingerprint": LLAMA_FINGERPRINT,
            "object": "chat.completion",
            "usage": usage,
            "id": meta.id,
            "timings": meta.timings(usage["completion_tokens"], 0.0),
        }
        request.started_at = time.monotonic()
        handler.answer_json(200, answer, LLAMA_JSON_TYPE)
        request.finished_at = time.monotonic()

    def _stream(
        self,
        handler: _Handler,
        request: LlamaRequest,
        meta: _Meta,
        deltas: list[dict[str, Any]],
        finish_reason: str,
        usage: dict[str, Any],
    ) -> None:
        interval = 1.0 / self.tokens_per_second if self.tokens_per_second else 0.0
        writer = _ChunkedWriter(handler, request)
        handler.send_response(200)
        handler.send_header("X-Accel-Buffering", "no")
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        request.started_at = time.monotonic()
        generation_started = request.started_at
        try:
            # the first result carries the role together with the first token, in one write
            first = [meta.chunk({"role": "assistant", "content": None})]
            for sent, delta in enumerate(deltas):
                if sent == self.error_after_tokens:
                    writer.send([{"error": _llama_error(500, "fake failure")["error"]}])
                    writer.end(done=False)
                    return
                if sent == self.stall_after_tokens:
                    writer.send(first)
                    self.wait(None, handler)
                    request.client_disconnected = handler.hung_up
                    return
                if sent == self.hold_after_tokens:
                    self.wait(None, handler, until=self._resumed.is_set)
                    if handler.hung_up:
                        request.client_disconnected = True
                        return
                if sent and interval and self.wait(interval, handler):
                    request.client_disconnected = handler.hung_up
                    return
                writer.send([*first, meta.chunk(delta)])
                first = []
            final = [meta.chunk({}, finish_reason)]
            if (request.body.get("stream_options") or {}).get("include_usage"):
                final.append({**meta.chunk_head(), "choices": [], "usage": usage})
            generated_ms = (time.monotonic() - generation_started) * 1000
            final[-1]["timings"] = meta.timings(usage["completion_tokens"], generated_ms)
            writer.send([*first, *final])
            writer.end(done=True)
            request.finished_at = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            request.client_disconnected = True


_PROMPT_TOKEN: Final = re.compile(r"\s*\w+|\s*[^\w\s]")


def _render_prompt(messages: list[Any]) -> list[str]:
    """Prompt tokens through a ChatML-like template, ending with the assistant's turn."""
    text = "".join(
        f"<|{message.get('role')}|>{_render_output(message)}<|end|>"
        for message in messages
        if isinstance(message, dict)
    )
    return _PROMPT_TOKEN.findall(text + "<|assistant|>")


def _render_output(message: dict[str, Any]) -> str:
    """A message's text and tool calls as the model generates them (Hermes-style tags)."""
    content = message.get("content")
    text = content if isinstance(content, str) else "" if content is None else json.dumps(content)
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        name = json.dumps(function.get("name"))
        text += f'<tool_call>{{"name": {name}, "arguments": {arguments}}}</tool_call>'
    return text


def _message(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole message the deltas make up, as a non-streamed answer carries it."""
    content = "".join(delta.get("content", "") for delta in deltas)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        for piece in delta.get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"type": "function", "function": {}})
            function = call["function"]
            function.setdefault("name", piece.get("function", {}).get("name", ""))
            arguments = function.get("arguments", "")
            function["arguments"] = arguments + piece.get("function", {}).get("arguments", "")
            call.setdefault("id", piece.get("id"))
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message


def _check_chat_request(body: dict[str, Any]) -> tuple[int, str, str] | None:
    """(status, message, type) of llama.cpp's answer to a request it refuses, or None."""
    return next(_refusals(body), None)


def _refusals(body: dict[str, Any]) -> Iterator[tuple[int, str, str]]:
    """What llama.cpp refuses, in the order it checks: ``oaicompat_chat_params_parse``
    (tools/server/server-common.cpp), then ``common_chat_msgs_parse_oaicompat``,
    ``common_chat_tools_parse_oaicompat`` and ``common_chat_tool_choice_parse_oaicompat``
    (common/chat.cpp). ``std::invalid_argument`` becomes 400, other exceptions 500."""
    invalid, failed = "invalid_request_error", "server_error"
    messages = [message for message in body["messages"] if isinstance(message, dict)]
    for message in messages:
        role = message.get("role")
        if role != "assistant" and "content" not in message:
            yield 400, "All non-assistant messages must contain 'content'", invalid
        if role == "assistant" and "content" not in message and "tool_calls" not in message:
            yield 400, "Assistant message must contain either 'content' or 'tool_calls'!", invalid
        if not isinstance(message.get("content"), str | list | None):
            yield 400, "Expected 'content' to be a string or an array", invalid
    parse = "Failed to parse messages: "
    for message in body["messages"]:
        if not isinstance(message, dict):
            yield 500, f"{parse}Expected 'message' to be an object, got {_dump(message)}", failed
        elif "role" not in message:
            yield 500, f"{parse}Missing 'role' in message: {_dump(message)}", failed
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or call.get("type") != "function":
                yield 500, f"{parse}Missing tool call type: {_dump(call)}", failed
            elif not isinstance(function, dict) or "name" not in function:
                yield 500, f"{parse}Missing tool call name: {_dump(call)}", failed
            elif "arguments" not in function:
                problem = "[json.exception.out_of_range.403] key 'arguments' not found"
                yield 500, parse + problem, failed
    tools = body.get("tools")
    listing = f"; tools = {json.dumps(tools, indent=2, ensure_ascii=False)}"
    if tools is not None and not isinstance(tools, list):
        problem = f"Expected 'tools' to be an array, got {_dump(tools)}"
        yield 500, f"Failed to parse tools: {problem}{listing}", failed
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            problem = f"Unsupported tool type: {_dump(tool)}"
            yield 500, f"Failed to parse tools: {problem}{listing}", failed
        elif not isinstance(tool.get("function"), dict) or "name" not in tool["function"]:
            problem = f"Missing tool function: {_dump(tool)}"
            yield 500, f"Failed to parse tools: {problem}{listing}", failed
    tool_choice = body.get("tool_choice", "auto")
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
        yield 400, f"Invalid tool_choice: {tool_choice}", invalid


def _dump(value: object) -> str:
    """JSON as nlohmann::json's ``dump()`` writes it (compact, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _random_id(length: int) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=length))


def _llama_error(code: int, message: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": kind}}


def _common_prefix(first: list[str], second: list[str]) -> int:
    count = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class _Meta:
    id: str
    model: str
    prompt_n: int
    cache_n: int
    prompt_ms: float
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk_head(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "system_fingerprint": LLAMA_FINGERPRINT,
            "object": "chat.completion.chunk",
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"finish_reason": finish_reason, "index": 0, "delta": delta}
        return {"choices": [choice], **self.chunk_head()}

    def timings(self, predicted_n: int, predicted_ms: float) -> dict[str, float | int]:
        steps = max(0, predicted_n - 1)  # the first token comes with the prompt's logits
        predicted_ms = max(predicted_ms, 0.001)
        return {
            "cache_n": self.cache_n,
            "prompt_n": self.prompt_n,
            "prompt_ms": self.prompt_ms,
            "prompt_per_token_ms": self.prompt_ms / self.prompt_n if self.prompt_n else 0.0,
            "prompt_per_second": 1e3 / self.prompt_ms * self.prompt_n,
            "predicted_n": predicted_n,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / steps if steps else 0.0,
            "predicted_per_second": 1e3 / predicted_ms * steps,
        }


class _ChunkedWriter:
    """SSE events in HTTP/1.1 chunked encoding, as cpp-httplib's chunked content provider."""

    def __init__(self, handler: _Handler, request: LlamaRequest) -> None:
        self._handler = handler
        self._request = request

    def _write(self, data: bytes) -> None:
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self._handler.wfile.flush()

    def send(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self._request.chunks.extend(events)
        text = "".join(f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events)
        self._write(text.encode())

    def end(self, *, done: bool) -> None:
        if done:
            self._write(b"data: [DONE]\n\n")
        self._handler.wfile.write(b"0\r\n\r\n")
        self._handler.wfile.flush()
