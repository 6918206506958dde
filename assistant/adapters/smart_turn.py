"""End of turn: Smart Turn v3.2 (pipecat-ai/smart-turn, BSD-2) on the audio of the turn so far.

The model is Whisper-tiny's encoder with a linear head; it reads Whisper's log-mel features of the
last 8 s of the turn. ``WhisperFeatures`` computes them in numpy, as
``transformers.WhisperFeatureExtractor(chunk_length=8)`` with ``do_normalize=True`` does after
smart-turn's ``inference.py`` has cut or front-padded the audio to 8 s, so neither torch nor
transformers is needed (tests/test_smart_turn.py checks every step).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from assistant.core.audioformat import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from assistant.errors import ModelError

if TYPE_CHECKING:
    import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

CHUNK_SECONDS: Final = 8
CHUNK_SAMPLES: Final = CHUNK_SECONDS * SAMPLE_RATE_HZ
"""The model hears the last 8 s of the turn (128,000 samples), zero-padded at the front."""
FFT_SAMPLES: Final = 400
"""Whisper's STFT: 25 ms periodic Hann windows ..."""
HOP_SAMPLES: Final = 160
"""... every 10 ms."""
MEL_BINS: Final = 80
MAX_FREQUENCY_HZ: Final = 8000.0
FEATURE_FRAMES: Final = CHUNK_SAMPLES // HOP_SAMPLES
"""800: the centred STFT gives one frame more, which Whisper drops."""
LOG_RANGE: Final = 8.0
"""log10 mel values more than this below the loudest one are raised to it."""
INPUT_NAME: Final = "input_features"
OUTPUT_NAME: Final = "logits"

_NORM_EPSILON: Final = 1e-7  # transformers' zero_mean_unit_var_norm
_MEL_FLOOR: Final = 1e-10
_INT16_SCALE: Final = np.float32(1.0 / 32768.0)
# Slaney's mel scale (librosa's default, htk=False): linear to 1 kHz, logarithmic above
_LINEAR_HZ_PER_MEL: Final = 200.0 / 3.0
_LOG_START_HZ: Final = 1000.0
_LOG_START_MEL: Final = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_MELS_PER_LOG_HZ: Final = 27.0 / math.log(6.4)


def hertz_to_mel(hertz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hertz, dtype=np.float64)
    logs = np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ)
    return np.where(
        hz < _LOG_START_HZ, hz / _LINEAR_HZ_PER_MEL, _LOG_START_MEL + logs * _MELS_PER_LOG_HZ
    )


def mel_to_hertz(mels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The inverse of ``hertz_to_mel``."""
    mel = np.asarray(mels, dtype=np.float64)
    logs = (np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL) / _MELS_PER_LOG_HZ
    return np.where(mel < _LOG_START_MEL, mel * _LINEAR_HZ_PER_MEL, _LOG_START_HZ * np.exp(logs))


def mel_filter_bank(
    fft_samples: int = FFT_SAMPLES,
    mel_bins: int = MEL_BINS,
    max_frequency_hz: float = MAX_FREQUENCY_HZ,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> npt.NDArray[np.float64]:
    """Triangular filters (``mel_bins`` x ``fft_samples // 2 + 1``), equally spaced in Slaney mels
    from 0 Hz to ``max_frequency_hz``, each scaled to unit area (Slaney's norm: 2 / its width)."""
    edges_hz = mel_to_hertz(np.linspace(0.0, hertz_to_mel(max_frequency_hz), mel_bins + 2))
    bins_hz = np.linspace(0.0, sample_rate_hz // 2, fft_samples // 2 + 1)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    result: npt.NDArray[np.float64] = triangles * (2.0 / (upper - lower))
    return result


class WhisperFeatures:
    """Whisper's log-mel features (``MEL_BINS`` x ``FEATURE_FRAMES``) of the last 8 s of audio."""

    def __init__(self) -> None:
        steps = np.arange(FFT_SAMPLES, dtype=np.float64)
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * steps / FFT_SAMPLES)).astype(np.float32)
        # The filter bank is sparse (391 of 16,080 weights), and a dense product would go through
        # BLAS, whose worker threads spin on after it and slow the model's inference that follows
        # (measured: 40 -> 90 ms per call on 2 cores). So: each filter's weights and bins, in a row.
        filters = mel_filter_bank()
        mels, self._bins = np.nonzero(filters)
        self._weights = filters[mels, self._bins].astype(np.float32)
        self._starts = np.flatnonzero(np.diff(mels, prepend=-1))  # where each filter's run begins
        if self._starts.size != MEL_BINS:
            raise ValueError("every mel filter must cover at least one FFT bin")

    def __call__(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        """Features of 16 kHz mono int16 ``samples``: the last 8 s, zero-padded at the front."""
        kept = samples[-CHUNK_SAMPLES:]
        chunk = np.zeros(CHUNK_SAMPLES, np.float32)
        np.multiply(kept, _INT16_SCALE, out=chunk[CHUNK_SAMPLES - kept.size :])
        # the padding is part of the chunk, so it counts in the mean and variance
        mean = chunk.mean(dtype=np.float64)
        scale = 1.0 / math.sqrt(float(chunk.var(dtype=np.float64)) + _NORM_EPSILON)
        normalised = (chunk - np.float32(mean)) * np.float32(scale)
        half = FFT_SAMPLES // 2
        padded = np.pad(normalised, half, mode="reflect")
        frames = sliding_window_view(padded, FFT_SAMPLES)[::HOP_SAMPLES][:FEATURE_FRAMES]
        spectrum = np.fft.rfft(frames * self._window, axis=1)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        mel = np.add.reduceat(power[:, self._bins] * self._weights, self._starts, axis=1)
        log_mel = np.log10(np.maximum(np.ascontiguousarray(mel.T), np.float32(_MEL_FLOOR)))
        np.maximum(log_mel, log_mel.max() - np.float32(LOG_RANGE), out=log_mel)
        features: npt.NDArray[np.float32] = (log_mel + np.float32(4.0)) / np.float32(4.0)
        return features


class SmartTurn:
    """How likely a turn is complete, from its audio so far (Smart Turn v3 ONNX, one CPU thread)."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelError(f"turn model: cannot load {model_path}: {err}") from err
        inputs = [(value.name, list(value.shape)[1:]) for value in self._session.get_inputs()]
        outputs = [(value.name, list(value.shape)[1:]) for value in self._session.get_outputs()]
        if inputs != [(INPUT_NAME, [MEL_BINS, FEATURE_FRAMES])] or outputs != [(OUTPUT_NAME, [1])]:
            raise ModelError(
                f"turn model: {model_path} is not a Smart Turn v3 model (inputs {inputs}, "
                f"outputs {outputs}; expected {INPUT_NAME} [batch, {MEL_BINS}, "
                f"{FEATURE_FRAMES}] and {OUTPUT_NAME} [batch, 1])"
            )
        self._features = WhisperFeatures()
        _LOGGER.debug("Loaded Smart Turn from %s", model_path)

    def features(self, pcm: bytes) -> npt.NDArray[np.float32]:
        """The model's input for 16 kHz mono int16 ``pcm``: shape (1, MEL_BINS, FEATURE_FRAMES)."""
        if len(pcm) % SAMPLE_WIDTH_BYTES:
            raise ValueError("pcm must hold whole int16 samples")
        return self._features(np.frombuffer(pcm, dtype=np.int16))[np.newaxis]

    def probability(self, pcm: bytes) -> float:
        """How likely the turn is complete (0..1), from 16 kHz mono int16 ``pcm`` of the turn so
        far: only its last 8 s count. Blocking CPU work: run it off the loop."""
        return self.infer(self.features(pcm))

    def infer(self, features: npt.NDArray[np.float32]) -> float:
        """The model's probability for ``features`` (from ``features()``)."""
        try:
            (output,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: features})
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelError(f"turn model failed: {err}") from err
        return float(output[0, 0])  # the model applies the sigmoid itself
