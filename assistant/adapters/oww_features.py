"""openWakeWord's streaming features on onnxruntime alone: audio → melspectrogram → embeddings.

The same computation as ``openwakeword.utils.AudioFeatures`` fed 80 ms frames, without importing
openwakeword (whose import pulls in scipy and scikit-learn: ≈90 MB and ≈1 s). For each frame:

1. the mel model gets the frame plus the 480 samples before it (only the frame itself on the
   first frame after a reset, when there is nothing before it) and returns 8 rows of 32 mel bins
   (5 on that first frame), which are scaled by ``x / 10 + 2``;
2. the embedding model gets the last 76 mel rows (the buffer starts as ones) and returns one
   96-value embedding;
3. wake word models read the last N embeddings (16 for the published ones).

After a reset openWakeWord fills the embedding history from the embeddings of 4 s of random noise
(``np.random.randint(-1000, 1000, 64000)``). Here the noise is the same kind but fixed
(``warmup_noise``, a hash of the sample index: no ``numpy.random``, whose import alone adds ≈7 MB),
so the history is computed once and every reset copies it back. An ``openwakeword.Model`` given
this noise in place of its random one produces the same numbers frame by frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ

if TYPE_CHECKING:
    import numpy.typing as npt

MEL_HOP_SAMPLES: Final = 160
"""One mel row per 10 ms."""
MEL_CONTEXT_SAMPLES: Final = 3 * MEL_HOP_SAMPLES
"""Samples before a frame that the mel model sees again, so that frames join without a gap."""
MEL_BINS: Final = 32
EMBEDDING_WINDOW_ROWS: Final = 76
"""Mel rows (775 ms) per embedding."""
EMBEDDING_STEP_ROWS: Final = 8
"""Mel rows per 80 ms frame: one embedding per frame."""
EMBEDDING_SIZE: Final = 96
WARMUP_SAMPLES: Final = 4 * SAMPLE_RATE_HZ
"""Length of the noise whose embeddings fill the history after a reset (openWakeWord's 4 s)."""
WARMUP_LOW: Final = -1000
WARMUP_HIGH: Final = 1000
"""Warm-up noise samples lie in [WARMUP_LOW, WARMUP_HIGH), as openWakeWord draws them."""


def load_session(path: Path) -> Any:
    """An onnxruntime CPU session on one thread (intra and inter op); errors pass through."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


class StreamingFeatures:
    """The last ``history`` embeddings of the audio so far, updated by each 80 ms frame.

    ``embeddings`` is one array of shape (1, history, 96), updated in place: wake word models
    read it (or a trailing slice of it) directly.
    """

    def __init__(self, melspec: Any, embedding: Any, history: int) -> None:
        """``melspec`` and ``embedding``: sessions from ``load_session``; ``history`` >= 1."""
        _check_shapes(melspec, embedding)
        if history < 1:
            raise ValueError(f"history must be at least 1 embedding, got {history}")
        self._melspec = melspec
        self._embedding = embedding
        self._embedding_output: Final = embedding.get_outputs()[0].name
        self._mel_output: Final = melspec.get_outputs()[0].name
        # the frame and the context before it, as float32 (the mel model's input)
        self._audio: npt.NDArray[np.float32] = np.zeros(
            (1, MEL_CONTEXT_SAMPLES + FRAME_SAMPLES), np.float32
        )
        self._frame = self._audio[0, MEL_CONTEXT_SAMPLES:]
        self._mel_input: Final = melspec.get_inputs()[0].name
        self._mel_feed: Final = {self._mel_input: self._audio}
        self._first_mel_feed: Final = {self._mel_input: self._audio[:, MEL_CONTEXT_SAMPLES:]}
        # the last 76 mel rows, shaped as the embedding model's input
        self._mel: npt.NDArray[np.float32] = np.ones(
            (1, EMBEDDING_WINDOW_ROWS, MEL_BINS, 1), np.float32
        )
        self._mel_flat = self._mel.reshape(-1)  # a view: shifting it in 1-D needs no temporary
        self._embedding_input: Final = embedding.get_inputs()[0].name
        self._embedding_feed: Final = {self._embedding_input: self._mel}
        self.embeddings: npt.NDArray[np.float32] = np.empty(
            (1, history, EMBEDDING_SIZE), np.float32
        )
        self._embeddings_flat = self.embeddings.reshape(-1)
        self._warmup = self._warmup_embeddings(history)
        self._fresh = True  # no audio since the start or the last reset
        self.reset()

    def reset(self) -> None:
        """Forget the audio: mel rows back to ones, embeddings back to the warm-up noise's."""
        self._audio.fill(0.0)
        self._mel.fill(1.0)
        np.copyto(self.embeddings[0], self._warmup)
        self._fresh = True

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        """Add one frame (``FRAME_SAMPLES``); ``embeddings`` then ends with its embedding."""
        audio = self._audio[0]
        audio[:MEL_CONTEXT_SAMPLES] = audio[FRAME_SAMPLES:]  # context and frame do not overlap
        np.copyto(self._frame, samples, casting="safe")  # int16 to float32 is exact
        feed = self._first_mel_feed if self._fresh else self._mel_feed
        self._fresh = False
        (mel,) = self._melspec.run([self._mel_output], feed)  # (1, 1, rows, 32)
        rows = mel.shape[2]
        values = rows * MEL_BINS
        self._mel_flat[:-values] = self._mel_flat[values:]  # forward copy in place
        new = self._mel[0, -rows:, :, 0]
        np.divide(mel[0, 0], 10, out=new)  # openWakeWord's x / 10 + 2, in float32 as there
        np.add(new, 2, out=new)
        (embedding,) = self._embedding.run([self._embedding_output], self._embedding_feed)
        self._embeddings_flat[:-EMBEDDING_SIZE] = self._embeddings_flat[EMBEDDING_SIZE:]
        self._embeddings_flat[-EMBEDDING_SIZE:] = embedding.reshape(-1)

    def _warmup_embeddings(self, history: int) -> npt.NDArray[np.float32]:
        """The last ``history`` embeddings of ``warmup_noise``, one window at a time."""
        # enough noise for `history` windows; openWakeWord's 4 s give 41
        needed_rows = EMBEDDING_WINDOW_ROWS + EMBEDDING_STEP_ROWS * (history - 1)
        samples = max(WARMUP_SAMPLES, MEL_HOP_SAMPLES * (needed_rows + 3))
        audio = warmup_noise(samples).astype(np.float32)[None, :]
        (mel,) = self._melspec.run([self._mel_output], {self._mel_input: audio})
        spec = mel[:, 0].reshape(-1, MEL_BINS) / 10 + 2
        # openWakeWord's windows start every 8 rows from row 0; take the last `history` of them.
        # One at a time: a batch of 41 would grow onnxruntime's arena by ~25 MB for good.
        last = (spec.shape[0] - EMBEDDING_WINDOW_ROWS) // EMBEDDING_STEP_ROWS * EMBEDDING_STEP_ROWS
        result: npt.NDArray[np.float32] = np.empty((history, EMBEDDING_SIZE), np.float32)
        for row, start in enumerate(
            range(last - EMBEDDING_STEP_ROWS * (history - 1), last + 1, EMBEDDING_STEP_ROWS)
        ):
            window = spec[None, start : start + EMBEDDING_WINDOW_ROWS, :, None]
            (embedding,) = self._embedding.run(
                [self._embedding_output], {self._embedding_input: window}
            )
            result[row] = embedding.reshape(-1)
        return result


def warmup_noise(samples: int) -> npt.NDArray[np.int16]:
    """Fixed white noise in [WARMUP_LOW, WARMUP_HIGH): splitmix64 of each sample's index."""
    state = np.arange(1, samples + 1, dtype=np.uint64)
    state *= np.uint64(0x9E3779B97F4A7C15)  # array arithmetic wraps around silently
    state ^= state >> np.uint64(30)
    state *= np.uint64(0xBF58476D1CE4E5B9)
    state ^= state >> np.uint64(27)
    state *= np.uint64(0x94D049BB133111EB)
    state ^= state >> np.uint64(31)
    span = np.uint64(WARMUP_HIGH - WARMUP_LOW)
    noise: npt.NDArray[np.int16] = (state % span).astype(np.int16) + np.int16(WARMUP_LOW)
    return noise


def _check_shapes(melspec: Any, embedding: Any) -> None:
    """Refuse feature models that do not have openWakeWord's shapes."""
    mel_shape = list(melspec.get_outputs()[0].shape)
    if len(mel_shape) != 4 or mel_shape[-1] != MEL_BINS:
        raise ValueError(f"not openWakeWord's melspectrogram model (output shape {mel_shape})")
    window_shape = list(embedding.get_inputs()[0].shape)[1:]
    output_shape = list(embedding.get_outputs()[0].shape)
    if window_shape != [EMBEDDING_WINDOW_ROWS, MEL_BINS, 1] or output_shape[-1] != EMBEDDING_SIZE:
        raise ValueError(
            f"not openWakeWord's embedding model (input {window_shape}, output {output_shape})"
        )
