"""Shared fixtures: where the real models and recordings are (helpers in tests/support/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant import paths
from tests.support.models import require_models
from tests.support.scenarios import DATA_DIR


@pytest.fixture
def models_dir() -> Path:
    """LINGLING_MODELS with the models every real-model test needs."""
    return require_models()


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(autouse=True, scope="session")
def no_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Whoever runs the tests may have a config of their own (~/.config/lingling/config.yaml,
    /etc/lingling/config.yaml): the tests never read it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
        patch.setattr(paths, "SYSTEM_CONFIG", Path("/nonexistent/lingling/config.yaml"))
        yield
