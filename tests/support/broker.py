"""A private mosquitto for tests: its own config, on a free loopback port, restartable on it.

Skipped with a reason when mosquitto is not installed; a failure when the environment variable
CI is set (scripts/setup installs it there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

START_TIMEOUT_SECONDS = 5.0


def mosquitto_path() -> str:
    """The mosquitto binary (Debian installs it in /usr/sbin); skips or fails the test without."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is not None:
        return found
    reason = "mosquitto is not installed (apt-get install mosquitto mosquitto-clients)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI a missing broker is a failure")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed")
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n", encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    run(*("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA"),
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext))  # fmt: skip
    return TlsFiles(ca_file=ca_cert, cert_file=cert, key_file=key)


class Broker:
    """``mosquitto -c CONF`` in ``directory``; ``stop()`` then ``start()`` keeps the port."""

    def __init__(
        self,
        directory: Path,
        *,
        passwords: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = False,
    ) -> None:
        self.binary = mosquitto_path()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if passwords else 'true'}",
            f"persistence {'true' if persistence else 'false'}",
            # Run as whoever runs the tests (as root, mosquitto would switch to "mosquitto",
            # who cannot read pytest's private temporary folders).
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "log_dest stderr",
            "log_type all",
        ]
        if persistence:
            lines.append(f"persistence_location {directory}/")
        if passwords:
            password_file = directory / "passwords"
            password_file.write_text("", encoding="utf-8")
            for user, password in passwords.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            lines.append(f"password_file {password_file}")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_file}",
                f"certfile {tls.cert_file}",
                f"keyfile {tls.key_file}",
            ]
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 5 s")

    def stop(self) -> None:
        """SIGTERM (mosquitto closes every connection, saves its state if persistent) and wait."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_broker(
    directory: Path,
    *,
    passwords: dict[str, str] | None = None,
    tls: TlsFiles | None = None,
    persistence: bool = False,
) -> Iterator[Broker]:
    broker = Broker(directory, passwords=passwords, tls=tls, persistence=persistence)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(name="broker")
def broker_fixture(tmp_path: Path) -> Iterator[Broker]:
    """``broker``: a fresh anonymous mosquitto for one test (import this to use it)."""
    with running_broker(tmp_path / "broker") as running:
        yield running


async def eventually(
    check: Callable[[], object], timeout_seconds: float = 3.0, what: str = ""
) -> None:
    """Wait until ``check()`` is true, polling every 10 ms; fail after ``timeout_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_seconds} s: {what or check}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client on its own thread that records what it receives on ``topics`` (QoS 1)."""

    def __init__(
        self,
        broker: Broker,
        *topics: str,
        client_id: str = "",
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.broker = broker
        self.topics = topics or ("#",)
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.subscriptions = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if username is not None:
            client.username_pw_set(username, password)
        if ca_file is not None:
            client.tls_set(ca_certs=str(ca_file))
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        self.subscriptions += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), message.qos
        )
        with self._lock:
            self.messages.append(received)

    async def __aenter__(self) -> Subscriber:
        self.client.connect_async(self.broker.host, self.broker.port, 30)
        self.client.loop_start()
        await eventually(lambda: self.subscriptions > 0, 5.0, "subscribed")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def texts(self, topic: str, *, live_only: bool = False) -> list[str]:
        """Payloads on ``topic`` in order; ``live_only`` leaves out retained replays."""
        return [m.text for m in self.received(topic) if not (live_only and m.retain)]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
