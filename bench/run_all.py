"""Run every benchmark, each in its own process, and put the figures into BENCHMARKS.md.

Each benchmark's report replaces the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` in BENCHMARKS.md (appended at the end when the markers are missing), so
the prose around the figures stays as it was written; ``machine`` and ``targets`` blocks get the
machine's description and every target's verdict.

    .venv/bin/python -m bench [--quick] [--only overhead wake ...] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.common import ROOT, machine, markdown_table

# name: (module, arguments, arguments with --quick)
BENCHMARKS: Final = {
    "overhead": ("bench.overhead", [], ["--quick"]),
    "streaming": ("bench.streaming", [], ["--quick"]),
    "endpointing": ("bench.endpointing", [], ["--quick"]),
    "wake": ("bench.wake", [], ["--quick"]),
    "footprint": ("bench.footprint", [], ["--quick"]),
    "real_servers": ("bench.real_servers", [], ["--quick"]),
    "soak": ("bench.soak", [], ["--quick"]),
    "soak_idle": ("bench.soak", ["--idle-seconds", "60"], ["--idle-seconds", "20"]),
    # its full run takes ≈ 10 min on its own: `python -m bench.end_of_turn` (see BENCHMARKS.md)
    "end_of_turn": ("bench.end_of_turn", ["--quick"], ["--quick"]),
    "stop_word": ("bench.stop_word", [], ["--quick"]),
    "rooms": ("bench.rooms", [], ["--quick"]),
    "inference_box": ("bench.inference_box", [], ["--quick"]),
}


def run_one(name: str, quick: bool, work: Path) -> dict[str, Any]:
    module, full, short = BENCHMARKS[name]
    out = work / f"{name}.json"
    command = [sys.executable, "-m", module, *(short if quick else full), "--json", str(out)]
    print(f"\n$ {' '.join(['python', *command[1:-2]])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.monotonic() - started
    finished = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
        return {
            "name": name,
            "markdown": f"{name} failed (exit {done.returncode}):\n\n```\n{tail}\n```\n",
            "targets": [],
            "seconds": seconds,
            "command": command,
            "finished": finished,
        }
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["seconds"] = seconds
    result["command"] = command
    result["finished"] = finished
    return result


def head_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def machine_block(quick: bool) -> str:
    info = machine()
    info["load average at start (1/5/15 min)"] = " ".join(
        Path("/proc/loadavg").read_text().split()[:3]
    )
    info["commit"] = f"{head_commit()} (plus any uncommitted changes in the working tree)"
    info["run"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC") + (
        " with --quick" if quick else ""
    )
    return markdown_table(("", ""), info.items()) + "\n"


def targets_block(document: str) -> str:
    """Every target, from the target table at the end of each benchmark's block (so a run with
    ``--only`` keeps the others' last verdicts)."""
    rows = []
    for name in BENCHMARKS:
        block = re.search(f"<!-- bench:{name} -->(.*?)<!-- /bench:{name} -->", document, re.DOTALL)
        if block is None:
            continue
        for line in block.group(1).splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 4 and cells[3] in ("met", "**missed**", "not measured"):
                rows.append((name, *cells))
    return markdown_table(("benchmark", "target", "measured", "goal", ""), rows) + "\n"


def command_line(result: dict[str, Any]) -> str:
    args = [arg for arg in result["command"][1:] if arg != "--json"][:-1]
    finished = result["finished"]
    return f"`.venv/bin/python {' '.join(args)}` ({result['seconds']:.0f} s, {finished})\n\n"


def splice(document: str, name: str, content: str) -> str:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{content.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return document.rstrip() + f"\n\n{block}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    args.add_argument("--quick", action="store_true")
    args.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    options = args.parse_args(argv)
    names = options.only or list(BENCHMARKS)
    machine_text = machine_block(options.quick)
    results = []
    with tempfile.TemporaryDirectory(prefix="lingling-bench-") as tmp:
        for name in names:
            results.append(run_one(name, options.quick, Path(tmp)))
    path: Path = options.output
    document = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if options.only is None:
        document = splice(document, "machine", machine_text)
    for result in results:
        document = splice(document, result["name"], command_line(result) + result["markdown"])
    document = splice(document, "targets", targets_block(document))
    path.write_text(document, encoding="utf-8")
    print(f"\nwrote {path}")
    failed = [r["name"] for r in results if not r["targets"] and "failed (exit" in r["markdown"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
