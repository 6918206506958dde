"""Spoken commands whose words' places are known: espeak-ng and Piper voices, with or without a
hesitation in the middle, and real recordings.

A ``Command`` is the audio of a command and its ``Segment``s: pieces of text with the samples
they are spoken in. A ``Clip`` puts a wake word before it (``Scenario``) and says which words a
piece of its audio holds: the segments that lie wholly inside it, as a transcriber would hear
them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Final

from assistant.core.audioformat import SAMPLE_RATE_HZ
from tests.support.scenarios import (
    RECORDED_WORDS,
    Audio,
    Scenario,
    concat,
    locate,
    quiet_runs,
    recording,
    silence,
    speak,
    speak_piper,
    speak_ssml,
    stretch_pause,
    unpunctuated,
)

PIPER_VOICE: Final = "piper/en_US-joe-medium.onnx"
"""The real Piper voice (22,050 Hz), under the models folder."""
PIPER_QUIET_LEVEL: Final = 200
"""Piper's pauses are not digital silence: samples at most this loud count as quiet."""
MIN_GAP_SECONDS: Final = 0.03
LEAD_SECONDS: Final = 0.6
"""Silence before the wake word. openWakeWord's features want ~1.5 s of audio after a reset:
with 0.6 s every wake word used here fires (scores 0.62-1.0), as with 1.0 s."""
GAP_SECONDS: Final = 0.3
"""Between the wake word and the command."""
TRAIL_SECONDS: Final = 2.5
"""After the command: longer than any wait for the end (``max_pause_seconds`` 1.5 s + the VAD)."""
RECORDED_WAKE_SECONDS: Final = 1.3
"""wyoming_hey_jarvis.wav: "hey jarvis" ends at 1.16 s; a breath follows at 1.56 s."""


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    start: int
    stop: int
    """Samples of the command's audio it is spoken in: ``[start, stop)``."""


@dataclass(frozen=True)
class Command:
    kind: str
    """``espeak``, ``piper`` or ``recorded``."""
    voice: str
    audio: Audio
    segments: tuple[Segment, ...]
    wake: Audio
    pause_seconds: float = 0.0
    """The hesitation made in the middle (0: said in one go)."""

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments)

    @property
    def paused(self) -> bool:
        return len(self.segments) > 1

    @property
    def label(self) -> str:
        said = f"pause {self.pause_seconds:g} s" if self.pause_seconds else "in one go"
        text = self.text if len(self.text) <= 40 else self.text[:36] + " …"
        return f"{self.kind} {self.voice}: {text!r} ({said})"


def espeak_command(
    first: str, second: str = "", pause_seconds: float = 0.0, voice: str = "en-us", wpm: int = 150
) -> Command:
    """``first <break/> second`` as one espeak-ng utterance (SSML), or ``first`` in one go."""
    segments: tuple[Segment, ...]
    if not second:
        audio = speak(first, voice, wpm)
        segments = (Segment(first, 0, audio.size),)
    else:
        milliseconds = round(pause_seconds * 1000)
        ssml = f'<speak>{first} <break time="{milliseconds}ms"/> {second}</speak>'
        audio = speak_ssml(ssml, voice, wpm)
        segments = _split(audio, first, second, quiet_runs(audio, MIN_GAP_SECONDS))
    wake = speak("hey jarvis", voice, wpm)
    return Command("espeak", f"{voice} {wpm} wpm", audio, segments, wake, pause_seconds)


def piper_command(
    models: Path, first: str, second: str = "", pause_seconds: float = 0.0, scale: float = 1.0
) -> Command:
    """``first, second`` said by the real Piper voice, the comma's pause stretched to
    ``pause_seconds``; or ``first`` in one go."""
    model = models / PIPER_VOICE
    wake = speak_piper("Hey Jarvis", model, scale)
    voice = f"joe length {scale:g}"
    if not second:
        audio = speak_piper(first, model, scale)
        return Command("piper", voice, audio, (Segment(first, 0, audio.size),), wake)
    said = speak_piper(f"{first}, {second}", model, scale)
    comma = _longest(quiet_runs(said, MIN_GAP_SECONDS, PIPER_QUIET_LEVEL))
    audio = stretch_pause(said, comma, pause_seconds)
    gaps = quiet_runs(audio, MIN_GAP_SECONDS, PIPER_QUIET_LEVEL)
    return Command("piper", voice, audio, _split(audio, first, second, gaps), wake, pause_seconds)


def recorded_command(name: str, *, punctuated: bool = True) -> Command:
    """A recording of ``RECORDED_WORDS``, after a person saying the wake word; its words without
    punctuation unless ``punctuated``."""
    audio = recording(name)
    segments = tuple(
        Segment(
            text if punctuated else unpunctuated(text),
            round(start * SAMPLE_RATE_HZ),
            round(stop * SAMPLE_RATE_HZ),
        )
        for text, start, stop in RECORDED_WORDS[name]
    )
    wake = recording("wyoming_hey_jarvis")[: round(RECORDED_WAKE_SECONDS * SAMPLE_RATE_HZ)]
    pause = max(
        ((b.start - a.stop) / SAMPLE_RATE_HZ for a, b in itertools.pairwise(segments)), default=0.0
    )
    voice = name.removeprefix("speechcommands_") + ("" if punctuated else ", no punctuation")
    return Command("recorded", voice, audio, segments, wake, pause)


def _longest(runs: list[slice]) -> slice:
    if not runs:
        raise ValueError("no pause found in the speech")
    return max(runs, key=lambda run: run.stop - run.start)


def _split(audio: Audio, first: str, second: str, gaps: list[slice]) -> tuple[Segment, ...]:
    """Two segments on either side of the longest quiet run (the hesitation)."""
    pause = _longest(gaps)
    if not 0.1 * audio.size < pause.start < 0.9 * audio.size:
        raise ValueError(f"the pause between {first!r} and {second!r} is not in the middle")
    return (Segment(first, 0, pause.start), Segment(second, pause.stop, audio.size))


class Clip:
    """A command after its wake word, with silence around, and what any piece of it says."""

    def __init__(self, command: Command) -> None:
        self.command = command
        self.scene = Scenario.build(
            command.audio,
            wake=command.wake,
            lead_seconds=LEAD_SECONDS,
            pause_seconds=GAP_SECONDS,
            trail_seconds=TRAIL_SECONDS,
        )
        offset = self.scene.command_start
        self.segments = tuple(
            Segment(s.text, offset + s.start, offset + s.stop) for s in command.segments
        )
        # The runtime goes on with silence after the clip: the search covers it too.
        self._haystack = concat(self.scene.samples, silence(5.0)).astype("<i2").tobytes()

    @property
    def true_end(self) -> int:
        """One past the command's last sample of speech (in the clip)."""
        return self.segments[-1].stop

    @cached_property
    def frames(self) -> list[bytes]:
        return self.scene.frames()

    def where(self, pcm: bytes) -> slice:
        """The samples of the clip that ``pcm`` is (a ValueError when it is not in it)."""
        return locate(pcm, self._haystack)

    def words(self, pcm: bytes) -> str:
        """What ``pcm`` says: the segments wholly inside it."""
        span = self.where(pcm)
        inside = [s.text for s in self.segments if span.start <= s.start and s.stop <= span.stop]
        return " ".join(inside)
