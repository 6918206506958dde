"""A real ``lingling run`` in a subprocess: its input WAV, its config, its readiness and /proc
readings of its CPU time, memory and threads."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np

from bench.common import ROOT, p50
from tests.support.proc import cpu_seconds, os_threads, peak_rss_mb, rss_mb

READY_LINE: Final = "ready: listening for"
SETTLE_SECONDS: Final = 2.0
SAMPLE_SECONDS: Final = 0.5
RATE: Final = 16_000


def write_noise_wav(path: Path, seconds: float, rms: float = 30.0) -> Path:
    """Low white noise (a quiet room through a microphone), written 10 s at a time."""
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        left = round(seconds * RATE)
        while left > 0:
            count = min(left, 10 * RATE)
            block = np.clip(np.round(rng.normal(0.0, rms, count)), -32768, 32767)
            wav.writeframes(block.astype("<i2").tobytes())
            left -= count
    return path


def write_silent_wav(path: Path, seconds: float) -> Path:
    """Digital silence of any length as a sparse file: the header, then a hole (no disk used)."""
    data_bytes = round(seconds * RATE) * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with path.open("wb") as file:
        file.write(header)
        file.truncate(len(header) + data_bytes)
    return path


def write_run_config(path: Path, models: Path, words: Sequence[str]) -> Path:
    """A config for ``lingling run`` with these wake words, the tone voice, no MQTT and no
    servers of its own (what is measured is Lingling alone)."""
    listed = ", ".join(words)
    path.write_text(
        f"models_dir: {models}\n"
        f"wake: {{models: [{listed}]}}\n"
        "tts: {voice: tone_voice}\n"
        "stt: {server: null}\n"
        "llm: {server: null}\n"
        "mqtt: {enabled: false}\n",
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True, slots=True)
class IdleSample:
    seconds: float
    cpu_percent: float
    """CPU time (user + system, every thread) over the window, in % of one core."""
    rss_mb_p50: float
    rss_mb_max: float
    peak_rss_mb: float
    """VmHWM: the most the process ever held, start-up included."""
    threads: int
    rss_mb_first: float
    rss_mb_last: float


class LinglingProcess:
    """``python -m assistant run -c CONFIG --input WAV --output OUT`` (real-time input); without
    ``wav`` / ``out``, the sound devices.

    ``prefix`` runs it under another program (py-spy): then the Python process is that
    program's child, found through /proc. ``args`` are more arguments for ``run``.
    """

    def __init__(
        self,
        config: Path,
        wav: Path | None,
        out: Path | None,
        *,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python_flags: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> None:
        self.command = [*prefix, sys.executable, *python_flags, "-m", "assistant", "run"]
        self.command += ["-c", str(config)]
        if wav is not None:
            self.command += ["--input", str(wav)]
        if out is not None:
            self.command += ["--output", str(out)]
        self.command += args
        self._prefixed = bool(prefix)
        self._env = dict(env or {})
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._ready_at: float | None = None
        self._process: subprocess.Popen[str] | None = None
        self.started_at = 0.0

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._env}
        env.pop("LINGLING_MODELS", None)  # the config names the models folder
        self.started_at = time.monotonic()
        self._process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        for line in self._process.stderr:
            if READY_LINE in line and self._ready_at is None:
                self._ready_at = time.monotonic()
                self._ready.set()
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        """The Python process's id (under a prefix: the prefix program's child)."""
        assert self._process is not None
        if not self._prefixed:
            return self._process.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
            try:
                found = children.read_text().split()
            except OSError:
                found = []
            if found:
                return int(found[0])
            time.sleep(0.01)
        raise RuntimeError("the profiled process did not start")

    def wait_ready(self, timeout_seconds: float = 60.0) -> float:
        """Seconds from the process's start to its ``ready`` log line."""
        assert self._process is not None
        deadline = time.monotonic() + timeout_seconds
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines[-20:])
                raise RuntimeError(f"lingling did not get ready:\n{tail}")
        assert self._ready_at is not None
        return self._ready_at - self.started_at

    def idle(self, seconds: float, settle_seconds: float = SETTLE_SECONDS) -> IdleSample:
        """CPU and memory over ``seconds`` of idle listening, after a short settling time."""
        pid = self.pid
        time.sleep(settle_seconds)
        cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
        rss = [rss_mb(pid)]
        threads = os_threads(pid)
        while time.monotonic() - wall_start < seconds:
            time.sleep(SAMPLE_SECONDS)
            rss.append(rss_mb(pid))
            threads = max(threads, os_threads(pid))
        cpu_end, wall_end = cpu_seconds(pid), time.monotonic()
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError("lingling ended during the idle window")
        return IdleSample(
            seconds=wall_end - wall_start,
            cpu_percent=100.0 * (cpu_end - cpu_start) / (wall_end - wall_start),
            rss_mb_p50=p50(rss),
            rss_mb_max=max(rss),
            peak_rss_mb=peak_rss_mb(pid),
            threads=threads,
            rss_mb_first=rss[0],
            rss_mb_last=rss[-1],
        )

    def wait(self, timeout_seconds: float) -> int:
        """Wait for it to end by itself (a file for a microphone); its exit code."""
        assert self._process is not None
        return self._process.wait(timeout_seconds)

    def stop(self) -> None:
        """SIGTERM to the Python process (it stops cleanly), then wait; kill if it hangs."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, RuntimeError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


VIRTUAL_AUDIO: Final = ROOT / "scripts" / "virtual-audio.sh"


@contextlib.contextmanager
def virtual_audio(folder: Path) -> Iterator[dict[str, str] | None]:
    """A private PulseAudio with null sinks (scripts/virtual-audio.sh, as the audio tests use):
    yields the environment its clients need, or None when PulseAudio is missing."""
    if not VIRTUAL_AUDIO.is_file() or shutil.which("pulseaudio") is None:
        yield None
        return
    done = subprocess.run(
        [str(VIRTUAL_AUDIO), str(folder)], capture_output=True, text=True, check=False
    )
    pid_file = folder / "pulse.pid"
    try:
        yield None if done.returncode != 0 else {"PULSE_SERVER": f"unix:{folder}/native"}
    finally:
        if pid_file.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
