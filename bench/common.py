"""What every benchmark shares: arguments, statistics, markdown tables, the machine, the models
and servers, and the stages of a turn driven through the real ``Runtime`` (the turn-driving pieces
the soak test shares, and the /proc readings, are in tests/support/).

Each benchmark module has ``main(argv) -> int``: it prints its report as markdown (pipe tables
read fine in a terminal) and, with ``--json FILE``, also writes it with its targets for
``bench.run_all``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Final

from assistant.runtime.observer import MARKS, TurnRecord

ROOT: Final = Path(__file__).resolve().parent.parent
SERVERS_CACHE: Final = Path.home() / ".cache" / "lingling" / "servers"
PACKAGES: Final = ("onnxruntime", "openwakeword", "numpy", "piper-tts", "openai", "transitions")


# -- arguments and reports ---------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--quick", action="store_true", help="fewer repetitions (CI, smoke runs)")
    args.add_argument("--json", type=Path, help="also write the report here (for bench.run_all)")
    return args


@dataclass(frozen=True, slots=True)
class Target:
    """One target of issue 5 / 7: what was measured against what was asked."""

    name: str
    measured: str
    goal: str
    met: bool | None
    """None: not measured in this run (skipped)."""


@dataclass
class Report:
    name: str
    title: str
    parts: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def text(self, text: str) -> None:
        self.parts.append(text.strip())

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        self.parts.append(markdown_table(headers, rows))

    def target(self, name: str, measured: str, goal: str, met: bool | None) -> None:
        self.targets.append(Target(name, measured, goal, met))

    def markdown(self) -> str:
        parts = [f"### {self.title}", *self.parts]
        if self.targets:
            rows = [(t.name, t.measured, t.goal, verdict(t.met)) for t in self.targets]
            parts.append(markdown_table(("target", "measured", "goal", ""), rows))
        return "\n\n".join(parts) + "\n"

    def emit(self, json_path: Path | None) -> None:
        print(self.markdown())
        sys.stdout.flush()
        if json_path is not None:
            data = {
                "name": self.name,
                "title": self.title,
                "markdown": self.markdown(),
                "targets": [asdict(target) for target in self.targets],
            }
            json_path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        padded = (
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(row, widths, numeric, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else ("-" * (w + 2))
            for w, r in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+( ?[%xx])?|-", text))


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    info = {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


# -- models and servers --------------------------------------------------------------------------


def models_dir() -> Path | None:
    """LINGLING_MODELS, else the shared models next to the checkout; None when neither exists."""
    for candidate in (os.environ.get("LINGLING_MODELS"), str(ROOT.parent / "shared" / "models")):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def have_models(root: Path | None, *relative: str) -> bool:
    return root is not None and all((root / name).is_file() for name in relative)


def server_binary(env: str, name: str) -> Path | None:
    """A real server binary: ``$env``, then PATH, then scripts/build-servers' cache."""
    configured = os.environ.get(env)
    if configured:
        return Path(configured) if os.access(configured, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return Path(found)
    # scripts/build-servers' own folders first (``build-*`` ones are work in progress)
    found_paths = SERVERS_CACHE.glob(f"*/bin/{name}")
    for path in sorted(found_paths, key=lambda p: (p.parts[-3].startswith("build-"), str(p))):
        if os.access(path, os.X_OK):
            return path
    return None


def machine_line() -> str:
    """The machine and its load now, for a report run on its own (``python -m bench --only``
    leaves the machine block as it was)."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average at start {load}."


def quiet_logs(level: int = logging.WARNING) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


# -- a turn's stages (turns are driven by tests/support/turns.py, which the soak test shares) -----


def span_ms(record: TurnRecord, start: str, end: str) -> float | None:
    marks = record.marks
    if start in marks and end in marks:
        return (marks[end] - marks[start]) * 1000.0
    return None


STAGES: Final = (
    ("speech end → upload (< 0: speculative)", "speech_end", "upload"),
    ("stt", "upload", "transcribed"),
    ("transcribed → llm request", "transcribed", "llm_request"),
    ("llm first token", "llm_request", "first_token"),
    ("first token → first sentence", "first_token", "first_sentence"),
    ("tts first sentence", "first_sentence", "first_tts"),
    ("first tts → first audio", "first_tts", "first_audio"),
    ("speech end → first audio", "speech_end", "first_audio"),
)
assert all(a in MARKS and b in MARKS for _, a, b in STAGES)


def backend_ms(record: TurnRecord) -> float | None:
    """The back-ends' own time on the way to the first audio, after the speech end: STT (from
    the upload, or from the speech end when the upload started earlier, speculatively), the LLM
    until its first sentence, the first sentence's synthesis (each as the runtime saw it)."""
    marks = record.marks
    if "upload" not in marks or "speech_end" not in marks:
        return None
    stt_start = max(marks["upload"], marks["speech_end"])
    parts = [
        span_ms(record, "llm_request", "first_sentence"),
        span_ms(record, "first_sentence", "first_tts"),
    ]
    if "transcribed" not in marks or any(p is None for p in parts):
        return None
    stt = max(0.0, marks["transcribed"] - stt_start) * 1000.0
    return stt + sum(p for p in parts if p is not None)


def stage_rows(records: Sequence[TurnRecord]) -> list[tuple[str, float, float, float]]:
    """(stage, p50, p95, max) in ms over ``records``, for each stage every record has."""
    rows = []
    for name, start, end in STAGES:
        values = [v for r in records if (v := span_ms(r, start, end)) is not None]
        if values:
            rows.append((name, p50(values), p95(values), max(values)))
    return rows
