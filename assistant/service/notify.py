"""systemd's notify protocol (``sd_notify``) over ``$NOTIFY_SOCKET``, without dependencies.

Under ``Type=notify`` systemd waits for ``READY=1`` before it counts the service as started, and
with ``WatchdogSec=`` it restarts the service when ``WATCHDOG=1`` stops arriving. Every message is
one datagram of ``KEY=VALUE`` lines on a Unix socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract name written ``@name``). Without that variable (not started by systemd) every call does
nothing. A failing send is logged once and never raised: the assistant must not die because its
supervisor went away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Final

_LOGGER = logging.getLogger(__name__)

MAX_STATUS_CHARS: Final = 200
"""``STATUS=`` text is cut to this length (it shows in ``systemctl status``)."""


class Notifier:
    """Sends notify messages to systemd; a no-op when ``NOTIFY_SOCKET`` is not set."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd's environment asks for (``os.environ`` by default).

        ``WATCHDOG_USEC`` enables the watchdog; a ``WATCHDOG_PID`` naming another process means
        the watchdog is meant for that process, not this one.
        """
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "").strip()
        if raw:
            try:
                watchdog_usec = int(raw)
            except ValueError:
                _LOGGER.warning("ignoring WATCHDOG_USEC=%r: not a number", raw)
            pid = env.get("WATCHDOG_PID", "").strip()
            if pid and pid != str(os.getpid()):
                watchdog_usec = None
        if watchdog_usec is not None and watchdog_usec <= 0:
            watchdog_usec = None
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to."""
        return self._address is not None

    @property
    def watchdog_interval_seconds(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the timeout, as sd_watchdog_enabled(3) advises;
        None when the watchdog is off."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> bool:
        """The service is up (models loaded, audio open): ``READY=1``, with a status line."""
        return self._send("READY=1", status)

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self._send(None, text)

    def stopping(self, status: str | None = None) -> bool:
        """The service is shutting down: ``STOPPING=1``."""
        return self._send("STOPPING=1", status)

    def watchdog(self) -> bool:
        """Still alive: ``WATCHDOG=1``."""
        return self._send("WATCHDOG=1", None)

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def _send(self, state: str | None, status: str | None) -> bool:
        """Send one datagram; True when it was sent."""
        if self._address is None:
            return False
        lines = [state] if state else []
        if status is not None:
            lines.append("STATUS=" + " ".join(status.split())[:MAX_STATUS_CHARS])
        message = "\n".join(lines).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # never stall the event loop
            self._socket.sendto(message, self._address)
        except OSError as err:
            if not self._warned:
                self._warned = True
                _LOGGER.warning("cannot notify systemd at %r: %s", self._address, err)
            else:
                _LOGGER.debug("cannot notify systemd: %s", err)
            self.close()  # a fresh socket next time
            return False
        return True


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    # vsock: and other transports are not needed by a local service
    _LOGGER.warning(
        "ignoring NOTIFY_SOCKET=%r: only paths and @abstract names are supported", value
    )
    return None


async def watchdog_loop(notifier: Notifier, is_alive: Callable[[], bool]) -> None:
    """Send ``WATCHDOG=1`` every ``watchdog_interval_seconds`` while ``is_alive()`` holds.

    It runs on the event loop on purpose: a loop that is blocked or starved sends nothing, and
    systemd restarts the service. When ``is_alive()`` is false (the runtime is stuck) the ping is
    withheld for that round. Returns at once when the watchdog is off; cancel it to stop.
    """
    interval = notifier.watchdog_interval_seconds
    if interval is None:
        return
    withheld = False
    while True:
        if _alive(is_alive):
            if withheld:
                _LOGGER.info("watchdog: alive again")
                withheld = False
            notifier.watchdog()
        elif not withheld:
            withheld = True
            _LOGGER.warning("watchdog: not alive; withholding WATCHDOG=1 so systemd restarts us")
        await asyncio.sleep(interval)


def _alive(is_alive: Callable[[], bool]) -> bool:
    try:
        return bool(is_alive())
    except Exception:  # a broken health check counts as not alive
        _LOGGER.exception("watchdog: the health check failed")
        return False
