"""Sound cards through sounddevice (PortAudio): finding a device, listing them, closing streams.

sounddevice is imported only when a device is opened or listed, so importing these modules needs
no PortAudio. The microphone and the speaker are ``assistant.adapters.microphone`` and
``assistant.adapters.speaker``; the WAV file stand-ins are in ``assistant.adapters.wavfile``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final, Literal

from assistant.errors import AudioError

_LOGGER = logging.getLogger(__name__)

CLOSE_SECONDS: Final = 1.0
"""Longest wait for a stream to close; a hung sound server must not freeze the event loop."""

Kind = Literal["input", "output"]


def sounddevice_module() -> Any:
    try:
        import sounddevice
    except OSError as err:  # the PortAudio library itself is missing
        raise AudioError(f"cannot load PortAudio ({err}): apt-get install libportaudio2") from err
    return sounddevice


def _short(devices: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['index']} {d['name']!r}" for d in devices) or "none"


def resolve_device(sd: Any, spec: str | int | None, kind: Kind) -> tuple[int | None, str]:
    """The PortAudio device index (None: the default) and its name, for messages."""
    key = f"audio.{kind}_device"
    try:
        devices: list[dict[str, Any]] = list(sd.query_devices())
        default = int(sd.default.device[0 if kind == "input" else 1])
    except sd.PortAudioError as err:
        raise AudioError(f"{key}: cannot list devices: {err}") from err
    capable = [d for d in devices if d[f"max_{kind}_channels"] > 0]
    if not capable:
        raise AudioError(f"{key}: no {kind} device found (no sound card, or no sound server?)")
    if spec is None:
        chosen = next((d for d in capable if d["index"] == default), capable[0])
        return None, str(chosen["name"])
    if isinstance(spec, int):
        match = [d for d in capable if d["index"] == spec]
    else:
        wanted = spec.casefold()
        match = [d for d in capable if d["name"].casefold() == wanted] or [
            d for d in capable if wanted in d["name"].casefold()
        ]
    if not match:
        raise AudioError(f"{key}: no {kind} device {spec!r}; {kind} devices: {_short(capable)}")
    if len(match) > 1:
        _LOGGER.debug("%s %r matches %s; using the first", key, spec, _short(match))
    return int(match[0]["index"]), str(match[0]["name"])


def dispose(stream: Any, what: str) -> None:
    """Abort and close ``stream``, waiting at most CLOSE_SECONDS (then it finishes on its own)."""

    def run() -> None:
        try:
            stream.abort()
            stream.close()
        except Exception as err:  # a dead device may refuse; it is gone either way
            _LOGGER.debug("closing %s: %s", what, err)

    thread = threading.Thread(target=run, name=f"close {what}", daemon=True)
    thread.start()
    thread.join(CLOSE_SECONDS)
    if thread.is_alive():
        _LOGGER.warning("%s did not close within %g s; leaving it behind", what, CLOSE_SECONDS)


def list_devices() -> list[str]:
    """One line per PortAudio device, for ``lingling devices``; empty without a sound card."""
    sd = sounddevice_module()
    default_in, default_out = (int(i) for i in sd.default.device)
    lines = []
    for d in sd.query_devices():
        marks = [
            label
            for label, index in (("default input", default_in), ("default output", default_out))
            if d["index"] == index
        ]
        hostapi = sd.query_hostapis(d["hostapi"])["name"]
        line = (
            f"{d['index']:>3} {d['name']} ({hostapi}): {d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:.0f} Hz"
        )
        lines.append(line + (f" [{', '.join(marks)}]" if marks else ""))
    return lines
