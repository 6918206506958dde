"""The stop word: "stop" (or "cancel", "enough", "quiet") said alone ends a ring, or speech.

While Lingling rings (and, with barge-in, while it thinks or speaks) the VAD keeps running
without the wake word. ``Bursts`` cuts its frames into short bursts of speech; a burst short
enough to be a word or two is transcribed (the machine's ``TranscribeBurst``), and
``is_stop_phrase`` decides from the words. The ring is a tone, not speech; Lingling's own
sentences run longer than a burst may, and a burst is taken only when it holds nothing but a stop
word and a few polite words around it ("stop it", "ok, that's enough", "be quiet please"), so its
own voice rarely stops it (BENCHMARKS.md measures both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from transitions import EventData

from assistant.core.audioformat import FRAME_SECONDS
from assistant.core.commands import Command, Phase, TranscribeBurst
from assistant.core.events import BurstHeard, BurstTranscribed
from assistant.core.table import INTERRUPTIBLE

STOP_WORDS: Final = ("stop", "cancel", "enough", "quiet")
"""The default stop words (``stop_words`` in the config)."""

_AROUND: Final = frozenset(
    {"please", "ok", "okay", "oh", "now", "it", "that", "that's", "thats", "this", "be", "just",
     "all", "right", "alright", "hey", "lingling", "the", "timer", "alarm", "thank", "thanks",
     "you", "already", "will", "you'll"}
)  # fmt: skip
"""Words that may come with a stop word without making it a different request."""
_MAX_WORDS: Final = 5
_WORD: Final = re.compile(r"[a-z']+")


def is_stop_phrase(text: str, stop_words: tuple[str, ...] = STOP_WORDS) -> bool:
    """Whether ``text`` is a stop word said alone (with a few polite words around it)."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    if not words or len(words) > _MAX_WORDS:
        return False
    stops = [word for word in words if word in stop_words]
    return bool(stops) and all(word in stop_words or word in _AROUND for word in words)


@dataclass(frozen=True, slots=True)
class BurstPolicy:
    threshold: float = 0.5
    """VAD probability above which a frame is speech."""
    min_seconds: float = 0.16
    """Shorter speech is a click or a breath."""
    max_seconds: float = 1.6
    """Longer speech is a sentence, not a stop word."""
    end_seconds: float = 0.24
    """Silence that ends a burst."""


@dataclass(slots=True)
class Bursts:
    """Cuts VAD-scored frames into short bursts of speech; pure, one frame at a time."""

    policy: BurstPolicy = field(default_factory=BurstPolicy)
    _frames: list[bytes] = field(default_factory=list)
    _speech: int = 0
    _silence: int = 0
    _lead: bytes | None = None

    def reset(self) -> None:
        self._frames.clear()
        self._speech = self._silence = 0
        self._lead = None

    def process(self, probability: float, frame: bytes) -> bytes | None:
        """Take one frame and its speech probability; return a burst's audio when one ends
        (with a frame before it and the silence after it), else None."""
        policy = self.policy
        if probability >= policy.threshold:
            if not self._speech and self._lead is not None:
                self._frames.append(self._lead)  # the word's onset may lie in the frame before
            self._speech += 1
            self._silence = 0
            if self._speech * FRAME_SECONDS <= policy.max_seconds + 1e-9:
                self._frames.append(frame)
            else:
                self._frames.clear()  # a sentence, not a stop word: keep nothing of it
            return None
        self._lead = frame
        if not self._speech:
            return None
        self._frames.append(frame)
        self._silence += 1
        if self._silence * FRAME_SECONDS < policy.end_seconds - 1e-9:
            return None
        short = (
            policy.min_seconds - 1e-9 <= self._speech * FRAME_SECONDS <= policy.max_seconds + 1e-9
        )
        burst = b"".join(self._frames)
        self._frames.clear()
        self._speech = self._silence = 0
        return burst if short else None


# -- in the machine ------------------------------------------------------------------------------


class StopWordListening:
    """The machine's stop word (a part of ``Assistant``; its transitions are in the table)."""

    phase: Phase
    barge_in: bool
    muted: bool
    stop_words: tuple[str, ...]
    _commands: list[Command]

    @property
    def stop_word_listens(self) -> bool:
        """Whether the VAD should listen for the stop word now."""
        if self.muted or not self.stop_words:
            return False
        return self.phase is Phase.RINGING or (self.barge_in and self.phase in INTERRUPTIBLE)

    def _stop_word_listens(self, data: EventData) -> bool:
        return self.stop_word_listens

    def _transcribe_burst(self, data: EventData) -> None:
        event = data.kwargs["event"]
        assert isinstance(event, BurstHeard)
        self._commands.append(TranscribeBurst(event.pcm))

    def _said_stop(self, data: EventData) -> bool:
        event = data.kwargs["event"]
        assert isinstance(event, BurstTranscribed)
        return is_stop_phrase(event.text, self.stop_words)
