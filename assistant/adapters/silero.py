"""Voice activity: Silero VAD on 80 ms frames.

``SileroVad`` turns each frame into a speech probability; ``assistant.core.endpointer`` turns the
stream of probabilities into a command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from assistant.config import VadConfig
from assistant.config_files import find_model
from assistant.core.audioformat import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from assistant.errors import ModelError

if TYPE_CHECKING:
    import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

WINDOW_SAMPLES: Final = 512
"""Silero's window at 16 kHz (32 ms); an 80 ms frame is 2.5 windows."""
STATE_SIZE: Final = 64
_INT16_SCALE: Final = np.float32(1.0 / 32768.0)


class SileroVad:
    """Silero VAD v4 (ONNX) over 80 ms frames; carries the half window between frames."""

    def __init__(self, config: VadConfig, models_dir: Path) -> None:
        path = find_model(models_dir, config.model, ("vad", "openwakeword"), "vad.model")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelError(f"vad.model: cannot load {path}: {err}") from err
        names = {value.name for value in self._session.get_inputs()}
        if names != {"input", "sr", "h", "c"}:
            raise ModelError(
                f"vad.model: {path} is not a Silero v4 VAD (inputs {sorted(names)}, "
                "expected input, sr, h, c)"
            )
        self._window: npt.NDArray[np.float32] = np.zeros((1, WINDOW_SAMPLES), np.float32)
        self._floats: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self._filled = 0  # samples of the next window already in self._window
        self._feed: dict[str, npt.NDArray[np.float32] | npt.NDArray[np.int64]] = {
            "input": self._window,
            "sr": np.array(SAMPLE_RATE_HZ, dtype=np.int64),
            "h": np.zeros((2, 1, STATE_SIZE), np.float32),
            "c": np.zeros((2, 1, STATE_SIZE), np.float32),
        }
        self._outputs: Final = ["output", "hn", "cn"]
        self._probability = 0.0
        _LOGGER.debug("Loaded Silero VAD from %s", path)

    def process(self, frame: bytes) -> float:
        """Speech probability (0..1) of the last window this frame completed: the freshest
        (the highest of the frame's windows would hold on to speech up to 40 ms after it ends)."""
        if len(frame) % SAMPLE_WIDTH_BYTES:
            raise ValueError("frame must hold whole int16 samples")
        samples = np.frombuffer(frame, dtype=np.int16)
        if self._floats.size != samples.size:
            self._floats = np.empty(samples.size, np.float32)
        floats = self._floats
        np.multiply(samples, _INT16_SCALE, out=floats)
        last = -1.0
        start = 0
        while start < floats.size:
            take = min(WINDOW_SAMPLES - self._filled, floats.size - start)
            self._window[0, self._filled : self._filled + take] = floats[start : start + take]
            self._filled += take
            start += take
            if self._filled == WINDOW_SAMPLES:
                self._filled = 0
                last = self._infer()
        if last >= 0.0:
            self._probability = last
        return self._probability

    def reset(self) -> None:
        """Forget the recurrent state and the carried samples."""
        self._feed["h"][...] = 0.0
        self._feed["c"][...] = 0.0
        self._filled = 0
        self._probability = 0.0

    def _infer(self) -> float:
        probability, h, c = self._session.run(self._outputs, self._feed)
        self._feed["h"] = h
        self._feed["c"] = c
        return float(probability[0, 0])
