"""The wake word chosen from Home Assistant: one of the models in the models folder, kept across
restarts, applied without a restart.

The choice is a setting of the listener, not of the conversation: the new model is loaded in a
thread and handed to the listener between two frames. A name that is not one of the models found
is logged and ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from assistant.config import WakeConfig, WakeWordConfig
from assistant.core.ports import WakeWord
from assistant.errors import AssistantError
from assistant.runtime.state_files import write_json

_LOGGER = logging.getLogger(__name__)

_VERSION: Final = re.compile(r"_v\d+(\.\d+)*$")
NOT_WAKE_WORDS: Final = frozenset({"melspectrogram", "embedding_model", "silero_vad"})
"""Models in ``<models_dir>/openwakeword`` that are not wake words."""

Load = Callable[[WakeConfig, Path], WakeWord]


def wake_words_in(models_dir: Path) -> list[str]:
    """The wake word models found in ``<models_dir>/openwakeword``, by the names the config uses
    for them (``hey_jarvis`` for ``hey_jarvis_v0.1.onnx``: the newest version)."""
    folder = models_dir / "openwakeword"
    if not folder.is_dir():
        return []
    stems = (path.stem for path in folder.glob("*.onnx") if path.stem not in NOT_WAKE_WORDS)
    return sorted({_plain(stem) for stem in stems})


def _plain(name: str) -> str:
    """A model's name without its version: ``hey_jarvis_v0.1`` → ``hey_jarvis``."""
    return _VERSION.sub("", name)


def _configured(config: WakeConfig) -> dict[str, WakeWordConfig]:
    """The configured wake words by the name the select shows (a path by its file's name)."""
    words = {}
    for word in config.words():
        name = Path(word.model).stem if word.model.endswith(".onnx") else word.model
        words[_plain(name)] = word
    return words


class WakeWordChoice:
    def __init__(
        self, config: WakeConfig, models_dir: Path, load: Load, *, state_file: Path | None = None
    ) -> None:
        self._config = config
        self._models_dir = models_dir
        self._load = load
        self._state_file = state_file
        configured = list(_configured(config))
        self.options = sorted({*wake_words_in(models_dir), *configured})
        """What may be chosen: the models found, and those the config names."""
        self.selected = configured[0]
        """The wake word listened for (the first, when the config names several)."""
        self.changed = False
        """A choice kept from an earlier run replaces the configured wake words."""
        kept = self._read()
        if kept is not None and kept != self.selected:
            if kept in self.options:
                self.selected, self.changed = kept, True
            else:
                _LOGGER.warning("wake word %r chosen before is not in the models folder", kept)

    def config(self) -> WakeConfig:
        """The wake section for the wake word chosen (the configured one when not changed)."""
        if not self.changed:
            return self._config
        return self._config_for(self.selected)

    async def choose(self, name: str) -> WakeWord | None:
        """Load the wake word ``name`` and keep the choice; None if it cannot be."""
        if name == self.selected:
            return None
        if name not in self.options:
            _LOGGER.warning("wake word %r is not one of %s: ignored", name, self.options)
            return None
        try:
            wake_word = await asyncio.to_thread(
                self._load, self._config_for(name), self._models_dir
            )
        except AssistantError as err:
            _LOGGER.warning("cannot switch to the wake word %r: %s", name, err)
            return None
        self.selected, self.changed = name, True
        _LOGGER.info("wake word is now %s", name)
        self._save()
        return wake_word

    def _config_for(self, name: str) -> WakeConfig:
        word = _configured(self._config).get(name, WakeWordConfig(model=name))
        return self._config.model_copy(update={"models": [word]})

    def _read(self) -> str | None:
        if self._state_file is None or not self._state_file.exists():
            return None
        try:
            name = json.loads(self._state_file.read_text(encoding="utf-8"))["wake_word"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            _LOGGER.warning("wake word: cannot read %s (%s)", self._state_file, err)
            return None
        return name if isinstance(name, str) else None

    def _save(self) -> None:
        write_json(self._state_file, {"wake_word": self.selected}, "wake word")
