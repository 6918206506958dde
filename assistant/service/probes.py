"""``lingling doctor``'s checks over the network: the whisper.cpp and llama.cpp servers are asked
for ``/health``, the broker gets a real MQTT CONNECT.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from assistant.adapters.endpoints import server_root
from assistant.config import Config
from assistant.errors import ConfigError
from assistant.service.checks import Check, Status, fail, fetch_hint, ok
from assistant.service.servers import LLAMA, WHISPER, Kind, find_binary, find_model_file

HTTP_TIMEOUT_SECONDS: Final = 2.0
MQTT_TIMEOUT_SECONDS: Final = 3.0


def _shown(url: str) -> str:
    """A URL without any user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _http(
    url: str, timeout: float, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Status and body; (0, reason) when nothing answered."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(65536)
    except urllib.error.URLError as err:
        return 0, str(err.reason).encode()
    except (TimeoutError, OSError) as err:
        return 0, str(err).encode() or b"timed out"


def _health(name: str, root: str, timeout: float, start: str) -> tuple[int, Check | None]:
    """``/health``'s HTTP status (0: nothing answered) and a failing Check unless it says ok."""
    status, body = _http(f"{root}/health", timeout)
    where = _shown(root)
    if status == 200:
        return status, None
    if status == 0:
        reason = body.decode(errors="replace")
        return status, fail(name, f"nothing answers at {where} ({reason})", start)
    if status == 503:
        return status, fail(
            name, f"{where} is still loading its model", "wait a moment and run it again"
        )
    text = body.decode(errors="replace").strip()[:80]
    return status, fail(name, f"{where}/health answered HTTP {status} {text}".rstrip(), start)


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _model_in(folder: Path, pattern: str, default: str) -> Path:
    found = sorted(folder.glob(pattern))
    return found[0] if found else folder / default


def managed_check(config: Config, kind: Kind, c: str, timeout: float) -> Check:
    """A server Lingling runs itself: its program and model, and that its port is free."""
    server = config.stt.server if kind is WHISPER else config.llm.server
    assert server is not None
    name = kind.name
    try:
        binary = find_binary(kind, server, dict(os.environ))
        model = find_model_file(config.models_dir, kind, server)
    except ConfigError as err:
        fetch = fetch_hint(c, kind.models) if "model" in str(err).split(":")[0] else None
        return fail(name, str(err), fetch or "scripts/build-servers builds both servers")
    url = config.stt.url if kind is WHISPER else config.llm.url
    status, _ = _http(server_root(url) + "/health", timeout)
    where = _shown(server_root(url))
    if status != 0:
        return fail(
            name,
            f"Lingling runs it on {where}, but something already answers there",
            f"stop what runs on that port, or set {kind.section}.server: null to use it",
        )
    return ok(name, f"Lingling runs {binary} -m {model} on {where}")


def whisper_check(config: Config, c: str, timeout: float) -> Check:
    if config.stt.server is not None:
        return managed_check(config, WHISPER, c, timeout)
    name = "whisper.cpp server"
    root = server_root(config.stt.url)
    host, port = _endpoint(config.stt.url)
    model = _model_in(config.models_dir / "whisper", "ggml-*.bin", "ggml-base.en.bin")
    path = urlsplit(config.stt.url).path.rstrip("/") + "/audio/transcriptions"
    start = (
        f"start it with: whisper-server -m {model} --host {host} --port {port} "
        f"--inference-path {path}"
    )
    if not model.is_file():
        start += f" (get the model first: {fetch_hint(c, 'whisper', 'base.en')})"
    _, failure = _health(name, root, timeout, start)
    if failure is not None:
        return failure
    # whisper-server answers 400 for a request without audio on its inference path, 404 elsewhere
    status, _ = _http(
        f"{config.stt.url.rstrip('/')}/audio/transcriptions",
        timeout,
        data=b"",
        headers={"Content-Type": "multipart/form-data; boundary=lingling"},
    )
    if status == 404:
        return fail(name, f"{_shown(root)} is up but has no {path}", f"re{start}")
    return ok(name, f"{_shown(root)} is up and serves {path}")


def llama_check(config: Config, c: str, timeout: float) -> Check:
    if config.llm.server is not None:
        return managed_check(config, LLAMA, c, timeout)
    name = "llama.cpp server"
    root = server_root(config.llm.url)
    host, port = _endpoint(config.llm.url)
    model = _model_in(config.models_dir / "llm", "*.gguf", "qwen2.5-1.5b-instruct-q4_k_m.gguf")
    start = f"start it with: llama-server -m {model} --host {host} --port {port} -c 4096"
    if not model.is_file():
        start += f" (get the model first: {fetch_hint(c, 'llm')})"
    health, failure = _health(name, root, timeout, start)
    if failure is not None and health != 404:
        return failure
    # /v1/models names the model; it also tells llama-server from another server on that port
    status, body = _http(f"{config.llm.url.rstrip('/')}/models", timeout)
    if status != 200:
        detail = f"{_shown(root)} is up but {_shown(config.llm.url)}/models answered HTTP {status}"
        return failure or fail(name, detail, f"is it llama-server? {start}")
    serving = ""
    try:
        models = json.loads(body)["data"]
        serving = f", serving {Path(str(models[0]['id'])).name}"
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return ok(name, f"{_shown(root)} is up{serving}")


# --- the broker ----------------------------------------------------------------------------------


def mqtt_check(config: Config, env: Mapping[str, str]) -> Check:
    mqtt = config.mqtt
    name = "MQTT broker"
    if not mqtt.enabled:
        return Check(name, Status.SKIP, "mqtt.enabled is false")
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=MQTT_TIMEOUT_SECONDS):
            pass
    except OSError as err:
        return fail(
            name,
            f"nothing listens on {where} ({err.strerror or err})",
            "start a broker (Debian: apt-get install mosquitto; macOS: brew install mosquitto), "
            "or set mqtt.host and mqtt.port, or set mqtt.enabled: false",
        )
    password = env.get(mqtt.password_env) or None
    try:
        reason = _mqtt_connect(config, password)
    except (OSError, ValueError) as err:
        fix = "check mqtt.tls (and the broker's TLS listener)" if mqtt.tls else "check mqtt.port"
        return fail(name, f"{where} did not complete an MQTT CONNECT: {err}", fix)
    who = f"user {mqtt.username!r}" if mqtt.username else "anonymous"
    if reason is None:
        return fail(name, f"{where} sent no CONNACK", "is this port an MQTT listener?")
    if reason != "Success":
        fix = f"check mqtt.username and the password in ${mqtt.password_env}"
        if mqtt.username is None:
            fix = "this broker wants a login: set mqtt.username, and the password in " + (
                f"${mqtt.password_env}"
            )
        elif password is None:
            fix = f"${mqtt.password_env} is not set: put the password there"
        return fail(name, f"{where} refused {who}: {reason}", fix)
    tls = " over TLS" if mqtt.tls else ""
    return ok(name, f"{where} accepted {who}{tls}")


def _mqtt_connect(config: Config, password: str | None) -> str | None:
    """The CONNACK's reason ("Success", "Not authorized", ...), or None without one."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from assistant.mqtt.client import secure

    mqtt = config.mqtt
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"lingling-doctor-{os.getpid()}")
    secure(client, mqtt, password)
    answers: list[str] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        answers.append(str(reason))

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_seconds)
        deadline = time.monotonic() + MQTT_TIMEOUT_SECONDS
        while not answers and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
    return answers[0] if answers else None
