"""The MQTT bridge: publishes what Lingling does, hands commands to the runtime.

paho-mqtt runs the connection on its own thread (``loop_start``) and reconnects by itself with
backoff. The observer hooks (``assistant.mqtt.reports``) run on the event loop and only call
``client.publish``, which queues;
``on_message`` runs on paho's thread and only parses and hands requests to the loop.

QoS 1 messages published while the broker is away stay in paho's queue (unbounded, see
``make_client``) and are sent once it is back, whether or not the session is clean.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from assistant.config import MqttConfig
from assistant.errors import ConfigError
from assistant.mqtt import hermes
from assistant.mqtt.client import ClientFactory, make_client, secure, stop_loop
from assistant.mqtt.discovery import (
    MUTE_OFF,
    OFFLINE,
    ONLINE,
    Topics,
    device_config,
    site_name,
)
from assistant.mqtt.reports import Reports
from assistant.mqtt.requests import (
    HERMES_COMMANDS,
    HERMES_SAY,
    MuteRequested,
    NotForThisSite,
    RemoteRequest,
    SayRequested,
    parse,
)

_LOGGER = logging.getLogger(__name__)

_PREVIEW_BYTES: Final = 80

RequestHandler = Callable[[RemoteRequest], None]


class MqttBridge(Reports):
    """Publishes states, turns and intents; obeys commands; announces itself to Home Assistant."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        on_request: RequestHandler,
        loop: asyncio.AbstractEventLoop,
        intent_names: Sequence[str] = (),
        wake_words: Sequence[str] = (),
        env: Mapping[str, str] = os.environ,
        client_factory: ClientFactory | None = None,
        rediscovery_delay_seconds: float = 1.0,
    ) -> None:
        self._config = config
        self.site = site_name(config.site)
        if config.site is not None and config.site != self.site:
            _LOGGER.warning("mqtt.site %r is used as %r in topics", config.site, self.site)
        self.topics = Topics(config.topic_prefix, self.site, config.discovery_prefix)
        self._on_request = on_request
        self._loop = loop
        self._intent_names = tuple(intent_names)
        self._wake_words = tuple(wake_words)
        self._rediscovery_delay_seconds = rediscovery_delay_seconds
        self._lock = threading.RLock()  # the remembered state and its publication, both threads
        self._retained = {self.topics.mute: MUTE_OFF}
        self._connected = False
        self._outage_logged = False
        self._started = False
        self._stopping = False
        self._rediscovery: asyncio.TimerHandle | None = None
        self._dialogue = hermes.Dialogue(self.site)  # guarded by the lock too
        self._transcribing_since: float | None = None
        self._routes: dict[str, Callable[[bytes], None]] = {}  # more topics: see route()

        client = (client_factory or make_client)(f"lingling-{self.site}")
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, max(1, round(config.reconnect_max_seconds)))
        password = env.get(config.password_env) if config.username is not None else None
        if config.username is not None and password is None:
            _LOGGER.warning(
                "mqtt.username is set but %s is not: connecting without a password",
                config.password_env,
            )
        try:
            secure(client, config, password)
        except (OSError, ValueError) as err:
            raise ConfigError(f"mqtt.tls: {err}") from err
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def __repr__(self) -> str:
        config = self._config
        return f"MqttBridge(site={self.site!r}, broker={config.host}:{config.port})"

    @property
    def connected(self) -> bool:
        return self._connected

    def route(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Before ``start``: subscribe to ``topic`` too, and hand each payload that comes on it to
        ``handler`` (on paho's thread: it must only hand work to the loop); retained messages
        (old ones, replayed on subscribing) are dropped."""
        self._routes[topic] = handler

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once, with or without a broker."""
        if self._started:
            return
        self._started = True
        config = self._config
        _LOGGER.info(
            "MQTT: connecting to %s:%d%s as %s, topics %s/…",
            config.host,
            config.port,
            " (TLS)" if config.tls is not None else "",
            self.site,
            self.topics.base,
        )
        self.client.connect_async(config.host, config.port, config.keepalive_seconds)
        self.client.loop_start()

    async def stop(self) -> None:
        """Say ``offline``, disconnect and let paho's thread end (waits at most 0.5 s)."""
        if not self._started or self._stopping:
            return
        with self._lock:
            self._stopping = True
            if self._rediscovery is not None:
                self._rediscovery.cancel()
            if self._connected:  # sent before the DISCONNECT, in order, on the same connection
                self._publish_now(self.topics.availability, OFFLINE, qos=1, retain=True)
            self.client.disconnect()
        await stop_loop(self.client)
        self._connected = False
        _LOGGER.info("MQTT: stopped")

    # -- paho's thread ---------------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._outage(
                "MQTT broker at %s:%d refused the connection (%s); retrying",
                self._config.host,
                self._config.port,
                reason_code,
            )
            return
        try:
            self._connected_now(client)
        except Exception:  # paho would swallow it silently
            _LOGGER.exception("MQTT: setting up the connection failed")

    def _connected_now(self, client: mqtt.Client) -> None:
        with self._lock:
            if self._stopping:
                client.disconnect()
                return
            self._connected = True
            self._outage_logged = False
            _LOGGER.info("MQTT: connected to %s:%d", self._config.host, self._config.port)
            topics = list(self.topics.commands)
            if self._config.discovery:
                topics.append(self.topics.ha_status)
            if self._config.hermes:
                topics.extend(HERMES_COMMANDS)
            topics.extend(self._routes)
            client.subscribe([(topic, 1) for topic in topics])
            self._publish_now(self.topics.availability, ONLINE, qos=1, retain=True)
            self._publish_discovery()
            self._republish_states()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._outage(
            "MQTT broker at %s:%d is unreachable; Lingling works on without it and keeps trying",
            self._config.host,
            self._config.port,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            self._outage("MQTT: lost the broker (%s); reconnecting in the background", reason_code)

    def _outage(self, message: str, *args: object) -> None:
        """Log the first problem of an outage at WARNING, the rest at DEBUG."""
        level = logging.DEBUG if self._outage_logged else logging.WARNING
        self._outage_logged = True
        _LOGGER.log(level, message, *args)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle(message.topic, bytes(message.payload), retained=bool(message.retain))
        except Exception:  # nothing may escape into paho's thread
            _LOGGER.exception("MQTT: message not handled")

    def _handle(self, topic: str, payload: bytes, *, retained: bool) -> None:
        if topic == self.topics.ha_status:
            if payload.strip().lower() == ONLINE.encode() and self._config.discovery:
                self._call_soon(self._schedule_rediscovery)
            return
        if (route := self._routes.get(topic)) is not None:
            if not retained:  # a route takes live messages only
                route(payload)
            return
        try:
            request = parse(
                topic, payload, self.topics, max_payload_bytes=self._config.max_payload_bytes
            )
        except NotForThisSite as err:
            _LOGGER.debug("MQTT: %s: %s", topic, err)
            return
        except ValueError as err:
            _LOGGER.warning("MQTT: ignored %s: %s; payload %s", topic, err, _preview(payload))
            return
        if retained and not isinstance(request, MuteRequested):
            _LOGGER.warning("MQTT: ignored a retained command on %s (commands are one-off)", topic)
            return
        if isinstance(request, SayRequested) and topic == HERMES_SAY:
            with self._lock:
                request = self._dialogue.say_requested(request)
        self._call_soon(self._deliver, request)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: Lingling is shutting down
            _LOGGER.debug("MQTT: event loop closed; message dropped")

    # -- the loop's thread -----------------------------------------------------------------------

    def _deliver(self, request: RemoteRequest) -> None:
        if self._stopping:
            return
        _LOGGER.info("MQTT: %s", request)
        try:
            self._on_request(request)
        except Exception:
            _LOGGER.exception("MQTT: request %s failed", request)

    def _schedule_rediscovery(self) -> None:
        """Home Assistant came online: announce again after a short random delay."""
        if self._stopping:
            return
        if self._rediscovery is not None:
            self._rediscovery.cancel()
        delay = random.uniform(0, self._rediscovery_delay_seconds)
        self._rediscovery = self._loop.call_later(delay, self._rediscover)

    def _rediscover(self) -> None:
        self._rediscovery = None
        with self._lock:
            if not self._stopping:
                self._publish_discovery()
                self._republish_states()

    # -- publishing (either thread) --------------------------------------------------------------

    def _publish_discovery(self) -> None:
        if self._config.discovery:
            config = device_config(self.topics, self._intent_names, wake_words=self._wake_words)
            payload = json.dumps(config)
            self._publish_now(self.topics.discovery, payload, qos=1, retain=True)
        else:  # an empty retained config removes a device announced before
            self._publish_now(self.topics.discovery, "", qos=1, retain=True)

    def _republish_states(self) -> None:
        for topic, payload in self._retained.items():
            self._publish_now(topic, payload, qos=1, retain=True)

    def _publish_now(self, topic: str, payload: str, *, qos: int, retain: bool = False) -> None:
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, TypeError) as err:  # an invalid topic (a wildcard), QoS or payload
            _LOGGER.warning("MQTT: cannot publish on %r: %s", topic, err)
            return
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _LOGGER.debug("MQTT: %s not queued: %s", topic, mqtt.error_string(info.rc))

    def _publish(self, topic: str, payload: str, *, qos: int, retain: bool = False) -> None:
        if not self._stopping:
            self._publish_now(topic, payload, qos=qos, retain=retain)


def _preview(payload: bytes) -> str:
    """A payload for a log line: at most 80 bytes, never the whole of a large one."""
    if len(payload) <= _PREVIEW_BYTES:
        return repr(payload)
    return f"{payload[:_PREVIEW_BYTES]!r}… ({len(payload)} bytes)"
