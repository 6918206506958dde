"""The end of a command, decided from per-frame speech probabilities and, at pauses, evidence.

``Endpointer`` turns the stream of probabilities into "speech started", "speech ended" and "no
speech", and says which frames to upload. It does no I/O and reads no clock: one ``process`` call
is one 80 ms frame. With a ``TurnPolicy`` the end comes from ``turn_end.decide`` on the evidence
given to ``weigh`` at each pause (the audio model's probability, the words); without one, from a
fixed silence.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Final

from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SECONDS
from assistant.core.turn_end import EndReason, TurnPolicy, Words, decide

HYSTERESIS: Final = 0.15
"""Once a frame is speech, the following frames stay speech until the probability drops this far
below the threshold."""
MIN_SPECULATION_FRAMES: Final = 5
"""Speech (0.4 s) needed before a pause is announced: a blip, such as the tail of the wake word
before a pause, is not worth a request that the one-at-a-time whisper server must finish."""


class Endpoint(StrEnum):
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    """The command is over (``Endpointer.reason`` says why)."""
    NO_SPEECH = "no_speech"
    """No speech for ``no_speech_seconds``: give up."""
    SPEECH_PAUSED = "speech_paused"
    """A short silence after speech: perhaps the end (weigh the evidence, transcribe early)."""
    MARGIN_HEARD = "margin_heard"
    """The pause, announced before the upload's trailing margin was heard, now holds it: the
    audio to upload is now the same as at the end (transcribe it again)."""
    SPEECH_RESUMED = "speech_resumed"
    """Speech again after SPEECH_PAUSED: it was only a pause."""


def _frames(seconds: float, minimum: int = 0) -> int:
    # round() first: 0.24 / 0.08 is 2.9999999999999996, which must be 3 frames, not 2 or 4.
    return max(minimum, math.ceil(round(seconds / FRAME_SECONDS, 6)))


class Endpointer:
    """Finds one command in a stream of per-frame speech probabilities (HA's
    VoiceCommandSegmenter, in frames rather than seconds).

    Frame indices count the frames given to ``process``, from 0. A frame is speech at
    ``threshold`` or above; once in speech it stays speech until below ``threshold - 0.15``.
    Speech starts after ``min_speech_seconds`` of speech frames in a row (the first of them is
    the start) and ends after ``silence_seconds`` of silence (with a policy: when ``decide``
    says so) or ``max_command_seconds`` after the start. Without a start within
    ``no_speech_seconds`` it gives up. After the end it ignores everything.
    """

    def __init__(self, config: VadConfig, policy: TurnPolicy | None = None) -> None:
        self._policy = policy
        self._on = config.threshold
        self._off = config.threshold - HYSTERESIS
        self._min_speech = _frames(config.min_speech_seconds, minimum=1)
        self._silence = _frames(config.silence_seconds, minimum=1)
        self._no_speech = _frames(config.no_speech_seconds, minimum=1)
        self._max_command = _frames(config.max_command_seconds, minimum=1)
        self._margin = _frames(config.margin_seconds)
        # A pause is announced only when it comes before the end. Without a policy, only once
        # the upload's trailing margin is complete (the audio to upload is then the same as at
        # the end); with one it may come sooner, and MARGIN_HEARD follows once the margin is.
        pause_seconds = policy.pause_seconds if policy is not None else config.speculate_seconds
        speculate = _frames(pause_seconds)
        if policy is None and speculate:
            speculate = max(speculate, self._margin)
        self._speculate = speculate
        self._paused = False
        self._audio: float | None = None  # the evidence gathered at this pause
        self._words: Words | None = None
        self.reason: EndReason | None = None
        """Why the command ended (once SPEECH_ENDED was returned)."""
        self._frames = 0
        self._speech = False  # the last frame was speech (hysteresis state)
        self._run_start = 0  # first frame of the current run of speech frames
        self._start: int | None = None
        self._last_speech = -1
        self._silent = 0  # silent frames in a row since the command started
        self._done = False

    @property
    def frames(self) -> int:
        """Frames processed so far (the count stops at the end)."""
        return self._frames

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def audio(self) -> float | None:
        """The end-of-turn probability given for the pause in progress (None: not yet)."""
        return self._audio

    @property
    def margin_heard(self) -> bool:
        """A pause is in progress and its upload holds the whole trailing margin."""
        return self._paused and not self._done and self._silent >= self._margin

    @property
    def done(self) -> bool:
        """SPEECH_ENDED or NO_SPEECH was returned."""
        return self._done

    def process(self, probability: float) -> Endpoint | None:
        """Take the next frame's speech probability; return what changed, if anything."""
        if self._done:
            return None
        index = self._frames
        self._frames += 1
        was_speech = self._speech
        self._speech = probability >= (self._off if was_speech else self._on)
        if self._speech:
            if not was_speech:
                self._run_start = index
            self._last_speech = index
        if self._start is None:
            if self._speech and index - self._run_start + 1 >= self._min_speech:
                self._start = self._run_start
                return Endpoint.SPEECH_STARTED
            if not self._speech and self._frames >= self._no_speech:
                self._done = True
                return Endpoint.NO_SPEECH
            return None
        self._silent = 0 if self._speech else self._silent + 1
        if self._frames - self._start >= self._max_command:
            return self._end(EndReason.LENGTH)
        if self._policy is None:
            if self._silent >= self._silence:
                return self._end(EndReason.SILENCE)
        elif self._silent and (reason := self._decide()) is not None:
            return self._end(reason)
        if self._speech and self._paused:
            self._paused = False
            self._audio = self._words = None
            return Endpoint.SPEECH_RESUMED
        long_enough = self._last_speech - self._start + 1 >= MIN_SPECULATION_FRAMES
        if 0 < self._speculate < self._silence and self._silent == self._speculate and long_enough:
            self._paused = True
            return Endpoint.SPEECH_PAUSED
        if self._paused and self._speculate < self._silent == self._margin:
            return Endpoint.MARGIN_HEARD
        return None

    def weigh(self, *, audio: float | None = None, words: Words | None = None) -> Endpoint | None:
        """Evidence about the pause in progress; SPEECH_ENDED when it settles the end now."""
        if self._done or not self._paused or self._policy is None:
            return None
        if audio is not None:
            self._audio = audio
        if words is not None:
            self._words = words
        reason = self._decide()
        return self._end(reason) if reason is not None else None

    def _decide(self) -> EndReason | None:
        assert self._policy is not None
        silence_seconds = round(self._silent * FRAME_SECONDS, 6)
        return decide(silence_seconds, self._audio, self._words, self._policy)

    def _end(self, reason: EndReason) -> Endpoint:
        self._done = True
        self.reason = reason
        return Endpoint.SPEECH_ENDED

    def command_frames(self) -> slice:
        """Frames to upload: from the start minus the margin to the last speech frame plus the
        margin, clipped to ``[0, frames)``; empty when speech never started."""
        if self._start is None:
            return slice(0, 0)
        return slice(
            max(0, self._start - self._margin),
            min(self._frames, self._last_speech + 1 + self._margin),
        )
