"""Smart Turn v3.2: Whisper's log-mel features in numpy, and the real model on JFK's speech."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from assistant.adapters.silero import SileroVad
from assistant.adapters.smart_turn import (
    CHUNK_SAMPLES,
    FEATURE_FRAMES,
    HOP_SAMPLES,
    MEL_BINS,
    SmartTurn,
    WhisperFeatures,
    hertz_to_mel,
    mel_filter_bank,
    mel_to_hertz,
)
from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ
from assistant.core.ports import TurnDetector
from assistant.errors import ModelError
from assistant.service.manifest import load_manifest
from tests.support.models import require_model
from tests.support.scenarios import Audio, concat, frames, noise, recording, silence

TURN_MODEL = "turn/smart-turn-v3.2-cpu.onnx"
FFT_BIN_HZ = SAMPLE_RATE_HZ / 400  # 40 Hz between the STFT's frequency bins
FLOOR = -1.5  # (log10(1e-10) + 4) / 4: the value of every feature of silence

# transformers 5.24 WhisperFeatureExtractor(chunk_length=8), do_normalize=True, on float32 samples
# (int16 / 32768) after smart-turn's inference.py cut or front-padded them to 8 s:
# {(mel, frame): value}, and the mean of all 64,000 values.
GOLDEN = {
    "first 3 s": (
        0.185020,
        {(2, 560): 0.99438, (10, 520): 0.61639, (30, 700): 0.91218, (40, 600): 0.62331},
    ),
    "all 11 s": (
        0.577721,
        {(2, 560): 0.8933, (10, 520): 0.68113, (30, 700): 0.71736, (40, 600): 1.03841},
    ),
}


@pytest.fixture(scope="module")
def features() -> WhisperFeatures:
    return WhisperFeatures()


@pytest.fixture(scope="module")
def turn() -> SmartTurn:
    return SmartTurn(require_model(TURN_MODEL))


def jfk_clip(name: str) -> Audio:
    jfk = recording("jfk")
    return jfk[: 3 * SAMPLE_RATE_HZ] if name == "first 3 s" else jfk


# --- the mel filter bank -------------------------------------------------------------------------


def test_the_slaney_mel_scale_is_linear_to_1_khz_then_logarithmic() -> None:
    assert hertz_to_mel([0.0, 200.0 / 3.0, 1000.0]) == pytest.approx([0.0, 1.0, 15.0])
    # above 1 kHz, 27 mels per factor of 6.4
    assert hertz_to_mel(6400.0) - hertz_to_mel(1000.0) == pytest.approx(27.0)
    hertz = np.array([0.0, 300.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    assert mel_to_hertz(hertz_to_mel(hertz)) == pytest.approx(hertz)


def test_each_filter_peaks_at_its_centre_and_has_slaney_area() -> None:
    filters = mel_filter_bank()
    edges_hz = mel_to_hertz(np.linspace(0.0, hertz_to_mel(8000.0), MEL_BINS + 2))
    bins_hz = np.arange(filters.shape[1]) * FFT_BIN_HZ

    assert filters.shape == (MEL_BINS, 201)
    assert filters.min() == 0.0
    for index, weights in enumerate(filters):
        lower, centre, upper = edges_hz[index : index + 3]
        height = 2.0 / (upper - lower)  # Slaney: a triangle of area 1 (in Hz)
        assert bins_hz[np.argmax(weights)] == pytest.approx(centre, abs=FFT_BIN_HZ / 2), index
        assert weights.max() <= height * (1 + 1e-12), index
        assert np.all(weights[(bins_hz <= lower) | (bins_hz >= upper)] == 0.0), index
        if upper - lower > 10 * FFT_BIN_HZ:  # sampled finely enough to integrate
            assert weights.sum() * FFT_BIN_HZ == pytest.approx(1.0, rel=0.01), index
    # equally spaced in Hz below 1 kHz (37.24 Hz apart), wider and lower above
    assert np.diff(edges_hz[edges_hz <= 1000.0]) == pytest.approx(37.24, abs=0.01)
    assert filters[-1].max() < filters[0].max() / 5


# --- the features --------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, 0.01, 1.0, 8.0, 11.0])
def test_features_are_80_mels_by_800_frames(features: WhisperFeatures, seconds: float) -> None:
    samples = noise(12.0, 3000.0)[: round(seconds * SAMPLE_RATE_HZ)]

    result = features(samples)

    assert result.shape == (MEL_BINS, FEATURE_FRAMES) == (80, 800)
    assert result.dtype == np.float32
    assert np.all(np.isfinite(result))


def test_short_audio_is_zero_padded_at_the_front(features: WhisperFeatures) -> None:
    clip = recording("jfk")[: 2 * SAMPLE_RATE_HZ]

    padded = features(clip)

    assert np.array_equal(padded, features(concat(silence(6.0), clip)))
    padding_frames = (CHUNK_SAMPLES - clip.size) // HOP_SAMPLES
    # the padding frames are all alike (a constant after normalisation), unlike the speech frames
    assert np.ptp(padded[:, 1 : padding_frames - 2], axis=1) == pytest.approx(0.0, abs=1e-6)
    assert np.ptp(padded[:, padding_frames + 3 :]) > 1.0
    # the speech is at the end: padding it at the back instead would change everything
    assert not np.allclose(padded, features(concat(clip, silence(6.0))), atol=0.1)


def test_only_the_last_8_seconds_count(features: WhisperFeatures) -> None:
    jfk = recording("jfk")

    assert np.array_equal(features(jfk), features(jfk[-CHUNK_SAMPLES:]))
    assert np.array_equal(features(concat(noise(5.0, 8000.0), jfk)), features(jfk))


def test_the_waveform_is_normalised_so_loudness_does_not_matter(features: WhisperFeatures) -> None:
    halved = recording("jfk")[: 4 * SAMPLE_RATE_HZ] // 2
    doubled = halved * 2  # exactly twice as loud: no rounding in either

    assert features(halved) == pytest.approx(features(doubled), abs=1e-4)


def test_values_span_at_most_8_decades_scaled_by_a_quarter(features: WhisperFeatures) -> None:
    speech = features(recording("jfk"))
    quiet = features(silence(3.0))

    # log10 clamped to (max - 8), then (x + 4) / 4: a range of exactly 2 when anything is clamped
    assert speech.max() - speech.min() == pytest.approx(2.0, abs=1e-6)
    assert 1.0 < speech.max() < 2.5
    assert quiet == pytest.approx(np.full_like(quiet, FLOOR), abs=1e-6)


@pytest.mark.parametrize("clip", list(GOLDEN))
def test_features_match_transformers_whisper_feature_extractor(
    features: WhisperFeatures, clip: str
) -> None:
    mean, values = GOLDEN[clip]

    result = features(jfk_clip(clip))

    assert float(result.mean()) == pytest.approx(mean, abs=1e-5)
    for (mel, frame), value in values.items():
        assert float(result[mel, frame]) == pytest.approx(value, abs=1e-4), (mel, frame)


# --- the model -----------------------------------------------------------------------------------


def test_a_file_that_is_no_model_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "smart-turn.onnx"
    path.write_bytes(b"not an onnx file")

    with pytest.raises(ModelError, match="turn model: cannot load"):
        SmartTurn(path)


@pytest.mark.models
def test_another_onnx_model_is_refused() -> None:
    with pytest.raises(ModelError, match="is not a Smart Turn v3 model"):
        SmartTurn(require_model("openwakeword/silero_vad.onnx"))


@pytest.mark.models
def test_the_real_model_matches_the_manifest() -> None:
    (entry,) = load_manifest().select("turn")
    (file,) = entry.files
    path = require_model(file.dest)

    assert file.dest == TURN_MODEL
    assert path.stat().st_size == file.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256


@pytest.mark.models
@pytest.mark.parametrize("seconds", [0.0, 0.0001, 0.1, 3.0])
def test_silence_and_tiny_inputs_give_a_probability(turn: SmartTurn, seconds: float) -> None:
    detector: TurnDetector = turn  # the port the runtime holds it by

    probability = detector.probability(silence(seconds).tobytes())

    assert isinstance(probability, float)
    assert 0.0 <= probability <= 1.0


@pytest.mark.models
def test_pcm_must_be_whole_samples(turn: SmartTurn) -> None:
    with pytest.raises(ValueError, match="whole int16 samples"):
        turn.probability(b"\x00\x00\x01")


def speech_stops(samples: Audio, stop_seconds: float = 0.2) -> list[int]:
    """Where pipecat would ask Smart Turn: Silero VAD under 0.5 for ``stop_seconds`` after speech
    (sample indices, at frame ends)."""
    path = require_model("openwakeword/silero_vad.onnx")
    vad = SileroVad(VadConfig(), path.parent.parent)
    stop_frames = int(np.ceil(stop_seconds * SAMPLE_RATE_HZ / FRAME_SAMPLES))
    stops: list[int] = []
    speaking, quiet = False, 0
    for index, frame in enumerate(frames(samples)):
        if vad.process(frame) >= 0.5:
            speaking, quiet = True, 0
            continue
        quiet += 1
        if speaking and quiet == stop_frames:
            stops.append((index + 1) * FRAME_SAMPLES)
            speaking = False
    return stops


@pytest.mark.models
def test_jfk_is_incomplete_mid_sentence_and_complete_at_the_end(turn: SmartTurn) -> None:
    # "And so, my fellow Americans | ask not what your country can do for you | ask what you can
    # do | for your country."
    jfk = recording("jfk")
    stops = speech_stops(jfk)
    probabilities = [turn.probability(jfk[:stop].tobytes()) for stop in stops]

    seconds = [stop / SAMPLE_RATE_HZ for stop in stops]
    for known in (2.5, 4.6, 7.9, 10.7):  # the pauses one hears (the VAD may find a short one more)
        assert min(abs(known - second) for second in seconds) <= 0.15, seconds
    vocative, *inside, end = probabilities
    assert all(p < 0.5 for p in inside), probabilities  # measured 0.006-0.037
    assert end > 0.5, probabilities  # measured 0.94
    # "And so, my fellow Americans" then a 1 s pause: a falling phrase end reads as complete
    # (measured 0.97) although the sentence goes on; only the words can tell.
    assert vocative > 0.5, probabilities
