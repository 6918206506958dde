"""The audio after the microphone: the pre-roll, the wake word and the VAD, and a command's capture.

The wake word and the VAD run in one worker thread that owns their ONNX sessions, one frame at a
time and in order. What they find goes to ``emit`` as events (``WakeDetected``, ``SpeechEnded``…);
where each frame goes is the state machine's decision (``wake_word_listens``) and the runtime's
commands (``start``, ``stop``, ``deafen``). At a pause in a command, an end-of-turn model (when
given) scores the audio so far, and the words of the early transcript come through
``weigh_words``: with a ``TurnPolicy`` the endpointer ends the command on that evidence.

The listener keeps no conversation state of its own: only audio, its position in it, and the
handles of what it was told to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SECONDS
from assistant.core.endpointer import Endpoint, Endpointer
from assistant.core.events import (
    BurstHeard,
    DeafTailEnded,
    Event,
    NoSpeechHeard,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    WakeDetected,
)
from assistant.core.ports import TurnDetector, Vad, WakeWord
from assistant.core.stop_word import BurstPolicy, Bursts
from assistant.core.turn_end import TurnPolicy, Words
from assistant.errors import ModelError
from assistant.runtime.arbiter import WAKE_LEVEL_FRAMES, wake_level_dbfs

_LOGGER = logging.getLogger(__name__)

WAKE_LOOKBACK_FRAMES: Final = 2
"""openWakeWord fires ~0.1 s after the wake word ends: the command may already have begun in the
detection frame and the one before it, so listening starts with them."""


@dataclass(slots=True)
class _Command:
    """The command being listened to: where it ends, and its audio."""

    turn: int
    endpointer: Endpointer
    first_frame: int | None
    """Where the command may begin in the pre-roll; None: at the next frame."""
    frames: list[bytes] = field(default_factory=list)
    caught_up: bool = False
    """The pre-roll since ``first_frame`` has been given to the VAD."""


class Listener:
    def __init__(
        self,
        vad_config: VadConfig,
        *,
        wake_word: WakeWord,
        vad: Vad,
        preroll_seconds: float,
        wake_word_listens: Callable[[], bool],
        emit: Callable[[Event], None],
        stop_word_listens: Callable[[], bool] = lambda: False,
        policy: TurnPolicy | None = None,
        turn_detector: TurnDetector | None = None,
    ) -> None:
        self._policy = policy
        self._turn_detector = turn_detector if policy is not None else None
        self._vad_config = vad_config
        self._wake_word = wake_word
        self._vad = vad
        self._wake_word_listens = wake_word_listens
        self._emit = emit
        self._onnx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingling-onnx")
        preroll_frames = max(1, round(preroll_seconds / FRAME_SECONDS))
        self._preroll: deque[tuple[int, bytes]] = deque(maxlen=preroll_frames)
        self.frame_index = 0
        """Frames heard so far: the audio clock (80 ms a frame)."""
        self._wake_frame: int | None = None
        self._deaf_frames = 0
        self._command: _Command | None = None
        self._stop_word_listens = stop_word_listens
        self._bursts = Bursts(BurstPolicy(threshold=vad_config.threshold))
        self._spotting = False
        """The VAD listens for the stop word (and holds that audio's state)."""

    async def drain(self) -> None:
        """Wait for the work queued in the worker thread (a wake word reset) to be done."""
        await asyncio.get_running_loop().run_in_executor(self._onnx, lambda: None)

    def close(self) -> None:
        self._onnx.shutdown(wait=False, cancel_futures=True)

    # -- what the runtime's commands ask ----------------------------------------------------

    def start(self, turn: int, *, after_wake_word: bool, no_speech_seconds: float | None) -> None:
        """Listen for a command from the audio kept since the wake word (or from now)."""
        config = self._vad_config
        if no_speech_seconds is not None:
            config = config.model_copy(update={"no_speech_seconds": no_speech_seconds})
        first = None
        if after_wake_word and self._wake_frame is not None:
            first = self._wake_frame - WAKE_LOOKBACK_FRAMES + 1
        self._command = _Command(turn, Endpointer(config, self._policy), first)

    def stop(self) -> None:
        self._command = None

    @property
    def pause_audio(self) -> float | None:
        """The end-of-turn model's probability for the pause in progress (None: no pause, or
        not scored yet)."""
        return self._command.endpointer.audio if self._command is not None else None

    def weigh_words(self, turn: int, words: Words) -> None:
        """What the early transcript's words say about the pause in progress."""
        command = self._command
        if command is not None and command.turn == turn:
            endpoint = command.endpointer.weigh(words=words)
            if endpoint is not None:
                self._endpoint(command, endpoint)

    def deafen(self, seconds: float) -> None:
        """Count ``seconds`` of audio, then emit ``DeafTailEnded``."""
        self._deaf_frames = max(1, round(seconds / FRAME_SECONDS))

    @property
    def wake_word(self) -> WakeWord:
        return self._wake_word

    def replace_wake_word(self, wake_word: WakeWord) -> None:
        """Listen with ``wake_word`` from the next frame on."""
        self._wake_word = wake_word

    def reset_wake_word(self) -> None:
        # In the worker thread that owns the model, after any frame it is still scoring.
        self._onnx.submit(self._wake_word.reset)

    # -- audio in -----------------------------------------------------------------------------

    async def process(self, frame: bytes) -> None:
        index = self.frame_index
        self.frame_index += 1
        self._preroll.append((index, frame))
        deaf_ends = False
        if self._deaf_frames:
            self._deaf_frames -= 1
            deaf_ends = not self._deaf_frames  # this frame is the last deaf one
        loop = asyncio.get_running_loop()
        if self._command is not None:
            await self._listen(self._command, index, frame)
        elif self._wake_word_listens():
            detection = await loop.run_in_executor(self._onnx, self._wake_word.process, frame)
            if detection is not None and self._wake_word_listens():
                self._wake_frame = index
                heard = [f for i, f in self._preroll if i > index - WAKE_LEVEL_FRAMES]
                level = wake_level_dbfs(heard)
                self._emit(WakeDetected(detection.wake_word, detection.score, level))
        if self._command is None and self._stop_word_listens():
            await self._spot(frame)
        else:
            self._spotting = False
        if deaf_ends:
            self._emit(DeafTailEnded())

    async def _spot(self, frame: bytes) -> None:
        """Cut the audio into short bursts of speech: one may be the stop word."""
        if not self._spotting:
            self._spotting = True
            self._vad.reset()
            self._bursts.reset()
        loop = asyncio.get_running_loop()
        probability = await loop.run_in_executor(self._onnx, self._vad.process, frame)
        burst = self._bursts.process(probability, frame)
        if burst is not None and self._command is None and self._stop_word_listens():
            self._emit(BurstHeard(burst))

    async def _listen(self, command: _Command, index: int, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        if not command.caught_up:  # its first frame: catch up on the pre-roll
            command.caught_up = True
            self._vad.reset()
            first = index if command.first_frame is None else command.first_frame
            backlog = [f for i, f in self._preroll if i >= first]
        else:
            backlog = [frame]
        for piece in backlog:
            probability = await loop.run_in_executor(self._onnx, self._vad.process, piece)
            if self._command is not command:
                return  # stopped while the VAD was scoring
            command.frames.append(piece)
            endpoint = command.endpointer.process(probability)
            if endpoint is not None:
                self._endpoint(command, endpoint)
            # The end-of-turn model hears the pause once the upload's margin is: on less
            # silence it is less sure of an end (measured: bench/end_of_turn.py).
            pause = endpoint in (Endpoint.SPEECH_PAUSED, Endpoint.MARGIN_HEARD)
            if pause and command.endpointer.margin_heard and self._turn_detector is not None:
                await self._score(command)
            if self._command is not command:
                return

    async def _score(self, command: _Command) -> None:
        """Ask the end-of-turn model about the command so far (its audio since it began)."""
        assert self._turn_detector is not None
        loop = asyncio.get_running_loop()
        start = command.endpointer.command_frames().start
        pcm = b"".join(command.frames[start:])
        try:
            probability = await loop.run_in_executor(
                self._onnx, self._turn_detector.probability, pcm
            )
        except ModelError as err:  # the words and the hangover decide without it
            _LOGGER.warning("end-of-turn model failed at a pause: %s", err)
            return
        _LOGGER.debug("end of turn at a pause: %.3f", probability)
        if self._command is command:
            endpoint = command.endpointer.weigh(audio=probability)
            if endpoint is not None:
                self._endpoint(command, endpoint)

    def _endpoint(self, command: _Command, endpoint: Endpoint) -> None:
        turn = command.turn
        if endpoint is Endpoint.SPEECH_STARTED:
            self._emit(SpeechStarted(turn))
        elif endpoint in (Endpoint.SPEECH_PAUSED, Endpoint.MARGIN_HEARD):
            endpointer = command.endpointer
            pcm = b"".join(command.frames[endpointer.command_frames()])
            self._emit(SpeechPaused(turn, pcm, endpointer.margin_heard))
        elif endpoint is Endpoint.SPEECH_RESUMED:
            self._emit(SpeechResumed(turn))
        elif endpoint is Endpoint.SPEECH_ENDED:
            self._command = None
            pcm = b"".join(command.frames[command.endpointer.command_frames()])
            self._emit(SpeechEnded(turn, pcm, command.endpointer.reason))
        elif endpoint is Endpoint.NO_SPEECH:
            self._command = None
            self._emit(NoSpeechHeard(turn))
