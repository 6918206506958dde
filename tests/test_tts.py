"""PiperSynthesizer with the real Piper on the tone voice (its tone's length follows the text)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from assistant.adapters.piper import PiperSynthesizer, default_threads
from assistant.config import TtsConfig
from assistant.errors import ConfigError, ModelError
from tests.support.models import require_model

VOICE = "piper/tone_voice.onnx"


@pytest.fixture
def voice_dir() -> Path:
    """The models folder holding piper/tone_voice.onnx(.json)."""
    return require_model(VOICE).parent.parent


@pytest.mark.models
def test_sample_rate_comes_from_the_voice_config(voice_dir: Path) -> None:
    synthesizer = PiperSynthesizer(TtsConfig(voice="tone_voice"), voice_dir)
    assert synthesizer.sample_rate_hz == 22050


@pytest.mark.models
def test_output_is_int16_and_grows_with_the_text(voice_dir: Path) -> None:
    synthesizer = PiperSynthesizer(TtsConfig(voice="tone_voice"), voice_dir)
    short = synthesizer.synthesize("Hi.")
    long = synthesizer.synthesize("The kitchen light is on now, and the hall light too.")
    assert len(short) > 0
    assert len(short) % 2 == 0
    assert len(long) > 2 * len(short)
    assert any(short)  # a tone, not silence


@pytest.mark.models
def test_every_sentence_of_the_text_is_joined(voice_dir: Path) -> None:
    synthesizer = PiperSynthesizer(TtsConfig(voice="tone_voice"), voice_dir)
    one = synthesizer.synthesize("The light is on.")
    two = synthesizer.synthesize("The light is on. The light is on.")
    assert len(two) == 2 * len(one)


@pytest.mark.models
def test_length_scale_slows_the_voice_down(voice_dir: Path) -> None:
    text = "The kitchen light is on now."
    normal = PiperSynthesizer(TtsConfig(voice="tone_voice"), voice_dir).synthesize(text)
    slow = PiperSynthesizer(TtsConfig(voice="tone_voice", length_scale=2.0), voice_dir)
    assert len(slow.synthesize(text)) > 1.5 * len(normal)


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 2), (8, 2)])
def test_piper_uses_two_threads_unless_the_machine_has_one_core(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_threads() == threads


@pytest.mark.models
@pytest.mark.parametrize(
    ("configured", "given", "threads"), [(None, None, default_threads()), (3, None, 3), (3, 1, 1)]
)
def test_the_threads_come_from_tts_threads_unless_given(
    voice_dir: Path, configured: int | None, given: int | None, threads: int
) -> None:
    config = TtsConfig(voice="tone_voice", threads=configured)
    synthesizer = PiperSynthesizer(config, voice_dir, threads=given)
    options = synthesizer._voice.session.get_session_options()
    assert options.intra_op_num_threads == threads


@pytest.mark.models
def test_nothing_to_say_is_no_audio_and_warm_works(voice_dir: Path) -> None:
    synthesizer = PiperSynthesizer(TtsConfig(voice="tone_voice"), voice_dir, threads=1)
    synthesizer.warm()
    assert synthesizer.synthesize("  ") == b""


@pytest.mark.models
def test_a_voice_may_be_given_as_a_path(voice_dir: Path, tmp_path: Path) -> None:
    path = voice_dir / VOICE
    synthesizer = PiperSynthesizer(TtsConfig(voice=str(path)), tmp_path)
    assert synthesizer.model_path == path


@pytest.mark.models
def test_a_speaker_the_voice_lacks_is_a_config_error(voice_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^tts\.speaker_id"):
        PiperSynthesizer(TtsConfig(voice="tone_voice", speaker_id=3), voice_dir)


def test_a_missing_voice_is_a_config_error_naming_tts_voice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^tts\.voice: no model 'en_US-nobody'"):
        PiperSynthesizer(TtsConfig(voice="en_US-nobody"), tmp_path)


@pytest.mark.models
def test_a_voice_without_its_json_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "piper").mkdir()
    shutil.copy(require_model(VOICE), tmp_path / "piper" / "lonely.onnx")
    with pytest.raises(ConfigError, match=r"^tts\.voice: no voice config .*lonely\.onnx\.json"):
        PiperSynthesizer(TtsConfig(voice="lonely"), tmp_path)


@pytest.mark.models
def test_a_broken_voice_file_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "piper").mkdir()
    (tmp_path / "piper" / "broken.onnx").write_bytes(b"not a model")
    shutil.copy(require_model(VOICE + ".json"), tmp_path / "piper" / "broken.onnx.json")
    with pytest.raises(ModelError, match=r"^tts\.voice: cannot load .*broken\.onnx"):
        PiperSynthesizer(TtsConfig(voice="broken"), tmp_path)
