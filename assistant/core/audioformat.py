"""Audio format constants and small pure helpers shared by every adapter."""

from __future__ import annotations

import io
import wave
from typing import Final

SAMPLE_RATE_HZ: Final = 16_000
SAMPLE_WIDTH_BYTES: Final = 2
FRAME_SAMPLES: Final = 1280  # 80 ms: openWakeWord's frame
FRAME_BYTES: Final = FRAME_SAMPLES * SAMPLE_WIDTH_BYTES
FRAME_SECONDS: Final = FRAME_SAMPLES / SAMPLE_RATE_HZ


def to_wav(pcm: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """Wrap mono int16 PCM in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm)
    return buffer.getvalue()


def pcm_seconds(pcm: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    return len(pcm) / (SAMPLE_WIDTH_BYTES * sample_rate_hz)
