"""How long each state may last before the turn is abandoned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.core.commands import Phase

if TYPE_CHECKING:
    from assistant.config import Config

P = Phase


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each state may last before the turn is abandoned (wall-clock seconds)."""

    wake_seconds: float = 2.0
    listening_seconds: float = 20.0
    transcribing_seconds: float = 15.0
    thinking_seconds: float = 30.0
    speaking_seconds: float = 60.0
    ringing_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> Timeouts:
        return cls(
            # The VAD ends listening in audio time; this only guards against audio that stops.
            listening_seconds=config.vad.no_speech_seconds + config.vad.max_command_seconds,
            transcribing_seconds=config.stt.timeout_seconds,
            thinking_seconds=config.llm.timeout_seconds,
            speaking_seconds=config.tts.playback_timeout_seconds,
            ringing_seconds=config.timers.ring_seconds,
        )

    def of(self, phase: Phase) -> float | None:
        return {
            P.IDLE: None,
            P.WAKE: self.wake_seconds,
            P.LISTENING: self.listening_seconds,
            P.TRANSCRIBING: self.transcribing_seconds,
            P.THINKING: self.thinking_seconds,
            P.SPEAKING: self.speaking_seconds,
            P.RINGING: self.ringing_seconds,
        }[phase]
