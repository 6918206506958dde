"""The paho client: how Lingling makes, secures and stops one.

Shared by the bridge (``assistant.mqtt.bridge``) and ``lingling doctor``'s broker check, so both
log in and speak TLS the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from assistant.config import MqttConfig

STOP_WAIT_SECONDS: Final = 0.5
"""How long ``stop_loop()`` waits for paho's thread; its reconnect wait sleeps in 1 s steps."""

ClientFactory = Callable[[str], mqtt.Client]


def make_client(client_id: str) -> mqtt.Client:
    """The bridge's client: a clean MQTT 3.1.1 session with an unbounded outgoing queue."""
    # A clean session: the broker keeps no commands for Lingling while it is away (a stale "say"
    # must not be spoken minutes later); subscriptions are renewed on every connect. Outgoing
    # QoS 1 messages do not depend on it: paho keeps them until acknowledged, across reconnects.
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    # 0 = unbounded. A limit would make publish() refuse the newest messages, so the last retained
    # state could be lost while an older one is delivered; a turn queues only a few small messages.
    client.max_queued_messages_set(0)
    client.suppress_exceptions = True  # a bug in a callback must not end paho's thread
    client.on_socket_open = _send_at_once
    return client


def _send_at_once(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Turn Nagle's algorithm off: with it, a wake word's claim published just after another
    message waits for that one's ACK (a delayed ACK: up to 40 ms) before it leaves."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def secure(client: mqtt.Client, config: MqttConfig, password: str | None) -> None:
    """Log in as ``config.username`` (if set) and use ``config.tls`` (if set).

    Raises OSError or ValueError when the TLS files cannot be used.
    """
    if config.username is not None:
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
        )


async def stop_loop(client: mqtt.Client, wait_seconds: float = STOP_WAIT_SECONDS) -> None:
    """End paho's network thread, waiting for it at most ``wait_seconds``."""
    # loop_stop() joins paho's thread, which may be sleeping before a reconnect: never wait
    # for it long (it is a daemon thread and ends by itself within a second).
    joiner = threading.Thread(target=client.loop_stop, name="lingling-mqtt-stop", daemon=True)
    joiner.start()
    await asyncio.to_thread(joiner.join, wait_seconds)
