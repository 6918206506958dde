"""The ringing of finished timers: what rings, and the ring's own timeout.

A ring is not a turn: it has a number of its own (``ring``), which its timeout carries
(``SetRingTimeout`` → ``RingTimedOut``), so a stale one is known as such. A part of
``Assistant`` (``assistant.core.machine``): the callbacks named in ``assistant.core.table``.
"""

from __future__ import annotations

from transitions import EventData

from assistant.core.commands import Command, Ring, SetRingTimeout, StopRing
from assistant.core.events import RingTimedOut, TimerFinished
from assistant.core.table import event_of


class Ringing:
    """Timers that finished (ringing, or waiting for the turn's end to ring), and the ring."""

    _commands: list[Command]

    def __init__(self) -> None:
        self.ring = 0
        """The current (or last) ring's number."""
        self._rings: list[str | None] = []  # timers that finished: ringing, or waiting to

    @property
    def rings_waiting(self) -> bool:
        return bool(self._rings)

    def _start_ring(self, seconds: float) -> None:
        """The ringing state was entered: ring, until stopped or ``seconds`` have passed."""
        self.ring += 1
        self._commands.append(SetRingTimeout(self.ring, seconds))
        self._commands.append(Ring(tuple(self._rings)))

    def _stop_ring(self) -> None:
        """The ringing state was left."""
        self._rings.clear()
        self._commands.append(StopRing())

    def _this_ring(self, data: EventData) -> bool:
        return event_of(data, RingTimedOut).ring == self.ring

    def _add_ring(self, data: EventData) -> None:
        self._rings.append(event_of(data, TimerFinished).name)

    def _hold_ring(self, data: EventData) -> None:
        self._add_ring(data)  # it rings when the turn is over

    def _ring(self, data: EventData) -> None:
        self._commands.append(Ring(tuple(self._rings)))
