"""Generated test audio: 16 kHz mono int16 clips built from speech, silence and noise.

Every helper returns a 1-D ``numpy.int16`` array (``Audio``) at 16 kHz, so parts can be joined with
``concat`` and cut into 80 ms frames with ``frames``. Speech comes from espeak-ng (resampled by sox)
and is cached under ``~/.cache/lingling-tests/`` (``$XDG_CACHE_HOME`` is honoured), so only the
first run pays for it. Without espeak-ng or sox the calling test is skipped, or fails when the
environment variable CI is set.

A ``Scenario`` is "wake word + command + silence" with the true sample positions of the command,
for assertions such as "the command was not cut"::

    scene = Scenario.build("turn on the kitchen light")
    for frame in scene.frames(): ...
    assert scene.command_start_seconds < ...
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pytest

from assistant.core.audioformat import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    SAMPLE_WIDTH_BYTES,
)

Audio = npt.NDArray[np.int16]

DATA_DIR: Final = Path(__file__).parent.parent / "data"
VOICED_LEVEL: Final = 300
"""Samples louder than this (int16 units) count as voiced when speech is trimmed."""
_CACHE_VERSION: Final = "1"

RECORDED_WORDS: Final = {
    # Segments (text, start s, end s), read from the waveform's 10 ms RMS envelope (where it
    # stays above 3 % of its peak). JFK's "country" ends at 10.2 s: what follows is the crowd;
    # before "yes" a click (0.20-0.35 s) is not a word. JFK's words are punctuated as whisper.cpp
    # (ggml-base.en) writes the clip, its samples/jfk.wav (its README: "And so my fellow
    # Americans, ask not what your country can do for you, ask what you can do for your
    # country.").
    "jfk": (
        ("And so my fellow Americans,", 0.33, 2.12),
        ("ask", 3.28, 3.66),
        ("not", 4.02, 4.28),
        ("what your country can do for you,", 5.40, 7.56),
        ("ask what you can do for your country.", 8.19, 10.20),
    ),
    "speechcommands_yes_1000ms": (("yes", 0.47, 0.82),),
    "speechcommands_no_1000ms": (("no", 0.47, 0.77),),
}
"""Recordings in ``tests/data``: the words said, with the second they start and end."""
_PUNCTUATION: Final = re.compile(r"[,.;:!?]")


def unpunctuated(text: str) -> str:
    """``text`` as a transcriber that writes no punctuation would give it."""
    return _PUNCTUATION.sub("", text)


def locate(pcm: bytes, heard: bytes) -> slice:
    """The samples of ``heard`` (int16 bytes) that ``pcm`` is; a ValueError when it is not in
    it. How a fake transcriber tells which words a piece of the microphone's audio holds."""
    at = heard.find(pcm)
    while at >= 0 and at % SAMPLE_WIDTH_BYTES:
        at = heard.find(pcm, at + 1)
    if at < 0 or not pcm:
        raise ValueError("audio not from this input")
    start = at // SAMPLE_WIDTH_BYTES
    return slice(start, start + len(pcm) // SAMPLE_WIDTH_BYTES)


def cache_dir() -> Path:
    """Where generated speech is kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lingling-tests"


def require_speech_tools() -> None:
    """Skip the calling test when espeak-ng or sox is missing (fail when CI is set)."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install espeak-ng sox)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI a missing tool is a failure")
    pytest.skip(reason)


def speak(text: str, voice: str = "en-us", words_per_minute: int = 150) -> Audio:
    """``text`` spoken by espeak-ng, trimmed to its voiced part (no leading or trailing silence)."""
    key = hashlib.sha256(
        f"{_CACHE_VERSION}\0{text}\0{voice}\0{words_per_minute}".encode()
    ).hexdigest()[:24]
    path = cache_dir() / f"speak-{key}.wav"
    if path.is_file():
        return read_wav(path)
    require_speech_tools()
    espeak = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        check=True,
        capture_output=True,
    )
    to_raw = ("-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw")
    sox = subprocess.run(
        ["sox", "-t", "wav", "-", *to_raw, "-"],
        input=espeak.stdout,
        check=True,
        capture_output=True,
    )
    samples = _trim(np.frombuffer(sox.stdout, dtype=np.int16))
    if samples.size == 0:
        raise ValueError(f"espeak-ng produced no speech for {text!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    write_wav(partial, samples)
    partial.replace(path)  # atomic: parallel test runs never read half a file
    return samples


def silence(seconds: float) -> Audio:
    return np.zeros(_samples(seconds), dtype=np.int16)


def noise(seconds: float, rms: float, seed: int = 0) -> Audio:
    """White noise with the given RMS in int16 units (full scale is 32768); the same for a seed."""
    rng = np.random.default_rng(seed)
    return _to_int16(rng.normal(0.0, rms, _samples(seconds)))


def mix(signal: Audio, noise_rms: float, seed: int = 0) -> Audio:
    """``signal`` with white noise of ``noise_rms`` (int16 units) added over its whole length."""
    rng = np.random.default_rng(seed)
    return _to_int16(signal.astype(np.float64) + rng.normal(0.0, noise_rms, signal.size))


def recording(name: str) -> Audio:
    """``tests/data/NAME.wav`` (16 kHz mono int16)."""
    return read_wav(DATA_DIR / f"{name}.wav")


def concat(*parts: Audio) -> Audio:
    return np.concatenate([np.asarray(part, dtype=np.int16) for part in parts])


def rms(samples: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) if samples.size else 0.0


def frames(samples: Audio) -> list[bytes]:
    """80 ms frames (``FRAME_BYTES`` each); the last one is padded with zeros."""
    data = concat(samples, np.zeros(-samples.size % FRAME_SAMPLES, np.int16)).tobytes()
    return [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]


def read_wav(path: Path) -> Audio:
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (
            SAMPLE_RATE_HZ,
            1,
            SAMPLE_WIDTH_BYTES,
        ):
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).copy()


def write_wav(path: Path, samples: Audio) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(np.asarray(samples, dtype=np.int16).tobytes())


@dataclass(frozen=True)
class Scenario:
    """A clip of lead-in, wake word, pause, command and trailing silence, with true positions.

    Positions are sample indices into ``samples``; ``command_end`` is one past the last sample.
    """

    samples: Audio
    wake_start: int
    wake_end: int
    command_start: int
    command_end: int

    @classmethod
    def build(
        cls,
        command: str | Audio,
        *,
        wake: str | Audio | None = "hey jarvis",
        lead_seconds: float = 1.0,
        pause_seconds: float = 0.3,
        trail_seconds: float = 2.0,
        noise_rms: float = 0.0,
        seed: int = 0,
    ) -> Scenario:
        """Build a scenario; text is spoken with ``speak``, arrays are used as they are.

        ``wake=None`` leaves the wake word (and the pause) out. ``noise_rms`` > 0 adds white noise
        of that RMS over the whole clip (the positions stay those of the clean parts).
        """
        wake_audio = _spoken(wake) if wake is not None else silence(0.0)
        command_audio = _spoken(command)
        lead = silence(lead_seconds)
        pause = silence(pause_seconds) if wake is not None else silence(0.0)
        samples = concat(lead, wake_audio, pause, command_audio, silence(trail_seconds))
        if noise_rms > 0:
            samples = mix(samples, noise_rms, seed)
        command_start = lead.size + wake_audio.size + pause.size
        return cls(
            samples=samples,
            wake_start=lead.size,
            wake_end=lead.size + wake_audio.size,
            command_start=command_start,
            command_end=command_start + command_audio.size,
        )

    @property
    def command_start_seconds(self) -> float:
        return self.command_start / SAMPLE_RATE_HZ

    @property
    def command_end_seconds(self) -> float:
        return self.command_end / SAMPLE_RATE_HZ

    @property
    def pcm(self) -> bytes:
        return self.samples.tobytes()

    def frames(self) -> list[bytes]:
        return frames(self.samples)

    def frames_from(self, sample: int) -> list[bytes]:
        """The 80 ms frames starting at sample index ``sample`` (e.g. ``wake_end``)."""
        return frames(self.samples[sample:])


def _spoken(part: str | Audio) -> Audio:
    return speak(part) if isinstance(part, str) else np.asarray(part, dtype=np.int16)


def _samples(seconds: float) -> int:
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    return round(seconds * SAMPLE_RATE_HZ)


def _to_int16(values: npt.NDArray[np.float64]) -> Audio:
    return np.clip(np.round(values), -32768, 32767).astype(np.int16)


def _trim(samples: Audio) -> Audio:
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > VOICED_LEVEL)
    if voiced.size == 0:
        return samples[:0].copy()
    return samples[voiced[0] : voiced[-1] + 1].copy()


# -- more voices: espeak-ng with SSML (pauses inside one utterance), and Piper -------------------


def speak_ssml(ssml: str, voice: str = "en-us", words_per_minute: int = 150) -> Audio:
    """SSML (``<speak>set a timer for <break time="500ms"/> twenty minutes</speak>``) spoken by
    espeak-ng as one utterance, so the words before a break keep their mid-sentence prosody;
    trimmed like ``speak``."""

    def make() -> Audio:
        require_speech_tools()
        command = ["espeak-ng", "-m", "-v", voice, "-s", str(words_per_minute), "--stdout", ssml]
        espeak = subprocess.run(command, check=True, capture_output=True)
        return _resampled(espeak.stdout, ["-t", "wav"])

    return _cached("ssml", (ssml, voice, str(words_per_minute)), make)


def speak_piper(text: str, model: Path, length_scale: float = 1.0) -> Audio:
    """``text`` spoken by the Piper voice ``model`` (``<voice>.onnx`` with its ``.json``
    beside it), resampled to 16 kHz by sox and trimmed like ``speak``. A comma gives a short
    pause with a continuing intonation (``stretch_pause`` makes a hesitation of it)."""

    def make() -> Audio:
        require_speech_tools()
        from piper import PiperVoice, SynthesisConfig

        voice = PiperVoice.load(str(model))
        chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale)))
        pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
        rate = str(chunks[0].sample_rate)
        raw = ["-t", "raw", "-r", rate, "-e", "signed-integer", "-b", "16", "-c", "1"]
        return _resampled(pcm, raw)

    stat = model.stat()
    return _cached("piper", (text, model.name, str(stat.st_size), str(length_scale)), make)


def quiet_runs(samples: Audio, min_seconds: float, level: int = VOICED_LEVEL) -> list[slice]:
    """The runs of at least ``min_seconds`` in which no sample is louder than ``level``."""
    quiet = np.abs(samples.astype(np.int32)) <= level
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    runs = [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [run for run in runs if run.stop - run.start >= _samples(min_seconds)]


def stretch_pause(samples: Audio, pause: slice, seconds: float) -> Audio:
    """``samples`` with the quiet run ``pause`` made ``seconds`` long (digital silence added in
    its middle; never shortened)."""
    middle = (pause.start + pause.stop) // 2
    extra = silence(max(0.0, seconds - (pause.stop - pause.start) / SAMPLE_RATE_HZ))
    return concat(samples[:middle], extra, samples[middle:])


def _resampled(data: bytes, input_format: list[str]) -> Audio:
    """Audio in ``input_format`` (sox's arguments) as trimmed 16 kHz mono int16."""
    to_raw = ("-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw")
    sox = subprocess.run(
        ["sox", *input_format, "-", *to_raw, "-"], input=data, check=True, capture_output=True
    )
    samples = _trim(np.frombuffer(sox.stdout, dtype=np.int16))
    if samples.size == 0:
        raise ValueError("the voice produced no speech")
    return samples


def _cached(kind: str, key_parts: tuple[str, ...], make: Callable[[], Audio]) -> Audio:
    """Generated speech, kept in ``cache_dir()`` under a hash of ``key_parts``."""
    key = hashlib.sha256("\0".join((_CACHE_VERSION, *key_parts)).encode()).hexdigest()[:24]
    path = cache_dir() / f"{kind}-{key}.wav"
    if path.is_file():
        return read_wav(path)
    samples = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    write_wav(partial, samples)
    partial.replace(path)  # atomic: parallel runs never read half a file
    return samples
