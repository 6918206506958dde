"""A whole turn through the real whisper-server and llama-server that Lingling starts itself, and
no server left behind on any way out — ``kill -9`` of Lingling included.

The servers are those scripts/build-servers builds (``LINGLING_WHISPER_SERVER`` /
``LINGLING_LLAMA_SERVER``, or its cache); the test skips without them (CI builds them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import ServerConfig
from assistant.errors import ConfigError
from assistant.service.servers import LLAMA, WHISPER, Kind, find_binary
from tests.support.broker import free_port
from tests.support.models import require_model
from tests.support.scenarios import Scenario, concat, silence, write_wav

pytestmark = [pytest.mark.servers, pytest.mark.models]

WHOLE_TURN = ["idle", "wake", "listening", "transcribing", "thinking", "speaking", "idle"]


def _have(kind: Kind) -> None:
    try:
        find_binary(kind, ServerConfig(model="-"), dict(os.environ))
    except ConfigError as err:
        if os.environ.get("CI"):
            pytest.fail(f"{err}; CI builds the servers (scripts/build-servers)")
        pytest.skip(str(err))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """Model files only (and free ports): Lingling runs both servers itself."""
    _have(WHISPER)
    _have(LLAMA)
    require_model("whisper/kitchen-light.ggml.bin")
    require_model("llm/two-sentences.gguf")
    require_model("piper/tone_voice.onnx")
    path = tmp_path / "config.yaml"
    path.write_text(
        "tts: {voice: tone_voice}\n"
        "mqtt: {enabled: false}\n"
        "intents: {enabled: false}\n"  # so the question goes to llama-server
        f"stt:\n  url: http://127.0.0.1:{free_port()}/v1\n"
        "  server: {model: kitchen-light.ggml.bin, args: [-t, '1']}\n"
        f"llm:\n  url: http://127.0.0.1:{free_port()}/v1\n"
        "  server: {model: two-sentences.gguf, args: [-c, '512', -t, '1']}\n",
        encoding="utf-8",
    )
    return path


def lingling(*args: str) -> list[str]:
    return [sys.executable, "-m", "assistant", "--log-level", "DEBUG", *args]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate: object, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds  # a guard, not a measurement
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_whole_turn_through_servers_lingling_starts_itself(
    tmp_path: Path, config_file: Path
) -> None:
    wav, out, events = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "events.jsonl"
    write_wav(wav, Scenario.build("what is the weather like").samples)
    env = {**os.environ, "LINGLING_MODELS": str(require_model("llm/two-sentences.gguf").parents[1])}
    done = subprocess.run(
        lingling(
            "run",
            "-c",
            str(config_file),
            "--input",
            str(wav),
            "--output",
            str(out),
            "--events",
            str(events),
            "--fast",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    states = [line["state"] for line in lines if line["event"] == "state"]
    assert states[:6] == WHOLE_TURN[:6]
    assert states[-1] == "idle"
    turn, *follow_up = [line for line in lines if line["event"] == "turn"]
    assert turn["transcript"] == "turn on the kitchen light"  # what the real whisper model hears
    assert turn["response"]  # the real llama-server's fixed reply
    assert turn["outcome"] == "answered"
    # the reply asks something: a follow-up window opens, and closes in the silence after it
    assert [t["outcome"] for t in follow_up] in ([], ["no_speech"])
    assert "[whisper-server]" in done.stderr  # its output, in the log at DEBUG
    assert "[llama-server]" in done.stderr


@pytest.fixture
def running(tmp_path: Path, config_file: Path) -> Iterator[subprocess.Popen[str]]:
    """Lingling on a long silent input in real time, ready (servers up)."""
    wav = tmp_path / "silence.wav"
    write_wav(wav, concat(silence(0.5), silence(60.0)))
    env = {**os.environ, "LINGLING_MODELS": str(require_model("llm/two-sentences.gguf").parents[1])}
    log = (tmp_path / "lingling.log").open("w")
    process = subprocess.Popen(
        lingling("run", "-c", str(config_file), "--input", str(wav), "--output", "/dev/null"),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        ready = wait_until(
            lambda: "ready: listening" in (tmp_path / "lingling.log").read_text(), 90
        )
        assert ready, (tmp_path / "lingling.log").read_text()[-3000:]
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        log.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_no_server_outlives_lingling(running: subprocess.Popen[str], how: signal.Signals) -> None:
    servers = children(running.pid)
    assert len(servers) == 2, servers  # whisper-server and llama-server, run by Lingling
    running.send_signal(how)
    running.wait(30)
    assert wait_until(lambda: not any(alive(pid) for pid in servers), 10), [
        (pid, Path(f"/proc/{pid}/cmdline").read_bytes()) for pid in servers if alive(pid)
    ]
