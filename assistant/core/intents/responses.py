"""What an intent says and sends: response templates, clock values, durations, MQTT actions.

Templates know only ``{{ slots.NAME }}`` and ``{{ NAME }}`` (a clock value or ``duration``): no
expressions, so a sentence file cannot run code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from assistant.core.intents.slots import SlotValue, number

DEFAULT_RESPONSE: Final = "Done."
"""Said for an intent that has no response template."""
CLOCK_VALUES: Final = ("time", "time_24h", "date", "weekday", "month", "day", "year")
RESPONSE_VALUES: Final = (*CLOCK_VALUES, "duration")
"""Names a response template may use besides ``slots.NAME``."""

PLACEHOLDER: Final = re.compile(r"\{\{\s*(slots\.)?([A-Za-z_]\w*)\s*\}\}")
TEMPLATE_SYNTAX: Final = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
"""Template syntax left over once every ``PLACEHOLDER`` is gone: one that is not supported."""
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_UNITS: Final = (("hours", "hour"), ("minutes", "minute"), ("seconds", "second"))


@dataclass(frozen=True, slots=True)
class MqttAction:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


def clock_values(now: datetime) -> dict[str, str]:
    """What a response can say about ``now`` (English words, independent of the locale)."""
    day = _ordinal(now.day)
    weekday, month = _WEEKDAYS[now.weekday()], _MONTHS[now.month - 1]
    return {
        "time": f"{now.hour % 12 or 12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}",
        "time_24h": f"{now.hour:02d}:{now.minute:02d}",
        "date": f"{weekday}, {month} {day}",
        "weekday": weekday,
        "month": month,
        "day": day,
        "year": str(now.year),
    }


def spoken_duration(slots: Mapping[str, SlotValue]) -> str:
    """``hours``/``minutes``/``seconds`` slots as words: "1 hour and 30 minutes"."""
    parts = []
    for key, unit in _UNITS:
        value = slots.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{number(value)} {unit}{'' if value == 1 else 's'}")
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)


def render(template: str, slots: Mapping[str, SlotValue], values: Mapping[str, str]) -> str:
    """``template`` with each placeholder replaced by its slot or value ("" when there is none)."""

    def substitute(found: re.Match[str]) -> str:
        value = slots.get(found.group(2)) if found.group(1) else values.get(found.group(2))
        return "" if value is None else str(value)

    return PLACEHOLDER.sub(substitute, template)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"
