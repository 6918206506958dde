"""Arbitration without a broker: the rule as a table, the machine's wake with a claim, the claim's
wire format, the wake word's level, and the runtime's window on a virtual clock."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from assistant.core.arbitration import Heard, Verdict, WakeClaim, decide, rank
from assistant.core.audioformat import FRAME_SAMPLES
from assistant.core.commands import (
    CancelTurn,
    ClaimWake,
    Command,
    Earcon,
    EnterState,
    FinishTurn,
    Outcome,
    Phase,
    PlayEarcon,
    ReportError,
    ResetWakeWord,
    SetTimeout,
    StartListening,
    StartTurn,
)
from assistant.core.events import (
    ClaimLost,
    ClaimWon,
    EarconFinished,
    Event,
    ListenRequested,
    MuteRequested,
    TimedOut,
    WakeDetected,
)
from assistant.core.machine import Assistant
from assistant.core.timeouts import Timeouts
from assistant.mqtt.arbitration import parse_claim
from assistant.runtime.arbiter import LEVEL_FLOOR_DBFS, wake_level_dbfs
from tests.support.clock import virtual_clock
from tests.support.fakes import SILENCE, WAKE, FakeMicrophone, FakeSpeaker
from tests.support.rig import COMMAND, Rig

P = Phase
WINDOW = 0.15


def claim(site: str, level: float, score: float = 0.9, wake_id: str = "") -> WakeClaim:
    return WakeClaim(site, wake_id or f"{site}-1", "hey_jarvis", level, score)


OWN = claim("kitchen", -30.0)

# -- the rule --------------------------------------------------------------------------------------

# (rivals heard as (claim, offset seconds from our wake word), won, verdict, winner's site)
DECISIONS = [
    ("alone", [], True, Verdict.ALONE, "kitchen"),
    ("louder-wins", [(claim("hall", -42.0), 0.01)], True, Verdict.BEST, "kitchen"),
    ("quieter-loses", [(claim("hall", -20.0), 0.02)], False, Verdict.BEATEN, "hall"),
    ("heard-before-us", [(claim("hall", -20.0), -0.1)], False, Verdict.BEATEN, "hall"),
    ("at-the-window-s-end", [(claim("hall", -20.0), WINDOW)], False, Verdict.BEATEN, "hall"),
    ("after-the-window", [(claim("hall", -20.0), WINDOW + 0.01)], True, Verdict.ALONE, "kitchen"),
    ("same-level-higher-score", [(claim("hall", -30.0, 0.95), 0.0)], False, Verdict.BEATEN, "hall"),
    ("same-level-lower-score", [(claim("hall", -30.0, 0.5), 0.0)], True, Verdict.BEST, "kitchen"),
    ("tie-first-site-wins", [(claim("attic", -30.0), 0.0)], False, Verdict.BEATEN, "attic"),
    ("tie-later-site-loses", [(claim("lounge", -30.0), 0.0)], True, Verdict.BEST, "kitchen"),
    ("own-echo-skipped", [(OWN, 0.003)], True, Verdict.ALONE, "kitchen"),
    (
        "three",
        [(claim("hall", -36.0), 0.02), (claim("bedroom", -25.0), -0.05)],
        False,
        Verdict.BEATEN,
        "bedroom",
    ),
    # A rival that claimed more than the window before us has decided without us: it answers.
    ("decided-before-us", [(claim("hall", -50.0), -(WINDOW + 0.1))], False, Verdict.LATE, "hall"),
    ("long-before", [(claim("hall", -20.0), -(WINDOW + 0.6))], True, Verdict.ALONE, "kitchen"),
    (
        "same-site-elsewhere",  # two satellites named alike: told apart by the wake's id
        [(claim("kitchen", -20.0, wake_id="kitchen-2"), 0.0)],
        False,
        Verdict.BEATEN,
        "kitchen",
    ),
]


@pytest.mark.parametrize(
    ("rivals", "won", "verdict", "winner"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_the_best_claim_in_the_window_wins(
    rivals: list[tuple[WakeClaim, float]], won: bool, verdict: Verdict, winner: str
) -> None:
    decision = decide(OWN, [Heard(c, offset) for c, offset in rivals], WINDOW)
    assert (decision.won, decision.verdict, decision.winner.site) == (won, verdict, winner)
    assert decision.won == (decision.winner == OWN)


def test_every_satellite_reaches_the_same_winner() -> None:
    claims = [claim("kitchen", -30.0), claim("hall", -30.0), claim("attic", -44.0, 0.99)]
    winners = []
    for own in claims:
        heard = [Heard(c, 0.01) for c in claims if c != own]
        decision = decide(own, heard, WINDOW)
        winners.append(decision.winner.site if not decision.won else own.site)
    assert winners == ["hall", "hall", "hall"]  # a tie at -30 dBFS: the first site by name
    assert sorted(claims, key=rank)[0].site == "hall"


# -- the machine: the wake waits for the earcon and the decision -----------------------------------

TIMEOUTS = Timeouts(wake_seconds=1.0, listening_seconds=2.0)
HEARD = WakeDetected("hey_jarvis", 0.9, -23.5)


def claiming() -> tuple[Assistant, list[Command]]:
    machine = Assistant(TIMEOUTS, arbitration=True)
    return machine, machine.handle(HEARD)


def test_a_wake_word_is_claimed_before_anything_else() -> None:
    _, commands = claiming()
    assert commands == [
        StartTurn(1, "hey_jarvis", 0.9),
        ClaimWake(1, "hey_jarvis", 0.9, -23.5),
        EnterState(P.WAKE, 1),
        SetTimeout(1, 1.0),
        PlayEarcon(1, Earcon.AWAKE),  # the window passes inside the earcon
    ]


@pytest.mark.parametrize(
    "events",
    [[EarconFinished(1), ClaimWon(1)], [ClaimWon(1), EarconFinished(1)]],
    ids=["earcon-first", "decision-first"],
)
def test_listening_starts_once_both_the_earcon_and_the_decision_are_in(events: list[Event]) -> None:
    machine, _ = claiming()
    first, second = events
    assert machine.handle(first) == []
    assert machine.phase is P.WAKE
    commands = machine.handle(second)
    assert commands[0] == EnterState(P.LISTENING, 1)
    assert StartListening(1) in commands


@pytest.mark.parametrize("earcon_done", [False, True])
def test_a_lost_claim_goes_back_to_idle_quietly(earcon_done: bool) -> None:
    machine, _ = claiming()
    if earcon_done:
        machine.handle(EarconFinished(1))
    commands = machine.handle(ClaimLost(1))
    assert commands == [
        CancelTurn(1),  # cuts the earcon short
        EnterState(P.IDLE, 1),
        SetTimeout(1, None),
        FinishTurn(1, Outcome.LOST),
        ResetWakeWord(),
    ]
    assert not [c for c in commands if isinstance(c, ReportError | PlayEarcon)]
    assert machine.handle(EarconFinished(1)) == []  # the earcon cut short: the turn is over
    assert machine.wake_word_listens


def test_only_a_wake_word_is_claimed() -> None:
    machine = Assistant(TIMEOUTS, arbitration=True)
    commands = machine.handle(ListenRequested())  # asked for: nobody else heard anything
    assert not [c for c in commands if isinstance(c, ClaimWake)]
    assert machine.handle(EarconFinished(1))[0] == EnterState(P.LISTENING, 1)
    plain = Assistant(TIMEOUTS)  # arbitration off: today's wake
    assert not [c for c in plain.handle(HEARD) if isinstance(c, ClaimWake)]
    assert plain.handle(EarconFinished(1))[0] == EnterState(P.LISTENING, 1)


def test_a_decision_for_a_turn_that_ended_is_ignored() -> None:
    machine, _ = claiming()
    machine.handle(MuteRequested(True))
    assert machine.phase is P.IDLE
    assert machine.handle(ClaimWon(1)) == []
    assert machine.handle(ClaimLost(1)) == []
    machine, _ = claiming()
    machine.handle(TimedOut(1))  # no decision and no earcon within wake_seconds
    assert machine.phase is P.IDLE
    assert machine.handle(ClaimWon(1)) == []


# -- the claim on the wire ---------------------------------------------------------------------


def test_a_claim_round_trips_through_its_json() -> None:
    payload = json.dumps(
        {
            "site": "kitchen",
            "wake_id": "a1b2",
            "wake_word": "hey_jarvis",
            "level_dbfs": -23.51,
            "score": 0.93,
        }
    ).encode()
    assert parse_claim(payload, max_payload_bytes=1024) == WakeClaim(
        "kitchen", "a1b2", "hey_jarvis", -23.51, 0.93
    )


GOOD = {"site": "hall", "wake_id": "x", "wake_word": "w", "level_dbfs": -20, "score": 0.5}
BAD_CLAIMS = [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2]", "must be an object"),
    (b"[" * 100_000, "not valid JSON"),
    (json.dumps({**GOOD, "site": ""}).encode(), "site must be a non-empty string"),
    (json.dumps({**GOOD, "site": 3}).encode(), "site must be a non-empty string"),
    (json.dumps({**GOOD, "wake_id": "x" * 200}).encode(), "longer than"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "score"}).encode(), "score must be"),
    (json.dumps({**GOOD, "score": True}).encode(), "score must be a number"),
    (json.dumps({**GOOD, "score": 1.5}).encode(), "score must be between"),
    (json.dumps({**GOOD, "level_dbfs": "loud"}).encode(), "level_dbfs must be a number"),
    (
        b'{"site": "a", "wake_id": "b", "wake_word": "c", "level_dbfs": NaN, "score": 0.5}',
        "between",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_CLAIMS)
def test_a_bad_claim_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_claim(payload, max_payload_bytes=1_000_000)
    with pytest.raises(ValueError, match="over the 16 limit"):
        parse_claim(json.dumps(GOOD).encode(), max_payload_bytes=16)


# -- how loud the wake word was ------------------------------------------------------------------


def tone(amplitude: float, seconds: float = 0.96) -> list[bytes]:
    n = round(seconds * 16_000)
    samples = amplitude * np.sin(2 * np.pi * 400 * np.arange(n) / 16_000)
    pcm = np.round(samples).astype("<i2").tobytes()
    return [pcm[i : i + 2 * FRAME_SAMPLES] for i in range(0, len(pcm), 2 * FRAME_SAMPLES)]


def test_the_wake_word_s_level_is_its_speech_in_dbfs() -> None:
    full = wake_level_dbfs(tone(32767))
    assert full == pytest.approx(-3.01, abs=0.01)  # a full-scale sine (4 periods per block)
    assert wake_level_dbfs(tone(32767 / 4)) == pytest.approx(full - 12.04, abs=0.02)
    # the pauses around the word do not lower it: the louder half of its 10 ms blocks counts
    padded = [SILENCE] * 4 + tone(32767 / 4, 0.64)
    assert wake_level_dbfs(padded) == pytest.approx(full - 12.04, abs=0.02)
    assert wake_level_dbfs([SILENCE] * 12) == LEVEL_FLOOR_DBFS
    assert wake_level_dbfs([]) == LEVEL_FLOOR_DBFS
    assert math.isfinite(wake_level_dbfs([WAKE]))


# -- the runtime's window, on the loop's clock ---------------------------------------------------


@dataclass
class FakeClaims:
    """A ``ClaimChannel`` without a broker: it keeps the claims sent, and answers each with the
    ``rivals`` given, each so long after it (as if from other satellites)."""

    site: str = "kitchen"
    connected: bool = True
    rivals: list[tuple[float, WakeClaim]] = field(default_factory=list)
    sent: list[WakeClaim] = field(default_factory=list)
    deliver: Callable[[WakeClaim], None] = lambda claim: None

    def publish_claim(self, claim: WakeClaim) -> None:
        self.sent.append(claim)
        loop = asyncio.get_running_loop()
        for delay_seconds, rival in self.rivals:
            loop.call_later(delay_seconds, self.deliver, rival)


AWAKE_SECONDS = 0.16
"""The awake earcon's length: the fake speaker takes that long to play anything."""


def claim_rig(claims: FakeClaims | None, *, earcons: bool = True) -> Rig:
    rig = Rig(FakeMicrophone(COMMAND), speaker=FakeSpeaker(seconds_per_play=AWAKE_SECONDS))
    rig.claims = claims
    rig.settings = {"audio": {"earcons": earcons}}
    if claims is not None:
        claims.deliver = lambda claim: rig.runtime.arbiter.heard(claim)
    return rig


async def wake_to_listening_ms(claims: FakeClaims | None, *, earcons: bool = True) -> float:
    rig = claim_rig(claims, earcons=earcons)
    await rig.run()
    (record,) = rig.recorder.turns
    assert record.outcome is Outcome.ANSWERED
    return record.timings_ms()["wake_to_listening"]


@virtual_clock
async def test_a_satellite_alone_adds_no_delay() -> None:
    plain = await wake_to_listening_ms(None)
    alone = FakeClaims()
    assert await wake_to_listening_ms(alone) == plain == AWAKE_SECONDS * 1000  # in the earcon
    assert [c.site for c in alone.sent] == ["kitchen"]
    assert alone.sent[0].level_dbfs > LEVEL_FLOOR_DBFS
    # Without a broker it does not wait at all, even without an earcon to hide the window in.
    away = FakeClaims(connected=False)
    assert await wake_to_listening_ms(away, earcons=False) == 0.0
    assert away.sent == []
    # Without an earcon, the window shows (the audio is kept: nothing of the command is lost).
    assert await wake_to_listening_ms(FakeClaims(), earcons=False) == WINDOW * 1000


RIVAL = WakeClaim("hall", "hall-1", "hey_jarvis", -3.0, 0.99)  # louder than any fake wake word


@pytest.mark.parametrize(
    ("delay_seconds", "won"),
    [(0.0, False), (WINDOW - 0.01, False), (WINDOW + 0.01, True), (1.0, True)],
    ids=["at-once", "inside-the-window", "after-the-window", "much-later"],
)
@virtual_clock
async def test_a_better_claim_wins_only_within_the_window(delay_seconds: float, won: bool) -> None:
    claims = FakeClaims(rivals=[(delay_seconds, RIVAL)])
    rig = claim_rig(claims)
    await rig.run()
    (record,) = rig.recorder.turns
    if won:
        assert record.outcome is Outcome.ANSWERED
        assert rig.recorder.transcripts == ["turn on the kitchen light"]
        return
    assert record.outcome is Outcome.LOST
    assert rig.recorder.states == ["idle", "wake", "idle"]
    assert rig.recorder.transcripts == rig.recorder.responses == []
    assert rig.recorder.errors == []
    assert rig.transcriber.received == []
    assert len(rig.speaker.played) == 1  # the earcon, cut short at the window's end
    assert rig.speaker.stops >= 1
