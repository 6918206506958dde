"""Timers, run by Lingling itself: what the timer intents do, and what to say about it. Pure.

``TimerBook`` holds the timers; every operation takes ``now`` (wall-clock seconds since the epoch,
so that timers survive a restart) and returns what changed. ``apply`` runs a timer intent's slots
against the book and returns the reply; calling it on a copy previews the reply without acting.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

TIMER_INTENTS: Final = frozenset(
    {
        "HassStartTimer",
        "HassCancelTimer",
        "HassCancelAllTimers",
        "HassTimerStatus",
        "HassIncreaseTimer",
        "HassDecreaseTimer",
        "HassPauseTimer",
        "HassUnpauseTimer",
    }
)


class TimerState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"


class Change(StrEnum):
    """What happened to a timer (the ``event`` of ``lingling/<site>/timer``)."""

    STARTED = "started"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"
    FINISHED = "finished"


@dataclass(slots=True)
class Timer:
    id: str
    name: str | None
    total_seconds: float
    ends_at: float
    """When it rings (wall seconds); a paused timer keeps ``remaining_when_paused`` instead."""
    state: TimerState = TimerState.RUNNING
    remaining_when_paused: float | None = None
    started_for: float = 0.0
    """The length it was started with (``total_seconds`` changes when time is added)."""

    def __post_init__(self) -> None:
        self.started_for = self.started_for or self.total_seconds

    def remaining(self, now: float) -> float:
        if self.state is TimerState.PAUSED:
            assert self.remaining_when_paused is not None
            return self.remaining_when_paused
        return max(0.0, self.ends_at - now)

    def describe(self) -> str:
        return f"the {self.name} timer" if self.name else "the timer"

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "total_seconds": round(self.total_seconds, 1),
            "remaining_seconds": round(self.remaining(now), 1),
            "state": str(self.state),
        }


@dataclass(frozen=True, slots=True)
class Changed:
    change: Change
    timer: Timer


@dataclass(slots=True)
class TimerBook:
    timers: dict[str, Timer] = field(default_factory=dict)
    next_id: int = 1

    # -- operations ---------------------------------------------------------------------------

    def start(self, seconds: float, now: float, name: str | None = None) -> Changed:
        timer = Timer(str(self.next_id), name, seconds, now + seconds)
        self.next_id += 1
        self.timers[timer.id] = timer
        return Changed(Change.STARTED, timer)

    def find(self, name: str | None, started_for: float = 0.0) -> list[Timer]:
        """The timers a request means: by name, or by the length it was started for ("the 10
        minute timer"), else all of them."""
        if name:
            wanted = _norm(name)
            return [t for t in self.timers.values() if t.name and _norm(t.name) == wanted]
        if started_for:
            return [t for t in self.timers.values() if t.started_for == started_for]
        return list(self.timers.values())

    def cancel(self, timer: Timer) -> Changed:
        del self.timers[timer.id]
        return Changed(Change.CANCELLED, timer)

    def adjust(self, timer: Timer, seconds: float, now: float) -> Changed:
        """Add (or, negative, remove) time."""
        if timer.state is TimerState.PAUSED:
            assert timer.remaining_when_paused is not None
            timer.remaining_when_paused = max(0.0, timer.remaining_when_paused + seconds)
        else:
            timer.ends_at = max(now, timer.ends_at + seconds)
        timer.total_seconds = max(0.0, timer.total_seconds + seconds)
        return Changed(Change.UPDATED, timer)

    def pause(self, timer: Timer, now: float) -> Changed:
        timer.remaining_when_paused = timer.remaining(now)
        timer.state = TimerState.PAUSED
        return Changed(Change.PAUSED, timer)

    def resume(self, timer: Timer, now: float) -> Changed:
        timer.ends_at = now + timer.remaining(now)
        timer.remaining_when_paused = None
        timer.state = TimerState.RUNNING
        return Changed(Change.RESUMED, timer)

    def due(self, now: float) -> list[Changed]:
        """Running timers whose time has come: removed, and reported as finished."""
        finished = [
            t for t in self.timers.values() if t.state is TimerState.RUNNING and t.ends_at <= now
        ]
        return [Changed(Change.FINISHED, self.timers.pop(t.id)) for t in finished]

    def next_due(self) -> float | None:
        running = [t.ends_at for t in self.timers.values() if t.state is TimerState.RUNNING]
        return min(running, default=None)

    # -- intents --------------------------------------------------------------------------------

    def apply(self, intent: str, slots: Mapping[str, Any], now: float) -> tuple[str, list[Changed]]:
        """Run a timer intent; return what to say and what changed."""
        name = _name(slots.get("name"))
        seconds = _seconds(slots)
        if intent == "HassStartTimer":
            if seconds <= 0:
                return "For how long?", []
            changed = self.start(seconds, now, name)
            return f"{_cap(changed.timer.describe())} is set for {say(seconds)}.", [changed]
        if intent == "HassCancelAllTimers":
            if not self.timers:
                return "There are no timers.", []
            changes = [self.cancel(t) for t in list(self.timers.values())]
            return f"Cancelled {_count(len(changes))}.", changes
        chosen = self.find(name, _seconds(slots, prefix="start_"))
        if not chosen:
            return (f"There is no {name} timer." if name else "There are no timers."), []
        if intent == "HassTimerStatus":
            return " ".join(_status(t, now) for t in chosen), []
        if len(chosen) > 1:
            return f"There are {_count(len(chosen))}: which one?", []
        (timer,) = chosen
        if intent == "HassCancelTimer":
            return f"Cancelled {timer.describe()}.", [self.cancel(timer)]
        if intent in ("HassIncreaseTimer", "HassDecreaseTimer"):
            sign = 1 if intent == "HassIncreaseTimer" else -1
            changed = self.adjust(timer, sign * seconds, now)
            return f"{_cap(_status(timer, now))}", [changed]
        if intent == "HassPauseTimer":
            return f"Paused {timer.describe()}.", [self.pause(timer, now)]
        if intent == "HassUnpauseTimer":
            return f"Resumed {timer.describe()}.", [self.resume(timer, now)]
        raise ValueError(f"not a timer intent: {intent}")

    def preview(self, intent: str, slots: Mapping[str, Any], now: float) -> str:
        """What ``apply`` would say, without changing anything."""
        return copy.deepcopy(self).apply(intent, slots, now)[0]

    # -- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"next_id": self.next_id, "timers": [asdict(t) for t in self.timers.values()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimerBook:
        """Raise ValueError for data that is not a timer book."""
        try:
            timers = [
                Timer(
                    id=str(t["id"]),
                    name=t.get("name"),
                    total_seconds=float(t["total_seconds"]),
                    ends_at=float(t["ends_at"]),
                    state=TimerState(t.get("state", "running")),
                    remaining_when_paused=(
                        None
                        if t.get("remaining_when_paused") is None
                        else float(t["remaining_when_paused"])
                    ),
                    started_for=float(t.get("started_for") or 0.0),
                )
                for t in data["timers"]
            ]
            return cls({t.id: t for t in timers}, int(data["next_id"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a timer book: {err!r}") from err


def _norm(name: str) -> str:
    return " ".join(name.lower().removesuffix(" timer").split())


def _name(value: Any) -> str | None:
    if value is None:
        return None
    text = _norm(str(value))
    return text or None


def _seconds(slots: Mapping[str, Any], prefix: str = "") -> float:
    total = 0.0
    for key, factor in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
        value = slots.get(prefix + key)
        if value is not None:
            total += float(value) * factor
    return total


def say(seconds: float) -> str:
    """A duration as spoken: "1 hour and 5 minutes", "30 seconds"."""
    left = max(0, math.ceil(seconds))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{value} {unit}{'' if value == 1 else 's'}"
        for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if value
    ] or ["0 seconds"]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _status(timer: Timer, now: float) -> str:
    left = say(timer.remaining(now))
    paused = " (paused)" if timer.state is TimerState.PAUSED else ""
    return f"{_cap(timer.describe())} has {left} left{paused}."


def _count(count: int) -> str:
    return "1 timer" if count == 1 else f"{count} timers"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
