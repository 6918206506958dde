"""Soak: thousands of turns through the real ``Runtime``, with server failures injected, watching
memory and threads; and a long idle run of a real ``lingling run`` watching its CPU.

Turns (default 10,000; ``--quick`` 500): the machinery is in tests/support/soak.py (the test suite
runs it short), ``--backend loopback`` (default) with the real HTTP clients against the loopback
servers in a child process, or ``--backend fakes``; a failure every ``--fail-every`` turns.

Idle (``--idle-seconds N``): a real ``lingling run`` (one wake word, the VAD, the tone voice, no
MQTT) listening to N seconds of silence paced in real time; CPU and RSS per tenth of the run.
The hour-long run: ``.venv/bin/python -m bench.soak --idle-seconds 3600``.

    .venv/bin/python -m bench.soak [--quick] [--turns N] [--backend loopback|fakes]
    .venv/bin/python -m bench.soak --idle-seconds 60
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from bench.common import Report, have_models, models_dir, parser, quiet_logs
from bench.process import LinglingProcess, write_run_config, write_silent_wav
from bench.profiling import workdir
from tests.support.soak import CODES, GROWTH_TARGET_MB, OUTCOMES, Watch, failure_for, soak


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
