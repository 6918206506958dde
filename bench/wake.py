"""Wake word end → ``listening``, and the per-frame cost of wake word + VAD inference.

Clips are "lead-in, wake word, pause, command, silence" (tests/support/scenarios.py) with the wake
word from espeak-ng (several voices and speeds) or a person's recording (wyoming_hey_jarvis.wav, its
true end where the voiced part ends), clean and with noise. They run through the real
``Runtime`` with the real openWakeWord and Silero VAD (fakes for the servers):

* in audio time (input read as fast as possible): end of the frame the wake word fired on - true
  end of the wake word;
* in wall time (input paced like a microphone, earcon played in real time): the moment
  ``listening`` is entered - the moment the wake word's last sample was captured.

    .venv/bin/python -m bench.wake [--quick]
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from assistant.adapters.openwakeword import OpenWakeWord
from assistant.adapters.silero import SileroVad
from assistant.adapters.wavfile import WavFileSpeaker
from assistant.config import VadConfig, WakeConfig
from assistant.core.audioformat import FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.commands import Phase
from assistant.core.ports import Speaker
from assistant.runtime.runtime import Runtime
from bench.common import (
    Report,
    have_models,
    mean,
    models_dir,
    p50,
    p95,
    parser,
    quiet_logs,
    span_ms,
)
from tests.support.fakes import FakeChat, FakeSpeaker, FakeSynthesizer, FakeTranscriber
from tests.support.scenarios import (
    VOICED_LEVEL,
    Audio,
    Scenario,
    frames,
    mix,
    noise,
    recording,
    speak,
)
from tests.support.turns import TurnLog, config

WORDS: Final = ("hey_jarvis", "alexa", "hey_mycroft")
ESPEAK_VOICES: Final = (("en-us", 150), ("en-gb", 180), ("en-us+f3", 130), ("en-us", 190))
NOISES: Final = (0.0, 300.0)
COMMAND: Final = "turn on the kitchen light"


@dataclass(frozen=True, slots=True)
class WakeClip:
    name: str
    scene: Scenario

    @property
    def wake_end_seconds(self) -> float:
        return self.scene.wake_end / SAMPLE_RATE_HZ


@dataclass
class PacedMicrophone:
    """Frames delivered as a microphone would: frame i once it is complete, on the monotonic
    clock (``started_at`` is when sample 0 was captured)."""

    items: Sequence[bytes]
    started_at: float = 0.0

    @property
    def realtime(self) -> bool:
        return True

    async def frames(self) -> AsyncIterator[bytes]:
        self.started_at = time.monotonic()
        for index, frame in enumerate(self.items):
            await asyncio.sleep(
                max(0.0, self.started_at + (index + 1) * FRAME_SECONDS - time.monotonic())
            )
            yield frame


@dataclass
class FastMicrophone:
    items: Sequence[bytes]

    @property
    def realtime(self) -> bool:
        return False

    async def frames(self) -> AsyncIterator[bytes]:
        for frame in self.items:
            yield frame


def first_utterance_end(samples: Audio, quiet_rms: float = 150.0) -> int:
    """Where the first utterance in a recording ends: the start of the first 0.25 s of quiet
    (10 ms RMS under ``quiet_rms``) after the first voiced sample (the recording of the wake
    word has a second, shorter sound after the word). Voiced: 10 ms RMS over VOICED_LEVEL."""
    block = SAMPLE_RATE_HZ // 100
    levels = [
        float(np.sqrt(np.mean(np.square(samples[i : i + block].astype(np.float64)))))
        for i in range(0, samples.size - block + 1, block)
    ]
    onset = next((i for i, level in enumerate(levels) if level > VOICED_LEVEL), 0)
    quiet_blocks = 25
    for index in range(onset, len(levels) - quiet_blocks):
        if all(level < quiet_rms for level in levels[index : index + quiet_blocks]):
            return index * block
    return samples.size


def clips(quick: bool) -> list[WakeClip]:
    command = speak(COMMAND)
    found = []
    voices = ESPEAK_VOICES[:2] if quick else ESPEAK_VOICES
    for (voice, wpm), noise_rms in itertools.product(voices, NOISES):
        scene = Scenario.build(command, wake=speak("hey jarvis", voice, wpm), noise_rms=noise_rms)
        found.append(WakeClip(f"espeak {voice} {wpm} wpm, noise {noise_rms:g}", scene))
    person = recording("wyoming_hey_jarvis")
    person = person[: first_utterance_end(person)]
    for noise_rms in NOISES:
        scene = Scenario.build(command, wake=person, noise_rms=noise_rms)
        found.append(WakeClip(f"recorded, noise {noise_rms:g}", scene))
    return found


async def wake_turn(
    clip: WakeClip, wake_word: OpenWakeWord, vad: SileroVad, *, realtime: bool, out: Path
) -> tuple[float | None, float | None, float | None]:
    """(audio latency s, wall latency s, wake→listening ms) of one clip; None where it never
    reached listening."""
    # Wall-time runs stop 1 s after the wake word; no_speech ends the turn soon after.
    cfg = config(vad={"no_speech_seconds": 0.5})
    items = clip.scene.frames()
    mic: FastMicrophone | PacedMicrophone
    speaker: Speaker
    if realtime:
        items = items[: int((clip.wake_end_seconds + 1.0) / FRAME_SECONDS)]
        mic = PacedMicrophone(items)
        speaker = WavFileSpeaker(out, 16_000, realtime=True)
    else:
        mic = FastMicrophone(items)
        speaker = FakeSpeaker()
    log = TurnLog(keep_states=True)
    runtime = Runtime(
        cfg,
        microphone=mic,
        speaker=speaker,
        wake_word=wake_word,
        vad=vad,
        transcriber=FakeTranscriber(),
        chat=FakeChat(),
        synthesizer=FakeSynthesizer(),
        observers=[log],
        audio_clock=True,
    )
    await asyncio.wait_for(runtime.run(), 60)
    if isinstance(speaker, WavFileSpeaker):
        speaker.close()
    wake = next(((t, wall) for phase, _, t, wall in log.states if phase is Phase.WAKE), None)
    listening = next((wall for phase, _, _, wall in log.states if phase is Phase.LISTENING), None)
    if wake is None or listening is None:
        return None, None, None
    audio = wake[0] - clip.wake_end_seconds
    wall = None
    if isinstance(mic, PacedMicrophone):
        wall = listening - (mic.started_at + clip.wake_end_seconds)
    record = log.records[0] if log.records else None
    to_listening = span_ms(record, "wake", "listening") if record is not None else None
    return audio, wall, to_listening


async def latency(report: Report, root: Path, quick: bool) -> None:
    wake_word = OpenWakeWord(WakeConfig(models=["hey_jarvis"]), root)
    vad = SileroVad(VadConfig(), root)
    rows = []
    audio_all: list[float] = []
    wall_all: list[float] = []
    misses = 0
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips(quick):
            audio, _, _ = await wake_turn(clip, wake_word, vad, realtime=False, out=Path(tmp))
            _, wall, to_listening = await wake_turn(
                clip, wake_word, vad, realtime=True, out=Path(tmp) / "out.wav"
            )
            if audio is None or wall is None:
                misses += 1
            else:
                audio_all.append(audio)
                wall_all.append(wall)
            rows.append(
                (
                    clip.name,
                    None if audio is None else audio * 1000,
                    None if wall is None else wall * 1000,
                    to_listening,
                )
            )
    report.text(
        "Wake word end → `listening`, per clip (ms). Audio time: the end of the frame the wake "
        "word fired on, input read at full speed. Wall time: input paced like a microphone, the "
        "awake earcon (0.16 s) played in real time before listening starts; `wake → listening` "
        "is `TurnRecord.timings_ms()['wake_to_listening']` of that run."
    )
    headers = ("clip", "audio time ms", "wall time ms", "wake → listening ms")
    report.table(headers, rows)
    if audio_all:
        report.table(
            ("", "p50 ms", "max ms"),
            [
                ("audio time", p50(audio_all) * 1000, max(audio_all) * 1000),
                ("wall time", p50(wall_all) * 1000, max(wall_all) * 1000),
            ],
        )
    missed = [name for name, audio, _, _ in rows if audio is None]
    report.text(
        f"The wake word fired on {len(rows) - misses} of {len(rows)} clips"
        + (f"; not on: {', '.join(missed)}." if missed else ".")
    )


def per_frame(report: Report, root: Path, quick: bool) -> None:
    audio = mix(np.concatenate([recording("jfk"), noise(4.0, 30)]), 30.0)
    items = frames(audio)
    count = 150 if quick else len(items)
    items = (items * (1 + count // len(items)))[:count]
    rows = []

    def timed(process: Callable[[bytes], object]) -> list[float]:
        for frame in items[:20]:  # warm the sessions
            process(frame)
        values = []
        for frame in items:
            started = time.perf_counter()
            process(frame)
            values.append((time.perf_counter() - started) * 1000)
        return values

    for n in range(1, len(WORDS) + 1):
        wake = OpenWakeWord(WakeConfig(models=list(WORDS[:n]), refractory_seconds=0.0), root)
        values = timed(wake.process)
        rows.append(
            (
                f"openWakeWord, {n} word{'s' if n > 1 else ''}",
                p50(values),
                p95(values),
                mean(values),
                100 * mean(values) / (FRAME_SECONDS * 1000),
            )
        )
    resets = []
    for _ in range(10):
        started = time.perf_counter()
        wake.reset()
        resets.append((time.perf_counter() - started) * 1000)
    vad = SileroVad(VadConfig(), root)
    values = timed(vad.process)
    rows.append(
        (
            "Silero VAD",
            p50(values),
            p95(values),
            mean(values),
            100 * mean(values) / (FRAME_SECONDS * 1000),
        )
    )
    report.text(
        f"Inference per 80 ms frame ({count} frames of speech and noise, one thread each, as "
        "the runtime runs them). % of one core = mean ÷ 80 ms. In idle only the wake word runs; "
        "while listening only the VAD."
    )
    report.table(("model", "p50 ms", "p95 ms", "mean ms", "% of one core"), rows)
    text = f"`OpenWakeWord.reset()`: {p50(resets):.2f} ms p50 ({max(resets):.2f} ms max) per call."
    if p50(resets) > 5:
        text += (
            " It runs after every detection (on the way to `listening`) and on every return to "
            "idle: openwakeword's `Model.reset()` refills its feature buffer by running the "
            "embedding model over 4 s of random audio."
        )
    report.text(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    quiet_logs()
    report = Report("wake", "Wake word → listening, and per-frame inference")
    root = models_dir()
    needed = [f"openwakeword/{w}_v0.1.onnx" for w in WORDS] + ["openwakeword/silero_vad.onnx"]
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if not have_models(root, *needed) or missing:
        report.text(f"Skipped: needs the openWakeWord models and espeak-ng + sox ({missing}).")
    else:
        assert root is not None
        asyncio.run(latency(report, root, args.quick))
        per_frame(report, root, args.quick)
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
