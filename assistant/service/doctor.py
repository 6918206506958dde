"""``lingling doctor``: check a setup piece by piece and say how to fix what is wrong.

Each check does the real thing where it can: the models are loaded by the same adapters the
assistant uses and run once, the servers are asked for ``/health``, the broker gets a real MQTT
CONNECT. Nothing here prints a secret: the MQTT password is only read from its environment
variable, and any text that could carry it is scrubbed before it is shown.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit, urlunsplit

from assistant.config import Config, find_model, load_config
from assistant.errors import AssistantError, ConfigError

HTTP_TIMEOUT_SECONDS: Final = 2.0
MQTT_TIMEOUT_SECONDS: Final = 3.0
SILENT_FRAME: Final = bytes(2560)  # one 80 ms frame of 16 kHz int16 silence


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    """What to do about a failure, in one line."""

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


def _pass(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


def run_checks(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    timeout_seconds: float = HTTP_TIMEOUT_SECONDS,
) -> list[Check]:
    """Every check, in order: config, models, audio devices, servers, broker."""
    env = os.environ if env is None else env
    c = f" -c {shlex.quote(str(config_path))}" if config_path is not None else ""
    try:
        config = load_config(config_path, env=env)
    except ConfigError as err:
        where = config_path if config_path is not None else "config.yaml"
        failed = [
            _fail("config", str(err), f"correct it in {where} (config.yaml documents every key)"),
            Check("other checks", Status.SKIP, "skipped until the config loads"),
        ]
        return [_scrub(check, [env.get("LINGLING_MQTT_PASSWORD", "")]) for check in failed]
    source = str(config_path) if config_path is not None else "the bundled config.yaml"
    checks = [_pass("config", f"{source} loads; models in {config.models_dir}")]
    checks += _guard("models", lambda: _model_checks(config, c))
    checks += _guard("audio", lambda: _audio_checks(config))
    checks += _guard("whisper.cpp server", lambda: [_whisper_check(config, c, timeout_seconds)])
    checks += _guard("llama.cpp server", lambda: [_llama_check(config, c, timeout_seconds)])
    checks += _guard("MQTT broker", lambda: [_mqtt_check(config, env)])
    secrets = [env.get(config.mqtt.password_env, "")]
    return [_scrub(check, secrets) for check in checks]


def _guard(name: str, produce: Callable[[], list[Check]]) -> list[Check]:
    """The checks ``produce`` makes; one failed check if it raises something unforeseen."""
    try:
        return produce()
    except Exception as err:  # a broken check must not take the whole report down
        detail = f"the check itself failed: {type(err).__name__}: {err}"
        return [_fail(name, detail, "this is a bug in `lingling doctor`: please report this line")]


# --- models --------------------------------------------------------------------------------------


def _fetch_hint(c: str, group: str, name: str | None = None) -> str:
    from assistant.service.models import FetchError, load_manifest

    try:
        entries = load_manifest().select(group, [name] if name else [])
    except FetchError:
        return ""
    names = "" if name is None else f" {entries[0].name}"
    return f"lingling models fetch{c} {group}{names}"


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _model_checks(config: Config, c: str) -> list[Check]:
    from assistant.adapters.openwakeword import FEATURE_MODELS

    checks = []
    folder = config.models_dir / "openwakeword"
    missing = [name for name in FEATURE_MODELS if not (folder / name).is_file()]
    if missing:
        fix = _fetch_hint(c, "wake", "features") or f"put {', '.join(FEATURE_MODELS)} in {folder}"
        checks.append(_fail("wake word features", f"missing {', '.join(missing)} in {folder}", fix))
    words_found = not missing
    for index, word in enumerate(config.wake.words()):
        name = f"wake word {word.model}"
        try:
            path = find_model(
                config.models_dir, word.model, ("openwakeword",), f"wake.models[{index}]"
            )
        except ConfigError as err:
            words_found = False
            fix = _fetch_hint(c, "wake", word.model) or (
                f"put {word.model}.onnx in {folder}, or change wake.models"
            )
            checks.append(_fail(name, str(err), fix))
            continue
        checks.append(_pass(name, str(path)))
    if words_found:
        checks.append(_load_wake_words(config, c))
    checks.append(_load_vad(config, c))
    checks.append(_load_voice(config, c))
    return checks


def _load_wake_words(config: Config, c: str) -> Check:
    from assistant.adapters.openwakeword import OpenWakeWord

    try:
        wake = OpenWakeWord(config.wake, config.models_dir)
        ms = _timed(lambda: wake.process(SILENT_FRAME))
    except (AssistantError, OSError, ValueError) as err:
        fix = "fetch them again: " + (_fetch_hint(c, "wake") or "see models/README.md")
        return _fail("openWakeWord", f"cannot run the models: {err}", fix)
    return _pass("openWakeWord", f"{', '.join(wake.wake_words)} loaded and ran ({ms:.0f} ms)")


def _load_vad(config: Config, c: str) -> Check:
    from assistant.adapters.silero import SileroVad

    hint = _fetch_hint(c, "vad") or "see models/README.md"
    try:
        vad = SileroVad(config.vad, config.models_dir)
        vad.process(SILENT_FRAME)
    except ConfigError as err:
        return _fail("Silero VAD", str(err), hint)
    except (AssistantError, OSError, ValueError) as err:
        return _fail("Silero VAD", str(err), f"the file is damaged or not Silero v4: {hint}")
    return _pass("Silero VAD", f"{config.vad.model} loaded and ran")


def _load_voice(config: Config, c: str) -> Check:
    from assistant.adapters.piper import PiperSynthesizer

    name = f"Piper voice {config.tts.voice}"
    hint = _fetch_hint(c, "voice", config.tts.voice) or (
        f"put {config.tts.voice}.onnx and {config.tts.voice}.onnx.json in "
        f"{config.models_dir / 'piper'}, or change tts.voice"
    )
    try:
        voice = PiperSynthesizer(config.tts, config.models_dir, threads=1)
        ms = _timed(lambda: voice.synthesize("Hello."))
    except ConfigError as err:
        return _fail(name, str(err), hint)
    except (AssistantError, OSError, ValueError) as err:
        return _fail(name, str(err), f"the voice is damaged: {hint}")
    return _pass(name, f"{voice.sample_rate_hz} Hz, said 'Hello.' in {ms:.0f} ms")


# --- audio ---------------------------------------------------------------------------------------


def _audio_checks(config: Config) -> list[Check]:
    from assistant.adapters.audio import Kind, _resolve, _sounddevice

    checks = []
    wanted: tuple[tuple[Kind, str | int | None], ...] = (
        ("input", config.audio.input_device),
        ("output", config.audio.output_device),
    )
    try:
        sd = _sounddevice()
    except AssistantError as err:
        return [
            _fail("audio", str(err), "install PortAudio (Debian: apt-get install libportaudio2)")
        ]
    for kind, spec in wanted:
        name = f"audio {kind}"
        try:
            _, device = _resolve(sd, spec, kind)
        except AssistantError as err:
            fix = (
                f"list devices with `lingling devices`, then set audio.{kind}_device "
                "(a name or part of it, an index, or null for the default)"
            )
            if spec is None:
                fix = "connect a sound card (or start the sound server); see `lingling devices`"
            checks.append(_fail(name, str(err), fix))
            continue
        which = "the default" if spec is None else f"audio.{kind}_device {spec!r}"
        checks.append(_pass(name, f"{device} ({which})"))
    return checks


# --- servers -------------------------------------------------------------------------------------


def server_root(url: str) -> str:
    """``http://host:port/v1`` → ``http://host:port``: where a server's ``/health`` is."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


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
        return status, _fail(name, f"nothing answers at {where} ({reason})", start)
    if status == 503:
        return status, _fail(
            name, f"{where} is still loading its model", "wait a moment and run it again"
        )
    text = body.decode(errors="replace").strip()[:80]
    return status, _fail(name, f"{where}/health answered HTTP {status} {text}".rstrip(), start)


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _model_in(folder: Path, pattern: str, default: str) -> Path:
    found = sorted(folder.glob(pattern))
    return found[0] if found else folder / default


def _whisper_check(config: Config, c: str, timeout: float) -> Check:
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
        start += f" (get the model first: {_fetch_hint(c, 'whisper', 'base.en')})"
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
        return _fail(name, f"{_shown(root)} is up but has no {path}", f"re{start}")
    return _pass(name, f"{_shown(root)} is up and serves {path}")


def _llama_check(config: Config, c: str, timeout: float) -> Check:
    name = "llama.cpp server"
    root = server_root(config.llm.url)
    host, port = _endpoint(config.llm.url)
    model = _model_in(config.models_dir / "llm", "*.gguf", "qwen2.5-1.5b-instruct-q4_k_m.gguf")
    start = f"start it with: llama-server -m {model} --host {host} --port {port} -c 4096"
    if not model.is_file():
        start += f" (get the model first: {_fetch_hint(c, 'llm')})"
    health, failure = _health(name, root, timeout, start)
    if failure is not None and health != 404:
        return failure
    # /v1/models names the model; it also tells llama-server from another server on that port
    status, body = _http(f"{config.llm.url.rstrip('/')}/models", timeout)
    if status != 200:
        detail = f"{_shown(root)} is up but {_shown(config.llm.url)}/models answered HTTP {status}"
        return failure or _fail(name, detail, f"is it llama-server? {start}")
    serving = ""
    try:
        models = json.loads(body)["data"]
        serving = f", serving {Path(str(models[0]['id'])).name}"
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return _pass(name, f"{_shown(root)} is up{serving}")


# --- the broker ----------------------------------------------------------------------------------


def _mqtt_check(config: Config, env: Mapping[str, str]) -> Check:
    mqtt = config.mqtt
    name = "MQTT broker"
    if not mqtt.enabled:
        return Check(name, Status.SKIP, "mqtt.enabled is false")
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=MQTT_TIMEOUT_SECONDS):
            pass
    except OSError as err:
        return _fail(
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
        return _fail(name, f"{where} did not complete an MQTT CONNECT: {err}", fix)
    who = f"user {mqtt.username!r}" if mqtt.username else "anonymous"
    if reason is None:
        return _fail(name, f"{where} sent no CONNACK", "is this port an MQTT listener?")
    if reason != "Success":
        fix = f"check mqtt.username and the password in ${mqtt.password_env}"
        if mqtt.username is None:
            fix = "this broker wants a login: set mqtt.username, and the password in " + (
                f"${mqtt.password_env}"
            )
        elif password is None:
            fix = f"${mqtt.password_env} is not set: put the password there"
        return _fail(name, f"{where} refused {who}: {reason}", fix)
    tls = " over TLS" if mqtt.tls else ""
    return _pass(name, f"{where} accepted {who}{tls}")


def _mqtt_connect(config: Config, password: str | None) -> str | None:
    """The CONNACK's reason ("Success", "Not authorized", ...), or None without one."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    mqtt = config.mqtt
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"lingling-doctor-{os.getpid()}")
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, password)
    if mqtt.tls is not None:
        client.tls_set(
            ca_certs=str(mqtt.tls.ca_file) if mqtt.tls.ca_file else None,
            certfile=str(mqtt.tls.cert_file) if mqtt.tls.cert_file else None,
            keyfile=str(mqtt.tls.key_file) if mqtt.tls.key_file else None,
        )
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


# --- the report ----------------------------------------------------------------------------------


def _scrub(check: Check, secrets: Sequence[str]) -> Check:
    detail, fix = check.detail, check.fix
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
            fix = fix.replace(secret, "***") if fix else fix
    return replace(check, detail=detail, fix=fix)


def _marks(stream: IO[str]) -> dict[Status, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return {Status.PASS: "ok  ", Status.FAIL: "FAIL", Status.SKIP: "skip"}
    return {Status.PASS: "✓", Status.FAIL: "✗", Status.SKIP: "-"}


def print_report(checks: Sequence[Check], stream: IO[str] | None = None) -> int:
    """One line per check, the fix under each failure, a summary; 1 if anything failed."""
    out = sys.stdout if stream is None else stream
    marks = _marks(out)
    for check in checks:
        print(f"{marks[check.status]} {check.name}: {check.detail}", file=out)
        if check.failed and check.fix:
            print(f"    fix: {check.fix}", file=out)
    failed = sum(check.failed for check in checks)
    passed = sum(check.status is Status.PASS for check in checks)
    skipped = len(checks) - failed - passed
    summary = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    print(summary, file=out)
    return 1 if failed else 0
