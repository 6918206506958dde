"""Soak: thousands of turns through the real ``Runtime``, with server failures injected, watching
memory and threads; and a long idle run of a real ``lingling run`` watching its CPU.

Turns (default 10,000; ``--quick`` 500):

* ``--backend loopback`` (default): the real ``WhisperTranscriber`` and ``LlamaChat`` against the
  loopback servers that speak whisper.cpp's and llama.cpp's wire formats, run in a child process
  (so this process's memory is the runtime's alone). Every ``--fail-every`` turns one request
  fails, in turn: whisper answers 500, llama answers 500, llama's stream breaks off after two
  tokens with an in-stream error;
* ``--backend fakes``: in-process fakes of every port (faster), failures injected the same way.

The wake word, the VAD and the speaker are the tagged-audio fakes, synthesis is the fake
(the soak is about the runtime and the HTTP clients, not the models). RSS and threads are read
after ``gc.collect()`` at the start (after a warm-up) and at every tenth of the run.

Idle (``--idle-seconds N``): a real ``lingling run`` (one wake word, the VAD, the tone voice, no
MQTT) listening to N seconds of silence paced in real time; CPU and RSS per tenth of the run.
The hour-long run: ``.venv/bin/python -m bench.soak --idle-seconds 3600``.

    .venv/bin/python -m bench.soak [--quick] [--turns N] [--backend loopback|fakes]
    .venv/bin/python -m bench.soak --idle-seconds 60
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import sys
import threading
import time
from collections.abc import Sequence
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
from assistant.runtime.runtime import Runtime
from bench.common import (
    Report,
    TurnLog,
    TurnMicrophone,
    config,
    have_models,
    models_dir,
    os_threads,
    parser,
    quiet_logs,
    rss_mb,
    tagged_turn,
)
from bench.process import LinglingProcess, write_run_config, write_silent_wav
from bench.profiling import workdir
from tests.support.fakes import FakeChat, FakeSpeaker, FakeSynthesizer, FakeTranscriber, FakeVad
from tests.support.fakes import FakeWakeWord as _FakeWakeWord
from tests.support.servers import FakeLlamaServer, FakeWhisperServer, _Handler

GROWTH_TARGET_MB: Final = 5.0
FAILURES: Final = ("stt: HTTP 500", "llm: HTTP 500", "llm: stream cut mid-reply")
OUTCOMES: Final = tuple(str(outcome) for outcome in Outcome)
CODES: Final = {"stt: HTTP 500": "stt", "llm: HTTP 500": "llm", "llm: stream cut mid-reply": "llm"}


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
def loopback_servers(every: int) -> Any:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_loopback, args=(child, every), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the loopback servers did not start")
        yield parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# -- in-process fakes, failing on schedule -------------------------------------------------------


@dataclass
class FakeWakeWord(_FakeWakeWord):
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
    watch = Watch(turns, every)
    log = _Log(watch)
    cfg = config()
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

        runtime = Runtime(
            cfg,
            microphone=TurnMicrophone(tagged_turn(), turns, before_turn=both),
            speaker=speaker,
            wake_word=FakeWakeWord(),
            vad=FakeVad(),
            transcriber=transcriber,
            chat=chat,
            synthesizer=synthesizer,
            observers=[log],
        )
        await runtime.run()

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


def report_soak(report: Report, watch: Watch, backend: str) -> None:
    first, last = watch.checkpoints[0], watch.checkpoints[-1]
    rows = [
        (c.turns, c.seconds, c.rss_mb, c.rss_mb - first.rss_mb, c.os_threads, c.python_threads)
        for c in watch.checkpoints
    ]
    rate = (last.turns - first.turns) / max(1e-9, last.seconds - first.seconds)
    report.text(
        f"{watch.total} turns, backend `{backend}`, a failure every {watch.every} turns; "
        f"{rate:.0f} turns/s. RSS after `gc.collect()`, from the end of the warm-up "
        f"({watch.warmup} turns):"
    )
    report.table(
        ("turns", "elapsed s", "RSS MB", "growth MB", "OS threads", "Python threads"), rows
    )
    injected = [i for i in range(watch.total) if failure_for(i, watch.every)]
    outcomes = [OUTCOMES[index] for index in watch.outcomes]
    failed = [i for i, outcome in enumerate(outcomes) if outcome == "failed"]
    right_code = sum(
        1 for i in injected if watch.codes.get(i + 1) == CODES[failure_for(i, watch.every) or ""]
    )
    followed = [i for i in injected if i + 1 < watch.total]
    recovered = sum(1 for i in followed if i + 1 < len(outcomes) and outcomes[i + 1] == "answered")
    answered = outcomes.count("answered")
    rows2 = [
        ("turns finished", len(watch.outcomes)),
        ("answered", answered),
        ("failures injected", len(injected)),
        ("turns failed", len(failed)),
        ("failed with the injected error's code", right_code),
        ("next turn answered after a failure", f"{recovered} of {len(followed)}"),
    ]
    report.table(("", "count"), rows2)
    growth = last.rss_mb - first.rss_mb
    report.target(
        "soak: RSS growth", f"{growth:+.1f} MB", f"≤ {GROWTH_TARGET_MB:g} MB", growth <= 5
    )
    most = max(c.os_threads for c in watch.checkpoints)
    late = {name: turn for name, turn in watch.threads.items() if turn > 1}
    if late:
        report.text(
            "Threads started after the first turn: "
            + ", ".join(f"`{name}` (turn {turn})" for name, turn in sorted(late.items()))
            + ". `asyncio.to_thread` (speech synthesis) runs on asyncio's default executor, "
            "which starts another thread whenever none is idle at the moment of a call, up to "
            "min(32, cores + 4): the count is bounded but not fixed."
        )
    report.target(
        "soak: threads constant after the first turn",
        f"{first.os_threads} → {last.os_threads} (OS; max {most}); {len(late)} started later",
        "constant",
        not late and first.os_threads == last.os_threads,
    )
    ok = (
        len(watch.outcomes) == watch.total
        and failed == injected
        and recovered == len(followed)
        and right_code == len(injected)
    )
    report.target(
        "soak: every injected failure ends its turn, the next works",
        f"{recovered} of {len(followed)}",
        "all",
        ok,
    )


def idle(report: Report, seconds: float) -> None:
    root = models_dir()
    if not have_models(root, "openwakeword/hey_jarvis_v0.1.onnx", "piper/tone_voice.onnx"):
        report.text("Idle run skipped: the models are not under LINGLING_MODELS.")
        return
    assert root is not None
    windows = 10
    with workdir() as work:
        wav = write_silent_wav(work / "silence.wav", seconds + 60)
        cfg = write_run_config(work / "idle.yaml", root, ["hey_jarvis"])
        with LinglingProcess(cfg, wav, work / "out.wav") as process:
            ready = process.wait_ready()
            samples = [
                process.idle(seconds / windows, settle_seconds=0.0 if i else 2.0)
                for i in range(windows)
            ]
    rows = [
        (
            f"{i * seconds / windows:.0f}-{(i + 1) * seconds / windows:.0f}",
            s.cpu_percent,
            s.rss_mb_last,
            s.threads,
        )
        for i, s in enumerate(samples)
    ]
    report.text(
        f"`lingling run` idle for {seconds:g} s (ready after {ready:.2f} s), silence paced in real "
        "time; CPU in % of one core per window:"
    )
    report.table(("window s", "CPU %", "RSS MB", "threads"), rows)
    cpu = sum(s.cpu_percent * s.seconds for s in samples) / sum(s.seconds for s in samples)
    growth = samples[-1].rss_mb_last - samples[0].rss_mb_first
    report.target("idle: mean CPU", f"{cpu:.1f} %", "≤ 5 % of one core", cpu <= 5)
    report.target(
        "idle: RSS growth", f"{growth:+.1f} MB", f"≤ {GROWTH_TARGET_MB:g} MB", growth <= 5
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "")
    args.add_argument("--turns", type=int, help="turns to run (default 10000, quick 500)")
    args.add_argument("--backend", choices=("loopback", "fakes"), default="loopback")
    args.add_argument("--fail-every", type=int, default=50, help="inject a failure every N turns")
    args.add_argument("--idle-seconds", type=float, help="instead: a real idle run this long")
    options = args.parse_args(argv)
    quiet_logs(50)  # CRITICAL: the injected failures would log thousands of warnings
    if options.idle_seconds:
        report = Report("soak_idle", "Idle soak of `lingling run`")
        idle(report, options.idle_seconds)
    else:
        turns = options.turns or (500 if options.quick else 10_000)
        report = Report("soak", "Soak: turns, memory, threads, recovery")
        watch = asyncio.run(soak(turns, options.fail_every, options.backend))
        report_soak(report, watch, options.backend)
    report.emit(options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
