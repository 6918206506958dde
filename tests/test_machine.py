"""The state machine as tables: event sequences → states and commands. Synchronous, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest
from transitions import MachineError

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
from assistant.core.machine import Assistant, Timeouts

P = Phase
TIMEOUTS = Timeouts(
    wake_seconds=1.0,
    listening_seconds=2.0,
    transcribing_seconds=3.0,
    thinking_seconds=4.0,
    speaking_seconds=5.0,
)
WAKE = ("wake_detected", {"wake_word": "hey_jarvis", "score": 0.9})
Event = tuple[str, dict[str, Any]]


def run(events: list[Event], machine: Assistant | None = None) -> tuple[Assistant, list[Command]]:
    machine = machine or Assistant(TIMEOUTS)
    commands: list[Command] = []
    for name, data in events:
        commands.extend(machine.handle(name, **data))
    return machine, commands


def phases(commands: list[Command]) -> list[Phase]:
    return [c.phase for c in commands if isinstance(c, EnterState)]


def phase_of(machine: Assistant) -> Phase:
    return machine.phase  # a call, so the type checker does not keep an earlier narrowing


def to_listening(turn: int = 1) -> list[Event]:
    return [WAKE, ("earcon_finished", {"turn": turn})]


def to_thinking(turn: int = 1) -> list[Event]:
    return [
        *to_listening(turn),
        ("speech_started", {"turn": turn}),
        ("speech_ended", {"turn": turn, "pcm": b"\x01\x00"}),
        ("transcribed", {"turn": turn, "text": " turn on the light "}),
    ]


def to_speaking(turn: int = 1) -> list[Event]:
    return [*to_thinking(turn), ("speaking_started", {"turn": turn})]


def test_starts_idle() -> None:
    machine = Assistant(TIMEOUTS)
    assert machine.phase is P.IDLE
    assert machine.start() == [EnterState(P.IDLE, 0)]


def test_a_whole_turn_emits_every_command_in_order() -> None:
    events = [*to_speaking(), ("sentence_played", {"turn": 1}), ("reply_finished", {"turn": 1})]
    machine, commands = run(events)
    assert commands == [
        EnterState(P.WAKE, 1),
        SetTimeout(1, 1.0),
        PlayEarcon(1, Earcon.AWAKE),
        EnterState(P.LISTENING, 1),
        SetTimeout(1, 2.0),
        StartListening(1),
        EnterState(P.TRANSCRIBING, 1),
        SetTimeout(1, 3.0),
        Transcribe(1, b"\x01\x00"),
        EnterState(P.THINKING, 1),
        SetTimeout(1, 4.0),
        Reply(1, "turn on the light"),
        EnterState(P.SPEAKING, 1),
        SetTimeout(1, 5.0),
        SetTimeout(1, 5.0),  # each sentence played re-arms the playback watchdog
        EnterState(P.IDLE, 1),
        SetTimeout(1, None),
        FinishTurn(1, Outcome.ANSWERED),
    ]
    assert machine.phase is P.IDLE


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([*to_listening(), ("no_speech", {"turn": 1})], Outcome.NO_SPEECH),
        (
            [
                *to_listening(),
                ("speech_ended", {"turn": 1, "pcm": b""}),
                ("transcribed", {"turn": 1, "text": "  "}),
            ],
            Outcome.NOTHING_HEARD,
        ),
        # The model said nothing at all: nothing to speak, back to idle.
        ([*to_thinking(), ("reply_finished", {"turn": 1})], Outcome.ANSWERED),
    ],
    ids=["no-speech", "empty-transcript", "empty-reply"],
)
def test_quiet_endings_return_to_idle_without_error(events: list[Event], outcome: Outcome) -> None:
    machine, commands = run(events)
    assert machine.phase is P.IDLE
    assert commands[-1] == FinishTurn(1, outcome)
    assert not [c for c in commands if isinstance(c, ReportError | CancelTurn)]
    assert PlayEarcon(1, Earcon.ERROR) not in commands


STAGES: list[tuple[str, list[Event], Phase]] = [
    ("wake", [WAKE], P.WAKE),
    ("listening", to_listening(), P.LISTENING),
    ("transcribing", [*to_listening(), ("speech_ended", {"turn": 1, "pcm": b""})], P.TRANSCRIBING),
    ("thinking", to_thinking(), P.THINKING),
    ("speaking", to_speaking(), P.SPEAKING),
]


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_every_state_times_out_to_idle_with_an_error(
    name: str, events: list[Event], phase: Phase
) -> None:
    machine, _ = run(events)
    assert machine.phase is phase
    commands = machine.handle("timed_out", turn=1)
    seconds = TIMEOUTS.of(phase)
    assert commands == [
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
    commands = machine.handle("failed", turn=1, code="stt", message="server down")
    assert commands[:3] == [
        CancelTurn(1),
        ReportError(1, "stt", "server down", phase),
        PlayEarcon(1, Earcon.ERROR),
    ]
    assert machine.phase is P.IDLE
    assert commands[-1] == FinishTurn(1, Outcome.FAILED)


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_cancel_stops_the_turn_quietly(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    commands = machine.handle("cancel_requested")
    assert commands[0] == CancelTurn(1)
    assert machine.phase is P.IDLE
    assert commands[-1] == FinishTurn(1, Outcome.CANCELLED)
    assert not [c for c in commands if isinstance(c, ReportError | PlayEarcon)]


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_a_wake_word_during_a_turn_is_ignored(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    assert machine.handle("wake_detected", wake_word="alexa", score=0.99) == []
    assert machine.handle("listen_requested") == []
    assert (machine.phase, machine.turn) == (phase, 1)


def test_results_of_an_abandoned_turn_are_ignored() -> None:
    machine, _ = run([*to_thinking(), ("timed_out", {"turn": 1})])
    assert phase_of(machine) is P.IDLE
    # The old turn's late results change nothing, in idle or in the next turn.
    for event in ("speaking_started", "reply_finished", "timed_out", "failed"):
        assert machine.handle(event, turn=1) == []
    run(to_listening(turn=2), machine)
    assert machine.turn == 2
    assert machine.handle("speech_ended", turn=1, pcm=b"") == []
    assert machine.handle("timed_out", turn=1) == []
    assert phase_of(machine) is P.LISTENING


def test_turns_are_numbered_and_listen_requested_starts_one_without_a_wake_word() -> None:
    machine, commands = run([*to_thinking(), ("reply_finished", {"turn": 1})])
    commands = machine.handle("listen_requested")
    assert machine.turn == 2
    assert commands[0] == EnterState(P.WAKE, 2)


def test_unexpected_events_raise_so_the_runtime_can_log_them() -> None:
    machine = Assistant(TIMEOUTS)
    with pytest.raises(MachineError):
        machine.handle("speech_ended", pcm=b"")
    run(to_listening(), machine)
    with pytest.raises(MachineError):
        machine.handle("transcribed", turn=1, text="hi")
    assert machine.phase is P.LISTENING


def test_cancel_in_idle_does_nothing() -> None:
    machine = Assistant(TIMEOUTS)
    assert machine.handle("cancel_requested") == []
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
    commands = machine.handle("say_requested", text="Dinner is ready", request_id="r1")
    assert commands == [
        EnterState(P.SPEAKING, 1),
        SetTimeout(1, 5.0),
        Announce(1, "Dinner is ready", "r1"),
    ]
    commands = machine.handle("reply_finished", turn=1)
    assert machine.phase is P.IDLE
    assert commands[-1] == FinishTurn(1, Outcome.ANNOUNCED)


@pytest.mark.parametrize(("name", "events", "phase"), STAGES, ids=[s[0] for s in STAGES])
def test_say_during_a_turn_is_ignored(name: str, events: list[Event], phase: Phase) -> None:
    machine, _ = run(events)
    assert machine.handle("say_requested", text="hello") == []
    assert machine.phase is phase


def test_a_reply_that_asks_listens_again_as_a_new_turn_without_the_wake_word() -> None:
    machine, _ = run(to_speaking())
    commands = machine.handle("reply_finished", turn=1, follow_up_seconds=4.0)
    assert commands == [
        FinishTurn(1, Outcome.ANSWERED),
        EnterState(P.WAKE, 2),
        SetTimeout(2, 1.0),
        PlayEarcon(2, Earcon.AWAKE),
    ]
    commands = machine.handle("earcon_finished", turn=2)
    assert commands[-1] == StartListening(2, no_speech_seconds=4.0)
    # Silence in the window ends the conversation; the next wake word listens normally again.
    machine.handle("no_speech", turn=2)
    assert machine.phase is P.IDLE
    run(to_listening(turn=3), machine)
    assert machine.turn == 3


def test_a_reply_without_a_question_goes_back_to_idle() -> None:
    machine, _ = run(to_speaking())
    machine.handle("reply_finished", turn=1, follow_up_seconds=None)
    assert machine.phase is P.IDLE


@pytest.mark.parametrize("events", [to_thinking(), to_speaking()], ids=["thinking", "speaking"])
def test_barge_in_interrupts_the_turn_and_listens(events: list[Event]) -> None:
    machine, _ = run(events, Assistant(TIMEOUTS, barge_in=True))
    commands = machine.handle("wake_detected", wake_word="hey_jarvis", score=0.9)
    assert commands == [
        CancelTurn(1),
        FinishTurn(1, Outcome.CANCELLED),
        EnterState(P.WAKE, 2),
        SetTimeout(2, 1.0),
        PlayEarcon(2, Earcon.AWAKE),
    ]
    assert machine.handle("speaking_started", turn=1) == []  # the old turn is gone


def test_without_barge_in_the_wake_word_cannot_interrupt() -> None:
    machine, _ = run(to_speaking())
    assert machine.handle("wake_detected", wake_word="hey_jarvis", score=0.9) == []
    assert machine.phase is P.SPEAKING
