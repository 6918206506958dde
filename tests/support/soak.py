"""The soak: turn after turn through the real ``Runtime``, server failures injected on a schedule,
memory and threads watched (tests/test_soak.py runs it short, ``python -m bench.soak`` long).

* backend ``loopback``: the real ``WhisperTranscriber`` and ``LlamaChat`` against the loopback
  servers that speak whisper.cpp's and llama.cpp's wire formats, run in a child process (so this
  process's memory is the runtime's alone). Every ``every`` turns one request fails, in turn:
  whisper answers 500, llama answers 500, llama's stream breaks off after two tokens with an
  in-stream error;
* backend ``fakes``: in-process fakes of every port (faster), failures injected the same way.

The wake word, the VAD and the speaker are the tagged-audio fakes, synthesis is the fake (the soak
is about the runtime and the HTTP clients, not the models). RSS and threads are read after
``gc.collect()`` at the end of a warm-up and at every tenth of the run.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import LlmConfig, SttConfig
from assistant.core.commands import Outcome
from assistant.core.ports import Chat, Transcriber
from assistant.errors import ChatError, TranscriptionError
from assistant.runtime.observer import TurnRecord
from tests.support.fakes import (
    FakeChat,
    FakeSpeaker,
    FakeSynthesizer,
    FakeTranscriber,
    FakeWakeWord,
)
from tests.support.proc import os_threads, rss_mb
from tests.support.servers import FakeLlamaServer, FakeWhisperServer, _Handler
from tests.support.turns import TurnLog, config, run_tagged_turns

GROWTH_TARGET_MB: Final = 5.0
"""The most RSS may grow over a soak (issue 7)."""
FAILURES: Final = ("stt: HTTP 500", "llm: HTTP 500", "llm: stream cut mid-reply")
OUTCOMES: Final = tuple(str(outcome) for outcome in Outcome)
CODES: Final = {"stt: HTTP 500": "stt", "llm: HTTP 500": "llm", "llm: stream cut mid-reply": "llm"}
"""The error code each injected failure must end its turn with."""


def failure_for(turn_index: int, every: int) -> str | None:
    """The failure injected into turn ``turn_index`` (from 0), if any: every ``every``-th turn,
    cycling through FAILURES."""
    if every <= 0 or turn_index % every != every - 1:
        return None
    return FAILURES[(turn_index // every) % len(FAILURES)]


# -- the loopback servers, in a child process, failing on schedule --------------------------------


class _ScheduledWhisper(FakeWhisperServer):
    """Fails the uploads of the turns ``failure_for`` says (one upload per turn)."""

    def __init__(self, every: int) -> None:
        super().__init__(" Is the kitchen light on?\n")
        self.every = every
        self.uploads = 0

    def handle(self, handler: _Handler, method: str) -> None:
        if method == "POST" and handler.path.startswith(self.INFERENCE_PATH):
            turn = self.uploads
            self.uploads += 1
            self.error_status = 500 if failure_for(turn, self.every) == "stt: HTTP 500" else None
        super().handle(handler, method)
        self.requests.clear()  # the soak watches the client, not what the fake keeps


class _ScheduledLlama(FakeLlamaServer):
    """Fails the chat requests of the turns ``failure_for`` says. Turns whose upload failed
    send no chat request, so the turn is counted from the whisper side's schedule."""

    def __init__(self, every: int) -> None:
        super().__init__("Sure. The kitchen light is on now. Anything else?")
        self.every = every
        self.turn = 0

    def handle(self, handler: _Handler, method: str) -> None:
        if method == "POST" and "chat/completions" in handler.path:
            while failure_for(self.turn, self.every) == "stt: HTTP 500":
                self.turn += 1  # that turn never reached the LLM
            failure = failure_for(self.turn, self.every)
            self.turn += 1
            self.error_status = 500 if failure == "llm: HTTP 500" else None
            self.error_after_tokens = 2 if failure == "llm: stream cut mid-reply" else None
        super().handle(handler, method)
        self.requests.clear()


def serve_loopback(connection: Connection, every: int) -> None:
    """Child process: run both servers, send their URLs, serve until told to stop."""
    with _ScheduledWhisper(every) as whisper, _ScheduledLlama(every) as llama:
        connection.send((whisper.v1_url, llama.v1_url))
        connection.recv()


@contextlib.contextmanager
def loopback_servers(every: int) -> Iterator[tuple[str, str]]:
    """The whisper and llama URLs of both scheduled servers, in a child process."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_loopback, args=(child, every), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the loopback servers did not start")
        urls: tuple[str, str] = parent.recv()
        yield urls
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# -- in-process fakes, failing on schedule -------------------------------------------------------


@dataclass
class QuietWakeWord(FakeWakeWord):
    """The tagged-audio wake word without the list of every frame it saw."""

    def process(self, frame: bytes) -> Any:
        result = super().process(frame)
        self.processed.clear()
        return result


@dataclass
class _Fakes:
    every: int
    transcriber: FakeTranscriber = field(default_factory=FakeTranscriber)
    chat: FakeChat = field(default_factory=lambda: FakeChat(delay_seconds=0.0))

    def before_turn(self, index: int) -> None:
        failure = failure_for(index, self.every)
        self.transcriber.error = (
            TranscriptionError("injected") if failure == "stt: HTTP 500" else None
        )
        self.chat.error_after = {"llm: HTTP 500": 0, "llm: stream cut mid-reply": 2}.get(
            failure or ""
        )
        self.chat.error = ChatError("injected")
        self.transcriber.received.clear()
        self.chat.requests.clear()
        self.chat.tools.clear()


# -- the soak ------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    turns: int
    seconds: float
    rss_mb: float
    os_threads: int
    python_threads: int
    names: frozenset[str]


@dataclass
class Watch:
    total: int
    every: int
    started: float = field(default_factory=time.monotonic)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    outcomes: bytearray = field(default_factory=bytearray)
    """One byte per turn (its index in OUTCOMES): the watch must not grow like a leak."""
    codes: dict[int, str] = field(default_factory=dict)
    warmup: int = 0
    threads: dict[str, int] = field(default_factory=dict)
    """Every Python thread seen at the end of a turn, with the turn it was first seen at."""

    def __post_init__(self) -> None:
        self.warmup = max(20, self.total // 50)

    def turn_finished(self, record: TurnRecord) -> None:
        self.outcomes.append(OUTCOMES.index(str(record.outcome)))
        done = len(self.outcomes)
        for thread in threading.enumerate():
            self.threads.setdefault(thread.name, done)
        step = max(1, self.total // 10)
        if done == self.warmup or (done > self.warmup and done % step == 0) or done == self.total:
            gc.collect()
            self.checkpoints.append(
                Checkpoint(
                    done,
                    time.monotonic() - self.started,
                    rss_mb(),
                    os_threads(),
                    threading.active_count(),
                    frozenset(thread.name for thread in threading.enumerate()),
                )
            )


class _Log(TurnLog):
    def __init__(self, watch: Watch) -> None:
        super().__init__(keep=False, on_turn=watch.turn_finished)
        self.watch = watch

    def error_reported(self, turn: int | None, code: str, message: str, phase: Any) -> None:
        if turn is not None:
            self.watch.codes[turn] = code


async def soak(turns: int, every: int, backend: str) -> Watch:
    """Run ``turns`` turns with a failure every ``every`` turns on ``backend`` (``loopback`` or
    ``fakes``); what was watched."""
    watch = Watch(turns, every)
    log = _Log(watch)
    # One request a pause (the pause with the margin): each injected STT failure hits a request
    # the turn needs, not an early one whose failure is no error of its own.
    cfg = config(vad={"speculate_seconds": 0.16})
    speaker = FakeSpeaker()
    synthesizer = FakeSynthesizer()

    def before_turn(index: int) -> None:
        speaker.played.clear()
        synthesizer.sentences.clear()

    async def run(transcriber: Transcriber, chat: Chat, hook: Any) -> None:
        def both(index: int) -> None:
            before_turn(index)
            if hook is not None:
                hook(index)

        await run_tagged_turns(
            cfg,
            transcriber=transcriber,
            chat=chat,
            synthesizer=synthesizer,
            turns=turns,
            log=log,
            speaker=speaker,
            wake_word=QuietWakeWord(),
            before_turn=both,
        )

    if backend == "fakes":
        fakes = _Fakes(every)
        await run(fakes.transcriber, fakes.chat, fakes.before_turn)
        return watch
    with loopback_servers(every) as (whisper_url, llama_url):
        transcriber = WhisperTranscriber(SttConfig(url=whisper_url))
        chat = LlamaChat(LlmConfig(url=llama_url, model="tiny"))
        try:
            await run(transcriber, chat, None)
        finally:
            await transcriber.aclose()
            await chat.aclose()
    return watch
