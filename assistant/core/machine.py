"""The conversation as one explicit, pure state machine: it owns every piece of its state.

``Assistant.handle(event)`` moves the machine and returns the commands the runtime must execute.
No I/O, no clocks, no threads: time arrives as ``TimedOut`` and ``DeafTailEnded`` events and
results as ``Transcribed``, ``ReplyFinished``… events tagged with the turn that asked for them.
Events of a turn that has ended are ignored.

Besides the phase, the machine holds the switches that gate what the microphone may start: mute,
the wake word on or off, and the deaf tail after speaking (the room still echoes Lingling's
voice). ``wake_word_listens`` and ``takes_audio`` tell the runtime where audio goes.
"""

from __future__ import annotations

import logging
from typing import Any, Final, TypeVar

from transitions import EventData, Machine, State

from assistant.core.commands import (
    Announce,
    CancelTurn,
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
    ReportMute,
    ReportNoIntent,
    ReportResponse,
    ReportSayFinished,
    ReportTranscript,
    ResetWakeWord,
    Ring,
    SetTimeout,
    Speculate,
    StartDeafTail,
    StartListening,
    StartTurn,
    StopRing,
    Transcribe,
    WeighWords,
)
from assistant.core.events import (
    Event,
    Failed,
    IntentNotRecognized,
    IntentRecognized,
    MuteRequested,
    PauseTranscribed,
    ReplyFinished,
    SayRequested,
    SpeechEnded,
    SpeechPaused,
    TimerFinished,
    ToolCallRefused,
    Transcribed,
    WakeDetected,
    WakeWordToggled,
    trigger_of,
    turn_of,
)
from assistant.core.stop_word import (
    INTERRUPTIBLE,
    STOP_WORD_TRANSITIONS,
    STOP_WORDS,
    StopWordListening,
)
from assistant.core.timeouts import Timeouts

_LOGGER = logging.getLogger(__name__)

P = Phase
ALL: Final = list(Phase)
BUSY: Final = [P.WAKE, P.LISTENING, P.TRANSCRIBING, P.THINKING, P.SPEAKING]
DEAF_TAIL_SECONDS: Final = 0.3
"""After speaking, the wake word stays deaf this long (audio time): the room still echoes."""
MUTED: Final = "muted"
"""The error code of a request refused because the microphone is muted."""
BUSY_CODE: Final = "busy"

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "wake_detected", "source": P.IDLE, "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": P.WAKE,
     "unless": "_muted", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": None, "after": "_refuse_muted"},
    {"trigger": "say_requested", "source": P.IDLE, "dest": P.SPEAKING,
     "before": "_new_turn", "after": "_announce"},
    # A finished timer rings from idle; during a turn it waits for the turn's end.
    {"trigger": "timer_finished", "source": P.IDLE, "dest": P.RINGING, "before": "_add_ring"},
    {"trigger": "timer_finished", "source": P.RINGING, "dest": None,
     "before": "_add_ring", "after": "_ring"},
    {"trigger": "timer_finished", "source": BUSY, "dest": None, "before": "_hold_ring"},
    {"trigger": "rings_waited", "source": P.IDLE, "dest": P.RINGING},
    # The wake word, the stop word or a request ends the ringing.
    {"trigger": "wake_detected", "source": P.RINGING, "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.RINGING, "dest": P.WAKE,
     "unless": "_muted", "before": "_new_turn"},
    {"trigger": "stop_requested", "source": P.RINGING, "dest": P.IDLE},
    {"trigger": "stop_requested", "source": P.IDLE, "dest": None},
    {"trigger": "stop_requested", "source": INTERRUPTIBLE, "dest": P.IDLE,
     "conditions": "_barge_in_enabled", "before": "_cancel"},
    {"trigger": "stop_requested", "source": BUSY, "dest": None},
    {"trigger": "timed_out", "source": P.RINGING, "dest": P.IDLE},
    {"trigger": "cancel_requested", "source": P.RINGING, "dest": P.IDLE},
    # Barge-in (when enabled): the wake word while thinking or speaking starts a new turn.
    {"trigger": "wake_detected", "source": [P.THINKING, P.SPEAKING], "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": ["_interrupt", "_new_turn"]},
    # Otherwise a wake word or a request while a turn runs is ignored on purpose (a wake word is
    # also ignored while muted, switched off or deaf: the runtime does not even score those).
    {"trigger": "wake_detected", "source": ALL, "dest": None},
    {"trigger": "listen_requested", "source": [*BUSY, P.RINGING], "dest": None},
    {"trigger": "say_requested", "source": [*BUSY, P.RINGING], "dest": None,
     "after": "_refuse_busy"},
    {"trigger": "earcon_finished", "source": P.WAKE, "dest": P.LISTENING},
    {"trigger": "speech_started", "source": P.LISTENING, "dest": None},
    {"trigger": "speech_paused", "source": P.LISTENING, "dest": None, "after": "_speculate"},
    {"trigger": "speech_resumed", "source": P.LISTENING, "dest": None, "after": "_drop_guess"},
    {"trigger": "pause_transcribed", "source": P.LISTENING, "dest": None, "after": "_weigh"},
    # The early transcript came back after the end was decided: it is taken up by Transcribe.
    {"trigger": "pause_transcribed", "source": [P.TRANSCRIBING, P.THINKING, P.SPEAKING],
     "dest": None},
    {"trigger": "speech_ended", "source": P.LISTENING, "dest": P.TRANSCRIBING,
     "after": "_transcribe"},
    {"trigger": "no_speech_heard", "source": P.LISTENING, "dest": P.IDLE, "before": "_no_speech"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.THINKING,
     "conditions": "_has_text", "before": "_report_transcript", "after": "_reply"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.IDLE,
     "before": ["_report_transcript", "_nothing_heard"]},
    {"trigger": "intent_recognized", "source": [P.THINKING, P.SPEAKING], "dest": None,
     "after": "_report_intent"},
    {"trigger": "intent_not_recognized", "source": P.THINKING, "dest": None,
     "after": "_report_no_intent"},
    {"trigger": "tool_call_refused", "source": [P.THINKING, P.SPEAKING], "dest": None,
     "after": "_report_refused_call"},
    {"trigger": "speaking_started", "source": P.THINKING, "dest": P.SPEAKING},
    {"trigger": "sentence_played", "source": P.SPEAKING, "dest": None, "after": "_rearm"},
    # A reply that asks a question: listen again, without the wake word, as a new turn.
    {"trigger": "reply_finished", "source": P.SPEAKING, "dest": P.WAKE,
     "conditions": "_follow_up", "unless": "_muted",
     "before": ["_report_response", "_follow_up_turn"]},
    {"trigger": "reply_finished", "source": [P.THINKING, P.SPEAKING], "dest": P.IDLE,
     "before": ["_report_response", "_answered"]},
    {"trigger": "failed", "source": BUSY, "dest": P.IDLE, "before": "_fail"},
    {"trigger": "timed_out", "source": BUSY, "dest": P.IDLE, "before": "_time_out"},
    {"trigger": "cancel_requested", "source": BUSY, "dest": P.IDLE, "before": "_cancel"},
    {"trigger": "cancel_requested", "source": P.IDLE, "dest": None},
    # Muting while listening: what it was listening to can no longer come.
    {"trigger": "mute_requested", "source": [P.WAKE, P.LISTENING], "dest": P.IDLE,
     "conditions": "_mutes", "before": ["_set_mute", "_cancel"], "after": "_report_mute"},
    # The switches, in any state.
    {"trigger": "mute_requested", "source": ALL, "dest": None,
     "before": "_set_mute", "after": "_report_mute"},
    {"trigger": "wake_word_toggled", "source": ALL, "dest": None, "before": "_toggle_wake_word"},
    {"trigger": "deaf_tail_ended", "source": ALL, "dest": None, "before": "_hear_again"},
    *STOP_WORD_TRANSITIONS,
]  # fmt: skip

SWITCHES: Final = ("mute_requested", "wake_word_toggled", "deaf_tail_ended")
"""Triggers that set the machine's switches in any state (the diagram lists them apart)."""


E = TypeVar("E")


def _event(data: EventData, cls: type[E]) -> E:
    """The typed event that fired this transition."""
    event = data.kwargs["event"]
    assert isinstance(event, cls), (event, cls)
    return event


class Assistant(StopWordListening):
    """The conversation state machine. Only the event loop's thread calls ``handle``."""

    phase: Phase

    def __init__(
        self,
        timeouts: Timeouts | None = None,
        *,
        barge_in: bool = False,
        prepare_replies: bool = False,
        stop_words: tuple[str, ...] = STOP_WORDS,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.barge_in = barge_in
        self.stop_words = stop_words
        """Said alone while ringing (or, with barge-in, speaking) they stop it; () for none."""
        self.prepare_replies = prepare_replies
        """Start the reply at a pause, held until the end of the command is confirmed."""
        self.turn = 0
        self.muted = False
        """No audio reaches the wake word or the VAD."""
        self.wake_word_enabled = True
        self.deaf = False
        """In the deaf tail after speaking."""
        self._active = False
        self._outcome = Outcome.ANSWERED
        self._follow_up_seconds: float | None = None
        self._say_request: tuple[str | None] | None = None  # (request_id,) of a say turn
        self._rings: list[str | None] = []  # timers that finished: ringing, or waiting to
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
        current = self._active or self.phase is P.RINGING  # a ring's timeout has the last turn
        if turn is not None and (turn != self.turn or not current):
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
        if isinstance(event, WakeDetected):
            self._commands.append(StartTurn(self.turn, event.wake_word, event.score))
        else:
            self._commands.append(StartTurn(self.turn))

    def _wake_word_listens(self, data: EventData) -> bool:
        return self.wake_word_listens

    def _barge_in_enabled(self, data: EventData) -> bool:
        return self.barge_in

    def _muted(self, data: EventData) -> bool:
        return self.muted

    def _refuse_muted(self, data: EventData) -> None:
        message = "not listening: the microphone is muted"
        self._commands.append(ReportError(None, MUTED, message, self.phase))

    def _refuse_busy(self, data: EventData) -> None:
        say = _event(data, SayRequested)
        message = f"not saying {say.text!r}: busy in {self.phase}"
        self._commands.append(ReportError(None, BUSY_CODE, message, self.phase))
        self._commands.append(ReportSayFinished(say.request_id))

    def _interrupt(self, data: EventData) -> None:
        self._commands.append(CancelTurn(self.turn))
        self._close(Outcome.CANCELLED)

    def _follow_up(self, data: EventData) -> bool:
        return bool(_event(data, ReplyFinished).follow_up_seconds)

    def _follow_up_turn(self, data: EventData) -> None:
        self._close(Outcome.ANSWERED)
        self._new_turn(data)
        self._follow_up_seconds = _event(data, ReplyFinished).follow_up_seconds

    def _entered(self, data: EventData) -> None:
        phase = self.phase
        source = data.transition.source if data.transition is not None else None
        previous = Phase[source] if source is not None else None  # the enum name
        self._commands.append(EnterState(phase, self.turn, previous))
        self._commands.append(SetTimeout(self.turn, self.timeouts.of(phase)))
        if phase is P.WAKE:
            self._commands.append(PlayEarcon(self.turn, Earcon.AWAKE))
        elif phase is P.LISTENING:
            self._commands.append(StartListening(self.turn, self._follow_up_seconds))
        elif phase is P.THINKING and self.barge_in:
            self._commands.append(ResetWakeWord())  # listen for an interruption afresh
        elif phase is P.RINGING:
            self._commands.append(Ring(tuple(self._rings)))
        elif phase is P.IDLE:
            if self._active:
                self._close(self._outcome)
            self._commands.append(ResetWakeWord())
            if previous in (P.SPEAKING, P.RINGING):  # the room still echoes
                self.deaf = True
                self._commands.append(StartDeafTail(DEAF_TAIL_SECONDS))
            if self._rings:  # timers that finished during the turn ring now
                self._machine.events["rings_waited"].trigger(self, event=None)

    def _exited(self, data: EventData) -> None:
        if self.phase is P.RINGING:  # still the state being left
            self._rings.clear()
            self._commands.append(StopRing())

    def _add_ring(self, data: EventData) -> None:
        self._rings.append(_event(data, TimerFinished).name)

    def _hold_ring(self, data: EventData) -> None:
        self._add_ring(data)  # it rings when the turn is over

    def _ring(self, data: EventData) -> None:
        self._commands.append(Ring(tuple(self._rings)))

    def _close(self, outcome: Outcome) -> None:
        """The turn is over: report how it ended (and that a say request was dealt with)."""
        self._active = False
        self._commands.append(FinishTurn(self.turn, outcome))
        if self._say_request is not None:
            (request_id,) = self._say_request
            self._say_request = None
            self._commands.append(ReportSayFinished(request_id))

    def _speculate(self, data: EventData) -> None:
        self._commands.append(Speculate(self.turn, _event(data, SpeechPaused).pcm))

    def _drop_guess(self, data: EventData) -> None:
        self._commands.append(DropSpeculation(self.turn))

    def _weigh(self, data: EventData) -> None:
        guess = _event(data, PauseTranscribed)
        self._commands.append(WeighWords(self.turn, guess.words))
        if self.prepare_replies and guess.text.strip():
            self._commands.append(PrepareReply(self.turn, guess.text.strip()))

    def _transcribe(self, data: EventData) -> None:
        ended = _event(data, SpeechEnded)
        self._commands.append(Transcribe(self.turn, ended.pcm, ended.reason))

    def _report_transcript(self, data: EventData) -> None:
        self._commands.append(ReportTranscript(self.turn, _event(data, Transcribed).text))

    def _has_text(self, data: EventData) -> bool:
        return bool(_event(data, Transcribed).text.strip())

    def _reply(self, data: EventData) -> None:
        self._commands.append(Reply(self.turn, _event(data, Transcribed).text.strip()))

    def _report_intent(self, data: EventData) -> None:
        event = _event(data, IntentRecognized)
        self._commands.append(ReportIntent(self.turn, event.intent, event.actions))

    def _report_no_intent(self, data: EventData) -> None:
        self._commands.append(ReportNoIntent(self.turn, _event(data, IntentNotRecognized).text))

    def _report_refused_call(self, data: EventData) -> None:
        message = _event(data, ToolCallRefused).message
        self._commands.append(ReportError(self.turn, "tool_call_refused", message, self.phase))

    def _announce(self, data: EventData) -> None:
        say = _event(data, SayRequested)
        self._outcome = Outcome.ANNOUNCED
        self._say_request = (say.request_id,)
        self._commands.append(Announce(self.turn, say.text, say.request_id))

    def _rearm(self, data: EventData) -> None:
        self._commands.append(SetTimeout(self.turn, self.timeouts.speaking_seconds))

    def _report_response(self, data: EventData) -> None:
        event = _event(data, ReplyFinished)
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
        failure = _event(data, Failed)
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

    # -- the switches ---------------------------------------------------------------------------

    def _mutes(self, data: EventData) -> bool:
        return _event(data, MuteRequested).muted

    def _set_mute(self, data: EventData) -> None:
        muted = _event(data, MuteRequested).muted
        if muted != self.muted:
            _LOGGER.info("microphone %s", "muted" if muted else "unmuted")
        self.muted = muted

    def _report_mute(self, data: EventData) -> None:
        self._commands.append(ReportMute(self.muted))

    def _toggle_wake_word(self, data: EventData) -> None:
        self.wake_word_enabled = _event(data, WakeWordToggled).enabled
        _LOGGER.info("wake word %s", "on" if self.wake_word_enabled else "off")

    def _hear_again(self, data: EventData) -> None:
        self.deaf = False
