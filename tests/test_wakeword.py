"""openWakeWord adapter: real models on real and generated recordings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.adapters.openwakeword import SILENT_FRAMES, OpenWakeWord
from assistant.adapters.oww_features import (
    WARMUP_HIGH,
    WARMUP_LOW,
    StreamingFeatures,
    load_session,
    warmup_noise,
)
from assistant.config import WakeConfig, WakeWordConfig
from assistant.core.audioformat import FRAME_BYTES, FRAME_SECONDS
from assistant.errors import ConfigError, ModelError
from tests.support.models import require_model
from tests.support.scenarios import (
    Audio,
    Scenario,
    concat,
    frames,
    mix,
    noise,
    recording,
    silence,
    speak,
)

WORD_FILES = ("hey_jarvis_v0.1.onnx", "alexa_v0.1.onnx", "hey_mycroft_v0.1.onnx")


def _root() -> Path:
    """LINGLING_MODELS with every openWakeWord file these tests use (skip without them)."""
    for name in ("melspectrogram.onnx", "embedding_model.onnx", *WORD_FILES):
        path = require_model(f"openwakeword/{name}")
    return path.parent.parent


def padded(clip: Audio, seconds: float = 1.0) -> Audio:
    """The clip between low noise: the feature buffers need audio before the word to warm up."""
    return concat(noise(seconds, 30, seed=1), clip, noise(seconds, 30, seed=2))


def detect(wake: OpenWakeWord, clip: Audio) -> list[tuple[float, str, float]]:
    """(seconds into the clip at the end of the firing frame, wake word, score) per detection."""
    wake.reset()
    found = []
    for index, frame in enumerate(frames(clip)):
        detection = wake.process(frame)
        if detection is not None:
            found.append(((index + 1) * FRAME_SECONDS, detection.wake_word, detection.score))
    return found


def words(clip: Audio, wake: OpenWakeWord) -> list[str]:
    return [word for _, word, _ in detect(wake, clip)]


@pytest.fixture(scope="module")
def all_words() -> OpenWakeWord:
    return OpenWakeWord(WakeConfig(models=["hey_jarvis", "alexa", "hey_mycroft"]), _root())


@pytest.fixture(scope="module")
def jarvis_and_alexa() -> OpenWakeWord:
    config = WakeConfig(models=["hey_jarvis", "alexa"], refractory_seconds=0.0)
    return OpenWakeWord(config, _root())


@pytest.mark.models
def test_hey_jarvis_fires_on_a_person_saying_it() -> None:
    wake = OpenWakeWord(WakeConfig(models=["hey_jarvis"]), _root())
    found = detect(wake, padded(recording("wyoming_hey_jarvis")))
    assert [word for _, word, _ in found] == ["hey_jarvis"]
    seconds, _, score = found[0]
    assert score >= 0.5
    assert 1.0 < seconds < 3.0  # within the 2 s recording, which starts at 1 s


@pytest.mark.models
def test_alexa_fires_on_a_person_saying_it() -> None:
    wake = OpenWakeWord(WakeConfig(models=["alexa"]), _root())
    assert words(padded(recording("wyoming_alexa")), wake) == ["alexa"]


@pytest.mark.models
@pytest.mark.parametrize(
    ("clip", "expected"),
    [
        ("wyoming_hey_jarvis", ["hey_jarvis"]),
        ("wyoming_alexa", ["alexa"]),
        ("jfk", []),  # 11 s of speech without a wake word
        ("speechcommands_yes_1000ms", []),
    ],
)
def test_a_set_of_words_fires_only_the_word_said(
    all_words: OpenWakeWord, clip: str, expected: list[str]
) -> None:
    assert all_words.wake_words == ["hey_jarvis", "alexa", "hey_mycroft"]
    assert words(padded(recording(clip)), all_words) == expected


@pytest.mark.models
def test_jfk_scores_stay_far_below_the_threshold(all_words: OpenWakeWord) -> None:
    all_words.reset()
    highest = dict.fromkeys(all_words.wake_words, 0.0)
    for frame in frames(padded(recording("jfk"))):
        assert all_words.process(frame) is None
        for word, score in all_words.scores.items():
            highest[word] = max(highest[word], score)
    assert max(highest.values()) < 0.2, highest


@pytest.mark.models
@pytest.mark.parametrize("clip", ["wyoming_hey_jarvis", "wyoming_alexa"])
def test_one_utterance_fires_once_even_without_a_refractory_time(
    jarvis_and_alexa: OpenWakeWord, clip: str
) -> None:
    # The score stays above 0.5 for 7 frames or more; only the reset after a detection stops a
    # second one here, since the refractory time is 0.
    assert len(detect(jarvis_and_alexa, padded(recording(clip)))) == 1


@pytest.mark.models
def test_without_the_reset_the_same_utterance_would_score_high_for_several_frames() -> None:
    # The reason for the reset: with a threshold nothing reaches, the scores show it.
    wake = OpenWakeWord(WakeConfig(models=["hey_jarvis"], threshold=1.0), _root())
    high = 0
    for frame in frames(padded(recording("wyoming_hey_jarvis"))):
        assert wake.process(frame) is None
        high += wake.scores["hey_jarvis"] >= 0.5
    assert high >= 3


@pytest.mark.models
@pytest.mark.parametrize(("refractory_seconds", "expected"), [(1.5, 2), (3.5, 1)])
def test_a_repeated_word_fires_again_only_after_the_refractory_time(
    refractory_seconds: float, expected: int
) -> None:
    config = WakeConfig(models=["hey_jarvis"], refractory_seconds=refractory_seconds)
    wake = OpenWakeWord(config, _root())
    jarvis = recording("wyoming_hey_jarvis")
    found = detect(wake, padded(concat(jarvis, silence(0.2), jarvis), seconds=2.0))
    assert len(found) == expected
    if expected == 2:
        assert found[1][0] - found[0][0] >= refractory_seconds


HOUR_AHEAD: dict[str, float | int] = {
    **{name: 3600.0 for name in ("monotonic", "perf_counter", "time")},
    **{f"{name}_ns": 3600 * 10**9 for name in ("monotonic", "perf_counter", "time")},
}
"""What to add to each of the ``time`` module's clocks to move it an hour ahead."""


@pytest.mark.models
def test_the_refractory_time_counts_audio_frames_not_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two utterances 2.2 s apart in the audio: with a 2 s refractory time both fire, with a
    # 3 s one only the first, even when the clocks jump an hour ahead between the two.
    jarvis = recording("wyoming_hey_jarvis")
    clip = padded(concat(jarvis, silence(0.2), jarvis))
    found = detect(
        OpenWakeWord(WakeConfig(models=["hey_jarvis"], refractory_seconds=2.0), _root()), clip
    )
    assert len(found) == 2
    assert 2.0 <= found[1][0] - found[0][0] <= 2.4  # audio time

    wake = OpenWakeWord(WakeConfig(models=["hey_jarvis"], refractory_seconds=3.0), _root())
    wake.reset()
    middle = round((found[0][0] + found[1][0]) / 2 / FRAME_SECONDS)  # between the detections
    fired = []
    for index, frame in enumerate(frames(clip)):
        if index == middle:
            for name, hour in HOUR_AHEAD.items():
                real = getattr(time, name)
                monkeypatch.setattr(time, name, lambda real=real, hour=hour: real() + hour)
        fired.append(wake.process(frame) is not None)
    assert sum(fired) == 1


@pytest.mark.models
def test_reset_ends_the_refractory_time() -> None:
    wake = OpenWakeWord(WakeConfig(models=["hey_jarvis"], refractory_seconds=60.0), _root())
    clip = padded(recording("wyoming_hey_jarvis"))
    assert len(detect(wake, clip)) == 1
    assert len(detect(wake, clip)) == 1  # detect() resets first: the pause is over


@pytest.mark.models
def test_a_per_word_threshold_suppresses_only_that_word() -> None:
    config = WakeConfig(
        models=[WakeWordConfig(model="hey_jarvis", threshold=0.9999), "alexa"],
    )
    wake = OpenWakeWord(config, _root())
    assert detect(wake, padded(recording("wyoming_hey_jarvis"))) == []
    assert wake.scores["hey_jarvis"] < 0.9999
    assert words(padded(recording("wyoming_alexa")), wake) == ["alexa"]


@pytest.mark.models
def test_espeak_hey_jarvis_fires(jarvis_and_alexa: OpenWakeWord) -> None:
    found = detect(jarvis_and_alexa, padded(speak("hey jarvis")))
    assert [word for _, word, _ in found] == ["hey_jarvis"]


@pytest.mark.models
def test_hey_jarvis_fires_over_moderate_noise(jarvis_and_alexa: OpenWakeWord) -> None:
    clip = mix(padded(recording("wyoming_hey_jarvis")), noise_rms=300)
    assert words(clip, jarvis_and_alexa) == ["hey_jarvis"]


@pytest.mark.models
def test_a_model_given_as_a_path_is_named_after_its_file() -> None:
    root = _root()
    config = WakeConfig(models=[str(root / "openwakeword" / "hey_jarvis_v0.1.onnx")])
    wake = OpenWakeWord(config, root)
    assert wake.wake_words == ["hey_jarvis_v0.1"]
    assert words(padded(recording("wyoming_hey_jarvis")), wake) == ["hey_jarvis_v0.1"]


@pytest.mark.models
def test_a_frame_of_the_wrong_size_is_refused(jarvis_and_alexa: OpenWakeWord) -> None:
    with pytest.raises(ValueError, match=str(FRAME_BYTES)):
        jarvis_and_alexa.process(bytes(FRAME_BYTES - 2))


@pytest.mark.models
def test_a_broken_wake_word_model_is_a_model_error(tmp_path: Path) -> None:
    root = _root()
    folder = tmp_path / "openwakeword"
    folder.mkdir()
    for name in ("melspectrogram.onnx", "embedding_model.onnx"):
        (folder / name).symlink_to(root / "openwakeword" / name)
    (folder / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        OpenWakeWord(WakeConfig(models=["broken"]), tmp_path)


def test_missing_feature_models_are_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "openwakeword").mkdir()
    (tmp_path / "openwakeword" / "hey_jarvis_v0.1.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match=r"melspectrogram\.onnx"):
        OpenWakeWord(WakeConfig(models=["hey_jarvis"]), tmp_path)


def test_an_unknown_word_names_its_config_entry(tmp_path: Path) -> None:
    (tmp_path / "openwakeword").mkdir()
    (tmp_path / "openwakeword" / "hey_jarvis_v0.1.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"wake\.models\[1\]: no model 'ok_nabu'"):
        OpenWakeWord(WakeConfig(models=["hey_jarvis", "ok_nabu"]), tmp_path)


def test_the_same_model_twice_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "openwakeword").mkdir()
    (tmp_path / "openwakeword" / "hey_jarvis_v0.1.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"wake\.models\[1\]"):
        OpenWakeWord(WakeConfig(models=["hey_jarvis", "hey_jarvis_v0.1"]), tmp_path)


def test_importing_the_adapters_loads_no_inference_library() -> None:
    code = (
        "import sys, assistant.adapters.openwakeword, assistant.adapters.silero; "
        "print(sorted({'openwakeword', 'onnxruntime'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "[]"


# --- The same scores as openwakeword.Model ------------------------------------------------------
#
# The adapter runs openWakeWord's three ONNX models itself (assistant/adapters/oww_features.py).
# Here openwakeword.Model (onnx, one thread) is the reference, fed the same frames in lockstep. The
# only randomness in openwakeword is the noise whose embeddings fill its history after a reset
# (np.random.randint); the reference is handed the adapter's fixed noise instead, so the two must
# agree on every frame, the first ones after a reset included.
#
# SCORE_TOLERANCE: both run the same float32 graphs on the same inputs in the same order, so the
# scores come out bit-identical here (difference 0.0). 1e-5 leaves room for onnxruntime picking
# another kernel or rounding (changing every mel value by one float32 step moves the scores by
# 7e-7), while a streaming mistake is caught by orders of magnitude: one sample of offset moves
# them by 5e-3, fresh random noise in the history or mel context on the first frame by 8e-3.
SCORE_TOLERANCE = 1e-5
EMBEDDING_TOLERANCE = 1e-4
"""Embeddings reach ~70 (one float32 step there is 8e-6); one step in every mel value moves them
by 2e-5 at most, a wrong mel context on the first frame by 8."""
REFERENCE_WORDS = ("hey_jarvis", "alexa", "hey_mycroft")


@contextmanager
def _adapter_noise() -> Iterator[None]:
    """openwakeword draws its warm-up noise from np.random.randint: give it the adapter's."""

    def randint(low: int, high: int, size: int) -> Audio:
        assert (low, high) == (WARMUP_LOW, WARMUP_HIGH)
        return warmup_noise(size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np.random, "randint", randint)
        yield


def _openwakeword_model() -> Any:
    """``openwakeword.model.Model``. Only these tests need openwakeword, and the ``dev`` extra
    installs it on Python 3.11 only (on Linux it needs tflite-runtime, which has no wheels past
    3.11): skip without it, except in CI on 3.11, where that is a failure."""
    try:
        from openwakeword.model import Model
    except ImportError as err:
        reason = (
            f"openwakeword is not installed ({err}): it is the reference for these tests only, "
            "installed by the dev extra on Python 3.11 (it needs tflite-runtime, which has no "
            "wheels for later versions)"
        )
        if os.environ.get("CI") and sys.version_info < (3, 12):
            pytest.fail(f"{reason}; in CI on Python 3.11 this is a failure")
        pytest.skip(reason)
    return Model


def _reference(words: tuple[str, ...] = REFERENCE_WORDS) -> Any:
    model = _openwakeword_model()
    folder = _root() / "openwakeword"
    with _adapter_noise():
        return model(
            wakeword_models=[str(folder / f"{word}_v0.1.onnx") for word in words],
            inference_framework="onnx",
            melspec_model_path=str(folder / "melspectrogram.onnx"),
            embedding_model_path=str(folder / "embedding_model.onnx"),
            ncpu=1,
        )


def _reset_reference(reference: Any) -> None:
    with _adapter_noise():
        reference.reset()


def _compare(wake: OpenWakeWord, reference: Any, clip: Audio) -> tuple[float, float, int]:
    """Feed both frame by frame; (largest score difference, highest score, detections).

    The adapter resets its buffers after a detection; the reference is reset on the same frame.
    """
    worst = highest = 0.0
    detections = 0
    for frame in frames(clip):
        expected = reference.predict(np.frombuffer(frame, dtype=np.int16))
        detection = wake.process(frame)
        for name, score in wake.scores.items():
            worst = max(worst, abs(score - float(expected[f"{name}_v0.1"])))
            highest = max(highest, score)
        if detection is not None:
            detections += 1
            _reset_reference(reference)
    return worst, highest, detections


def _scenario_hey_jarvis() -> Audio:
    return Scenario.build("turn on the kitchen light").samples


@pytest.mark.models
@pytest.mark.parametrize(
    ("clip", "fires"),
    [
        (lambda: padded(recording("wyoming_hey_jarvis")), True),
        (lambda: padded(recording("wyoming_alexa")), True),
        (lambda: recording("jfk"), False),
        (_scenario_hey_jarvis, True),
        (lambda: concat(noise(3.0, 300, seed=3), silence(1.0), noise(2.0, 3000, seed=4)), False),
    ],
    ids=["wyoming_hey_jarvis", "wyoming_alexa", "jfk", "espeak_scenario", "noise_and_silence"],
)
def test_scores_match_openwakeword_frame_by_frame(clip: Any, fires: bool) -> None:
    config = WakeConfig(models=list(REFERENCE_WORDS), refractory_seconds=0.0)
    wake = OpenWakeWord(config, _root())
    worst, highest, detections = _compare(wake, _reference(), clip())
    assert worst <= SCORE_TOLERANCE
    # the comparison covers the scores that matter: high ones, and the resets they cause
    assert (highest >= 0.5, detections >= 1) == (fires, fires), (highest, detections)


@pytest.mark.models
def test_scores_match_openwakeword_across_reset() -> None:
    wake = OpenWakeWord(WakeConfig(models=list(REFERENCE_WORDS), threshold=1.0), _root())
    reference = _reference()
    jarvis = padded(recording("wyoming_hey_jarvis"))
    for clip in (recording("jfk")[: 3 * 16000], jarvis, jarvis):
        worst, highest, _ = _compare(wake, reference, clip)
        assert worst <= SCORE_TOLERANCE
        wake.reset()
        _reset_reference(reference)
    assert highest >= 0.5  # the last clip after a reset still scores high, identically


@pytest.mark.models
def test_the_first_frames_after_a_reset_score_zero_as_in_openwakeword() -> None:
    wake = OpenWakeWord(WakeConfig(models=["hey_jarvis"], threshold=1.0), _root())
    reference = _reference(("hey_jarvis",))
    clip = recording("wyoming_hey_jarvis")  # speech from the first frame on
    scores = []
    for frame in frames(clip)[: SILENT_FRAMES + 3]:
        expected = reference.predict(np.frombuffer(frame, dtype=np.int16))["hey_jarvis_v0.1"]
        wake.process(frame)
        scores.append(wake.scores["hey_jarvis"])
        assert abs(scores[-1] - float(expected)) <= SCORE_TOLERANCE
    assert scores[:SILENT_FRAMES] == [0.0] * SILENT_FRAMES
    assert all(score > 0.0 for score in scores[SILENT_FRAMES:])


@pytest.mark.models
def test_embeddings_match_openwakeword_audio_features() -> None:
    folder = _root() / "openwakeword"
    features = StreamingFeatures(
        load_session(folder / "melspectrogram.onnx"),
        load_session(folder / "embedding_model.onnx"),
        history=16,
    )
    reference = _reference(("hey_jarvis",))
    clip = concat(padded(recording("wyoming_alexa")), recording("jfk")[: 2 * 16000])
    for index, frame in enumerate(frames(clip)):
        if index == 40:
            features.reset()
            _reset_reference(reference)
        samples = np.frombuffer(frame, dtype=np.int16)
        reference.predict(samples)
        features.push(samples)
        expected = reference.preprocessor.get_features(16)
        np.testing.assert_allclose(features.embeddings, expected, rtol=0, atol=EMBEDDING_TOLERANCE)


def test_warmup_noise_is_fixed_and_like_openwakeword_noise() -> None:
    noise_samples = warmup_noise(64_000)
    assert noise_samples.dtype == np.int16
    assert np.array_equal(noise_samples, warmup_noise(64_000))
    assert noise_samples.min() == WARMUP_LOW
    assert noise_samples.max() == WARMUP_HIGH - 1
    assert abs(float(noise_samples.std()) - 577.0) < 10.0  # uniform over 2000 values
    assert abs(float(noise_samples.mean())) < 10.0


@pytest.mark.models
def test_the_adapter_never_imports_openwakeword_scipy_or_sklearn() -> None:
    # openwakeword's import alone costs ~90 MB and ~1 s (scipy, scikit-learn); numpy.random ~7 MB
    code = (
        "import sys; from pathlib import Path; "
        "from assistant.config import WakeConfig; "
        "from assistant.adapters.openwakeword import OpenWakeWord; "
        f"wake = OpenWakeWord(WakeConfig(models=['hey_jarvis', 'alexa']), Path({str(_root())!r})); "
        f"[wake.process(bytes({FRAME_BYTES})) for _ in range(20)]; wake.reset(); "
        "print(sorted(name for name in sys.modules if name.split('.')[0] in "
        "{'openwakeword', 'scipy', 'sklearn'} or name == 'numpy.random'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.models
def test_a_model_that_is_not_a_wake_word_is_a_model_error() -> None:
    vad = require_model("openwakeword/silero_vad.onnx")
    with pytest.raises(ModelError, match="not an openWakeWord model"):
        OpenWakeWord(WakeConfig(models=[str(vad)]), _root())


@pytest.mark.models
def test_a_wrong_feature_model_is_a_model_error(tmp_path: Path) -> None:
    root = _root()
    folder = tmp_path / "openwakeword"
    folder.mkdir()
    for name in ("melspectrogram.onnx", "hey_jarvis_v0.1.onnx"):
        (folder / name).symlink_to(root / "openwakeword" / name)
    (folder / "embedding_model.onnx").symlink_to(root / "openwakeword" / "alexa_v0.1.onnx")
    with pytest.raises(ModelError, match="not openWakeWord's embedding model"):
        OpenWakeWord(WakeConfig(models=["hey_jarvis"]), tmp_path)
