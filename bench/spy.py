"""py-spy profiles of a real ``lingling run`` (used by bench.footprint): the start-up by the
library each stack entered, idle listening by function, and idle CPU by thread.

py-spy is not a project dependency: ``pip install py-spy`` (anywhere), then put it on PATH or in
``$PY_SPY``. Without it these profiles are skipped and say so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench.common import Report
from bench.process import LinglingProcess, write_noise_wav, write_run_config

PY_SPY_ENV: Final = "PY_SPY"


def py_spy() -> str | None:
    configured = os.environ.get(PY_SPY_ENV)
    if configured and os.access(configured, os.X_OK):
        return configured
    return shutil.which("py-spy")


_FRAME: Final = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")
_STDLIB: Final = frozenset(sys.stdlib_module_names)


def _package(frame: str) -> str:
    match = _FRAME.match(frame)
    file = match.group("file") if match else frame
    if file.startswith("<"):
        return "python"
    top = file.split("/", 1)[0].removesuffix(".py")
    return "python" if top in _STDLIB else top


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match.group('function')} ({match.group('file')})" if match else frame


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: (frames outermost first, samples)."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def startup_breakdown(stacks: Sequence[tuple[list[str], int]]) -> Counter[str]:
    """Samples by the first library the stack entered (what ``assistant`` called), split into
    importing it and running it; ``+ nested`` names what that library's import was importing."""
    owners: Counter[str] = Counter()
    for frames, count in stacks:
        packages = [_package(frame) for frame in frames]
        importing = False
        label = "python (interpreter start, asyncio, stdlib)"
        for index, (frame, package) in enumerate(zip(frames, packages, strict=True)):
            if "_find_and_load" in frame:
                importing = True
            if package in ("python", "assistant"):
                if package == "assistant":
                    label = "assistant (own code)"
                continue
            nested = next((p for p in packages[index + 1 :] if p not in ("python", package)), None)
            what = "import" if importing else "load / run"
            label = f"{package} {what}" + (f" (inside: {nested})" if importing and nested else "")
            break
        owners[label] += count
    return owners


def startup_profile(report: Report, root: Path, work: Path) -> None:
    spy = py_spy()
    if spy is None:
        report.text(
            "Start-up profile skipped: py-spy not found (`pip install py-spy`, or $PY_SPY)."
        )
        return
    rate = 250
    out = work / "startup.txt"
    wav = write_noise_wav(work / "spy.wav", 30)
    cfg = write_run_config(work / "spy.yaml", root, ["hey_jarvis"])
    prefix = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(out), "--"]
    with LinglingProcess(cfg, wav, work / "spy-out.wav", prefix=prefix) as process:
        ready = process.wait_ready()
    stacks = read_raw(out)
    owners = startup_breakdown(stacks)
    total = sum(owners.values())
    rows = [
        (label, count * 1000 / rate, f"{100 * count / total:.0f} %")
        for label, count in owners.most_common(10)
    ]
    report.text(
        f"py-spy profile of the start-up (until ready, {ready:.2f} s under the profiler, "
        f"{rate} samples/s; thread time of every thread, by the first library each stack "
        "entered):"
    )
    report.table(("where", "thread ms", "share"), rows)


def idle_profile(report: Report, root: Path, work: Path, seconds: float) -> None:
    spy = py_spy()
    if spy is None:
        report.text("Idle profile skipped: py-spy not found (`pip install py-spy`, or $PY_SPY).")
        return
    rate = 100
    out = work / "idle.txt"
    wav = write_noise_wav(work / "idle-spy.wav", seconds + 30)
    cfg = write_run_config(work / "idle-spy.yaml", root, ["hey_jarvis"])
    with LinglingProcess(cfg, wav, work / "idle-spy-out.wav") as process:
        process.wait_ready()
        time.sleep(2)
        subprocess.run(
            [
                *(spy, "record", "--pid", str(process.pid), "--duration", str(round(seconds))),
                *("-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking"),
            ],
            capture_output=True,
            check=True,
            timeout=seconds + 60,
        )
    stacks = read_raw(out)
    total = sum(count for _, count in stacks)
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, count in stacks:
        for name in {_function(frame) for frame in frames}:
            inclusive[name] += count
        leaf[_function(frames[-1])] += count
    busy_percent = 100 * total / (rate * seconds)
    rows = [
        (name, f"{100 * count / total:.0f} %", f"{100 * leaf[name] / total:.0f} %")
        for name, count in inclusive.most_common(40)
        if count < total * 0.97  # leave out the roots every sample shares
    ][:14]
    report.text(
        f"py-spy profile of idle listening ({seconds:g} s, {rate} samples/s, non-blocking): "
        f"threads were busy in {busy_percent:.1f} % of the samples (≈ % of one core). "
        "Functions by the share of busy samples they appear in (inclusive) and end in (self):"
    )
    report.table(("function", "inclusive", "self"), rows)


def _task_ticks(pid: int) -> dict[int, tuple[str, int]]:
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            ticks[int(task.name)] = (name, int(fields[11]) + int(fields[12]))
    return ticks


_THREAD: Final = re.compile(r"^thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?$")


def per_thread_cpu(pid: int, seconds: float, work: Path) -> list[tuple[str, float]]:
    """(thread, CPU % of one core) over ``seconds``: each OS thread's user + system time from
    /proc, named by py-spy (the Python thread's name, else the library its Python code was in;
    threads py-spy never caught in Python code keep their OS name)."""
    spy = py_spy()
    out = work / f"threads-{pid}.txt"
    hz = os.sysconf("SC_CLK_TCK")
    before = _task_ticks(pid)
    started = time.monotonic()
    if spy is not None:
        subprocess.run(
            [
                *(spy, "record", "--pid", str(pid), "--duration", str(round(seconds))),
                *("-r", "100", "-f", "raw", "-o", str(out), "--nonblocking", "--threads"),
            ],
            capture_output=True,
            check=False,
            timeout=seconds + 60,
        )
    else:
        time.sleep(seconds)
    elapsed = time.monotonic() - started
    after = _task_ticks(pid)
    labels: dict[int, Counter[str]] = {}
    if out.is_file():
        for frames, count in read_raw(out):
            match = _THREAD.match(frames[0])
            if match is None:
                continue
            tid = int(match.group("tid"))
            name = match.group("name")
            packages = [_package(frame) for frame in frames[1:]]
            library = next((p for p in reversed(packages) if p != "python"), None)
            if name:
                label = name
            elif library is not None:
                label = f"callback thread ({library})"
            else:
                continue  # no Python frame that says what the thread is
            labels.setdefault(tid, Counter())[label] += count
    rows = []
    for tid, (comm, ticks) in after.items():
        used = ticks - before.get(tid, (comm, 0))[1]
        label = (
            labels[tid].most_common(1)[0][0]
            if tid in labels
            else f"no Python frame sampled ({comm})"
        )
        rows.append((f"{label} [{tid}]", 100.0 * used / hz / elapsed))
    return sorted(rows, key=lambda row: -row[1])
