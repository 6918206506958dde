"""The real models the ``models`` tests need: LINGLING_MODELS, skipping without it (failing in CI).

Tests import ``require_model`` from here; the ``models_dir`` fixture (tests/conftest.py) is built
on ``require_models``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

EVERY_MODEL_TEST_NEEDS: Final = (
    "openwakeword/melspectrogram.onnx",
    "openwakeword/embedding_model.onnx",
    "openwakeword/hey_jarvis_v0.1.onnx",
    "openwakeword/silero_vad.onnx",
    "piper/tone_voice.onnx",
)


def models_root() -> Path | None:
    """LINGLING_MODELS when it names a folder, else None."""
    value = os.environ.get("LINGLING_MODELS")
    return Path(value) if value and Path(value).is_dir() else None


def require_model(relative: str) -> Path:
    """The model file at LINGLING_MODELS/relative; skip without it (fail in CI)."""
    root = models_root()
    path = root / relative if root is not None else None
    if path is not None and path.is_file():
        return path
    reason = (
        f"model {relative} not found: set LINGLING_MODELS to a models folder (see models/README.md)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI a missing model is a failure")
    pytest.skip(reason)


def require_models(relative: tuple[str, ...] = EVERY_MODEL_TEST_NEEDS) -> Path:
    """LINGLING_MODELS, holding every one of ``relative``; skip without them (fail in CI)."""
    for name in relative:
        require_model(name)
    root = models_root()
    assert root is not None
    return root
