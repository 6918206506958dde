"""Shared fixtures: where the real models and recordings are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


def _models_dir() -> Path | None:
    value = os.environ.get("LINGLING_MODELS")
    return Path(value) if value and Path(value).is_dir() else None


def require_model(relative: str) -> Path:
    """The model file at LINGLING_MODELS/relative; skip without it (fail in CI)."""
    root = _models_dir()
    path = root / relative if root is not None else None
    if path is not None and path.is_file():
        return path
    reason = (
        f"model {relative} not found: set LINGLING_MODELS to a models folder (see models/README.md)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI a missing model is a failure")
    pytest.skip(reason)


@pytest.fixture
def models_dir() -> Path:
    """LINGLING_MODELS with the models every real-model test needs."""
    for relative in (
        "openwakeword/melspectrogram.onnx",
        "openwakeword/embedding_model.onnx",
        "openwakeword/hey_jarvis_v0.1.onnx",
        "openwakeword/silero_vad.onnx",
        "piper/tone_voice.onnx",
    ):
        require_model(relative)
    root = _models_dir()
    assert root is not None
    return root


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR
