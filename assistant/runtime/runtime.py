"""The runtime: one asyncio loop that owns all I/O, executes the machine's commands and feeds
their results back as events.

Audio flows microphone → pump → (wake word | VAD) in one worker thread that owns the ONNX sessions.
Each turn's server work is one task, so a timeout or a cancel is ``task.cancel()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from transitions import MachineError

from assistant.adapters.earcons import earcon_pcm
from assistant.config import Config
from assistant.core.audioformat import FRAME_BYTES, FRAME_SECONDS
from assistant.core.commands import (
    Announce,
    CancelTurn,
    Command,
    Earcon,
    EnterState,
    FinishTurn,
    Phase,
    PlayEarcon,
    Reply,
    ReportError,
    SetTimeout,
    StartListening,
    Transcribe,
)
from assistant.core.endpointer import Endpoint, Endpointer
from assistant.core.intents import Intents
from assistant.core.machine import Assistant, Timeouts
from assistant.core.ports import Chat, Microphone, Speaker, Synthesizer, Transcriber, Vad, WakeWord
from assistant.errors import AssistantError, AudioError
from assistant.mqtt.requests import (
    CancelRequested,
    ListenRequested,
    MuteRequested,
    RemoteRequest,
    SayRequested,
    WakeWordToggled,
)
from assistant.runtime.observer import Observer, TurnRecord
from assistant.runtime.turns import TurnWork

_LOGGER = logging.getLogger(__name__)

# After speaking, the room still echoes Lingling's voice: the wake word stays deaf this long.
DEAF_TAIL_FRAMES: Final = round(0.3 / FRAME_SECONDS)
# openWakeWord fires ~0.1 s after the wake word ends: the command may already have begun in the
# detection frame and the one before it, so listening starts with them.
WAKE_LOOKBACK_FRAMES: Final = 2
RECONNECT_SECONDS: Final = 0.5
MAX_RECONNECT_SECONDS: Final = 30.0
_BARGE_IN_PHASES: Final = frozenset({Phase.THINKING, Phase.SPEAKING})


class Runtime:
    """Runs the conversation until the microphone ends (a file) or the task is cancelled."""

    def __init__(
        self,
        config: Config,
        *,
        microphone: Microphone,
        speaker: Speaker,
        wake_word: WakeWord,
        vad: Vad,
        transcriber: Transcriber,
        chat: Chat,
        synthesizer: Synthesizer,
        observers: Sequence[Observer] = (),
        intents: Intents | None = None,
        audio_clock: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._mic = microphone
        self._speaker = speaker
        self._wake_word = wake_word
        self._vad = vad
        self._observers = list(observers)
        self._audio_clock = audio_clock
        self._now = monotonic
        self.machine = Assistant(Timeouts.from_config(config), barge_in=config.barge_in)
        # Where the wake word listens, and (for a file read with --fast) when audio is taken.
        self._wake_phases = {Phase.IDLE} | (_BARGE_IN_PHASES if config.barge_in else set())
        self._audio_phases = self._wake_phases | {Phase.LISTENING}
        self.work = TurnWork(
            config,
            transcriber=transcriber,
            chat=chat,
            synthesizer=synthesizer,
            speaker=speaker,
            observers=self._observers,
            feed=self._feed,
            intents=intents,
            monotonic=monotonic,
        )
        self._onnx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingling-onnx")
        self._earcons = {earcon: earcon_pcm(earcon, speaker.sample_rate_hz) for earcon in Earcon}
        preroll_frames = max(1, round(config.audio.preroll_seconds / FRAME_SECONDS))
        self._preroll: deque[tuple[int, bytes]] = deque(maxlen=preroll_frames)
        self._frame_index = 0
        self._deaf_until_frame = 0
        self._wake_frame: int | None = None
        self._endpointer: Endpointer | None = None
        self._capture: list[bytes] = []
        self._listening = False
        self._no_speech_seconds: float | None = None
        self._record = TurnRecord(turn=0)
        self._event: tuple[str, dict[str, Any]] = ("", {})
        self.muted = False
        self._wake_enabled = True
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._phase: Phase | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._audio_allowed = asyncio.Event()
        self._idle = asyncio.Event()
        self.started = asyncio.Event()
        """Set once the runtime is in its first state and takes requests."""
        self._started = 0.0

    # -- main loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self._started = self._now()
        self._execute(self.machine.start())
        self.started.set()
        try:
            await self._listen()
            # The input has ended: let a command that was being said end in silence.
            silence = bytes(FRAME_BYTES)
            while self.machine.phase in (Phase.WAKE, Phase.LISTENING):
                await self._on_frame(silence)
                await asyncio.sleep(FRAME_SECONDS if self._mic.realtime else 0)
            await self._idle.wait()
            while self._background:  # an error earcon may still be playing
                await asyncio.gather(*self._background)
        finally:
            self._cancel_task()
            self._set_timer(None, 0)
            self._onnx.shutdown(wait=False, cancel_futures=True)
            self.work.close()

    async def _listen(self) -> None:
        """Pump the microphone until it ends; when it fails, reopen it with backoff."""
        delay_seconds = RECONNECT_SECONDS
        while True:
            try:
                async for frame in self._mic.frames():
                    delay_seconds = RECONNECT_SECONDS
                    await self._on_frame(frame)
                    if not self._mic.realtime:
                        await self._audio_allowed.wait()  # a file is read as fast as turns allow
                return
            except AudioError as err:
                _LOGGER.warning("microphone failed (%s); reopening in %g s", err, delay_seconds)
                if self.machine.phase is not Phase.IDLE:
                    self._dispatch(
                        "failed", turn=self.machine.turn, code=err.code, message=str(err)
                    )
            await asyncio.sleep(delay_seconds)
            delay_seconds = min(delay_seconds * 2, MAX_RECONNECT_SECONDS)

    async def _on_frame(self, frame: bytes) -> None:
        index = self._frame_index
        self._frame_index += 1
        self._preroll.append((index, frame))
        phase = self.machine.phase
        loop = asyncio.get_running_loop()
        if self.muted:
            return  # no audio reaches the wake word or the VAD at all
        if phase in self._wake_phases:
            if index < self._deaf_until_frame or not self._wake_enabled:
                return
            detection = await loop.run_in_executor(self._onnx, self._wake_word.process, frame)
            if detection is not None and self.machine.phase in self._wake_phases:
                self._wake_frame = index
                self._dispatch(
                    "wake_detected", wake_word=detection.wake_word, score=detection.score
                )
        elif phase is Phase.LISTENING and self._listening:
            if self._endpointer is None:  # first frame of the turn: catch up on the pre-roll
                vad_config = self._config.vad
                if self._no_speech_seconds is not None:
                    update = {"no_speech_seconds": self._no_speech_seconds}
                    vad_config = vad_config.model_copy(update=update)
                self._endpointer = Endpointer(vad_config)
                self._vad.reset()
                if self._wake_frame is None:  # asked to listen: no wake word to skip
                    first = index
                else:
                    first = self._wake_frame - WAKE_LOOKBACK_FRAMES + 1
                backlog = [f for i, f in self._preroll if i >= first]
            else:
                backlog = [frame]
            for piece in backlog:
                probability = await loop.run_in_executor(self._onnx, self._vad.process, piece)
                self._capture.append(piece)
                if not self._endpoint(self._endpointer.process(probability)):
                    break

    def _endpoint(self, endpoint: Endpoint | None) -> bool:
        """Act on the endpointer's decision; False once listening is over."""
        turn = self.machine.turn
        if endpoint is Endpoint.SPEECH_STARTED:
            self._dispatch("speech_started", turn=turn)
        elif endpoint is Endpoint.SPEECH_ENDED:
            assert self._endpointer is not None
            self._record.mark("speech_end", self._now())
            pcm = b"".join(self._capture[self._endpointer.command_frames()])
            self._listening = False
            self._dispatch("speech_ended", turn=turn, pcm=pcm)
        elif endpoint is Endpoint.NO_SPEECH:
            self._listening = False
            self._dispatch("no_speech", turn=turn)
        elif endpoint is Endpoint.SPEECH_PAUSED:
            assert self._endpointer is not None
            self.work.speculate(b"".join(self._capture[self._endpointer.command_frames()]))
        elif endpoint is Endpoint.SPEECH_RESUMED:
            self.work.drop_speculation()
        return self._listening

    # -- events in, commands out -----------------------------------------------------------

    def _dispatch(self, event: str, **data: Any) -> None:
        try:
            commands = self.machine.handle(event, **data)
        except MachineError as err:
            _LOGGER.warning("ignored %s in %s: %s", event, self.machine.phase, err.value)
            return
        self._event = event, data
        self._execute(commands)

    def _feed(self, event: str, **data: Any) -> None:
        """Feed a result back as an event, after the commands being executed now."""
        asyncio.get_running_loop().call_soon(lambda: self._dispatch(event, **data))

    def _execute(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case EnterState(phase, turn):
                    self._enter(phase, turn)
                case SetTimeout(turn, seconds):
                    self._set_timer(seconds, turn)
                case PlayEarcon(turn, earcon):
                    self._play_earcon(turn, earcon)
                case StartListening(turn, no_speech_seconds):
                    self._record.mark("listening", self._now())
                    self._capture = []
                    self._endpointer = None
                    self._no_speech_seconds = no_speech_seconds
                    self._listening = True
                case Transcribe(turn, pcm):
                    self._start_task(self.work.transcribe(self._record, pcm))
                case Reply(turn, text):
                    self._record.transcript = text
                    self._start_task(self.work.reply(self._record, text))
                case Announce(turn, text, request_id):
                    self._start_task(self._announce(text, request_id))
                case CancelTurn():
                    self._cancel_task()
                    self._listening = False
                case ReportError(turn, code, message, phase):
                    _LOGGER.warning("turn %d failed in %s: %s: %s", turn, phase, code, message)
                    self._record.error = f"{code}: {message}"
                    for observer in self._observers:
                        observer.error_reported(turn, code, message, phase)
                case FinishTurn(turn, outcome):
                    self._record.outcome = outcome
                    self._record.mark("end", self._now())
                    _LOGGER.info("turn %d %s %s", turn, outcome, self._record.timings_ms())
                    for observer in self._observers:
                        observer.turn_finished(self._record)

    def _enter(self, phase: Phase, turn: int) -> None:
        previous, self._phase = self._phase, phase
        if turn != self._record.turn:  # a new turn begins
            event, data = self._event
            wake_word, score = data.get("wake_word"), data.get("score")
            if event != "wake_detected":  # a request or a follow-up: no wake word in the audio
                self._wake_frame = None
            self._record = TurnRecord(turn=turn, wake_word=wake_word, wake_score=score)
            self._record.mark("wake", self._now())
            if wake_word is not None:
                _LOGGER.info("wake word %s (%.2f)", wake_word, score)
            for observer in self._observers:
                observer.wake_detected(turn, wake_word, score)
        _LOGGER.info("%s→%s turn=%d", previous or "", phase, turn)
        if self._audio_clock:
            t_seconds = self._frame_index * FRAME_SECONDS
        else:
            t_seconds = self._now() - self._started
        for observer in self._observers:
            observer.state_entered(phase, turn, t_seconds)
        if phase is Phase.IDLE:
            self.work.drop_speculation()
            self._reset_wake_word()
            if previous is Phase.SPEAKING:
                self._deaf_until_frame = self._frame_index + DEAF_TAIL_FRAMES
            self._idle.set()
        else:
            self._idle.clear()
        if phase is Phase.THINKING and self._config.barge_in:
            self._reset_wake_word()  # listen for an interruption with fresh buffers
        if phase in self._audio_phases:
            self._audio_allowed.set()
        else:
            self._audio_allowed.clear()

    def _reset_wake_word(self) -> None:
        # In the worker thread that owns the model, after any frame it is still scoring.
        self._onnx.submit(self._wake_word.reset)

    def _set_timer(self, seconds: float | None, turn: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds is not None:
            self._timer = asyncio.get_running_loop().call_later(
                seconds, lambda: self._dispatch("timed_out", turn=turn)
            )

    # -- turn work ---------------------------------------------------------------------------

    def _start_task(self, work: Coroutine[Any, Any, None]) -> None:
        if self._task is not None:
            self._task.cancel()  # a stage's task has always ended before the next starts
        turn = self.machine.turn

        async def guarded() -> None:
            try:
                await work
            except AssistantError as err:
                self._feed("failed", turn=turn, code=err.code, message=err.message)
            except Exception as err:  # a bug must end the turn, never leave it stuck
                _LOGGER.exception("turn %d crashed", turn)
                self._feed("failed", turn=turn, code="internal", message=repr(err))

        self._task = asyncio.get_running_loop().create_task(guarded())

    def _cancel_task(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self.work.drop_speculation()
        self._speaker.stop()

    def _play_earcon(self, turn: int, earcon: Earcon) -> None:
        async def play() -> None:
            if self._config.audio.earcons:
                await self._speaker.play(self._earcons[earcon])
            if earcon is Earcon.AWAKE:
                self._feed("earcon_finished", turn=turn)

        task = asyncio.get_running_loop().create_task(play())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _announce(self, text: str, request_id: str | None) -> None:
        try:
            await self.work.announce(self._record, text)
        finally:
            for observer in self._observers:
                observer.announcement_finished(request_id)

    # -- requests from outside (MQTT) ----------------------------------------------------------

    def request(self, request: RemoteRequest) -> None:
        """Act on a request from outside; called on the loop's thread."""
        match request:
            case SayRequested(text, request_id):
                if self.machine.phase is not Phase.IDLE:
                    _LOGGER.warning("not saying %r: busy in %s", text, self.machine.phase)
                    for observer in self._observers:
                        observer.announcement_finished(request_id)
                    return
                self._dispatch("say_requested", text=text, request_id=request_id)
            case ListenRequested():
                self._dispatch("listen_requested")
            case CancelRequested():
                self._dispatch("cancel_requested")
            case MuteRequested(muted):
                self._set_muted(muted)
            case WakeWordToggled(enabled):
                _LOGGER.info("wake word %s", "on" if enabled else "off")
                self._wake_enabled = enabled

    def _set_muted(self, muted: bool) -> None:
        if muted != self.muted:
            _LOGGER.info("microphone %s", "muted" if muted else "unmuted")
        self.muted = muted
        if muted and self.machine.phase in (Phase.WAKE, Phase.LISTENING):
            self._dispatch("cancel_requested")  # what it was listening to can no longer come
        for observer in self._observers:
            observer.mute_changed(muted)
