"""Claiming a wake word from the other satellites: the claim sent, the window kept on the loop's
clock, the rivals' claims heard, and the decision fed back to the machine.

The machine asks with ``ClaimWake``; the ``Arbiter`` sends the claim through its
``ClaimChannel`` (the MQTT bridge), and once ``window_seconds`` have passed on the loop's clock it
weighs the claims heard (``assistant.core.arbitration.decide``, with their arrival times as
offsets from its own wake word) and feeds back ``ClaimWon`` or ``ClaimLost``. When the broker is
away it does not wait: it wins at once. Every decision is logged and told to the observers
(``claim_decided``: MQTT shows it on ``<topic_prefix>/<site>/arbitration``).

Also here: how near the speaker is, from the wake word's audio (``wake_level_dbfs``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from assistant.core.arbitration import (
    DECIDED_SECONDS,
    Decision,
    Heard,
    Verdict,
    WakeClaim,
    decide,
)
from assistant.core.events import ClaimLost, ClaimWon, Event
from assistant.core.ports import ClaimChannel

_LOGGER = logging.getLogger(__name__)

WAKE_LEVEL_FRAMES: Final = 12
"""The wake word's audio: the detection frame and the 11 before it (0.96 s; openWakeWord fires
about 0.1 s after the word's end)."""
LEVEL_FLOOR_DBFS: Final = -120.0
"""The level of digital silence (and of a wake word whose audio is unknown)."""
BLOCK_SAMPLES: Final = 160
"""10 ms at 16 kHz: the blocks whose louder half is the speech."""
HEARD_KEPT: Final = 64
"""Rivals' claims remembered (only the last ``window + DECIDED_SECONDS`` ever count)."""


def wake_level_dbfs(frames: Sequence[bytes]) -> float:
    """The speech level of a wake word, in dBFS: the mean power of the louder half of its 10 ms
    blocks (so the pauses around and inside the word do not count), rounded to 0.01 dB."""
    samples = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    usable = len(samples) // BLOCK_SAMPLES * BLOCK_SAMPLES
    if usable == 0:
        return LEVEL_FLOOR_DBFS
    power = np.sort(np.mean(samples[:usable].reshape(-1, BLOCK_SAMPLES) ** 2, axis=1))
    loud = float(np.mean(power[len(power) // 2 :]))
    if loud <= 0.0:
        return LEVEL_FLOOR_DBFS
    return round(max(LEVEL_FLOOR_DBFS, 10.0 * math.log10(loud / 32768.0**2)), 2)


def describe(claim: WakeClaim) -> str:
    return f"{claim.site} ({claim.level_dbfs:.1f} dBFS, {claim.score:.2f})"


class Arbiter:
    """Sends this satellite's claims and decides them; hears the rivals' (``heard``)."""

    def __init__(
        self,
        channel: ClaimChannel | None,
        window_seconds: float,
        *,
        feed: Callable[[Event], None],
        tell: Callable[..., Any],
        now: Callable[[], float],
    ) -> None:
        self._channel = channel
        self.window_seconds = window_seconds
        self._feed = feed
        self._tell = tell
        self._now = now
        self._heard: deque[tuple[float, WakeClaim]] = deque(maxlen=HEARD_KEPT)
        self._deciding: asyncio.TimerHandle | None = None

    def heard(self, claim: WakeClaim) -> None:
        """A claim arrived from the broker (on the loop's thread): note when."""
        self._heard.append((self._now(), claim))

    def claim(self, turn: int, wake_word: str, score: float, level_dbfs: float | None) -> None:
        """Claim the wake word of ``turn``; feed back the decision after the window."""
        channel = self._channel
        site = channel.site if channel is not None else ""
        level = LEVEL_FLOOR_DBFS if level_dbfs is None else round(level_dbfs, 2)
        own = WakeClaim(site, uuid.uuid4().hex[:12], wake_word, level, round(score, 4))
        if channel is None or not channel.connected:
            self._decided(turn, own, Decision(True, own, Verdict.OFFLINE))
            return
        channel.publish_claim(own)
        _LOGGER.info(
            "arbitration: claimed %s for %s, wake %s", wake_word, describe(own), own.wake_id
        )
        self.close()
        self._deciding = asyncio.get_running_loop().call_later(
            self.window_seconds, self._decide, turn, own, self._now()
        )

    def close(self) -> None:
        if self._deciding is not None:
            self._deciding.cancel()
            self._deciding = None

    def _decide(self, turn: int, own: WakeClaim, claimed_at: float) -> None:
        self._deciding = None
        oldest = claimed_at - self.window_seconds - DECIDED_SECONDS
        heard = [Heard(claim, at - claimed_at) for at, claim in self._heard if at >= oldest]
        self._decided(turn, own, decide(own, heard, self.window_seconds))

    def _decided(self, turn: int, own: WakeClaim, decision: Decision) -> None:
        rivals = ", ".join(describe(claim) for claim in decision.rivals) or "none"
        if decision.won:
            _LOGGER.info(
                "arbitration: won wake %s (%s); rivals: %s", own.wake_id, decision.verdict, rivals
            )
        else:
            _LOGGER.info(
                "arbitration: lost wake %s to %s (%s)",
                own.wake_id,
                describe(decision.winner),
                decision.verdict,
            )
        self._tell("claim_decided", turn, own, decision)
        self._feed(ClaimWon(turn) if decision.won else ClaimLost(turn))
