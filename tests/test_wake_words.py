"""The wake word chosen from Home Assistant: the models found, the choice kept, bad names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.config import Config, WakeConfig
from assistant.core.ports import WakeWord
from assistant.runtime.wake_words import WakeWordChoice, wake_words_in
from tests.support.fakes import FakeWakeWord


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "openwakeword"
    folder.mkdir()
    for name in ("melspectrogram", "embedding_model", "silero_vad", "hey_jarvis_v0.1", "alexa_v0.1",
                 "alexa_v0.2", "ok_nabu"):  # fmt: skip
        (folder / f"{name}.onnx").write_bytes(b"")
    return tmp_path


class Loads:
    def __init__(self) -> None:
        self.configs: list[WakeConfig] = []

    def __call__(self, config: WakeConfig, models_dir: Path) -> WakeWord:
        self.configs.append(config)
        return FakeWakeWord()


def test_the_wake_words_found_are_the_models_by_their_config_names(models_dir: Path) -> None:
    assert wake_words_in(models_dir) == ["alexa", "hey_jarvis", "ok_nabu"]
    assert wake_words_in(models_dir / "nowhere") == []


async def test_a_choice_loads_the_model_and_is_kept(models_dir: Path, tmp_path: Path) -> None:
    wake = Config.model_validate({"wake": {"models": [{"model": "alexa", "threshold": 0.7}]}}).wake
    kept = tmp_path / "state" / "wake_word.json"
    loads = Loads()
    choice = WakeWordChoice(wake, models_dir, loads, state_file=kept)
    assert choice.selected == "alexa"
    assert choice.options == ["alexa", "hey_jarvis", "ok_nabu"]
    assert choice.config() is wake

    assert await choice.choose("alexa") is None  # already
    assert await choice.choose("ok_google") is None  # not a model here: ignored
    assert await choice.choose("melspectrogram") is None
    assert loads.configs == []
    assert not kept.exists()

    assert isinstance(await choice.choose("hey_jarvis"), FakeWakeWord)
    assert [w.model for w in loads.configs[0].words()] == ["hey_jarvis"]
    assert json.loads(kept.read_text()) == {"wake_word": "hey_jarvis"}
    assert await choice.choose("alexa") is not None  # back: with its own threshold
    assert [(w.model, w.threshold) for w in loads.configs[1].words()] == [("alexa", 0.7)]

    again = WakeWordChoice(wake, models_dir, loads, state_file=kept)
    assert again.selected == "alexa"


def test_a_kept_choice_replaces_the_configured_words(models_dir: Path, tmp_path: Path) -> None:
    kept = tmp_path / "wake_word.json"
    kept.write_text(json.dumps({"wake_word": "ok_nabu"}))
    wake = Config().wake
    choice = WakeWordChoice(wake, models_dir, Loads(), state_file=kept)
    assert choice.selected == "ok_nabu"
    assert [w.model for w in choice.config().words()] == ["ok_nabu"]
    assert choice.config().threshold == wake.threshold


@pytest.mark.parametrize("content", ["{", '{"wake_word": 3}', '{"wake_word": "gone"}', "[]"])
def test_a_bad_or_stale_kept_choice_leaves_the_configured_word(
    models_dir: Path, tmp_path: Path, content: str
) -> None:
    kept = tmp_path / "wake_word.json"
    kept.write_text(content)
    choice = WakeWordChoice(Config().wake, models_dir, Loads(), state_file=kept)
    assert choice.selected == "hey_jarvis"
    assert not choice.changed
