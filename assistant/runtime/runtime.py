"""The runtime: one asyncio loop that owns all I/O, executes the machine's commands and feeds
their results back as events.

Audio flows microphone → ``Listener`` (pre-roll, wake word, VAD) → events. Each turn's server
work is one task, so a timeout or a cancel is ``task.cancel()``. The runtime keeps no
conversation state: the machine decides, the runtime holds the I/O handles (the turn's task,
the timer, the record it reports) and tells the observers, all from one place: ``_execute``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

from transitions import MachineError

from assistant.adapters.earcons import earcon_pcm
from assistant.config import Config
from assistant.core.audioformat import FRAME_BYTES, FRAME_SECONDS
from assistant.core.commands import (
    Announce,
    CancelTurn,
    ClaimWake,
    Command,
    DropSpeculation,
    Earcon,
    EnterState,
    FinishTurn,
    Phase,
    PlayEarcon,
    PrepareReply,
    Reply,
    ReportIntent,
    ResetWakeWord,
    Ring,
    SetRingTimeout,
    SetTimeout,
    Speculate,
    StartDeafTail,
    StartListening,
    StartTurn,
    StopRing,
    Transcribe,
    TranscribeBurst,
    WeighWords,
)
from assistant.core.events import (
    EarconFinished,
    Event,
    Failed,
    Request,
    RingTimedOut,
    TimedOut,
    VolumeRequested,
    WakeWordChosen,
)
from assistant.core.intents import Intents
from assistant.core.machine import Assistant
from assistant.core.ports import (
    Chat,
    ClaimChannel,
    Microphone,
    Speaker,
    Synthesizer,
    Transcriber,
    TurnDetector,
    Vad,
    WakeWord,
)
from assistant.core.timeouts import Timeouts
from assistant.core.timers import TIMER_INTENTS
from assistant.core.turn_end import TurnPolicy
from assistant.errors import AudioError
from assistant.runtime.arbiter import Arbiter
from assistant.runtime.listener import Listener
from assistant.runtime.observer import Observer, Stopwatch
from assistant.runtime.reporter import Reporter
from assistant.runtime.stop_word import BurstChecker
from assistant.runtime.timers import Ringer, TimerService
from assistant.runtime.turn_task import TurnTask
from assistant.runtime.turns import TurnWork
from assistant.runtime.volume import VOLUME_INTENTS, Volume, VolumeSpeaker
from assistant.runtime.wake_words import WakeWordChoice

_LOGGER = logging.getLogger(__name__)

RECONNECT_SECONDS: Final = 0.5
MAX_RECONNECT_SECONDS: Final = 30.0


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
        turn_detector: TurnDetector | None = None,
        timers_file: Path | None = None,
        volume_file: Path | None = None,
        wake_words: WakeWordChoice | None = None,
        audio_clock: bool = False,
        monotonic: Callable[[], float] | None = None,
        claims: ClaimChannel | None = None,
    ) -> None:
        self._config = config
        self._mic = microphone
        self.volume = Volume(
            state_file=volume_file, tell=lambda level: self.reporter.tell("volume_changed", level)
        )
        speaker = VolumeSpeaker(speaker, self.volume)
        self._speaker = speaker
        self.reporter = Reporter(observers, self._now)
        self._audio_clock = audio_clock
        self._clock = monotonic
        smart = config.vad.end_of_turn == "smart"
        policy = TurnPolicy.from_config(config.vad) if smart else None
        self.machine = Assistant(
            Timeouts.from_config(config),
            barge_in=config.barge_in,
            prepare_replies=smart,
            stop_words=tuple(config.stop_words),
            arbitration=claims is not None and config.mqtt.arbitration,
        )
        self.arbiter = Arbiter(
            claims,
            config.mqtt.arbitration_seconds,
            feed=self._feed,
            tell=self.reporter.tell,
            now=self._now,
        )
        """Claims wake words from the other satellites; ``arbiter.heard`` takes theirs."""
        self.listener = Listener(
            config.vad,
            wake_word=wake_word,
            vad=vad,
            preroll_seconds=config.audio.preroll_seconds,
            wake_word_listens=lambda: self.machine.wake_word_listens,
            stop_word_listens=lambda: self.machine.stop_word_listens,
            emit=self._dispatch,
            policy=policy,
            turn_detector=turn_detector,
        )
        self.work = TurnWork(
            config,
            transcriber=transcriber,
            chat=chat,
            synthesizer=synthesizer,
            speaker=speaker,
            feed=self._feed,
            intents=intents,
            timer_reply=lambda intent, slots: self.timers.preview(intent, slots),
        )
        self.bursts = BurstChecker(transcriber, self._feed)
        self.timers = TimerService(
            self._wall_now,
            state_file=timers_file,
            feed=self._feed,
            tell=lambda listed, change: self.reporter.tell("timers_changed", listed, change),
        )
        self.timers.load()
        self._earcons = {earcon: earcon_pcm(earcon, speaker.sample_rate_hz) for earcon in Earcon}
        self._ringer = Ringer(speaker, self._earcons[Earcon.RING], self.work.speech)
        self.wake_words = wake_words
        self._started_wall = time.time()
        self._task = TurnTask(self._feed)
        self._background: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._audio_allowed = asyncio.Event()
        self._idle = asyncio.Event()
        self.started = asyncio.Event()
        """Set once the runtime is in its first state and takes requests."""
        self._started = 0.0

    def _now(self) -> float:
        """The runtime's clock: the loop's (so tests may run it on a virtual one)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _wall_now(self) -> float:
        """The timers' clock: wall seconds (they outlive the process), or with a file for a
        microphone, the file's own time since the start."""
        if self._audio_clock:
            return self._started_wall + self.listener.frame_index * FRAME_SECONDS
        return time.time()

    # -- main loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self._started = self._now()
        self._execute(self.machine.start())
        self.started.set()
        self.timers.publish()
        self.reporter.tell("volume_changed", self.volume.level)
        if self.wake_words is not None:
            self.reporter.tell("wake_word_changed", self.wake_words.selected)
        self.timers.tick()  # timers that finished while Lingling was down ring now, once
        keeping_time = asyncio.get_running_loop().create_task(self.timers.keep_time())
        try:
            await self._listen()
            # The input has ended: let a command that was being said end in silence.
            silence = bytes(FRAME_BYTES)
            while self.machine.phase in (Phase.WAKE, Phase.LISTENING):
                await self.listener.process(silence)
                await asyncio.sleep(FRAME_SECONDS if self._mic.realtime else 0)
            await self._idle.wait()
            while self._background:  # an error earcon may still be playing
                await asyncio.gather(*self._background)
            await self.listener.drain()
        finally:
            keeping_time.cancel()
            self._ringer.stop()
            self._cancel_task()
            self._set_timer(None)
            self.arbiter.close()
            self.listener.close()
            self.work.close()

    async def _listen(self) -> None:
        """Pump the microphone until it ends; when it fails, reopen it with backoff."""
        delay_seconds = RECONNECT_SECONDS
        while True:
            try:
                async for frame in self._mic.frames():
                    delay_seconds = RECONNECT_SECONDS
                    await self.listener.process(frame)
                    self.timers.tick()
                    if not self._mic.realtime:
                        await self._audio_allowed.wait()  # a file is read as fast as turns allow
                return
            except AudioError as err:
                _LOGGER.warning("microphone failed (%s); reopening in %g s", err, delay_seconds)
                if self.machine.phase is not Phase.IDLE:
                    self._dispatch(Failed(self.machine.turn, err.code, str(err)))
            await asyncio.sleep(delay_seconds)
            delay_seconds = min(delay_seconds * 2, MAX_RECONNECT_SECONDS)

    # -- events in, commands out -----------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        try:
            commands = self.machine.handle(event)
        except MachineError as err:
            _LOGGER.warning("ignored %s in %s: %s", event, self.machine.phase, err.value)
            return
        self._execute(commands)

    def _feed(self, event: Event) -> None:
        """Feed a result back as an event, after the commands being executed now."""
        asyncio.get_running_loop().call_soon(self._dispatch, event)

    def request(self, request: Request) -> None:
        """Act on a request from outside (MQTT); called on the loop's thread."""
        if isinstance(request, VolumeRequested):  # a setting of the speaker, not of the talk
            self.volume.set(request.level)
            return
        if isinstance(request, WakeWordChosen):  # a setting of the listener
            self._in_background(self._choose_wake_word(request.name))
            return
        self._dispatch(request)

    def _execute(self, commands: list[Command]) -> None:
        reporter = self.reporter
        watch = Stopwatch(reporter.record, self._now)
        for command in commands:
            match command:
                case StartTurn(turn, wake_word, score):
                    reporter.turn_started(turn, wake_word, score)
                    watch = Stopwatch(reporter.record, self._now)
                case ClaimWake(turn, wake_word, score, level_dbfs):
                    self.arbiter.claim(turn, wake_word, score, level_dbfs)
                case EnterState(phase, turn, previous):
                    self._enter(phase, turn, previous)
                case SetTimeout(turn, seconds):
                    self._set_timer(seconds, TimedOut(turn))
                case SetRingTimeout(ring, seconds):
                    self._set_timer(seconds, RingTimedOut(ring))
                case PlayEarcon(turn, earcon):
                    self._play_earcon(turn, earcon)
                case StartListening(turn, no_speech_seconds):
                    watch.mark("listening")
                    after_wake_word = reporter.record.wake_word is not None
                    self.listener.start(
                        turn, after_wake_word=after_wake_word, no_speech_seconds=no_speech_seconds
                    )
                case Speculate(turn, pcm, complete):
                    self.work.speculate(turn, pcm, complete=complete)
                case WeighWords(turn, words):  # after this event's commands: it may end speech
                    asyncio.get_running_loop().call_soon(self.listener.weigh_words, turn, words)
                case PrepareReply(turn, text):
                    self.work.prepare(turn, watch, text)
                case DropSpeculation():
                    self.work.drop_speculation()
                case Transcribe(turn, pcm, reason):
                    watch.mark("speech_end")
                    reporter.record.end_reason = str(reason) if reason is not None else None
                    self._task.start(turn, self.work.transcribe(turn, watch, pcm))
                case Reply(turn, text):
                    self._task.start(turn, self.work.reply(turn, watch, text))
                case Announce(turn, text):
                    self._task.start(turn, self.work.announce(turn, watch, text))
                case CancelTurn():
                    self._cancel_task()
                    self.listener.stop()
                case Ring(names):
                    self._ringer.ring(names)
                case StopRing():
                    self._ringer.stop()
                case ResetWakeWord():
                    self.listener.reset_wake_word()
                case StartDeafTail(seconds):
                    self.listener.deafen(seconds)
                case TranscribeBurst(pcm):
                    self.bursts.check(pcm)
                case ReportIntent(turn, intent):
                    if intent.name in TIMER_INTENTS:
                        self.timers.apply(intent.name, intent.slots)
                    elif intent.name in VOLUME_INTENTS:
                        self.volume.apply(intent.name, intent.slots)
                    reporter.report(command)
                case FinishTurn(turn, outcome):
                    self.work.drop_speculation()
                    stats = self.work.take_stats()
                    if stats.transcripts:
                        reporter.record.speculation = stats.as_dict()
                    reporter.turn_finished(turn, outcome)
                case _:
                    reporter.report(command)

    def _enter(self, phase: Phase, turn: int, previous: Phase | None) -> None:
        if self._audio_clock:
            t_seconds = self.listener.frame_index * FRAME_SECONDS
        else:
            t_seconds = self._now() - self._started
        self.reporter.state_entered(phase, turn, previous, t_seconds)
        self.bursts.drop()  # a burst belongs to the state it was heard in
        if phase is Phase.IDLE:
            self._idle.set()
        else:
            self._idle.clear()
        if self.machine.takes_audio:
            self._audio_allowed.set()
        else:
            self._audio_allowed.clear()

    def _set_timer(self, seconds: float | None, event: Event | None = None) -> None:
        """Feed ``event`` after ``seconds`` (a timeout), replacing the one armed before;
        ``seconds`` None: only clear it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds is not None and event is not None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._dispatch, event)

    # -- turn work ---------------------------------------------------------------------------

    def _cancel_task(self) -> None:
        self._task.cancel()
        self.work.drop_speculation()
        self._speaker.stop()

    def _play_earcon(self, turn: int, earcon: Earcon) -> None:
        async def play() -> None:
            if self._config.audio.earcons:
                await self._speaker.play(self._earcons[earcon])
            if earcon is Earcon.AWAKE:
                self._feed(EarconFinished(turn))

        self._in_background(play())

    async def _choose_wake_word(self, name: str) -> None:
        if self.wake_words is None:
            _LOGGER.warning("wake word %r: the wake word cannot be chosen here", name)
            return
        wake_word = await self.wake_words.choose(name)
        if wake_word is not None:
            self.listener.replace_wake_word(wake_word)
            self.reporter.tell("wake_word_changed", name)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
