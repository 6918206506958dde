"""Many satellites, one answer: which of the satellites that heard a wake word answers it.

Each satellite that hears a wake word claims it: a ``WakeClaim`` with its site, the wake word, an
id of this wake, and how near the speaker seems (the wake word's speech level, then its score),
sent to every satellite of the house. It then waits a short window for the others' claims and
applies ``decide`` to what it heard. Every satellite applies the same rule to the same claims, so
they agree on one winner; the others go back to idle.

Claims are compared by when they arrived, on the deciding satellite's own clock (``Heard``: the
offset from its own wake word), never by the senders' clocks:

- a rival's claim that arrived within the window before or after our own wake word is weighed:
  the best claim wins (``rank``: louder, then a higher score, then the site's name);
- a rival's claim that arrived earlier than that (up to ``DECIDED_SECONDS`` more) comes from a
  satellite whose window closed before our claim could reach it: it has decided without us, so
  it answers (or one it lost to does), and we do not;
- anything else (older, or after the window) is not about this wake word.

Pure: no clocks, no I/O. The runtime keeps the times (``assistant.runtime.arbiter``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Final

DECIDED_SECONDS: Final = 0.5
"""How long before our window a rival's claim still counts as the same wake word (one a rival
decided without us). Detections of one utterance in several rooms lie well within this."""


@dataclass(frozen=True, slots=True)
class WakeClaim:
    """One satellite's claim to a wake word it heard. Values as sent (rounded), so that every
    satellite compares the same numbers."""

    site: str
    wake_id: str
    """Unique to this wake word on this satellite."""
    wake_word: str
    level_dbfs: float
    """The speech level of the wake word where it was heard (dBFS): the nearer, the louder."""
    score: float
    """The wake word model's score (0-1)."""


def rank(claim: WakeClaim) -> tuple[float, float, str, str]:
    """Sort key, the best claim first: the loudest, then the highest score, then the site (and
    the wake's id) first in alphabetical order, so that a tie is broken the same way everywhere."""
    return (-claim.level_dbfs, -claim.score, claim.site, claim.wake_id)


@dataclass(frozen=True, slots=True)
class Heard:
    """A rival's claim as it reached us."""

    claim: WakeClaim
    offset_seconds: float
    """When it arrived, from our own wake word, on our clock (negative: before it)."""


class Verdict(StrEnum):
    """Why a claim was won or lost."""

    ALONE = "alone"
    """Won: no rival claimed this wake word."""
    BEST = "best"
    """Won: the best of the claims in the window."""
    BEATEN = "beaten"
    """Lost: a rival's claim in the window is better."""
    LATE = "late"
    """Lost: a rival claimed it so much earlier that it decided without this claim."""
    OFFLINE = "offline"
    """Won: the broker is away, no claim could be exchanged (the runtime's verdict)."""


@dataclass(frozen=True, slots=True)
class Decision:
    won: bool
    winner: WakeClaim
    """Our own claim when won; else the rival that answers (as far as we know)."""
    verdict: Verdict
    rivals: tuple[WakeClaim, ...] = ()
    """The rivals' claims that counted."""


def decide(
    own: WakeClaim,
    heard: Sequence[Heard],
    window_seconds: float,
    decided_seconds: float = DECIDED_SECONDS,
) -> Decision:
    """Whether ``own`` wins, from the rivals' claims ``heard`` (ours, echoed back, is skipped)."""
    rivals = [h for h in heard if h.claim.wake_id != own.wake_id]
    oldest = -(window_seconds + decided_seconds)
    earlier = [h for h in rivals if oldest <= h.offset_seconds < -window_seconds]
    if earlier:
        first = min(earlier, key=lambda h: (h.offset_seconds, rank(h.claim)))
        return Decision(False, first.claim, Verdict.LATE, (first.claim,))
    weighed = tuple(h.claim for h in rivals if abs(h.offset_seconds) <= window_seconds)
    if not weighed:
        return Decision(True, own, Verdict.ALONE)
    best = min((own, *weighed), key=rank)
    if best == own:
        return Decision(True, own, Verdict.BEST, weighed)
    return Decision(False, best, Verdict.BEATEN, weighed)


def claim_json(claim: WakeClaim) -> dict[str, Any]:
    """A claim as JSON data: what is sent to the other satellites."""
    return asdict(claim)


def decision_json(turn: int, own: WakeClaim, decision: Decision) -> dict[str, Any]:
    """What a satellite shows of a decision (MQTT, the event log)."""
    return {
        "turn": turn,
        "wake_id": own.wake_id,
        "won": decision.won,
        "verdict": str(decision.verdict),
        "winner": decision.winner.site,
        "claim": claim_json(own),
        "rivals": [claim_json(claim) for claim in decision.rivals],
    }
