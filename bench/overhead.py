"""Orchestration overhead: speech end (the VAD's decision) → first audio handed to the speaker.

Three set-ups run through the real ``Runtime``, one after the other in this process:

* ``fakes``: every port is an instant in-process fake (tests/support/fakes.py), so the whole span is
  the runtime's own work: state machine, commands, tasks, queues, the sentence splitter;
* ``fakes + Silero VAD``: the same with the real VAD on espeak-ng speech;
* ``loopback``: the real adapters (``WhisperTranscriber``, ``LlamaChat``) against the loopback
  servers that speak whisper.cpp's and llama.cpp's wire formats (instant answers) and the real
  Piper tone voice. Here the back-ends' own time (STT, LLM until the first sentence, TTS of the
  first sentence) is subtracted: what is left is the orchestration.

    .venv/bin/python -m bench.overhead [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from assistant.adapters.llama import LlamaChat
from assistant.adapters.piper import PiperSynthesizer
from assistant.adapters.silero import SileroVad
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import Config, LlmConfig, SttConfig
from assistant.core.ports import Chat, Synthesizer, Transcriber, Vad
from assistant.runtime.runtime import Runtime
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
    span_ms,
    stage_rows,
)
from tests.support.fakes import (
    FakeChat,
    FakeSpeaker,
    FakeSynthesizer,
    FakeTranscriber,
    FakeVad,
    FakeWakeWord,
)
from tests.support.scenarios import frames, speak
from tests.support.servers import FakeLlamaServer, FakeWhisperServer
from tests.support.turns import TurnLog, TurnMicrophone, config, tagged_turn

TARGET_MS: Final = 10.0
BACKEND_MARGIN_MS: Final = 25.0
"""Issue 5: speech end → first audio within 25 ms of the back-ends' own time."""
WARMUP_TURNS: Final = 3
QUESTION: Final = " Is the kitchen light on?\n"
REPLY: Final = "Sure. The kitchen light is on now. Anything else?"


async def run_turns(
    cfg: Config,
    turn: Sequence[bytes],
    turns: int,
    *,
    vad: Vad,
    transcriber: Transcriber,
    chat: Chat,
    synthesizer: Synthesizer,
) -> TurnLog:
    log = TurnLog()
    runtime = Runtime(
        cfg,
        microphone=TurnMicrophone(turn, turns),
        speaker=FakeSpeaker(sample_rate_hz=synthesizer.sample_rate_hz),
        wake_word=FakeWakeWord(),
        vad=vad,
        transcriber=transcriber,
        chat=chat,
        synthesizer=synthesizer,
        observers=[log],
    )
    await asyncio.wait_for(runtime.run(), 30 + turns)
    if log.errors or len(log.answered()) != turns:
        raise RuntimeError(f"{len(log.answered())} of {turns} turns answered: {log.errors[:3]}")
    return log


def overhead_row(name: str, log: TurnLog) -> tuple[str, int, float, float, float, float]:
    records = log.answered()
    warm = records[WARMUP_TURNS:]
    e2fa = [v for r in warm if (v := span_ms(r, "speech_end", "first_audio")) is not None]
    cold = span_ms(records[0], "speech_end", "first_audio") or float("nan")
    return name, len(warm), p50(e2fa), p95(e2fa), max(e2fa), cold


async def measure(report: Report, turns: int) -> None:
    root = models_dir()
    cfg = config()
    rows = []
    fakes = await run_turns(
        cfg,
        tagged_turn(),
        turns,
        vad=FakeVad(),
        transcriber=FakeTranscriber(),
        chat=FakeChat(),
        synthesizer=FakeSynthesizer(),
    )
    rows.append(overhead_row("fakes", fakes))
    fakes_p50 = rows[-1][2]

    if have_models(root, "openwakeword/silero_vad.onnx"):
        assert root is not None
        speech = frames(speak("turn on the kitchen light"))
        silero = await run_turns(
            cfg,
            tagged_turn(speech),
            turns,
            vad=SileroVad(cfg.vad, root),
            transcriber=FakeTranscriber(),
            chat=FakeChat(),
            synthesizer=FakeSynthesizer(),
        )
        rows.append(overhead_row("fakes + Silero VAD (espeak speech)", silero))
    loopback = None
    if have_models(root, "piper/tone_voice.onnx"):
        assert root is not None
        loopback = await run_loopback(cfg, root, turns)
        rows.append(overhead_row("loopback servers + tone Piper (whole span)", loopback))

    report.text(
        f"{turns} turns per set-up through the real `Runtime`; the first {WARMUP_TURNS} are "
        "left out of the percentiles (the cold column is the very first turn). Milliseconds."
    )
    report.table(("set-up", "turns", "p50 ms", "p95 ms", "max ms", "cold ms"), rows)
    report.target(
        "orchestration overhead p50 (fakes)", f"{fakes_p50:.2f} ms", "≤ 10 ms", fakes_p50 <= 10
    )
    if loopback is None:
        report.text("Loopback set-up skipped: no `piper/tone_voice.onnx` under LINGLING_MODELS.")
        return
    warm = loopback.answered()[WARMUP_TURNS:]
    report.text(
        "Loopback set-up, stage by stage (`TurnRecord` marks; the servers answer at once, so "
        "`stt` and `llm first token` are the HTTP clients, the loopback and the servers' Python):"
    )
    first = loopback.answered()[0]
    cold = {name: span_ms(first, a, b) for name, a, b in STAGES}
    report.table(
        ("stage", "p50 ms", "p95 ms", "max ms", "first turn ms"),
        [(*row, cold.get(row[0])) for row in stage_rows(warm)],
    )
    rest = [
        e2fa - backend
        for r in warm
        if (e2fa := span_ms(r, "speech_end", "first_audio")) is not None
        and (backend := backend_ms(r)) is not None
    ]
    report.text(
        "Speech end → first audio minus the back-ends' own time "
        "(`stt` + `llm_first_sentence` + `tts_first_sentence`):"
    )
    report.table(
        ("", "p50 ms", "p95 ms", "max ms"),
        [("orchestration (loopback)", p50(rest), p95(rest), max(rest))],
    )
    report.target(
        "orchestration overhead p50 (loopback, back-ends subtracted)",
        f"{p50(rest):.2f} ms",
        "≤ 10 ms",
        p50(rest) <= TARGET_MS,
    )
    report.target(
        "speech end → first audio - back-ends, p95 (loopback)",
        f"{p95(rest):.2f} ms",
        f"≤ {BACKEND_MARGIN_MS:g} ms",
        p95(rest) <= BACKEND_MARGIN_MS,
    )


async def run_loopback(cfg: Config, root: Path, turns: int) -> TurnLog:
    with FakeWhisperServer(QUESTION) as whisper, FakeLlamaServer(REPLY) as llama:
        transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
        chat = LlamaChat(LlmConfig(url=llama.v1_url, model="tiny"))
        synthesizer = PiperSynthesizer(cfg.tts.model_copy(update={"voice": "tone_voice"}), root)
        await asyncio.to_thread(synthesizer.warm)
        try:
            return await run_turns(
                cfg,
                tagged_turn(),
                turns,
                vad=FakeVad(),
                transcriber=transcriber,
                chat=chat,
                synthesizer=synthesizer,
            )
        finally:
            for closer in (transcriber.aclose(), chat.aclose()):
                with contextlib.suppress(Exception):
                    await closer


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    quiet_logs()
    report = Report("overhead", "Orchestration overhead: speech end → first audio")
    asyncio.run(measure(report, 50 if args.quick else 200))
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
