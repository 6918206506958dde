"""Speculative transcription: true end of speech → first audio, with and without it.

Spoken commands (espeak-ng, tests/support/scenarios.py), some with a 0.3-0.6 s pause in the middle,
run through the real ``Runtime`` with the real openWakeWord and Silero VAD, paced like a microphone.
The transcriber stands for a whisper.cpp server on a small CPU: it takes ``--stt-ms`` per request
and, like the real server, works on one request at a time and finishes a request even when the
client has gone (a dropped speculation still occupies it). The LLM, voice and speaker are instant,
so what is measured is what endpointing and transcription add. Both variants run on the same
clips, interleaved; a command is "cut" when the upload used does not hold all of it. The end is
the fixed hangover (``vad.end_of_turn: silence``); ``bench.end_of_turn`` measures the end decided
from evidence, with real voices and back-end delays, and supersedes these figures.

    .venv/bin/python -m bench.speculation [--quick] [--stt-ms 300]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assistant.adapters.openwakeword import OpenWakeWord
from assistant.adapters.silero import SileroVad
from assistant.config import Config, VadConfig, WakeConfig
from assistant.core.audioformat import FRAME_SAMPLES
from assistant.runtime.runtime import Runtime
from bench.common import markdown_table, models_dir, p50, p95, parser, quiet_logs
from bench.live import OneAtATime, PacedMicrophone
from tests.support.fakes import FakeChat, FakeSpeaker, FakeSynthesizer
from tests.support.scenarios import Audio, Scenario, concat, frames, silence, speak
from tests.support.turns import TurnLog

COMMANDS: list[tuple[str, str, float]] = [
    ("turn on the kitchen light", "", 0.0),
    ("what is the weather like tomorrow", "", 0.0),
    ("set a timer for ten minutes", "", 0.0),
    ("turn on the", "kitchen light", 0.3),
    ("what is the weather", "like tomorrow", 0.45),
    ("set a timer for", "ten minutes", 0.6),
]


@dataclass(frozen=True)
class Outcome:
    end_to_audio_ms: float | None
    cut: bool
    requests: int


def clip(first: str, second: str, pause_seconds: float) -> tuple[Audio, int, int]:
    """The clip, and the command's true start and end (samples)."""
    command = (
        speak(first) if not second else concat(speak(first), silence(pause_seconds), speak(second))
    )
    scene = Scenario.build(command, trail_seconds=1.2)
    return scene.samples, scene.command_start, scene.command_end


async def one_turn(
    samples: Audio, start: int, end: int, speculate_seconds: float, stt_seconds: float
) -> Outcome:
    root = models_dir()
    assert root is not None
    vad = {"speculate_seconds": speculate_seconds, "end_of_turn": "silence"}
    config = Config.model_validate({"vad": vad})
    mic = PacedMicrophone(frames(samples))
    stt = OneAtATime(stt_seconds, lambda _: "what is the weather like")
    runtime = Runtime(
        config,
        microphone=mic,
        speaker=FakeSpeaker(),
        wake_word=OpenWakeWord(WakeConfig(models=["hey_jarvis"]), root),
        vad=SileroVad(VadConfig(), root),
        transcriber=stt,
        chat=FakeChat(pieces=("Sunny.",)),
        synthesizer=FakeSynthesizer(),
        observers=[log := TurnLog()],
    )
    await asyncio.wait_for(runtime.run(), 60)
    if not log.records or "first_audio" not in log.records[0].marks:
        return Outcome(None, True, len(stt.requests))
    end_frame = (end - 1) // FRAME_SAMPLES  # the frame holding the last sample of speech
    true_end = mic.delivered[end_frame]
    delay_ms = (log.records[0].marks["first_audio"] - true_end) * 1000
    used = stt.requests[-1].pcm
    offset = samples.astype("<i2").tobytes().find(used) // 2
    cut = offset < 0 or offset > start or offset + len(used) // 2 < end
    return Outcome(delay_ms, cut, len(stt.requests))


async def measure(stt_seconds: float, repeats: int) -> list[tuple[object, ...]]:
    clips = [clip(*command) for command in COMMANDS]
    results: dict[float, list[Outcome]] = {0.16: [], 0.0: []}
    for _ in range(repeats):
        for samples, start, end in clips:
            for speculate in results:  # interleaved: same clip, both variants
                results[speculate].append(
                    await one_turn(samples, start, end, speculate, stt_seconds)
                )
    rows: list[tuple[object, ...]] = []
    for speculate, outcomes in results.items():
        delays = [o.end_to_audio_ms for o in outcomes if o.end_to_audio_ms is not None]
        rows.append(
            (
                "on (0.16 s)" if speculate else "off",
                p50(delays),
                p95(delays),
                sum(o.cut for o in outcomes),
                len(outcomes),
                float(np.mean([o.requests for o in outcomes])),
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__ or "")
    args.add_argument("--stt-ms", type=float, default=300.0, help="the transcriber's time")
    options = args.parse_args(argv)
    quiet_logs()
    if models_dir() is None:
        print("Skipped: no LINGLING_MODELS.")
        return 0
    rows = asyncio.run(measure(options.stt_ms / 1000, 1 if options.quick else 2))
    print(f"True end of speech → first audio, transcriber {options.stt_ms:g} ms, one at a time:\n")
    headers = ["speculation", "p50 ms", "p95 ms", "cut", "turns", "requests per turn"]
    print(markdown_table(headers, rows))
    on, off = rows[0][1], rows[1][1]
    assert isinstance(on, float)
    assert isinstance(off, float)
    print(f"\nspeculation saves {off - on:.0f} ms at the median (ratio off/on {off / on:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
