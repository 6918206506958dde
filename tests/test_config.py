"""Config loading: defaults, partial files, the models directory, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from pydantic import BaseModel

from assistant import paths
from assistant.config import Config
from assistant.config_files import DEFAULT_CONFIG, find_model, load_config
from assistant.errors import ConfigError
from assistant.paths import config_search_path, user_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


DELIBERATE: Final[dict[str, str]] = {
    # "section.key": why config.yaml sets something else than the model's default.
    "stt.server": "the bundled setup runs its own servers; a config built in code talks to "
    "servers that are already running",
    "llm.server": "the same, for llama-server",
}


def file_settings(text: str) -> dict[str, Any]:
    """The settings a config file sets (only those), validated, as JSON values."""
    config = Config.model_validate(yaml.safe_load(text))
    return config.model_dump(mode="json", exclude_unset=True)


def differences(settings: dict[str, Any], defaults: dict[str, Any], path: str = "") -> list[str]:
    """Each key path where ``settings`` differ from ``defaults``, or do not set one at all."""
    found = []
    for key, default in defaults.items():
        where = f"{path}.{key}" if path else key
        if key not in settings:
            found.append(f"{where}: not in config.yaml (the default is {default!r})")
        elif isinstance(default, dict) and isinstance(settings[key], dict):
            found += differences(settings[key], default, where)
        elif settings[key] != default:
            found.append(f"{where}: config.yaml has {settings[key]!r}, the default is {default!r}")
    return found


def test_the_bundled_config_is_the_default() -> None:
    config = load_config(env={})
    assert config.models_dir == (DEFAULT_CONFIG.parent / "models").resolve()
    assert config.wake.models == ["hey_jarvis"]
    assert config.stt.url == "http://127.0.0.1:8080/v1"


def test_config_yaml_sets_every_key_to_the_models_default() -> None:
    bundled = file_settings(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    found = differences(bundled, Config().model_dump(mode="json"))
    assert [line for line in found if line.split(":")[0] not in DELIBERATE] == []
    assert sorted(line.split(":")[0] for line in found) == sorted(DELIBERATE)  # none is stale


def test_a_difference_from_the_defaults_is_named_by_its_key_path() -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    changed = text.replace("  temperature: 0.7\n", "  temperature: 0.2\n")
    changed = changed.replace("  max_tokens: 256\n", "")
    changed = changed.replace("tls: null ", "tls: {} ")
    assert changed.count("\n") == text.count("\n") - 1

    found = differences(file_settings(changed), Config().model_dump(mode="json"))
    assert [line for line in found if line.split(":")[0] not in DELIBERATE] == [
        "llm.max_tokens: not in config.yaml (the default is 256)",
        "llm.temperature: config.yaml has 0.2, the default is 0.7",
        "mqtt.tls: config.yaml has {}, the default is None",
    ]


def test_a_partial_file_changes_only_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "wake:\n  threshold: 0.7\nllm:\n  model: qwen\n")
    config = load_config(path, env={})
    assert config.wake.threshold == 0.7
    assert config.wake.models == ["hey_jarvis"]  # from the defaults, same section
    assert config.llm.model == "qwen"
    assert config.llm.url == "http://127.0.0.1:8081/v1"


def test_models_dir_is_relative_to_the_file_that_sets_it(tmp_path: Path) -> None:
    path = write(tmp_path, "models_dir: mine\n")
    assert load_config(path, env={}).models_dir == (tmp_path / "mine").resolve()


def test_the_environment_overrides_models_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "models_dir: mine\n")
    config = load_config(path, env={"LINGLING_MODELS": str(tmp_path / "env")})
    assert config.models_dir == (tmp_path / "env").resolve()


def test_per_word_settings_fall_back_to_the_section() -> None:
    config = Config.model_validate(
        {"wake": {"models": ["alexa", {"model": "hey_jarvis", "threshold": 0.8}]}}
    )
    words = config.wake.words()
    assert [(w.model, w.threshold, w.refractory_seconds) for w in words] == [
        ("alexa", 0.5, 2.0),
        ("hey_jarvis", 0.8, 2.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wake: {threshold: 2}", "wake.threshold: must be between 0 and 1"),
        ("wake: {thresold: 0.5}", "wake.thresold: unknown key"),
        ("colour: blue", "colour: unknown key"),
        ("wake: {models: []}", "wake.models: list should have at least 1 item"),
        ("wake: {models: [{model: a, threshold: -1}]}", "wake.models[0].threshold: must be"),
        ("wake: {models: [{threshold: 0.5}]}", "wake.models[0].model: required"),
        ("vad: {silence_seconds: 0}", "vad.silence_seconds: must be between 0.1 and 5"),
        ("vad: {silence_seconds: soon}", "vad.silence_seconds: input should be a valid number"),
        (
            "vad: {turn_unfinished_below: 0.6}",
            "vad: turn_unfinished_below (0.6) must not be above turn_threshold (0.5)",
        ),
        (
            "vad: {turn_threshold: 0.3, turn_doubt_below: 0.4}",
            "vad: turn_doubt_below (0.4) must not be above turn_threshold (0.3)",
        ),
        ("vad: {turn_unfinished_below: -0.1}", "vad.turn_unfinished_below: must be between 0"),
        (
            "vad: {speculate_seconds: 0.7}",
            "vad: speculate_seconds (0.7) must be below silence_seconds (0.7)",
        ),
        ("stt: {url: localhost:8080}", "stt.url: must be an http:// or https:// URL"),
        ("stt: {timeout_seconds: 0}", "stt.timeout_seconds: must be greater than 0"),
        ("llm: {history_turns: -1}", "llm.history_turns: input should be greater than or equal"),
        ("audio: {input_device: [1]}", "audio.input_device: input should be a valid"),
        ("tts: {voice: 3}", "tts.voice: input should be a valid string"),
        ("- a list", "must be a mapping of settings"),
        ("wake: [", "not valid YAML"),
    ],
)
def test_a_bad_value_is_named_by_its_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "vad",
    [
        {"speculate_seconds": 0.08, "margin_seconds": 0.08},
        {"speculate_seconds": 0.24},
        {"speculate_seconds": 0.08},  # before the margin: transcribed again once it is heard
        {"speculate_seconds": 0, "margin_seconds": 0.3},  # pauses off
    ],
)
def test_a_pause_before_at_or_after_the_margin_is_accepted(vad: dict[str, float]) -> None:
    assert Config.model_validate({"vad": vad}).vad.speculate_seconds == vad["speculate_seconds"]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml", env={})


def test_find_model_by_name_version_or_path(tmp_path: Path) -> None:
    (tmp_path / "openwakeword").mkdir()
    versioned = tmp_path / "openwakeword" / "hey_jarvis_v0.1.onnx"
    versioned.write_bytes(b"")
    exact = tmp_path / "openwakeword" / "alexa.onnx"
    exact.write_bytes(b"")
    assert find_model(tmp_path, "hey_jarvis", ("openwakeword",), "k") == versioned
    assert find_model(tmp_path, "alexa", ("openwakeword",), "k") == exact
    assert find_model(tmp_path, str(exact), ("openwakeword",), "k") == exact
    with pytest.raises(ConfigError, match=r"wake\.models\[1\]: no model 'nope'"):
        find_model(tmp_path, "nope", ("openwakeword",), "wake.models[1]")
    with pytest.raises(ConfigError, match=r"tts\.voice: no such file"):
        find_model(tmp_path, "/no/such/voice.onnx", ("piper",), "tts.voice")


def test_the_intents_folder_is_relative_to_the_file_that_sets_it(tmp_path: Path) -> None:
    assert load_config(env={}).intents.directory == (DEFAULT_CONFIG.parent / "intents").resolve()
    path = write(tmp_path, "intents: {directory: mine}\n")
    assert load_config(path, env={}).intents.directory == (tmp_path / "mine").resolve()


def test_mqtt_settings_are_checked(tmp_path: Path) -> None:
    config = load_config(env={})
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix) == (
        "127.0.0.1",
        1883,
        "lingling",
    )
    with pytest.raises(ConfigError, match=r"mqtt\.port: input should be less than or equal"):
        load_config(write(tmp_path, "mqtt: {port: 70000}"), env={})


def test_the_readme_documents_every_key() -> None:
    readme = (DEFAULT_CONFIG.parent / "README.md").read_text(encoding="utf-8")
    readme = readme.split("### Reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", readme, flags=re.MULTILINE))

    def keys(model: type[BaseModel], prefix: str = "") -> set[str]:
        found = set()
        for name, field in model.model_fields.items():
            if isinstance(field.default, BaseModel):
                found |= keys(type(field.default), f"{prefix}{name}.")
            else:
                found.add(prefix + name)
        return found

    assert keys(Config) == documented


# --- where the user's files are ------------------------------------------------------------------


def test_the_users_config_is_the_first_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "etc" / "config.yaml"
    monkeypatch.setattr(paths, "SYSTEM_CONFIG", system)
    home = tmp_path / "home"
    mine = home / ".config" / "lingling" / "config.yaml"
    env = {"HOME": str(home)}
    assert config_search_path(env) == [mine, system]
    assert user_config(env=env) is None  # neither: the bundled config alone

    system.parent.mkdir()
    system.write_text("wake: {threshold: 0.6}\n")
    assert user_config(env=env) == system
    mine.parent.mkdir(parents=True)
    mine.write_text("wake: {threshold: 0.7}\n")
    assert user_config(env=env) == mine
    assert load_config(user_config(env=env), env=env).wake.threshold == 0.7  # no merging of both
    assert user_config(tmp_path / "named.yaml", env) == tmp_path / "named.yaml"  # -c wins
    xdg = tmp_path / "xdg"
    assert config_search_path({**env, "XDG_CONFIG_HOME": str(xdg)})[0] == (
        xdg / "lingling" / "config.yaml"
    )


def test_an_intents_folder_beside_the_users_config_replaces_the_bundled_one(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "wake: {threshold: 0.7}\n")
    assert load_config(path, env={}).intents.directory == DEFAULT_CONFIG.parent / "intents"

    (tmp_path / "intents").mkdir()
    assert load_config(path, env={}).intents.directory == tmp_path / "intents"

    path.write_text("intents: {directory: /elsewhere}\n")  # the setting wins
    assert load_config(path, env={}).intents.directory == Path("/elsewhere")


def test_outside_a_checkout_models_are_in_the_users_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "site-packages" / "assistant" / "data"  # the wheel's package data
    data.mkdir(parents=True)
    base = data / "config.yaml"
    base.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    home = tmp_path / "home"

    def models(path: Path | None = None, **env: str) -> Path:
        return load_config(path, env={"HOME": str(home), **env}, base=base).models_dir

    assert models() == home / ".local" / "share" / "lingling" / "models"
    assert models(XDG_DATA_HOME=str(tmp_path / "data")) == tmp_path / "data" / "lingling" / "models"
    assert models(write(tmp_path, "models_dir: mine\n")) == tmp_path / "mine"
    assert models(LINGLING_MODELS=str(tmp_path / "env")) == tmp_path / "env"
    assert load_config(env={}).models_dir == DEFAULT_CONFIG.parent / "models"  # a checkout
