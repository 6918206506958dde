"""The state machine as tables: event sequences → states and commands. Synchronous, no sleeps."""

from __future__ import annotations

import pytest
from transitions import MachineError

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
    SetRingTimeout,
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
    CancelRequested,
    DeafTailEnded,
    EarconFinished,
    Event,
    Failed,
    IntentNotRecognized,
    IntentRecognized,
    ListenRequested,
    MuteRequested,
    NoSpeechHeard,
    PauseTranscribed,
    RecognizedIntent,
    ReplyFinished,
    RingTimedOut,
    SayRequested,
    SentencePlayed,
    SpeakingStarted,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    StopRequested,
    TimedOut,
    TimerFinished,
    ToolCallRefused,
    Transcribed,
    WakeDetected,
    WakeWordToggled,
)
from assistant.core.intents import MqttAction
from assistant.core.machine import DEAF_TAIL_SECONDS, Assistant
from assistant.core.timeouts import Timeouts
from assistant.core.turn_end import Words

P = Phase
TIMEOUTS = Timeouts(
    wake_seconds=1.0,
    listening_seconds=2.0,
    transcribing_seconds=3.0,
    thinking_seconds=4.0,
    speaking_seconds=5.0,
)
WAKE = WakeDetected("hey_jarvis", 0.9)


def run(events: list[Event], machine: Assistant | None = None) -> tuple[Assistant, list[Command]]:
    machine = machine or Assistant(TIMEOUTS)
    commands: list[Command] = []
    for event in events:
        commands.extend(machine.handle(event))
    return machine, commands


def phases(commands: list[Command]) -> list[Phase]:
    return [c.phase for c in commands if isinstance(c, EnterState)]


def phase_of(machine: Assistant) -> Phase:
    return machine.phase  # a call, so the type checker does not keep an earlier narrowing


def to_listening(turn: int = 1) -> list[Event]:
    return [WAKE, EarconFinished(turn)]


def to_thinking(turn: int = 1) -> list[Event]:
    return [
        *to_listening(turn),
        SpeechStarted(turn),
        SpeechEnded(turn, b"\x01\x00"),
        Transcribed(turn, " turn on the light "),
    ]


def to_speaking(turn: int = 1) -> list[Event]:
    return [*to_thinking(turn), SpeakingStarted(turn)]


def test_starts_idle() -> None:
    machine = Assistant(TIMEOUTS)
    assert machine.phase is P.IDLE
    assert machine.start() == [EnterState(P.IDLE, 0)]
    assert machine.wake_word_listens


def test_a_whole_turn_emits_every_command_in_order() -> None:
    events = [*to_speaking(), SentencePlayed(1), ReplyFinished(1, "It is on.")]
    machine, commands = run(events)
    assert commands == [
        StartTurn(1, "hey_jarvis", 0.9),
        EnterState(P.WAKE, 1),
        SetTimeout(1, 1.0),
        PlayEarcon(1, Earcon.AWAKE),
        EnterState(P.LISTENING, 1),
        SetTimeout(1, 2.0),
        StartListening(1),
        EnterState(P.TRANSCRIBING, 1),
        SetTimeout(1, 3.0),
        Transcribe(1, b"\x01\x00"),
        ReportTranscript(1, " turn on the light "),
        EnterState(P.THINKING, 1),
        SetTimeout(1, 4.0),
        Reply(1, "turn on the light"),
        EnterState(P.SPEAKING, 1),
        SetTimeout(1, 5.0),
        SetTimeout(1, 5.0),  # each sentence played re-arms the playback watchdog
        ReportResponse(1, "It is on."),
        EnterState(P.IDLE, 1),
        SetTimeout(1, None),
        FinishTurn(1, Outcome.ANSWERED),
        ResetWakeWord(),
        StartDeafTail(DEAF_TAIL_SECONDS),
    ]
    assert machine.phase is P.IDLE
    entered = [c for c in commands if isinstance(c, EnterState)]
    assert [c.previous for c in entered] == [
        P.IDLE,
        P.WAKE,
        P.LISTENING,
        P.TRANSCRIBING,
        P.THINKING,
        P.SPEAKING,
    ]


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([*to_listening(), NoSpeechHeard(1)], Outcome.NO_SPEECH),
        (
            [*to_listening(), SpeechEnded(1, b""), Transcribed(1, "  ")],
            Outcome.NOTHING_HEARD,
        ),
        # The model said nothing at all: nothing to speak, back to idle.
        ([*to_thinking(), ReplyFinished(1, "")], Outcome.ANSWERED),
    ],
    ids=["no-speech", "empty-transcript", "empty-reply"],
)
def test_quiet_endings_return_to_idle_without_error(events: list[Event], outcome: Outcome) -> None:
    machine, commands = run(events)
    assert machine.phase is P.IDLE
    assert FinishTurn(1, outcome) in commands
    assert not [c for c in commands if isinstance(c, ReportError | CancelTurn)]
    assert PlayEarcon(1, Earcon.ERROR) not in commands
    assert StartDeafTail(DEAF_TAIL_SECONDS) not in commands  # nothing was said: no echo


STAGES: list[tuple[str, list[Event], Phase]] = [
    ("wake", [WAKE], P.WAKE),
    ("listening", to_listening(), P.LISTENING),
    ("transcribing", [*to_listening(), SpeechEnded(1, b"")], P.TRANSCRIBING),
    ("thinking", to_thinking(), P.THINKING),
    ("speaking", to_speaking(), P.SPEAKING),
]


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_every_state_times_out_to_idle_with_an_error(
    name: str, events: list[Event], phase: Phase
) -> None:
    machine, _ = run(events)
    assert machine.phase is phase
    commands = machine.handle(TimedOut(1))
    seconds = TIMEOUTS.of(phase)
    assert commands[:6] == [
        CancelTurn(1),
        ReportError(1, "timeout", f"no progress in {phase} after {seconds:g} s", phase),
        PlayEarcon(1, Earcon.ERROR),
        EnterState(P.IDLE, 1),
        SetTimeout(1, None),
        FinishTurn(1, Outcome.FAILED),
    ]


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_every_failure_returns_to_idle_with_an_error(
    name: str, events: list[Event], phase: Phase
) -> None:
    machine, _ = run(events)
    commands = machine.handle(Failed(1, "stt", "server down"))
    assert commands[:3] == [
        CancelTurn(1),
        ReportError(1, "stt", "server down", phase),
        PlayEarcon(1, Earcon.ERROR),
    ]
    assert machine.phase is P.IDLE
    assert FinishTurn(1, Outcome.FAILED) in commands


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_cancel_stops_the_turn_quietly(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    commands = machine.handle(CancelRequested())
    assert commands[0] == CancelTurn(1)
    assert machine.phase is P.IDLE
    assert FinishTurn(1, Outcome.CANCELLED) in commands
    assert not [c for c in commands if isinstance(c, ReportError | PlayEarcon)]


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_a_wake_word_during_a_turn_is_ignored(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    assert not machine.wake_word_listens
    assert machine.handle(WakeDetected("alexa", 0.99)) == []
    assert machine.handle(ListenRequested()) == []
    assert (machine.phase, machine.turn) == (phase, 1)


def test_results_of_an_abandoned_turn_are_ignored() -> None:
    machine, _ = run([*to_thinking(), TimedOut(1)])
    assert phase_of(machine) is P.IDLE
    # The old turn's late results change nothing, in idle or in the next turn.
    late: list[Event] = [SpeakingStarted(1), ReplyFinished(1, "x"), TimedOut(1), Failed(1, "x", "")]
    for event in late:
        assert machine.handle(event) == []
    run(to_listening(turn=2), machine)
    assert machine.turn == 2
    assert machine.handle(SpeechEnded(1, b"")) == []
    assert machine.handle(TimedOut(1)) == []
    assert phase_of(machine) is P.LISTENING


def test_turns_are_numbered_and_listen_requested_starts_one_without_a_wake_word() -> None:
    machine, commands = run([*to_thinking(), ReplyFinished(1, "")])
    commands = machine.handle(ListenRequested())
    assert machine.turn == 2
    assert commands[:2] == [StartTurn(2), EnterState(P.WAKE, 2)]


def test_unexpected_events_raise_so_the_runtime_can_log_them() -> None:
    machine, _ = run([WAKE])
    with pytest.raises(MachineError):
        machine.handle(SpeechEnded(1, b""))
    assert phase_of(machine) is P.WAKE
    run([EarconFinished(1)], machine)
    with pytest.raises(MachineError):
        machine.handle(Transcribed(1, "hi"))
    assert phase_of(machine) is P.LISTENING


def test_cancel_in_idle_does_nothing() -> None:
    machine = Assistant(TIMEOUTS)
    assert machine.handle(CancelRequested()) == []
    assert machine.phase is P.IDLE


def test_timeouts_come_from_the_config() -> None:
    from assistant.config import Config

    config = Config.model_validate(
        {
            "stt": {"timeout_seconds": 7},
            "llm": {"timeout_seconds": 9},
            "tts": {"playback_timeout_seconds": 11},
            "vad": {"no_speech_seconds": 3, "max_command_seconds": 10},
        }
    )
    timeouts = Timeouts.from_config(config)
    assert timeouts.of(P.TRANSCRIBING) == 7
    assert timeouts.of(P.THINKING) == 9
    assert timeouts.of(P.SPEAKING) == 11
    assert timeouts.of(P.LISTENING) == 13
    assert timeouts.of(P.IDLE) is None


def test_say_speaks_from_idle_as_its_own_turn() -> None:
    machine = Assistant(TIMEOUTS)
    commands = machine.handle(SayRequested("Dinner is ready", "r1"))
    assert commands == [
        StartTurn(1),
        EnterState(P.SPEAKING, 1),
        SetTimeout(1, 5.0),
        Announce(1, "Dinner is ready", "r1"),
    ]
    commands = machine.handle(ReplyFinished(1, "Dinner is ready"))
    assert machine.phase is P.IDLE
    assert commands[:5] == [
        ReportResponse(1, "Dinner is ready"),
        EnterState(P.IDLE, 1),
        SetTimeout(1, None),
        FinishTurn(1, Outcome.ANNOUNCED),
        ReportSayFinished("r1"),
    ]


def test_a_say_cut_short_is_reported_as_finished_all_the_same() -> None:
    machine = Assistant(TIMEOUTS, barge_in=True)
    machine.handle(SayRequested("Dinner is ready", "r1"))
    commands = machine.handle(WAKE)  # barge-in
    assert commands[:3] == [
        CancelTurn(1),
        FinishTurn(1, Outcome.CANCELLED),
        ReportSayFinished("r1"),
    ]
    machine.handle(CancelRequested())
    assert ReportSayFinished("r1") not in machine.handle(CancelRequested())


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_say_during_a_turn_is_refused(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    assert machine.handle(SayRequested("hello", "r2")) == [
        ReportError(None, "busy", f"not saying 'hello': busy in {phase}", phase),
        ReportSayFinished("r2"),
    ]
    assert (machine.phase, machine.turn) == (phase, 1)


def test_a_reply_that_asks_listens_again_as_a_new_turn_without_the_wake_word() -> None:
    machine, _ = run(to_speaking())
    commands = machine.handle(ReplyFinished(1, "Which one?", follow_up_seconds=4.0))
    assert commands == [
        ReportResponse(1, "Which one?"),
        FinishTurn(1, Outcome.ANSWERED),
        StartTurn(2),
        EnterState(P.WAKE, 2),
        SetTimeout(2, 1.0),
        PlayEarcon(2, Earcon.AWAKE),
    ]
    commands = machine.handle(EarconFinished(2))
    assert commands[-1] == StartListening(2, no_speech_seconds=4.0)
    # Silence in the window ends the conversation; the next wake word listens normally again.
    machine.handle(NoSpeechHeard(2))
    assert machine.phase is P.IDLE
    run(to_listening(turn=3), machine)
    assert machine.turn == 3


def test_a_reply_without_a_question_goes_back_to_idle() -> None:
    machine, _ = run(to_speaking())
    machine.handle(ReplyFinished(1, "Done.", follow_up_seconds=None))
    assert machine.phase is P.IDLE


@pytest.mark.parametrize("events", [to_thinking(), to_speaking()], ids=["thinking", "speaking"])
def test_barge_in_interrupts_the_turn_and_listens(events: list[Event]) -> None:
    machine, _ = run(events, Assistant(TIMEOUTS, barge_in=True))
    assert machine.wake_word_listens
    commands = machine.handle(WAKE)
    assert commands == [
        CancelTurn(1),
        FinishTurn(1, Outcome.CANCELLED),
        StartTurn(2, "hey_jarvis", 0.9),
        EnterState(P.WAKE, 2),
        SetTimeout(2, 1.0),
        PlayEarcon(2, Earcon.AWAKE),
    ]
    assert machine.handle(SpeakingStarted(1)) == []  # the old turn is gone


def test_without_barge_in_the_wake_word_cannot_interrupt() -> None:
    machine, _ = run(to_speaking())
    assert machine.handle(WAKE) == []
    assert machine.phase is P.SPEAKING


def test_with_barge_in_thinking_resets_the_wake_word_to_hear_an_interruption() -> None:
    _, commands = run(to_thinking(), Assistant(TIMEOUTS, barge_in=True))
    assert ResetWakeWord() in commands[commands.index(EnterState(P.THINKING, 1)) :]
    _, commands = run(to_thinking())
    assert ResetWakeWord() not in commands


# -- speculation, intents and tool calls ---------------------------------------------------------


def test_a_pause_starts_a_speculative_transcription_and_speech_drops_it() -> None:
    machine, _ = run([*to_listening(), SpeechStarted(1)])
    assert machine.handle(SpeechPaused(1, b"cmd")) == [Speculate(1, b"cmd")]
    assert machine.handle(SpeechResumed(1)) == [DropSpeculation(1)]
    assert machine.phase is P.LISTENING
    # a late pause of a turn that has ended starts nothing
    machine.handle(CancelRequested())
    assert machine.handle(SpeechPaused(1, b"cmd")) == []


def test_words_that_may_have_lost_their_last_sound_prepare_the_reply_but_never_end_it() -> None:
    # A pause announced before the upload's trailing margin was heard: its words prepare the
    # reply; only the words of the audio with the whole margin are weighed (they may end it).
    machine = Assistant(TIMEOUTS, prepare_replies=True)
    run([*to_listening(), SpeechStarted(1)], machine)
    assert machine.handle(SpeechPaused(1, b"cm", complete=False)) == [
        Speculate(1, b"cm", complete=False)
    ]
    early = PauseTranscribed(1, "turn on the light", Words.COMPLETE, complete=False)
    assert machine.handle(early) == [PrepareReply(1, "turn on the light")]
    assert machine.handle(SpeechPaused(1, b"cmd")) == [Speculate(1, b"cmd")]
    whole = PauseTranscribed(1, "turn on the light", Words.COMPLETE)
    assert machine.handle(whole) == [
        WeighWords(1, Words.COMPLETE),
        PrepareReply(1, "turn on the light"),
    ]


def test_intents_and_refused_tool_calls_are_reported_while_the_turn_thinks_or_speaks() -> None:
    intent = RecognizedIntent("HassTurnOn", {"name": "light"}, "turn on the light", "local")
    action = MqttAction("home/light/set", "ON")
    machine, _ = run(to_thinking())
    assert machine.handle(IntentRecognized(1, intent, (action,))) == [
        ReportIntent(1, intent, (action,))
    ]
    assert machine.handle(IntentNotRecognized(1, "hi")) == [ReportNoIntent(1, "hi")]
    machine.handle(SpeakingStarted(1))
    assert machine.handle(ToolCallRefused(1, "no such intent")) == [
        ReportError(1, "tool_call_refused", "no such intent", P.SPEAKING)
    ]
    assert machine.phase is P.SPEAKING  # a refused call is no failure of the turn
    machine.handle(ReplyFinished(1, ""))
    assert machine.handle(IntentRecognized(1, intent)) == []  # too late: the turn is over


# -- the switches: mute, wake word on/off, the deaf tail -----------------------------------------


def test_mute_is_machine_state_reported_each_time() -> None:
    machine = Assistant(TIMEOUTS)
    assert machine.handle(MuteRequested(True)) == [ReportMute(True)]
    assert machine.muted
    assert not machine.wake_word_listens
    assert machine.handle(MuteRequested(True)) == [ReportMute(True)]
    assert machine.handle(MuteRequested(False)) == [ReportMute(False)]
    assert machine.wake_word_listens


def test_listen_while_muted_is_refused_at_once_and_stays_idle() -> None:
    machine = Assistant(TIMEOUTS)
    machine.handle(MuteRequested(True))
    commands = machine.handle(ListenRequested())
    assert commands == [
        ReportError(None, "muted", "not listening: the microphone is muted", P.IDLE)
    ]
    assert (machine.phase, machine.turn) == (P.IDLE, 0)
    assert machine.handle(WAKE) == []  # a wake word that slipped through starts nothing either
    machine.handle(MuteRequested(False))
    assert machine.handle(ListenRequested())[0] == StartTurn(1)


@pytest.mark.parametrize("events", [[WAKE], to_listening()], ids=["wake", "listening"])
def test_muting_while_listening_cancels_the_turn(events: list[Event]) -> None:
    machine, _ = run(events)
    commands = machine.handle(MuteRequested(True))
    assert commands[0] == CancelTurn(1)
    assert FinishTurn(1, Outcome.CANCELLED) in commands
    assert commands[-1] == ReportMute(True)
    assert not [c for c in commands if isinstance(c, ReportError | PlayEarcon)]
    assert machine.phase is P.IDLE


def test_muting_while_speaking_lets_the_reply_finish_but_refuses_the_follow_up() -> None:
    machine, _ = run(to_speaking())
    assert machine.handle(MuteRequested(True)) == [ReportMute(True)]
    assert machine.phase is P.SPEAKING
    commands = machine.handle(ReplyFinished(1, "Which one?", follow_up_seconds=4.0))
    assert commands[:2] == [
        ReportResponse(1, "Which one?"),
        ReportError(1, "muted", "not listening for an answer: the microphone is muted", P.SPEAKING),
    ]
    assert FinishTurn(1, Outcome.ANSWERED) in commands
    assert not [c for c in commands if isinstance(c, PlayEarcon | StartTurn)]
    assert (machine.phase, machine.turn) == (P.IDLE, 1)


def test_the_wake_word_can_be_switched_off_in_any_state() -> None:
    machine, _ = run(to_speaking(), Assistant(TIMEOUTS, barge_in=True))
    assert machine.handle(WakeWordToggled(False)) == []
    assert not machine.wake_word_enabled
    assert not machine.wake_word_listens
    assert machine.handle(WAKE) == []  # no barge-in either
    machine.handle(ReplyFinished(1, ""))
    machine.handle(DeafTailEnded())
    assert not machine.wake_word_listens
    assert machine.handle(ListenRequested())[0] == StartTurn(2)  # a request still works
    machine.handle(WakeWordToggled(True))
    machine.handle(CancelRequested())
    assert machine.wake_word_listens


def test_after_speaking_the_wake_word_is_deaf_until_the_tail_ends() -> None:
    machine, commands = run([*to_speaking(), ReplyFinished(1, "Done.")])
    assert commands[-1] == StartDeafTail(DEAF_TAIL_SECONDS)
    assert machine.deaf
    assert not machine.wake_word_listens
    assert machine.handle(WAKE) == []
    assert machine.handle(DeafTailEnded()) == []
    assert machine.wake_word_listens
    assert machine.handle(WAKE)[0] == StartTurn(2, "hey_jarvis", 0.9)


def test_audio_is_taken_only_where_it_is_used() -> None:
    machine = Assistant(TIMEOUTS)
    taken = []
    for event in to_speaking():
        taken.append((machine.phase, machine.takes_audio))
        machine.handle(event)
    assert dict(taken) == {
        P.IDLE: True,
        P.WAKE: False,
        P.LISTENING: True,
        P.TRANSCRIBING: False,
        P.THINKING: False,
    }
    assert not machine.takes_audio  # speaking, without barge-in
    machine, _ = run(to_speaking(), Assistant(TIMEOUTS, barge_in=True))
    assert machine.takes_audio


# -- timers: the machine owns the ringing ---------------------------------------------------------


def test_a_finished_timer_rings_from_idle_until_stopped() -> None:
    machine = Assistant(TIMEOUTS)
    commands = machine.handle(TimerFinished("pasta"))
    assert commands[:3] == [
        EnterState(P.RINGING, 0),
        SetRingTimeout(1, TIMEOUTS.ringing_seconds),  # the ring's own number, not a turn's
        Ring(("pasta",)),
    ]
    assert machine.wake_word_listens
    assert machine.handle(TimerFinished(None)) == [Ring(("pasta", None))]  # both ring
    commands = machine.handle(StopRequested())
    assert commands[0] == StopRing()
    assert machine.phase is P.IDLE
    assert StartDeafTail(DEAF_TAIL_SECONDS) in commands  # the ring still echoes
    assert not [c for c in commands if isinstance(c, FinishTurn | ReportError)]  # not a turn


def test_a_ring_stops_by_itself_after_its_time_quietly() -> None:
    machine = Assistant(TIMEOUTS)
    machine.handle(TimerFinished(None))
    assert machine.handle(TimedOut(0)) == []  # the last turn's timeout is not the ring's
    assert phase_of(machine) is P.RINGING
    commands = machine.handle(RingTimedOut(1))
    assert commands[0] == StopRing()
    assert phase_of(machine) is P.IDLE
    assert not [c for c in commands if isinstance(c, ReportError | PlayEarcon)]


def test_a_ring_s_timeout_ends_that_ring_only() -> None:
    machine, _ = run([*to_listening(), NoSpeechHeard(1), TimerFinished("tea")])
    assert machine.ring == 1
    machine.handle(StopRequested())
    commands = machine.handle(TimerFinished("eggs"))
    assert SetRingTimeout(2, TIMEOUTS.ringing_seconds) in commands
    assert machine.handle(RingTimedOut(1)) == []  # the first ring's, late: ignored
    assert machine.handle(TimedOut(1)) == []  # the last turn's: ignored too
    assert phase_of(machine) is P.RINGING
    machine.handle(RingTimedOut(2))
    assert phase_of(machine) is P.IDLE


def test_a_timer_that_finishes_during_a_turn_rings_when_the_turn_is_over() -> None:
    machine, _ = run(to_speaking())
    assert machine.handle(TimerFinished("tea")) == []
    assert machine.phase is P.SPEAKING
    commands = machine.handle(ReplyFinished(1, "Done."))
    assert phases(commands) == [P.IDLE, P.RINGING]
    assert commands[-1] == Ring(("tea",))


def test_the_wake_word_ends_the_ring_and_starts_a_turn() -> None:
    machine = Assistant(TIMEOUTS)
    machine.handle(TimerFinished(None))
    commands = machine.handle(WAKE)
    assert commands[:3] == [StartTurn(1, "hey_jarvis", 0.9), StopRing(), EnterState(P.WAKE, 1)]


@pytest.mark.parametrize("barge_in", [True, False])
def test_stop_while_speaking_cancels_the_reply_only_with_barge_in(barge_in: bool) -> None:
    machine, _ = run(to_speaking(), Assistant(TIMEOUTS, barge_in=barge_in))
    commands = machine.handle(StopRequested())
    if barge_in:
        assert commands[0] == CancelTurn(1)
        assert machine.phase is P.IDLE
    else:
        assert commands == []
        assert machine.phase is P.SPEAKING
