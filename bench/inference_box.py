"""One inference box for many satellites: what 1, 2 and 4 simultaneous turns cost against one
real ``whisper-server`` and one real ``llama-server``.

Each satellite is a pair of Lingling's own clients (``WhisperTranscriber``, ``LlamaChat``) with
its own connections. A burst starts N turns at the same instant (N people ending their commands
together in N rooms); each turn uploads a spoken command (espeak-ng, 1.6 s) to whisper-server,
then streams Lingling's prompt with the transcript from llama-server. Per turn: STT (upload →
transcript, queueing included), the LLM's first token and first sentence, and speech end → first
sentence (what the satellite waits for before it can speak). llama-server runs once with one
slot (``-np 1``) and once with its default (``-np`` auto: 4 slots sharing one KV cache);
whisper-server always serves one request at a time.

The models are the tiny shared test models (whisper/kitchen-light.ggml.bin is a scripted model
with one layer of width 64, far cheaper than tiny.en, that hears anything as "turn on the kitchen
light"; llm/stories260K.gguf is a real 260K-parameter llama that writes until ``MAX_TOKENS``):
the absolute times are far below a house's real models; the way they grow with N (whisper-server
one request at a time, llama-server's slots) is what carries over.

    .venv/bin/python -m bench.inference_box [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import LlmConfig, SttConfig
from bench.common import (
    Report,
    have_models,
    machine_line,
    models_dir,
    p50,
    parser,
    quiet_logs,
    server_binary,
)
from bench.real_servers import free_port, running
from tests.support.scenarios import speak

LLM_MODEL: Final = "llm/stories260K.gguf"
WHISPER_MODEL: Final = "whisper/kitchen-light.ggml.bin"
COMMAND: Final = "turn on the kitchen light"
CONCURRENCY: Final = (1, 2, 4)
SLOTS: Final = {"-np 1": ["-np", "1"], "-np auto (4, one KV cache)": []}
WARMUP_BURSTS: Final = 1
MAX_TOKENS: Final = 128


@dataclass(frozen=True, slots=True)
class Turn:
    stt_ms: float
    first_token_ms: float
    first_sentence_ms: float
    """From the LLM request."""
    llm_total_ms: float

    @property
    def to_first_sentence_ms(self) -> float:
        """Speech end (the upload) → the reply's first sentence."""
        return self.stt_ms + self.first_sentence_ms


async def one_turn(transcriber: WhisperTranscriber, chat: LlamaChat, pcm: bytes) -> Turn:
    started = time.perf_counter()
    text = await transcriber.transcribe(pcm)
    transcribed = time.perf_counter()
    messages = [
        {"role": "system", "content": LlmConfig().system_prompt},
        {"role": "user", "content": text.strip()},
    ]
    first_token = first_sentence = None
    reply = ""
    async for chunk in chat.stream(messages):
        if chunk.text:
            now = time.perf_counter()
            first_token = first_token or now
            reply += chunk.text
            if first_sentence is None and any(mark in reply for mark in ".?!"):
                first_sentence = now
    done = time.perf_counter()
    if first_token is None:
        raise RuntimeError(f"no reply to {text!r}")
    return Turn(
        stt_ms=1000 * (transcribed - started),
        first_token_ms=1000 * (first_token - transcribed),
        first_sentence_ms=1000 * ((first_sentence or done) - transcribed),
        llm_total_ms=1000 * (done - transcribed),
    )


async def bursts(whisper: str, llama: str, pcm: bytes, n: int, count: int) -> list[list[Turn]]:
    stt = SttConfig(url=f"{whisper}/v1")
    llm = LlmConfig(url=f"{llama}/v1", max_tokens=MAX_TOKENS, temperature=0.0)
    clients = [(WhisperTranscriber(stt), LlamaChat(llm)) for _ in range(n)]
    try:
        await asyncio.gather(*(c.warm_up() for pair in clients for c in pair))
        results = []
        for _ in range(WARMUP_BURSTS + count):
            turns = await asyncio.gather(*(one_turn(t, c, pcm) for t, c in clients))
            results.append(list(turns))
        return results[WARMUP_BURSTS:]
    finally:
        for transcriber, chat in clients:
            await transcriber.aclose()
            await chat.aclose()


@contextlib.contextmanager
def servers(
    root: Path, whisper_bin: Path, llama_bin: Path, slots: Sequence[str], work: Path
) -> Iterator[tuple[str, str]]:
    whisper_port, llama_port = free_port(), free_port()
    whisper = [str(whisper_bin), "-m", str(root / WHISPER_MODEL), "--host", "127.0.0.1"]
    whisper += ["--port", str(whisper_port), "--inference-path", "/v1/audio/transcriptions"]
    whisper += ["-t", "2"]
    llama = [str(llama_bin), "-m", str(root / LLM_MODEL), "--host", "127.0.0.1"]
    llama += ["--port", str(llama_port), "-c", "2048", "-t", "2", *slots]
    with (
        running(whisper, whisper_port, work / "whisper.log") as whisper_url,
        running(llama, llama_port, work / "llama.log") as llama_url,
    ):
        yield whisper_url, llama_url


def measure(report: Report, root: Path, whisper_bin: Path, llama_bin: Path, count: int) -> None:
    pcm = speak(COMMAND).astype("<i2").tobytes()
    rows = []
    slowest: dict[tuple[str, int], float] = {}
    for name, slots in SLOTS.items():
        with (
            tempfile.TemporaryDirectory(prefix="lingling-box-") as tmp,
            servers(root, whisper_bin, llama_bin, slots, Path(tmp)) as (whisper, llama),
        ):
            for n in CONCURRENCY:
                results = asyncio.run(bursts(whisper, llama, pcm, n, count))
                turns = [turn for burst in results for turn in burst]
                last = [max(t.to_first_sentence_ms for t in burst) for burst in results]
                slowest[(name, n)] = p50(last)
                rows.append(
                    (
                        name,
                        n,
                        len(turns),
                        p50([t.stt_ms for t in turns]),
                        max(t.stt_ms for t in turns),
                        p50([t.first_token_ms for t in turns]),
                        p50([t.first_sentence_ms for t in turns]),
                        p50([t.llm_total_ms for t in turns]),
                        p50([t.to_first_sentence_ms for t in turns]),
                        p50(last),
                    )
                )
    seconds = len(pcm) / 32_000
    report.text(
        f"{count} bursts of N simultaneous turns (after {WARMUP_BURSTS} warm-up burst), each "
        f"turn a {seconds:.1f} s spoken command uploaded to `{whisper_bin.name}` ({WHISPER_MODEL}, "
        f"`-t 2`) and Lingling's system prompt with the transcript streamed from "
        f"`{llama_bin.name}` ({LLM_MODEL}, `-c 2048 -t 2`, at most {MAX_TOKENS} tokens, "
        "temperature 0). "
        "Both servers on this 2-core machine. Times in ms, p50 over every turn; the last column "
        "is the slowest turn of each burst (p50 over bursts): what the last satellite waits."
    )
    report.table(
        (
            "llama-server",
            "N",
            "turns",
            "stt",
            "stt max",
            "llm first token",
            "llm first sentence",
            "llm whole reply",
            "speech end → first sentence",
            "slowest of the burst",
        ),
        rows,
    )
    for name in SLOTS:
        one, four = slowest[(name, 1)], slowest[(name, 4)]
        report.text(
            f"`{name}`: the slowest of 4 simultaneous turns waits {four / one:.1f} times as long "
            "as one turn alone."
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    quiet_logs()
    report = Report("inference_box", "One inference box, several satellites: simultaneous turns")
    report.text(machine_line())
    root = models_dir()
    whisper_bin = server_binary("LINGLING_WHISPER_SERVER", "whisper-server")
    llama_bin = server_binary("LINGLING_LLAMA_SERVER", "llama-server")
    if whisper_bin is None or llama_bin is None or not have_models(root, LLM_MODEL, WHISPER_MODEL):
        report.text(
            "Skipped: needs whisper-server and llama-server (scripts/build-servers builds them) "
            f"and {WHISPER_MODEL}, {LLM_MODEL} under LINGLING_MODELS."
        )
    else:
        assert root is not None
        measure(report, root, whisper_bin, llama_bin, 3 if args.quick else 10)
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
