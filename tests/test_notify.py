"""The sd_notify protocol against real Unix datagram sockets standing in for systemd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.service.notify import Notifier, watchdog_loop


class FakeSystemd:
    """A bound ``AF_UNIX``/``SOCK_DGRAM`` socket that records every datagram and when it came."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address if not address.startswith("@") else "\0" + address[1:])
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def received(self, count: int = 1, timeout_seconds: float = 1.0) -> list[str]:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return [text for _, text in self.messages]
            time.sleep(0.005)
        with self._lock:
            return [text for _, text in self.messages]

    def times(self) -> list[float]:
        with self._lock:
            return [at for at, _ in self.messages]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A Unix socket path must fit in 108 bytes; pytest's tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="ll-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def systemd(short_dir: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(short_dir / "notify"))
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd(f"@lingling-test-{os.getpid()}-{time.monotonic_ns()}")
    yield fake
    fake.close()


def test_messages_reach_a_socket_named_by_path(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address})

    assert notifier.enabled
    assert notifier.ready("listening for hey_jarvis")
    assert notifier.status("turn 3: thinking")
    assert notifier.watchdog()
    assert notifier.stopping()
    notifier.close()

    assert systemd.received(4) == [
        "READY=1\nSTATUS=listening for hey_jarvis",
        "STATUS=turn 3: thinking",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_an_abstract_socket_is_written_with_an_at_sign(abstract_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": abstract_systemd.address})

    assert notifier.ready()
    notifier.close()

    assert abstract_systemd.received(1) == ["READY=1"]


def test_status_is_one_short_line(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address})

    notifier.status("two\nlines " + "x" * 500)
    notifier.close()

    (message,) = systemd.received(1)
    assert "\n" not in message
    assert message.startswith("STATUS=two lines xxx")
    assert len(message) == len("STATUS=") + 200


def test_without_a_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})

    assert not notifier.enabled
    assert notifier.watchdog_interval_seconds is None
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    systemd: FakeSystemd, env: dict[str, str], interval: float | None
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, **env})

    assert notifier.watchdog_interval_seconds == interval


def test_a_vanished_socket_is_logged_once_and_never_raised(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(short_dir / "nobody")})

    with caplog.at_level(logging.DEBUG, logger="assistant.service.notify"):
        results = [notifier.ready(), notifier.watchdog(), notifier.stopping()]

    assert results == [False, False, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_an_unsupported_address_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="assistant.service.notify"):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})

    assert not notifier.enabled
    assert not notifier.ready()
    assert "vsock:2:1234" in caplog.text


class RecordingNotifier(Notifier):
    """The real notifier, noting when each ping was sent and from which thread."""

    def __init__(self, address: str, watchdog_usec: int) -> None:
        super().__init__(address, watchdog_usec=watchdog_usec)
        self.pings: list[tuple[float, int]] = []
        self.pinged = asyncio.Event()

    def watchdog(self) -> bool:
        self.pings.append((time.monotonic(), threading.get_ident()))
        self.pinged.set()
        return super().watchdog()


async def test_watchdog_loop_pings_from_the_event_loop(systemd: FakeSystemd) -> None:
    notifier = RecordingNotifier(systemd.address, watchdog_usec=20_000)
    assert notifier.watchdog_interval_seconds == 0.01
    task = asyncio.create_task(watchdog_loop(notifier, lambda: True))
    try:
        await asyncio.wait_for(asyncio.to_thread(systemd.received, 3), 1)
        assert systemd.received(3)[:3] == ["WATCHDOG=1"] * 3

        # A blocked event loop sends nothing: systemd would restart the service.
        blocked_at = time.monotonic()
        time.sleep(0.2)  # noqa: ASYNC251 -- blocking the loop is the point
        unblocked_at = time.monotonic()
        notifier.pinged.clear()
        await asyncio.wait_for(notifier.pinged.wait(), 1)  # pings resume once the loop runs
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    notifier.close()

    assert {thread for _, thread in notifier.pings} == {threading.get_ident()}  # the loop's
    assert [t for t, _ in notifier.pings if blocked_at < t < unblocked_at] == []
    assert len(systemd.received(len(notifier.pings))) == len(notifier.pings)


async def test_watchdog_loop_withholds_pings_while_not_alive(
    systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "20000"})
    alive = [False]

    task = asyncio.create_task(watchdog_loop(notifier, lambda: alive[0]))
    try:
        with caplog.at_level(logging.INFO, logger="assistant.service.notify"):
            await asyncio.sleep(0.1)
            assert systemd.received(1, timeout_seconds=0.05) == []
            alive[0] = True
            await asyncio.wait_for(asyncio.to_thread(systemd.received, 2), 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    notifier.close()

    assert systemd.received(2)[:2] == ["WATCHDOG=1"] * 2
    assert "withholding WATCHDOG=1" in caplog.text
    assert "alive again" in caplog.text


async def test_a_failing_health_check_counts_as_not_alive(
    systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "20000"})

    def broken() -> bool:
        raise RuntimeError("health check broke")

    task = asyncio.create_task(watchdog_loop(notifier, broken))
    with caplog.at_level(logging.ERROR, logger="assistant.service.notify"):
        await asyncio.sleep(0.06)
    assert not task.done()  # the loop survives it
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    notifier.close()

    assert systemd.received(1, timeout_seconds=0.05) == []
    assert "health check failed" in caplog.text


async def test_watchdog_loop_returns_when_the_watchdog_is_off(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.address})

    await asyncio.wait_for(watchdog_loop(notifier, lambda: True), 1)

    assert systemd.received(1, timeout_seconds=0.05) == []
