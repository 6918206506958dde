"""``lingling doctor`` on a broken setup and on a good one: real models, loopback servers that
speak whisper.cpp's and llama.cpp's wire formats, and a real mosquitto started here."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from assistant.adapters.endpoints import server_root
from assistant.service.checks import Check, Status
from assistant.service.doctor import print_report, run_checks
from tests.support.servers import FakeLlamaServer, FakeWhisperServer, LoopbackServer

SECRET = "correct-horse-battery-staple"


# --- helpers -------------------------------------------------------------------------------------


class FakeSoundDevice:
    """Stands in for the ``sounddevice`` module: one microphone, one speaker."""

    class PortAudioError(Exception):
        pass

    def __init__(self) -> None:
        self.default = SimpleNamespace(device=[0, 1])

    def query_devices(self) -> list[dict[str, Any]]:
        return [
            {"index": 0, "name": "USB Mic", "hostapi": 0, "max_input_channels": 1,
             "max_output_channels": 0, "default_samplerate": 48000.0},
            {"index": 1, "name": "Speakers", "hostapi": 0, "max_input_channels": 0,
             "max_output_channels": 2, "default_samplerate": 44100.0},
        ]  # fmt: skip


@pytest.fixture(autouse=True)
def sound_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
        None,
    )
    if found is None:
        reason = "mosquitto not installed: apt-get install mosquitto"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; in CI the broker tests must run")
        pytest.skip(reason)
    return found


def start_broker(folder: Path, *lines: str) -> Iterator[Broker]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        "\n".join([f"listener {port} 127.0.0.1", "persistence false", "user root", *lines]) + "\n"
    )
    with (folder / "mosquitto.log").open("wb") as log:
        process = subprocess.Popen([_mosquitto(), "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log_text = (folder / "mosquitto.log").read_text()
                    pytest.fail(f"mosquitto did not start: {log_text}")
                time.sleep(0.02)
        yield Broker(port, process)
    finally:
        process.terminate()
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(3)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "anonymous"
    folder.mkdir()
    yield from start_broker(folder, "allow_anonymous true")


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "locked"
    folder.mkdir()
    passwords = folder / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "alice", SECRET],
        check=True,
        capture_output=True,
    )
    yield from start_broker(folder, "allow_anonymous false", f"password_file {passwords}")


@pytest.fixture
def servers() -> Iterator[tuple[FakeWhisperServer, FakeLlamaServer]]:
    with FakeWhisperServer() as whisper, FakeLlamaServer() as llama:
        yield whisper, llama


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def report(checks: list[Check], encoding: str = "utf-8") -> tuple[int, str]:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding)
    code = print_report(checks, stream)
    stream.flush()
    return code, raw.getvalue().decode(encoding)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


# --- a broken setup ------------------------------------------------------------------------------


def test_a_bad_config_key_is_named_with_its_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", {"wake": {"thresold": 0.4}})

    checks = run_checks(config, env={})
    code, text = report(checks)

    assert code == 1
    assert text.splitlines()[:2] == [
        "✗ config: wake.thresold: unknown key",
        f"    fix: correct it in {config} (config.yaml documents every key)",
    ]
    assert "- other checks: skipped until the config loads" in text


def test_a_broken_setup_names_every_problem_with_its_fix(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "openwakeword").mkdir(parents=True)
    stt_port, llm_port, mqtt_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path / "config.yaml",
        {
            "models_dir": "models",
            "audio": {"input_device": "Blue Yeti"},
            "stt": {"url": f"http://127.0.0.1:{stt_port}/v1"},
            "llm": {"url": f"http://127.0.0.1:{llm_port}/v1"},
            "mqtt": {"port": mqtt_port},
        },
    )

    checks = by_name(run_checks(config, env={}, timeout_seconds=1))
    code, text = report(list(checks.values()))

    assert code == 1
    c = f"-c {config}"
    expected_failures = {
        "wake word features": (
            f"missing melspectrogram.onnx, embedding_model.onnx in {models / 'openwakeword'}",
            f"lingling models fetch {c} wake features",
        ),
        "wake word hey_jarvis": (
            f"wake.models[0]: no model 'hey_jarvis' in {models / 'openwakeword'}",
            f"lingling models fetch {c} wake hey_jarvis",
        ),
        "Silero VAD": ("vad.model: no model 'silero_vad'", f"lingling models fetch {c} vad"),
        "end-of-turn model": (
            "vad.turn_model: no model 'smart-turn-v3.2-cpu'",
            f"lingling models fetch {c} turn, or set vad.end_of_turn: silence",
        ),
        "Piper voice en_US-lessac-medium": (
            "tts.voice: no model 'en_US-lessac-medium'",
            f"lingling models fetch {c} voice en_US-lessac-medium",
        ),
        "audio input": (
            "audio.input_device: no input device 'Blue Yeti'; input devices: 0 'USB Mic'",
            "list devices with `lingling devices`, then set audio.input_device",
        ),
        "whisper.cpp server": (
            f"nothing answers at http://127.0.0.1:{stt_port} (",
            f"start it with: whisper-server -m {models / 'whisper' / 'ggml-base.en.bin'} "
            f"--host 127.0.0.1 --port {stt_port} --inference-path /v1/audio/transcriptions "
            f"(get the model first: lingling models fetch {c} whisper base.en)",
        ),
        "llama.cpp server": (
            f"nothing answers at http://127.0.0.1:{llm_port} (",
            f"start it with: llama-server -m {models / 'llm'}/qwen2.5-1.5b-instruct-q4_k_m.gguf "
            f"--host 127.0.0.1 --port {llm_port} -c 4096",
        ),
        "MQTT broker": (
            f"nothing listens on 127.0.0.1:{mqtt_port} (Connection refused)",
            "start a broker (Debian: apt-get install mosquitto; macOS: brew install mosquitto)",
        ),
    }
    for name, (detail, fix) in expected_failures.items():
        check = checks[name]
        assert check.status is Status.FAIL, check
        assert detail in check.detail, check
        assert check.fix is not None
        assert fix in check.fix, check
        assert f"✗ {name}: {check.detail}\n    fix: {check.fix}\n" in text
    assert checks["audio output"].status is Status.PASS
    assert text.splitlines()[-1] == "2 passed, 9 failed"


@pytest.mark.models
def test_a_models_folder_without_the_wake_word_names_only_that(
    tmp_path: Path, models_dir: Path
) -> None:
    models = tmp_path / "models"
    for relative in (
        "openwakeword/melspectrogram.onnx",
        "openwakeword/embedding_model.onnx",
        "openwakeword/silero_vad.onnx",
        "piper/tone_voice.onnx",
        "piper/tone_voice.onnx.json",
    ):
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).symlink_to(models_dir / relative)
    config = write_config(
        tmp_path / "c.yaml",
        {"models_dir": "models", "tts": {"voice": "tone_voice"}, "mqtt": {"enabled": False}},
    )

    checks = run_checks(config, env={})
    model_checks = [
        c for c in checks if c.name.startswith(("wake", "openWakeWord", "Silero", "Piper"))
    ]

    assert [(c.name, c.status) for c in model_checks] == [
        ("wake word hey_jarvis", Status.FAIL),
        ("Silero VAD", Status.PASS),
        ("Piper voice tone_voice", Status.PASS),
    ]
    assert model_checks[0].fix == f"lingling models fetch -c {config} wake hey_jarvis"


def test_a_server_that_is_still_loading_says_so(tmp_path: Path) -> None:
    class Loading(LoopbackServer):
        def handle(self, handler: Any, method: str) -> None:
            handler.answer_json(503, {"error": {"code": 503, "message": "Loading model"}})

    with Loading() as server:
        url = server.url
        config = write_config(
            tmp_path / "c.yaml",
            {"stt": {"url": server.v1_url}, "mqtt": {"enabled": False}},
        )
        checks = by_name(run_checks(config, env={}))

    whisper = checks["whisper.cpp server"]
    assert whisper.status is Status.FAIL
    assert whisper.detail == f"{url} is still loading its model"
    assert whisper.fix == "wait a moment and run it again"


def test_a_whisper_server_without_the_openai_path_is_told_how_to_restart(
    tmp_path: Path, servers: tuple[FakeWhisperServer, FakeLlamaServer]
) -> None:
    _, llama = servers  # answers /health, but it is no whisper-server
    config = write_config(
        tmp_path / "c.yaml", {"stt": {"url": llama.v1_url}, "mqtt": {"enabled": False}}
    )

    whisper = by_name(run_checks(config, env={}))["whisper.cpp server"]

    assert whisper.status is Status.FAIL
    assert whisper.detail == f"{llama.url} is up but has no /v1/audio/transcriptions"
    assert whisper.fix is not None
    assert whisper.fix.startswith("restart it with: whisper-server -m ")
    assert "--inference-path /v1/audio/transcriptions" in whisper.fix


def test_another_server_on_the_llm_port_is_noticed(
    tmp_path: Path, servers: tuple[FakeWhisperServer, FakeLlamaServer]
) -> None:
    whisper, _ = servers  # answers /health, but serves no /v1/models
    config = write_config(
        tmp_path / "c.yaml", {"llm": {"url": whisper.v1_url}, "mqtt": {"enabled": False}}
    )

    llama = by_name(run_checks(config, env={}))["llama.cpp server"]

    assert llama.status is Status.FAIL
    assert llama.detail == f"{whisper.url} is up but {whisper.v1_url}/models answered HTTP 404"
    assert llama.fix is not None
    assert llama.fix.startswith("is it llama-server? start it with: llama-server -m ")


def test_a_check_that_breaks_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("PortAudio said something new")

    monkeypatch.setattr(sys.modules["sounddevice"], "query_devices", broken)
    config = write_config(tmp_path / "c.yaml", {"mqtt": {"enabled": False}})

    checks = by_name(run_checks(config, env={}))

    audio = checks["audio"]
    assert audio.status is Status.FAIL
    assert audio.detail == "the check itself failed: RuntimeError: PortAudio said something new"
    assert "MQTT broker" in checks  # the checks after it still ran


def test_a_disabled_broker_is_skipped_not_failed(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {"mqtt": {"enabled": False}})

    mqtt = by_name(run_checks(config, env={}))["MQTT broker"]

    assert mqtt.status is Status.SKIP
    assert mqtt.detail == "mqtt.enabled is false"


# --- the broker's login, and secrets -------------------------------------------------------------


def test_a_refused_login_names_the_variable_never_the_password(
    tmp_path: Path, locked_broker: Broker
) -> None:
    mqtt = {"port": locked_broker.port, "username": "alice"}
    config = write_config(tmp_path / "c.yaml", {"mqtt": mqtt})
    env = {"LINGLING_MQTT_PASSWORD": SECRET + "-wrong"}

    checks = run_checks(config, env=env)
    _, text = report(checks)

    check = by_name(checks)["MQTT broker"]
    assert check.status is Status.FAIL
    assert check.detail == f"127.0.0.1:{locked_broker.port} refused user 'alice': Not authorized"
    assert check.fix == "check mqtt.username and the password in $LINGLING_MQTT_PASSWORD"
    assert SECRET not in text


def test_a_missing_password_variable_is_named(tmp_path: Path, locked_broker: Broker) -> None:
    mqtt = {"port": locked_broker.port, "username": "alice", "password_env": "HOME_MQTT_PW"}
    config = write_config(tmp_path / "c.yaml", {"mqtt": mqtt})

    check = by_name(run_checks(config, env={}))["MQTT broker"]

    assert check.status is Status.FAIL
    assert check.fix == "$HOME_MQTT_PW is not set: put the password there"


def test_anonymous_clients_are_told_to_log_in(tmp_path: Path, locked_broker: Broker) -> None:
    config = write_config(tmp_path / "c.yaml", {"mqtt": {"port": locked_broker.port}})

    check = by_name(run_checks(config, env={}))["MQTT broker"]

    assert check.status is Status.FAIL
    assert check.detail.endswith("refused anonymous: Not authorized")
    assert check.fix is not None
    assert check.fix.startswith("this broker wants a login: set mqtt.username")


def test_the_right_password_passes_and_is_never_shown(
    tmp_path: Path, locked_broker: Broker
) -> None:
    mqtt = {"port": locked_broker.port, "username": "alice"}
    config = write_config(tmp_path / "c.yaml", {"mqtt": mqtt})

    checks = run_checks(config, env={"LINGLING_MQTT_PASSWORD": SECRET})
    _, text = report(checks)

    check = by_name(checks)["MQTT broker"]
    assert check.status is Status.PASS
    assert check.detail == f"127.0.0.1:{locked_broker.port} accepted user 'alice'"
    assert SECRET not in text


def test_a_secret_is_scrubbed_wherever_it_would_appear(
    tmp_path: Path, locked_broker: Broker
) -> None:
    # someone typed the password into the username: it must still not be printed
    mqtt = {"port": locked_broker.port, "username": SECRET}
    config = write_config(tmp_path / "c.yaml", {"mqtt": mqtt})

    checks = run_checks(config, env={"LINGLING_MQTT_PASSWORD": SECRET})
    _, text = report(checks)

    assert by_name(checks)["MQTT broker"].detail.endswith("refused user '***': Not authorized")
    assert SECRET not in text


# --- a good setup --------------------------------------------------------------------------------


@pytest.mark.models
def test_a_good_setup_passes_every_check(
    tmp_path: Path,
    models_dir: Path,
    servers: tuple[FakeWhisperServer, FakeLlamaServer],
    broker: Broker,
) -> None:
    whisper, llama = servers
    config = write_config(
        tmp_path / "config.yaml",
        {
            "tts": {"voice": "tone_voice"},
            "audio": {"input_device": "usb mic"},
            "stt": {"url": whisper.v1_url},
            "llm": {"url": llama.v1_url},
            "mqtt": {"port": broker.port},
        },
    )

    checks = run_checks(config, env={"LINGLING_MODELS": str(models_dir)})
    code, text = report(checks)

    assert code == 0, text
    assert [check.name for check in checks] == [
        "config",
        "wake word hey_jarvis",
        "openWakeWord",
        "Silero VAD",
        "end-of-turn model",
        "Piper voice tone_voice",
        "audio input",
        "audio output",
        "whisper.cpp server",
        "llama.cpp server",
        "MQTT broker",
    ]
    lines = text.splitlines()
    assert all(line.startswith("✓ ") for line in lines[:-1]), text
    assert lines[-1] == "11 passed, 0 failed"
    details = {check.name: check.detail for check in checks}
    assert details["config"] == f"{config} loads; models in {models_dir.resolve()}"
    assert details["openWakeWord"].startswith("hey_jarvis loaded and ran")
    assert details["end-of-turn model"].startswith("smart-turn-v3.2-cpu loaded and ran")
    assert details["Piper voice tone_voice"].startswith("22050 Hz, said 'Hello.' in ")
    assert details["audio input"] == "USB Mic (audio.input_device 'usb mic')"
    assert details["audio output"] == "Speakers (the default)"
    assert (
        details["whisper.cpp server"] == f"{whisper.url} is up and serves /v1/audio/transcriptions"
    )
    assert details["llama.cpp server"] == f"{llama.url} is up, serving two-sentences.gguf"
    assert details["MQTT broker"] == f"127.0.0.1:{broker.port} accepted anonymous"


# --- the report ----------------------------------------------------------------------------------


def test_the_report_falls_back_to_ascii() -> None:
    checks = [
        Check("config", Status.PASS, "fine"),
        Check("MQTT broker", Status.FAIL, "refused", "log in"),
        Check("extra", Status.SKIP, "not asked for"),
    ]

    code, text = report(checks, encoding="ascii")

    assert code == 1
    assert text.splitlines() == [
        "ok   config: fine",
        "FAIL MQTT broker: refused",
        "    fix: log in",
        "skip extra: not asked for",
        "1 passed, 1 failed, 1 skipped",
    ]


def test_only_failures_make_the_exit_code() -> None:
    checks = [Check("a", Status.PASS, "x"), Check("b", Status.SKIP, "y")]

    assert report(checks)[0] == 0


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ("https://box.lan/llama/v1", "https://box.lan/llama"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
    ],
)
def test_server_root_strips_the_api_prefix(url: str, root: str) -> None:
    assert server_root(url) == root
