"""The machine's switches: mute, the wake word on or off, and the deaf tail after speaking.

They gate what the microphone may start, in any state. A part of ``Assistant``
(``assistant.core.machine``): the callbacks named in ``assistant.core.table`` for them.
"""

from __future__ import annotations

import logging
from typing import Final

from transitions import EventData

from assistant.core.commands import Command, Phase, ReportError, ReportMute
from assistant.core.events import MuteRequested, WakeWordToggled
from assistant.core.table import event_of

_LOGGER = logging.getLogger(__name__)

DEAF_TAIL_SECONDS: Final = 0.3
"""After speaking, the wake word stays deaf this long (audio time): the room still echoes."""
MUTED: Final = "muted"
"""The error code of a request refused because the microphone is muted."""


class Switches:
    """Mute, wake word on/off, deaf: the flags, and the callbacks that set them."""

    phase: Phase
    _commands: list[Command]

    def __init__(self) -> None:
        self.muted = False
        """No audio reaches the wake word or the VAD."""
        self.wake_word_enabled = True
        self.deaf = False
        """In the deaf tail after speaking."""

    def _muted(self, data: EventData) -> bool:
        return self.muted

    def _refuse_muted(self, data: EventData) -> None:
        message = "not listening: the microphone is muted"
        self._commands.append(ReportError(None, MUTED, message, self.phase))

    def _mutes(self, data: EventData) -> bool:
        return event_of(data, MuteRequested).muted

    def _set_mute(self, data: EventData) -> None:
        muted = event_of(data, MuteRequested).muted
        if muted != self.muted:
            _LOGGER.info("microphone %s", "muted" if muted else "unmuted")
        self.muted = muted

    def _report_mute(self, data: EventData) -> None:
        self._commands.append(ReportMute(self.muted))

    def _toggle_wake_word(self, data: EventData) -> None:
        self.wake_word_enabled = event_of(data, WakeWordToggled).enabled
        _LOGGER.info("wake word %s", "on" if self.wake_word_enabled else "off")

    def _hear_again(self, data: EventData) -> None:
        self.deaf = False
