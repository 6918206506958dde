"""Piper text to speech (synchronous CPU work: call ``synthesize`` from a worker thread)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from assistant.config import TtsConfig
from assistant.config_files import find_model
from assistant.errors import ConfigError, ModelError, SynthesisError

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

_LOGGER = logging.getLogger(__name__)

WARM_TEXT: Final = "Hello."


DEFAULT_THREADS: Final = 2
"""Two threads synthesise a short sentence about a third faster than one on a 2-core machine
(118 against 177 ms after a pause, BENCHMARKS.md); more were not measured."""


def default_threads() -> int:
    """``DEFAULT_THREADS``, or fewer on a machine with fewer cores."""
    return max(1, min(DEFAULT_THREADS, os.cpu_count() or 1))


class PiperSynthesizer:
    """``Synthesizer`` with a Piper voice: ``<voice>.onnx`` and ``<voice>.onnx.json`` beside it.

    The ONNX session gets ``threads`` intra-op threads (default: ``tts.threads``, else
    ``default_threads()``) that sleep instead of spinning between runs, so speaking does not
    starve wake-word detection running at the same time (onnxruntime's defaults use every core
    and spin).
    """

    def __init__(self, config: TtsConfig, models_dir: Path, *, threads: int | None = None) -> None:
        model_path = find_model(models_dir, config.voice, ("piper",), "tts.voice")
        config_path = model_path.with_name(model_path.name + ".json")
        if not config_path.is_file():
            raise ConfigError(f"tts.voice: no voice config {config_path} beside the model")
        try:
            voice_config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelError(f"tts.voice: cannot read {config_path}: {err}") from err

        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or config.threads or default_threads()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._voice: PiperVoice = PiperVoice(
                config=PiperConfig.from_dict(voice_config), session=session
            )
        except Exception as err:  # onnxruntime raises its own types; a bad JSON raises KeyError
            raise ModelError(f"tts.voice: cannot load {model_path}: {err}") from err

        speakers = self._voice.config.num_speakers
        if config.speaker_id is not None and not 0 <= config.speaker_id < max(1, speakers):
            raise ConfigError(f"tts.speaker_id: voice {config.voice!r} has {speakers} speaker(s)")
        self._syn_config: SynthesisConfig = SynthesisConfig(
            speaker_id=config.speaker_id, length_scale=config.length_scale
        )
        self.sample_rate_hz: int = self._voice.config.sample_rate
        self.model_path = model_path

    def synthesize(self, text: str) -> bytes:
        """Mono int16 PCM at ``sample_rate_hz``, every sentence of ``text`` joined."""
        if not text.strip():
            return b""
        try:
            chunks = self._voice.synthesize(text, syn_config=self._syn_config)
            return b"".join(chunk.audio_int16_bytes for chunk in chunks)
        except Exception as err:  # phonemizer and onnxruntime errors have no common base
            raise SynthesisError(f"Piper could not speak {text[:40]!r}: {err}") from err

    def warm(self) -> None:
        """Synthesize once, so the first real sentence does not pay for the session's setup."""
        started = time.perf_counter()
        self.synthesize(WARM_TEXT)
        _LOGGER.debug("piper warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
