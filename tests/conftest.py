"""Shared fixtures: where the real models and recordings are (helpers in tests/support/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import require_models
from tests.support.scenarios import DATA_DIR


@pytest.fixture
def models_dir() -> Path:
    """LINGLING_MODELS with the models every real-model test needs."""
    return require_models()


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR
