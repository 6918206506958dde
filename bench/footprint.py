"""Idle CPU and memory of a real ``lingling run``, start → ready, and what the start-up costs.

Each configuration (1, 2, 3 wake words, always with the Silero VAD and the Piper tone voice
loaded) runs as its own ``python -m assistant run`` process with MQTT off, reading a long WAV of
low noise paced in real time (``--input``, like a microphone) and writing what it would play to a
WAV (``--output``). After the "ready" log line and a short settling time, CPU time and RSS are
read from /proc for the idle window.

Where a target is missed the report says why, from measurements made here: the import cost of
each dependency in a fresh process, ``-X importtime``, the RSS of the process's memory mappings
(/proc/PID/smaps) and, when py-spy is installed (``pip install py-spy``; ``$PY_SPY`` or PATH), a
sampled profile of the start-up and of the idle loop. The "projection" runs the same models with
onnxruntime directly, without importing openwakeword (and with it scipy and scikit-learn).

    .venv/bin/python -m bench.footprint [--quick]    (idle windows of 30 s; 10 s with --quick)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench import profiling, spy
from bench.common import Report, have_models, models_dir, p50, parser
from bench.process import LinglingProcess, virtual_audio, write_noise_wav, write_run_config

WORDS: Final = ("hey_jarvis", "alexa", "hey_mycroft")
IDLE_TARGET_PERCENT: Final = 5.0
RSS_TARGET_MB: Final = 120.0
READY_TARGET_SECONDS: Final = 1.5


def idle_runs(report: Report, root: Path, work: Path, idle_seconds: float, starts: int) -> None:
    wav = write_noise_wav(work / "idle.wav", idle_seconds + 30)
    rows = []
    ready: list[float] = []
    one_word: dict[str, float] = {}
    for count in range(1, len(WORDS) + 1):
        cfg = write_run_config(work / f"words{count}.yaml", root, WORDS[:count])
        with LinglingProcess(cfg, wav, work / f"out{count}.wav") as process:
            ready.append(process.wait_ready())
            sample = process.idle(idle_seconds)
        rows.append(
            (
                ", ".join(WORDS[:count]),
                ready[-1],
                sample.cpu_percent,
                sample.rss_mb_p50,
                sample.rss_mb_max,
                sample.peak_rss_mb,
                sample.threads,
            )
        )
        if count == 1:
            one_word = {
                "cpu": sample.cpu_percent,
                "rss": sample.rss_mb_max,
            }
    cfg = write_run_config(work / "words1.yaml", root, WORDS[:1])
    more = []
    for index in range(starts):
        with LinglingProcess(cfg, wav, work / f"start{index}.wav") as process:
            more.append(process.wait_ready())
    report.text(
        f"Idle window {idle_seconds:g} s after ready (+2 s settling), input paced in real time. "
        "CPU in % of one core (user + system, all threads). RSS in MB (10^6 bytes)."
    )
    headers = ("wake words", "ready s", "idle CPU %", "RSS p50 MB", "RSS max MB", "VmHWM MB")
    report.table((*headers, "threads"), rows)
    starts_all = [*ready[:1], *more]
    report.text(
        f"Start → ready (process start to the `ready` log line), one wake word, "
        f"{len(starts_all)} starts: p50 {p50(starts_all):.2f} s, "
        f"min {min(starts_all):.2f} s, max {max(starts_all):.2f} s."
    )
    report.target(
        "idle CPU, one wake word + VAD (WAV in/out)",
        f"{one_word['cpu']:.1f} %",
        f"≤ {IDLE_TARGET_PERCENT:g} % of one core",
        one_word["cpu"] <= IDLE_TARGET_PERCENT,
    )
    report.target(
        "RSS, one wake word + VAD (WAV in/out)",
        f"{one_word['rss']:.0f} MB",
        f"≤ {RSS_TARGET_MB:g} MB",
        one_word["rss"] <= RSS_TARGET_MB,
    )
    report.target(
        "start → ready (p50)",
        f"{p50(starts_all):.2f} s",
        f"≤ {READY_TARGET_SECONDS:g} s",
        p50(starts_all) <= READY_TARGET_SECONDS,
    )


def device_run(report: Report, root: Path, work: Path, idle_seconds: float) -> None:
    """The production path: sounddevice's microphone and speaker on a private PulseAudio."""
    with virtual_audio(work / "pulse") as env:
        if env is None:
            report.text("Sound-device run skipped: no PulseAudio (see scripts/virtual-audio.sh).")
            return
        cfg = write_run_config(work / "device.yaml", root, WORDS[:1])
        with LinglingProcess(cfg, None, None, env=env) as process:
            ready = process.wait_ready()
            sample = process.idle(idle_seconds)
            threads = spy.per_thread_cpu(process.pid, min(idle_seconds, 10.0), work)
    report.text(
        "The same with the sound devices instead of WAV files (sounddevice/PortAudio on a private "
        "PulseAudio with null sinks: the microphone hears digital silence; PulseAudio's own CPU "
        "is not counted):"
    )
    report.table(
        ("wake words", "ready s", "idle CPU %", "RSS p50 MB", "RSS max MB", "threads"),
        [
            (
                WORDS[0] + " (sound devices)",
                ready,
                sample.cpu_percent,
                sample.rss_mb_p50,
                sample.rss_mb_max,
                sample.threads,
            )
        ],
    )
    report.text(
        "Idle CPU of that process by thread (/proc/PID/task; names from py-spy: a Python "
        "thread's name, or the library its code was in):"
    )
    report.table(("thread", "CPU %"), [row for row in threads if row[1] > 0.05])
    report.target(
        "idle CPU, sound devices",
        f"{sample.cpu_percent:.1f} %",
        f"≤ {IDLE_TARGET_PERCENT:g} % of one core",
        sample.cpu_percent <= IDLE_TARGET_PERCENT,
    )
    report.target(
        "RSS, sound devices",
        f"{sample.rss_mb_max:.0f} MB",
        f"≤ {RSS_TARGET_MB:g} MB",
        sample.rss_mb_max <= RSS_TARGET_MB,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    idle_seconds = 10.0 if options.quick else 30.0
    report = Report("footprint", "Idle CPU, memory and start-up of `lingling run`")
    root = models_dir()
    needed = [f"openwakeword/{w}_v0.1.onnx" for w in WORDS]
    needed += ["openwakeword/silero_vad.onnx", "piper/tone_voice.onnx"]
    if not have_models(root, *needed):
        report.text("Skipped: the models are not under LINGLING_MODELS.")
        report.target("idle CPU, one wake word + VAD", "-", "≤ 5 %", None)
        report.emit(options.json)
        return 0
    assert root is not None
    with profiling.workdir() as work:
        idle_runs(report, root, work, idle_seconds, starts=2 if options.quick else 4)
        device_run(report, root, work, idle_seconds)
        profiling.imports(report, root, work)
        profiling.memory_map(report, root, work)
        profiling.waterfall(report, root)
        profiling.projection(report, root)
        spy.startup_profile(report, root, work)
        spy.idle_profile(report, root, work, 5.0 if options.quick else 10.0)
    report.emit(options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
