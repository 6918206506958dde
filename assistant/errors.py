"""One error type per stage; the runtime turns them into ``failed`` events."""

from __future__ import annotations


class AssistantError(Exception):
    """An expected failure with a stable, machine-readable code."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(AssistantError):
    code = "config"


class AudioError(AssistantError):
    code = "audio"


class ModelError(AssistantError):
    code = "model"


class TranscriptionError(AssistantError):
    code = "stt"


class ChatError(AssistantError):
    code = "llm"


class SynthesisError(AssistantError):
    code = "tts"
