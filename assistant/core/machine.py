"""The conversation as one explicit, pure state machine.

``Assistant.handle(event, **data)`` moves the machine and returns the commands the runtime must
execute. No I/O, no clocks, no threads: time arrives as ``timed_out`` events and results as
``transcribed``/``reply_finished``… events tagged with the turn that asked for them. Events of a
turn that has ended are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from transitions import EventData, Machine, State

from assistant.core.commands import (
    Announce,
    CancelTurn,
    Command,
    Earcon,
    EnterState,
    FinishTurn,
    Outcome,
    Phase,
    PlayEarcon,
    Reply,
    ReportError,
    SetTimeout,
    StartListening,
    Transcribe,
)

if TYPE_CHECKING:
    from assistant.config import Config

P = Phase
BUSY: Final = [P.WAKE, P.LISTENING, P.TRANSCRIBING, P.THINKING, P.SPEAKING]

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "wake_detected", "source": P.IDLE, "dest": P.WAKE, "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": P.WAKE, "before": "_new_turn"},
    {"trigger": "say_requested", "source": P.IDLE, "dest": P.SPEAKING,
     "before": "_new_turn", "after": "_announce"},
    # Barge-in (when enabled): the wake word while thinking or speaking starts a new turn.
    {"trigger": "wake_detected", "source": [P.THINKING, P.SPEAKING], "dest": P.WAKE,
     "conditions": "_barge_in_enabled", "before": ["_interrupt", "_new_turn"]},
    # Otherwise a wake word or a request while a turn runs is ignored on purpose.
    {"trigger": "wake_detected", "source": BUSY, "dest": None},
    {"trigger": "listen_requested", "source": BUSY, "dest": None},
    {"trigger": "say_requested", "source": BUSY, "dest": None},
    {"trigger": "earcon_finished", "source": P.WAKE, "dest": P.LISTENING},
    {"trigger": "speech_started", "source": P.LISTENING, "dest": None},
    {"trigger": "speech_ended", "source": P.LISTENING, "dest": P.TRANSCRIBING,
     "after": "_transcribe"},
    {"trigger": "no_speech", "source": P.LISTENING, "dest": P.IDLE, "before": "_no_speech"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.THINKING,
     "conditions": "_has_text", "after": "_reply"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.IDLE,
     "before": "_nothing_heard"},
    {"trigger": "speaking_started", "source": P.THINKING, "dest": P.SPEAKING},
    {"trigger": "sentence_played", "source": P.SPEAKING, "dest": None, "after": "_rearm"},
    # A reply that asks a question: listen again, without the wake word, as a new turn.
    {"trigger": "reply_finished", "source": P.SPEAKING, "dest": P.WAKE,
     "conditions": "_follow_up", "before": "_follow_up_turn"},
    {"trigger": "reply_finished", "source": [P.THINKING, P.SPEAKING], "dest": P.IDLE,
     "before": "_answered"},
    {"trigger": "failed", "source": BUSY, "dest": P.IDLE, "before": "_fail"},
    {"trigger": "timed_out", "source": BUSY, "dest": P.IDLE, "before": "_time_out"},
    {"trigger": "cancel_requested", "source": BUSY, "dest": P.IDLE, "before": "_cancel"},
    {"trigger": "cancel_requested", "source": P.IDLE, "dest": None},
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each state may last before the turn is abandoned (wall-clock seconds)."""

    wake_seconds: float = 2.0
    listening_seconds: float = 20.0
    transcribing_seconds: float = 15.0
    thinking_seconds: float = 30.0
    speaking_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> Timeouts:
        return cls(
            # The VAD ends listening in audio time; this only guards against audio that stops.
            listening_seconds=config.vad.no_speech_seconds + config.vad.max_command_seconds,
            transcribing_seconds=config.stt.timeout_seconds,
            thinking_seconds=config.llm.timeout_seconds,
            speaking_seconds=config.tts.playback_timeout_seconds,
        )

    def of(self, phase: Phase) -> float | None:
        return {
            P.IDLE: None,
            P.WAKE: self.wake_seconds,
            P.LISTENING: self.listening_seconds,
            P.TRANSCRIBING: self.transcribing_seconds,
            P.THINKING: self.thinking_seconds,
            P.SPEAKING: self.speaking_seconds,
        }[phase]


class Assistant:
    """The conversation state machine. Only the event loop's thread calls ``handle``."""

    phase: Phase

    def __init__(self, timeouts: Timeouts | None = None, *, barge_in: bool = False) -> None:
        self.timeouts = timeouts or Timeouts()
        self.barge_in = barge_in
        self.turn = 0
        self._active = False
        self._outcome = Outcome.ANSWERED
        self._follow_up_seconds: float | None = None
        self._commands: list[Command] = []
        self._machine = Machine(
            model=self,
            states=[State(phase, on_enter="_entered") for phase in Phase],
            transitions=TRANSITIONS,
            initial=P.IDLE,
            model_attribute="phase",
            queued=True,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )

    def start(self) -> list[Command]:
        """The commands that announce the initial state."""
        return [EnterState(self.phase, self.turn)]

    def handle(self, event: str, **data: Any) -> list[Command]:
        """Apply one event; raise ``transitions.MachineError`` for one the state does not expect."""
        turn = data.get("turn")
        if turn is not None and (turn != self.turn or not self._active):
            return []  # a result of a turn that has ended
        self._machine.events[event].trigger(self, **data)
        commands, self._commands = self._commands, []
        return commands

    # -- callbacks (named in TRANSITIONS and the states) --------------------------------------

    def _new_turn(self, event: EventData) -> None:
        self.turn += 1
        self._active = True
        self._outcome = Outcome.ANSWERED
        self._follow_up_seconds = None

    def _barge_in_enabled(self, event: EventData) -> bool:
        return self.barge_in

    def _interrupt(self, event: EventData) -> None:
        self._commands.append(CancelTurn(self.turn))
        self._commands.append(FinishTurn(self.turn, Outcome.CANCELLED))

    def _follow_up(self, event: EventData) -> bool:
        return bool(event.kwargs.get("follow_up_seconds"))

    def _follow_up_turn(self, event: EventData) -> None:
        self._commands.append(FinishTurn(self.turn, Outcome.ANSWERED))
        self._new_turn(event)
        self._follow_up_seconds = float(event.kwargs["follow_up_seconds"])

    def _entered(self, event: EventData) -> None:
        phase = self.phase
        self._commands.append(EnterState(phase, self.turn))
        self._commands.append(SetTimeout(self.turn, self.timeouts.of(phase)))
        if phase is P.WAKE:
            self._commands.append(PlayEarcon(self.turn, Earcon.AWAKE))
        elif phase is P.LISTENING:
            self._commands.append(StartListening(self.turn, self._follow_up_seconds))
        elif phase is P.IDLE:
            self._active = False
            self._commands.append(FinishTurn(self.turn, self._outcome))

    def _transcribe(self, event: EventData) -> None:
        self._commands.append(Transcribe(self.turn, event.kwargs["pcm"]))

    def _has_text(self, event: EventData) -> bool:
        return bool(str(event.kwargs.get("text", "")).strip())

    def _reply(self, event: EventData) -> None:
        self._commands.append(Reply(self.turn, str(event.kwargs["text"]).strip()))

    def _announce(self, event: EventData) -> None:
        self._outcome = Outcome.ANNOUNCED
        request_id = event.kwargs.get("request_id")
        self._commands.append(Announce(self.turn, str(event.kwargs["text"]), request_id))

    def _rearm(self, event: EventData) -> None:
        self._commands.append(SetTimeout(self.turn, self.timeouts.speaking_seconds))

    def _no_speech(self, event: EventData) -> None:
        self._outcome = Outcome.NO_SPEECH

    def _nothing_heard(self, event: EventData) -> None:
        self._outcome = Outcome.NOTHING_HEARD

    def _answered(self, event: EventData) -> None:
        if self._outcome is not Outcome.ANNOUNCED:
            self._outcome = Outcome.ANSWERED

    def _fail(self, event: EventData) -> None:
        code = str(event.kwargs.get("code", "error"))
        message = str(event.kwargs.get("message", ""))
        self._abandon(Outcome.FAILED, code, message)

    def _time_out(self, event: EventData) -> None:
        message = f"no progress in {self.phase} after {self.timeouts.of(self.phase):g} s"
        self._abandon(Outcome.FAILED, "timeout", message)

    def _cancel(self, event: EventData) -> None:
        self._outcome = Outcome.CANCELLED
        self._commands.append(CancelTurn(self.turn))

    def _abandon(self, outcome: Outcome, code: str, message: str) -> None:
        self._outcome = outcome
        self._commands.append(CancelTurn(self.turn))
        self._commands.append(ReportError(self.turn, code, message, self.phase))
        self._commands.append(PlayEarcon(self.turn, Earcon.ERROR))
