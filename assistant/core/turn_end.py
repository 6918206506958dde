"""Has the speaker finished? The end of a turn decided from evidence, not from a fixed silence.

At a short pause the runtime gathers two kinds of evidence:

- the audio: an end-of-turn model's probability that the turn is complete (Smart Turn);
- the words: the speculative transcript, weighed by ``weigh_words``. A transcript that is a whole
  local intent is a complete request; one that ends where a request cannot end ("set a timer
  for", "turn on the", "and", "um") is unfinished, whatever the audio says.

``decide`` turns (silence so far, audio probability, words) into the reason to end now, or None
to keep listening: complete and not contradicted → now; neutral words and a confident audio → now;
unfinished words, or the audio sure the speaker goes on (and the words not complete) → up to
``cap_seconds``; otherwise (no words yet among them) up to ``silence_seconds`` (the fixed
hangover, as without evidence).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from assistant.config import VadConfig


class Words(StrEnum):
    COMPLETE = "complete"
    """A whole request: it matches a local intent."""
    UNFINISHED = "unfinished"
    """It ends where a request cannot end."""
    NEUTRAL = "neutral"
    """The words say neither."""
    EMPTY = "empty"
    """No words yet (a click or a breath made the pause): the audio alone does not end the turn
    on them, only the hangover does."""


class EndReason(StrEnum):
    """Why the turn was taken to be over."""

    WORDS = "words"
    """A complete request, at a pause."""
    AUDIO = "audio"
    """The end-of-turn model was confident, and the words did not object, at a pause."""
    SILENCE = "silence"
    """The fixed hangover ran out (``silence_seconds``)."""
    CAP = "cap"
    """Unfinished words (or audio sure the speaker goes on) waited as long as allowed
    (``cap_seconds``)."""
    LENGTH = "length"
    """The command reached ``max_command_seconds``."""


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    pause_seconds: float = 0.24
    """Silence at which the evidence is weighed (and the reply prepared)."""
    silence_seconds: float = 0.7
    """Silence that ends the turn when the evidence is not conclusive."""
    cap_seconds: float = 1.5
    """Silence that ends the turn even when the words say it is unfinished."""
    complete_above: float = 0.5
    """Audio probability that makes neutral words complete."""
    unfinished_below: float = 0.1
    """Audio probability so low that the speaker is taken to go on: unless the words are
    complete, the pause may last up to ``cap_seconds``, as with unfinished words."""
    doubt_below: float = 0.05
    """Audio probability so low that even complete words wait for the hangover, when it is known
    before the words (complete words do not wait for it)."""

    @classmethod
    def from_config(cls, config: VadConfig) -> TurnPolicy:
        """The policy of ``vad.end_of_turn: smart`` with the section's settings."""
        return cls(
            pause_seconds=config.speculate_seconds,
            silence_seconds=config.silence_seconds,
            cap_seconds=max(config.max_pause_seconds, config.silence_seconds),
            complete_above=config.turn_threshold,
            unfinished_below=config.turn_unfinished_below,
            doubt_below=config.turn_doubt_below,
        )


def decide(
    silence_seconds: float, audio: float | None, words: Words | None, policy: TurnPolicy
) -> EndReason | None:
    """The reason to end the turn now, or None to keep listening.

    ``audio`` is the end-of-turn probability at this pause, ``words`` the transcript's evidence
    (each None while not known yet, or without an end-of-turn model). Complete words end the
    turn without waiting for the audio's verdict: only a verdict already known can veto them.
    Silence grows in audio time, one frame at a time.
    """
    if silence_seconds >= policy.cap_seconds:
        return EndReason.CAP
    if words is Words.UNFINISHED:
        return None
    goes_on = audio is not None and audio < policy.unfinished_below
    if goes_on and words is not Words.COMPLETE:
        return None  # the audio is sure the speaker goes on: wait up to the cap
    if silence_seconds >= policy.silence_seconds:
        return EndReason.SILENCE
    if silence_seconds < policy.pause_seconds or words is None:
        return None
    if words is Words.COMPLETE and (audio is None or audio >= policy.doubt_below):
        return EndReason.WORDS
    if words is Words.NEUTRAL and audio is not None and audio >= policy.complete_above:
        return EndReason.AUDIO
    return None


UNFINISHED_ENDINGS: Final = frozenset(
    {
        # articles and possessives: "turn on the", "set my"
        "a", "an", "the", "my", "your", "our", "their",
        # prepositions that need what follows: "set a timer for", "what's the weather in"
        "for", "to", "of", "at", "with", "from", "by", "into", "about", "than",
        # conjunctions: "turn on the light and"
        "and", "or", "but", "because", "if", "so",
        # hesitations
        "um", "umm", "uh", "uhm", "er", "erm", "hmm", "mm",
    }
)  # fmt: skip
"""Words a request cannot end on. Not "on", "off", "in", "up": "turn it on" is complete."""

_TRAILING_PUNCTUATION: Final = re.compile(r"[\s.!?\"'»”)]+$")
_WORD: Final = re.compile(r"[\w']+")


def weigh_words(text: str, is_complete: Callable[[str], bool]) -> Words:
    """What a transcript says about the end of the turn; ``is_complete`` tells a whole request
    (the local intent matcher)."""
    stripped = text.strip()
    if not _WORD.search(stripped):
        return Words.EMPTY
    if stripped.endswith((",", "-", "…", "...", ";", ":")):
        return Words.UNFINISHED  # whisper marks a sentence cut short this way
    words = _WORD.findall(_TRAILING_PUNCTUATION.sub("", stripped).lower())
    if words and words[-1] in UNFINISHED_ENDINGS:
        return Words.UNFINISHED
    if is_complete(stripped):
        return Words.COMPLETE
    return Words.NEUTRAL
