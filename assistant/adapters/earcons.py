"""Short sounds for waking and for errors, made at the speaker's rate (no files to ship)."""

from __future__ import annotations

import numpy as np

from assistant.core.commands import Earcon

# (frequency Hz, seconds) notes
_NOTES = {
    Earcon.AWAKE: ((660.0, 0.07), (880.0, 0.09)),
    Earcon.ERROR: ((440.0, 0.12), (311.1, 0.22)),
    # An alarm: three bright beeps and a rest (0 Hz is silence), repeated while a timer rings.
    Earcon.RING: ((1318.5, 0.12), (0.0, 0.08)) * 3 + ((0.0, 0.5),),
}


def earcon_pcm(earcon: Earcon, sample_rate_hz: int, volume: float = 0.25) -> bytes:
    """Mono int16 PCM of ``earcon``: sine notes with 5 ms fades so nothing clicks."""
    pieces = []
    fade = max(1, int(0.005 * sample_rate_hz))
    for frequency_hz, seconds in _NOTES[earcon]:
        n = int(seconds * sample_rate_hz)
        tone = np.sin(2 * np.pi * frequency_hz * np.arange(n) / sample_rate_hz)
        envelope = np.ones(n)
        envelope[:fade] = np.linspace(0.0, 1.0, fade)
        envelope[-fade:] = np.linspace(1.0, 0.0, fade)
        pieces.append(tone * envelope)
    samples = np.concatenate(pieces) * volume * 32767
    return samples.astype("<i2").tobytes()
