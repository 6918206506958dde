"""openWakeWord adapter: several wake words on one shared feature pipeline (ONNX only).

The models run on onnxruntime directly (``assistant.adapters.oww_features``): openwakeword itself
is never imported, as its import alone costs scipy and scikit-learn (≈90 MB, ≈1 s). Scores are the
same as ``openwakeword.Model(inference_framework="onnx")`` frame by frame (tests/test_wakeword.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from assistant.adapters.oww_features import EMBEDDING_SIZE, StreamingFeatures, load_session
from assistant.config import WakeConfig
from assistant.config_files import find_model
from assistant.core.audioformat import FRAME_BYTES, FRAME_SECONDS
from assistant.core.ports import Detection
from assistant.errors import ConfigError, ModelError

_LOGGER = logging.getLogger(__name__)

FEATURE_MODELS: Final = ("melspectrogram.onnx", "embedding_model.onnx")
"""openWakeWord's shared feature models, looked up in ``<models_dir>/openwakeword``."""
SILENT_FRAMES: Final = 5
"""Frames after the start or a reset whose scores are 0.0, as openWakeWord reports them."""


@dataclass(slots=True)
class _Word:
    name: str  # the config name, reported in Detection
    key: str  # openWakeWord's name for it: the model file's stem
    threshold: float
    refractory_frames: int
    ready_at: int = 0  # first frame index at which it may fire again
    session: Any = None  # its onnxruntime session
    history: int = 0  # embeddings it reads (16 for openWakeWord's models)
    feed: dict[str, Any] = field(default_factory=dict)  # its input: a view of the shared history
    output: list[str] = field(default_factory=list)  # the name of its score output


class OpenWakeWord:
    """Scores 80 ms frames with every configured wake word and reports at most one detection.

    Each word has its own threshold and refractory time. The refractory time is counted in audio
    (frames processed x 80 ms), never on the wall clock. After a detection the model's buffers
    are reset, so the rest of the same utterance cannot fire again. The feature buffers need about
    1.5 s of audio after the start or a ``reset()`` before scores are meaningful.
    """

    def __init__(self, config: WakeConfig, models_dir: Path) -> None:
        self._words: list[_Word] = []
        paths: list[Path] = []
        for index, word in enumerate(config.words()):
            path = find_model(models_dir, word.model, ("openwakeword",), f"wake.models[{index}]")
            name = path.stem if _is_path(word.model) else word.model
            for other in self._words:
                if path.stem == other.key or name == other.name:
                    raise ConfigError(
                        f"wake.models[{index}]: {word.model!r} is the same wake word as "
                        f"{other.name!r}"
                    )
            # words() fills both in; the fallbacks only satisfy the type checker
            threshold = config.threshold if word.threshold is None else word.threshold
            refractory_seconds = (
                config.refractory_seconds
                if word.refractory_seconds is None
                else word.refractory_seconds
            )
            self._words.append(
                _Word(
                    name=name,
                    key=path.stem,
                    threshold=threshold,
                    refractory_frames=math.ceil(round(refractory_seconds / FRAME_SECONDS, 6)),
                )
            )
            paths.append(path)
        melspec, embedding = (models_dir / "openwakeword" / file for file in FEATURE_MODELS)
        for feature in (melspec, embedding):
            if not feature.is_file():
                raise ModelError(
                    f"openWakeWord feature model missing: {feature} (melspectrogram.onnx and "
                    "embedding_model.onnx belong next to the wake word models)"
                )
        try:
            melspec_session = load_session(melspec)
            embedding_session = load_session(embedding)
            for loaded, path in zip(self._words, paths, strict=True):
                loaded.session = load_session(path)
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load openWakeWord models: {err}") from err
        for loaded, path in zip(self._words, paths, strict=True):
            loaded.history = _history(loaded.session, path)
        try:
            self._features = StreamingFeatures(
                melspec_session, embedding_session, max(each.history for each in self._words)
            )
        except Exception as err:  # the shape checks, or onnxruntime failing on the warm-up
            raise ModelError(f"cannot load openWakeWord models: {err}") from err
        embeddings = self._features.embeddings
        for loaded in self._words:
            # a trailing slice of the shared history, updated in place: no copy per frame
            start = embeddings.shape[1] - loaded.history
            loaded.feed = {loaded.session.get_inputs()[0].name: embeddings[:, start:]}
            loaded.output = [loaded.session.get_outputs()[0].name]
        self._since_reset = 0  # frames fed since the start or the last reset
        self._frames = 0
        self._scores: dict[str, float] = {word.name: 0.0 for word in self._words}
        _LOGGER.debug(
            "Listening for %s",
            ", ".join(f"{word.name} (>= {word.threshold:g})" for word in self._words),
        )

    @property
    def wake_words(self) -> list[str]:
        """The configured names, as reported in ``Detection.wake_word``."""
        return [word.name for word in self._words]

    @property
    def scores(self) -> dict[str, float]:
        """Each word's score on the last frame (also while it is refractory)."""
        return dict(self._scores)

    def process(self, frame: bytes) -> Detection | None:
        """Score one 80 ms frame (``FRAME_BYTES``); return the best word over its threshold."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"expected one {FRAME_BYTES}-byte frame, got {len(frame)} bytes")
        index = self._frames
        self._frames += 1
        self._features.push(np.frombuffer(frame, dtype=np.int16))
        scoring = self._since_reset >= SILENT_FRAMES  # before that every score is 0.0 anyway
        self._since_reset += 1
        fired: _Word | None = None
        for word in self._words:
            score = float(word.session.run(word.output, word.feed)[0][0, 0]) if scoring else 0.0
            self._scores[word.name] = score
            if score < word.threshold or index < word.ready_at:
                continue
            if fired is None or score > self._scores[fired.name]:
                fired = word
        if fired is None:
            return None
        fired.ready_at = index + fired.refractory_frames
        self._clear_buffers()
        score = self._scores[fired.name]
        _LOGGER.debug(
            "Wake word %s fired (score %.3f) at %.2f s",
            fired.name,
            score,
            self._frames * FRAME_SECONDS,
        )
        return Detection(wake_word=fired.name, score=score)

    def reset(self) -> None:
        """Clear the streaming buffers and end every refractory period.

        Call it when feeding resumes after a pause: the audio that follows is new, so nothing in
        it can repeat a detection made before the pause.
        """
        self._clear_buffers()
        for word in self._words:
            word.ready_at = 0
        for name in self._scores:
            self._scores[name] = 0.0

    def _clear_buffers(self) -> None:
        self._features.reset()
        self._since_reset = 0


def _history(session: Any, path: Path) -> int:
    """How many embeddings a wake word model reads; ModelError unless it gives a single score."""
    if list(session.get_outputs()[0].shape)[1:] != [1]:
        raise ModelError(f"{path}: not a single-score wake word model")
    shape = list(session.get_inputs()[0].shape)
    if (
        len(shape) != 3
        or not isinstance(shape[1], int)
        or shape[1] < 1
        or shape[2] != EMBEDDING_SIZE
    ):
        raise ModelError(
            f"{path}: not an openWakeWord model (input shape {shape}, expected [1, N, "
            f"{EMBEDDING_SIZE}])"
        )
    history: int = shape[1]
    return history


def _is_path(model: str) -> bool:
    candidate = Path(model)
    return candidate.suffix == ".onnx" or len(candidate.parts) > 1
