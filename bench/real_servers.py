"""Whole turns against the REAL llama.cpp server (and the real whisper.cpp server), per stage.

The servers run with the shared tiny models (llm/two-sentences.gguf answers "Sure. The kitchen
light is on now. Anything else?"; whisper/kitchen-light.ggml.bin transcribes anything as "turn on
the kitchen light"), started on free loopback ports like tests/test_real_servers.py starts them.
Turns go through the real ``Runtime`` with the real ``WhisperTranscriber``, ``LlamaChat`` and the
Piper tone voice; the wake word and the VAD are the tagged-audio fakes. Without a whisper-server
binary the loopback whisper server stands in; without llama-server (or the models) it skips.

Binaries: $LINGLING_LLAMA_SERVER / $LINGLING_WHISPER_SERVER, PATH, or scripts/build-servers'
cache (~/.cache/lingling/servers/*/bin).

    .venv/bin/python -m bench.real_servers [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from assistant.adapters.llama import LlamaChat
from assistant.adapters.piper import PiperSynthesizer
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import SttConfig
from bench.common import (
    STAGES,
    Report,
    backend_ms,
    have_models,
    models_dir,
    p50,
    p95,
    parser,
    quiet_logs,
    server_binary,
    span_ms,
    stage_rows,
)
from tests.support.servers import FakeWhisperServer
from tests.support.turns import TurnLog, config, run_tagged_turns

START_TIMEOUT_SECONDS: Final = 60.0
WARMUP_TURNS: Final = 2
BACKEND_MARGIN_MS: Final = 25.0
LLM_MODEL: Final = "llm/two-sentences.gguf"
WHISPER_MODEL: Final = "whisper/kitchen-light.ggml.bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def running(command: Sequence[str], port: int, log_path: Path) -> Iterator[str]:
    """Run a server until ``GET /health`` answers 200; yield its base URL; stop it after."""
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not _ready(url + "/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"{command[0]} did not start:\n{tail}")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def whisper_url(binary: Path | None, model: Path, work: Path) -> Iterator[str]:
    if binary is None:
        with FakeWhisperServer() as fake:
            yield fake.url
        return
    port = free_port()
    command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-t", "2", "--inference-path", "/v1/audio/transcriptions"]
    with running(command, port, work / "whisper.log") as url:
        yield url


async def turns_against(llama: str, whisper: str, root: Path, turns: int) -> TurnLog:
    # The tiny model's context is 512 tokens (one per character): a short prompt and history.
    llm = {"system_prompt": "Be brief.", "history_turns": 2}
    cfg = config(tts={"voice": "tone_voice"}, llm=llm)
    transcriber = WhisperTranscriber(SttConfig(url=f"{whisper}/v1"))
    chat = LlamaChat(cfg.llm.model_copy(update={"url": f"{llama}/v1", "max_tokens": 64}))
    synthesizer = PiperSynthesizer(cfg.tts, root)
    await asyncio.to_thread(synthesizer.warm)
    log = await run_tagged_turns(
        cfg,
        transcriber=transcriber,
        chat=chat,
        synthesizer=synthesizer,
        turns=turns,
        closers=(transcriber.aclose, chat.aclose),
    )
    if log.errors or len(log.answered()) != turns:
        raise RuntimeError(f"{len(log.answered())} of {turns} turns answered: {log.errors[:3]}")
    return log


def measure(
    report: Report, root: Path, llama_bin: Path, whisper_bin: Path | None, turns: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="lingling-servers-") as tmp:
        work = Path(tmp)
        port = free_port()
        command = [str(llama_bin), "-m", str(root / LLM_MODEL), "--host", "127.0.0.1"]
        command += ["--port", str(port), "-c", "512", "-np", "1", "-t", "2"]
        with (
            running(command, port, work / "llama.log") as llama,
            whisper_url(whisper_bin, root / WHISPER_MODEL, work) as whisper,
        ):
            log = asyncio.run(turns_against(llama, whisper, root, turns))
    records = log.answered()
    warm = records[WARMUP_TURNS:]
    whisper_kind = f"`{whisper_bin.name}` (real)" if whisper_bin else "the loopback fake"
    report.text(
        f"{turns} turns through the `Runtime` against `{llama_bin}` ({LLM_MODEL}, `-c 512 -np 1 "
        f"-t 2`) and {whisper_kind} for STT; the first {WARMUP_TURNS} turns are left out. "
        "Per stage (ms):"
    )
    rows = stage_rows(warm)
    cold = {name: span_ms(records[0], a, b) for name, a, b in STAGES}
    report.table(
        ("stage", "p50 ms", "p95 ms", "max ms", "first turn ms"),
        [(*row, cold.get(row[0])) for row in rows],
    )
    rest = [
        e2fa - backend
        for r in warm
        if (e2fa := span_ms(r, "speech_end", "first_audio")) is not None
        and (backend := backend_ms(r)) is not None
    ]
    backends = [b for r in warm if (b := backend_ms(r)) is not None]
    timings = [r.llm_timings for r in warm if r.llm_timings]
    report.table(
        ("", "p50 ms", "p95 ms", "max ms"),
        [
            (
                "back-ends' own time (stt + llm first sentence + tts)",
                p50(backends),
                p95(backends),
                max(backends),
            ),
            ("speech end → first audio - back-ends", p50(rest), p95(rest), max(rest)),
        ],
    )
    if timings:
        keys = ("prompt_n", "cache_n", "prompt_ms", "predicted_n", "predicted_per_second")
        report.text("llama.cpp's own `timings` (p50 over the turns):")
        report.table(keys, [[p50([t.get(k, float("nan")) for t in timings]) for k in keys]])
    report.target(
        "speech end → first audio - back-ends, p95 (real servers)",
        f"{p95(rest):.1f} ms",
        f"≤ {BACKEND_MARGIN_MS:g} ms",
        p95(rest) <= BACKEND_MARGIN_MS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    quiet_logs()
    report = Report("real_servers", "Real llama.cpp / whisper.cpp servers")
    root = models_dir()
    llama_bin = server_binary("LINGLING_LLAMA_SERVER", "llama-server")
    whisper_bin = server_binary("LINGLING_WHISPER_SERVER", "whisper-server")
    if root is not None and not (root / WHISPER_MODEL).is_file():
        whisper_bin = None
    if llama_bin is None or not have_models(root, LLM_MODEL, "piper/tone_voice.onnx"):
        report.text(
            "Skipped: no llama-server binary (scripts/build-servers builds one) or no "
            f"{LLM_MODEL} / piper/tone_voice.onnx under LINGLING_MODELS."
        )
        report.target("speech end → first audio - back-ends (real servers)", "-", "≤ 25 ms", None)
    else:
        assert root is not None
        measure(report, root, llama_bin, whisper_bin, 10 if args.quick else 30)
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
