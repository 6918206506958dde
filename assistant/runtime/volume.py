"""The output volume: applied to everything Lingling plays (speech, earcons, rings), kept across
restarts, set from Home Assistant (``volume/set``) or by voice (HassSetVolume…)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from assistant.core.ports import Speaker
from assistant.runtime.state_files import write_json

_LOGGER = logging.getLogger(__name__)

DEFAULT_LEVEL: Final = 100
STEP: Final = 10
"""How much "turn it up" / "louder" changes the volume."""


class Volume:
    def __init__(
        self,
        *,
        state_file: Path | None = None,
        tell: Callable[[int], None] | None = None,
    ) -> None:
        self._state_file = state_file
        self.tell = tell
        self.level = DEFAULT_LEVEL
        if state_file is not None and state_file.exists():
            try:
                self.level = _clamp(json.loads(state_file.read_text(encoding="utf-8"))["level"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                _LOGGER.warning("volume: cannot read %s (%s); using %d", state_file, err, 100)

    def set(self, level: int) -> None:
        self.level = _clamp(level)
        _LOGGER.info("volume %d", self.level)
        self._save()
        if self.tell is not None:
            self.tell(self.level)

    def apply(self, intent: str, slots: Mapping[str, Any]) -> None:
        """A confirmed HassSetVolume / HassSetVolumeRelative."""
        if intent == "HassSetVolume" and slots.get("volume_level") is not None:
            self.set(int(slots["volume_level"]))
        elif intent == "HassSetVolumeRelative":
            step = slots.get("volume_step", "up")
            delta = STEP if step == "up" else -STEP if step == "down" else int(float(step))
            self.set(self.level + delta)

    def scale(self, pcm: bytes) -> bytes:
        if self.level >= 100:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        gain = (self.level / 100.0) ** 2  # loudness is heard on a curve, not a line
        return (samples * gain).astype("<i2").tobytes()

    def _save(self) -> None:
        write_json(self._state_file, {"level": self.level}, "volume")


VOLUME_INTENTS: Final = frozenset({"HassSetVolume", "HassSetVolumeRelative"})


def _clamp(level: object) -> int:
    return max(0, min(100, round(float(str(level)))))


class VolumeSpeaker:
    """A ``Speaker`` that plays at the volume's level."""

    def __init__(self, speaker: Speaker, volume: Volume) -> None:
        self._speaker = speaker
        self._volume = volume
        self.sample_rate_hz = speaker.sample_rate_hz

    async def play(self, pcm: bytes) -> None:
        await self._speaker.play(self._volume.scale(pcm))

    def stop(self) -> None:
        self._speaker.stop()
