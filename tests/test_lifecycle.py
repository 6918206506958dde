"""The service's life as systemd sees it: a real ``lingling run`` process with a fake notify
socket and a real broker: READY once the models are loaded, WATCHDOG pings from the event loop,
and on SIGTERM: STOPPING, ``offline`` published, exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, Subscriber, eventually
from tests.support.broker import broker_fixture as broker_fixture  # the broker fixture
from tests.support.scenarios import Scenario, concat, silence, write_wav
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

pytestmark = pytest.mark.models

EXIT_GUARD_SECONDS = 10.0
"""How long a stopping process may take before the test gives up on it (it takes well under 1 s;
how long exactly is bench's business)."""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def datagrams(sock: socket.socket) -> list[str]:
    received = []
    while True:
        try:
            received.append(sock.recv(4096).decode())
        except BlockingIOError:
            return received


async def test_ready_watchdog_and_a_clean_stop_on_sigterm(
    tmp_path: Path, models_dir: Path, notify_socket: socket.socket, broker: Broker
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"models_dir: {models_dir}\n"
        "tts: {voice: tone_voice}\n"
        "stt: {server: null}\n"  # no turn is taken: no servers are needed
        "llm: {server: null}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, site: hall}}\n",
        encoding="utf-8",
    )
    wav = tmp_path / "quiet.wav"
    write_wav(wav, silence(60.0))  # a microphone in a quiet room, in real time
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "400000",  # pings every 0.2 s
        "WATCHDOG_PID": "",
    }
    command = [sys.executable, "-m", "assistant", "run", "-c", str(config)]
    command += ["--input", str(wav), "--output", str(tmp_path / "out.wav")]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        async with Subscriber(broker, "lingling/hall/availability") as watcher:
            messages: list[str] = []

            def heard(text: str, more_than: int = 0) -> bool:
                messages.extend(datagrams(notify_socket))
                return sum(text in m for m in messages) > more_than

            await eventually(lambda: heard("READY=1"), 60.0, "READY=1")  # a guard
            await eventually(lambda: heard("WATCHDOG=1"), 2.0, "a watchdog ping")
            await eventually(lambda: watcher.texts("lingling/hall/availability")[-1:] == ["online"])
            pings = sum("WATCHDOG=1" in m for m in messages)
            await eventually(lambda: heard("WATCHDOG=1", pings), 2.0, "another ping")  # it goes on

            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, EXIT_GUARD_SECONDS)
            assert code == 0
            assert heard("STOPPING=1")
            await eventually(lambda: watcher.texts("lingling/hall/availability")[-1] == "offline")
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=5)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_mid_turn_cancels_it_and_exits_cleanly(
    tmp_path: Path, models_dir: Path, broker: Broker, signum: signal.Signals
) -> None:
    with FakeWhisperServer(" Is it going to rain?\n") as whisper, FakeLlamaServer() as llama:
        llama.hang = True  # the turn is stuck thinking when the signal comes
        config = tmp_path / "config.yaml"
        config.write_text(
            f"models_dir: {models_dir}\n"
            "tts: {voice: tone_voice}\n"
            f"stt: {{url: '{whisper.v1_url}'}}\n"
            f"llm: {{url: '{llama.v1_url}'}}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}, site: hall}}\n",
            encoding="utf-8",
        )
        wav = tmp_path / "in.wav"
        write_wav(wav, concat(Scenario.build("is it going to rain").samples, silence(30.0)))
        command = [sys.executable, "-m", "assistant", "run", "-c", str(config)]
        command += ["--input", str(wav), "--output", str(tmp_path / "out.wav")]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)  # noqa: ASYNC220
        try:
            async with Subscriber(broker, "lingling/hall/#") as watcher:
                states = "lingling/hall/state"
                await eventually(lambda: "thinking" in watcher.texts(states), 20.0, "thinking")
                process.send_signal(signum)
                code = await asyncio.to_thread(process.wait, EXIT_GUARD_SECONDS)
                assert code == 0
                available = "lingling/hall/availability"
                await eventually(lambda: watcher.texts(available)[-1] == "offline")
        finally:
            if process.poll() is None:
                process.kill()
            _, stderr = process.communicate(timeout=5)
        assert "Traceback" not in stderr
