"""The conversation as one explicit, pure state machine: it owns every piece of its state.

``Assistant.handle(event)`` moves the machine and returns the commands the runtime must execute.
No I/O, no clocks, no threads: time arrives as ``TimedOut`` and ``DeafTailEnded`` events and
results as ``Transcribed``, ``ReplyFinished``… events tagged with the turn that asked for them.
Events of a turn that has ended are ignored.

Besides the phase, the machine holds the switches that gate what the microphone may start: mute,
the wake word on or off, and the deaf tail after speaking (the room still echoes Lingling's
voice). ``wake_word_listens`` and ``takes_audio`` tell the runtime where audio goes.

The transitions are one table (``assistant.core.table``); the switches' callbacks
(``switches.py``) and the ringing's (``ringing.py``) are parts of ``Assistant`` kept apart from
the turn's, here.
"""

from __future__ import annotations

import logging
from typing import Final

from transitions import EventData, Machine, State

from assistant.core.commands import (
    Announce,
    CancelTurn,
    ClaimWake,
    Command,
    DropSpeculation,
    Earcon,
    EnterState,
    FinishTurn,
    Outcome,
    Phase,
    PlayEarcon,
    PrepareReply,
    Reply,
    ReportError,
    ReportIntent,
    ReportNoIntent,
    ReportResponse,
    ReportSayFinished,
    ReportTranscript,
    ResetWakeWord,
    SetTimeout,
    Speculate,
    StartDeafTail,
    StartListening,
    StartTurn,
    Transcribe,
    WeighWords,
)
from assistant.core.events import (
    Event,
    Failed,
    IntentNotRecognized,
    IntentRecognized,
    PauseTranscribed,
    ReplyFinished,
    SayRequested,
    SpeechEnded,
    SpeechPaused,
    ToolCallRefused,
    Transcribed,
    WakeDetected,
    trigger_of,
    turn_of,
)
from assistant.core.ringing import Ringing
from assistant.core.stop_word import STOP_WORDS, StopWordListening
from assistant.core.switches import DEAF_TAIL_SECONDS, MUTED, Switches
from assistant.core.table import INTERRUPTIBLE, TRANSITIONS, P, event_of
from assistant.core.timeouts import Timeouts

_LOGGER = logging.getLogger(__name__)

BUSY_CODE: Final = "busy"
"""The error code of a request refused because a turn is under way."""
__all__ = ["DEAF_TAIL_SECONDS", "MUTED", "Assistant"]


class Assistant(Switches, Ringing, StopWordListening):
    """The conversation state machine. Only the event loop's thread calls ``handle``."""

    phase: Phase

    def __init__(
        self,
        timeouts: Timeouts | None = None,
        *,
        barge_in: bool = False,
        prepare_replies: bool = False,
        arbitration: bool = False,
        stop_words: tuple[str, ...] = STOP_WORDS,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.barge_in = barge_in
        self.stop_words = stop_words
        """Said alone while ringing (or, with barge-in, speaking) they stop it; () for none."""
        self.prepare_replies = prepare_replies
        """Start the reply at a pause, held until the end of the command is confirmed."""
        self.arbitration = arbitration
        """Claim each wake word from the other satellites; answer only a claim won."""
        Switches.__init__(self)
        Ringing.__init__(self)
        self.turn = 0
        self._active = False
        self._outcome = Outcome.ANSWERED
        self._follow_up_seconds: float | None = None
        self._say_request: tuple[str | None] | None = None  # (request_id,) of a say turn
        self._deciding = False  # the wake word is claimed and its decision is awaited
        self._chiming = False  # the awake earcon has not finished yet
        self._commands: list[Command] = []
        self._machine = Machine(
            model=self,
            states=[State(phase, on_enter="_entered", on_exit="_exited") for phase in Phase],
            transitions=TRANSITIONS,
            initial=P.IDLE,
            model_attribute="phase",
            queued=True,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )

    @property
    def wake_word_listens(self) -> bool:
        """Whether the wake word should score the audio now."""
        if self.muted or not self.wake_word_enabled or self.deaf:
            return False
        return self._between_turns

    @property
    def takes_audio(self) -> bool:
        """Whether audio is used now (a file read as fast as turns allow waits otherwise)."""
        return self._between_turns or self.phase is P.LISTENING

    @property
    def _between_turns(self) -> bool:
        """Idle or ringing, or (with barge-in) in a turn the wake word may interrupt."""
        return self.phase in (P.IDLE, P.RINGING) or (self.barge_in and self.phase in INTERRUPTIBLE)

    def start(self) -> list[Command]:
        """The commands that announce the initial state."""
        return [EnterState(self.phase, self.turn)]

    def handle(self, event: Event) -> list[Command]:
        """Apply one event; raise ``transitions.MachineError`` for one the state does not expect."""
        turn = turn_of(event)
        if turn is not None and (turn != self.turn or not self._active):
            return []  # a result of a turn that has ended
        self._machine.events[trigger_of(event)].trigger(self, event=event)
        commands, self._commands = self._commands, []
        return commands

    # -- callbacks (named in TRANSITIONS and the states) --------------------------------------

    def _new_turn(self, data: EventData) -> None:
        self.turn += 1
        self._active = True
        self._outcome = Outcome.ANSWERED
        self._follow_up_seconds = None
        self._say_request = None
        event = data.kwargs["event"]
        self._deciding = False
        if isinstance(event, WakeDetected):
            self._commands.append(StartTurn(self.turn, event.wake_word, event.score))
            if self.arbitration:
                self._deciding = True
                claim = ClaimWake(self.turn, event.wake_word, event.score, event.level_dbfs)
                self._commands.append(claim)
        else:
            self._commands.append(StartTurn(self.turn))

    def _wake_word_listens(self, data: EventData) -> bool:
        return self.wake_word_listens

    def _barge_in_enabled(self, data: EventData) -> bool:
        return self.barge_in

    def _refuse_busy(self, data: EventData) -> None:
        say = event_of(data, SayRequested)
        message = f"not saying {say.text!r}: busy in {self.phase}"
        self._commands.append(ReportError(None, BUSY_CODE, message, self.phase))
        self._commands.append(ReportSayFinished(say.request_id))

    def _interrupt(self, data: EventData) -> None:
        self._commands.append(CancelTurn(self.turn))
        self._close(Outcome.CANCELLED)

    def _follow_up(self, data: EventData) -> bool:
        return bool(event_of(data, ReplyFinished).follow_up_seconds)

    def _follow_up_turn(self, data: EventData) -> None:
        self._close(Outcome.ANSWERED)
        self._new_turn(data)
        self._follow_up_seconds = event_of(data, ReplyFinished).follow_up_seconds

    # -- the wake word's claim (arbitration): listening waits for the decision and the earcon --

    def _claim_pending(self, data: EventData) -> bool:
        return self._deciding

    def _earcon_playing(self, data: EventData) -> bool:
        return self._chiming

    def _earcon_over(self, data: EventData) -> None:
        self._chiming = False

    def _claim_won(self, data: EventData) -> None:
        self._deciding = False

    def _claim_lost(self, data: EventData) -> None:
        self._deciding = False
        self._outcome = Outcome.LOST
        self._commands.append(CancelTurn(self.turn))  # the earcon is cut short

    # -- entering and leaving states --------------------------------------------------------

    def _entered(self, data: EventData) -> None:
        phase = self.phase
        source = data.transition.source if data.transition is not None else None
        previous = Phase[source] if source is not None else None  # the enum name
        self._commands.append(EnterState(phase, self.turn, previous))
        if phase is P.RINGING:
            self._start_ring(self.timeouts.ringing_seconds)
            return
        self._commands.append(SetTimeout(self.turn, self.timeouts.of(phase)))
        if phase is P.WAKE:
            self._chiming = True
            self._commands.append(PlayEarcon(self.turn, Earcon.AWAKE))
        elif phase is P.LISTENING:
            self._commands.append(StartListening(self.turn, self._follow_up_seconds))
        elif phase is P.THINKING and self.barge_in:
            self._commands.append(ResetWakeWord())  # listen for an interruption afresh
        elif phase is P.IDLE:
            if self._active:
                self._close(self._outcome)
            self._commands.append(ResetWakeWord())
            if previous in (P.SPEAKING, P.RINGING):  # the room still echoes
                self.deaf = True
                self._commands.append(StartDeafTail(DEAF_TAIL_SECONDS))
            if self.rings_waiting:  # timers that finished during the turn ring now
                self._machine.events["rings_waited"].trigger(self, event=None)

    def _exited(self, data: EventData) -> None:
        if self.phase is P.RINGING:  # still the state being left
            self._stop_ring()

    def _close(self, outcome: Outcome) -> None:
        """The turn is over: report how it ended (and that a say request was dealt with)."""
        self._active = False
        self._commands.append(FinishTurn(self.turn, outcome))
        if self._say_request is not None:
            (request_id,) = self._say_request
            self._say_request = None
            self._commands.append(ReportSayFinished(request_id))

    def _speculate(self, data: EventData) -> None:
        paused = event_of(data, SpeechPaused)
        self._commands.append(Speculate(self.turn, paused.pcm, paused.complete))

    def _drop_guess(self, data: EventData) -> None:
        self._commands.append(DropSpeculation(self.turn))

    def _weigh(self, data: EventData) -> None:
        guess = event_of(data, PauseTranscribed)
        # Words that may have lost their last sound prepare the reply but never end the command.
        if guess.complete:
            self._commands.append(WeighWords(self.turn, guess.words))
        if self.prepare_replies and guess.text.strip():
            self._commands.append(PrepareReply(self.turn, guess.text.strip()))

    def _transcribe(self, data: EventData) -> None:
        ended = event_of(data, SpeechEnded)
        self._commands.append(Transcribe(self.turn, ended.pcm, ended.reason))

    def _report_transcript(self, data: EventData) -> None:
        self._commands.append(ReportTranscript(self.turn, event_of(data, Transcribed).text))

    def _has_text(self, data: EventData) -> bool:
        return bool(event_of(data, Transcribed).text.strip())

    def _reply(self, data: EventData) -> None:
        self._commands.append(Reply(self.turn, event_of(data, Transcribed).text.strip()))

    def _report_intent(self, data: EventData) -> None:
        event = event_of(data, IntentRecognized)
        self._commands.append(ReportIntent(self.turn, event.intent, event.actions))

    def _report_no_intent(self, data: EventData) -> None:
        self._commands.append(ReportNoIntent(self.turn, event_of(data, IntentNotRecognized).text))

    def _report_refused_call(self, data: EventData) -> None:
        message = event_of(data, ToolCallRefused).message
        self._commands.append(ReportError(self.turn, "tool_call_refused", message, self.phase))

    def _announce(self, data: EventData) -> None:
        say = event_of(data, SayRequested)
        self._outcome = Outcome.ANNOUNCED
        self._say_request = (say.request_id,)
        self._commands.append(Announce(self.turn, say.text, say.request_id))

    def _rearm(self, data: EventData) -> None:
        self._commands.append(SetTimeout(self.turn, self.timeouts.speaking_seconds))

    def _report_response(self, data: EventData) -> None:
        event = event_of(data, ReplyFinished)
        self._commands.append(ReportResponse(self.turn, event.response, event.llm_timings))
        if event.follow_up_seconds and self.muted:
            message = "not listening for an answer: the microphone is muted"
            self._commands.append(ReportError(self.turn, MUTED, message, self.phase))

    def _no_speech(self, data: EventData) -> None:
        self._outcome = Outcome.NO_SPEECH

    def _nothing_heard(self, data: EventData) -> None:
        self._outcome = Outcome.NOTHING_HEARD

    def _answered(self, data: EventData) -> None:
        if self._outcome is not Outcome.ANNOUNCED:
            self._outcome = Outcome.ANSWERED

    def _fail(self, data: EventData) -> None:
        failure = event_of(data, Failed)
        self._abandon(Outcome.FAILED, failure.code, failure.message)

    def _time_out(self, data: EventData) -> None:
        message = f"no progress in {self.phase} after {self.timeouts.of(self.phase):g} s"
        self._abandon(Outcome.FAILED, "timeout", message)

    def _cancel(self, data: EventData) -> None:
        self._outcome = Outcome.CANCELLED
        self._commands.append(CancelTurn(self.turn))

    def _abandon(self, outcome: Outcome, code: str, message: str) -> None:
        self._outcome = outcome
        self._commands.append(CancelTurn(self.turn))
        self._commands.append(ReportError(self.turn, code, message, self.phase))
        self._commands.append(PlayEarcon(self.turn, Earcon.ERROR))
