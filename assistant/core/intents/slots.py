"""What a slot may hold: the values its lists and sentence blocks declare, as a check and a schema.

A tool call's argument is accepted only as one of those declared values (``Slot.accept``); the
same declaration becomes the JSON schema the LLM is offered (``Slot.schema``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hassil.intents import (
    RangeFractionType,
    RangeSlotList,
    SlotList,
    TextSlotList,
    WildcardSlotList,
)

SlotValue = str | int | float

MAX_WILDCARD_CHARS: Final = 200


@dataclass(slots=True)
class Slot:
    """What one slot of one intent may hold: values from lists, or fixed by a sentence block."""

    lists: list[SlotList] = field(default_factory=list)
    fixed: list[SlotValue] = field(default_factory=list)

    def accept(self, value: object) -> SlotValue | None:
        """The declared value ``value`` stands for, or None."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        for fixed in self.fixed:
            if same(fixed, value):
                return fixed
        for slot_list in self.lists:
            accepted = _accept(slot_list, value)
            if accepted is not None:
                return accepted
        return None

    def schema(self) -> dict[str, Any]:
        enum = [v for v in self.fixed if not any(_accept(sl, v) is not None for sl in self.lists)]
        schemas: list[dict[str, Any]] = []
        for slot_list in self.lists:
            if isinstance(slot_list, TextSlotList):
                enum.extend(value.value_out for value in slot_list.values)
            elif isinstance(slot_list, RangeSlotList):
                schemas.append(_range_schema(slot_list))
            elif isinstance(slot_list, WildcardSlotList):
                schemas.append({"type": "string", "maxLength": MAX_WILDCARD_CHARS})
        if enum:
            unique = list(dict.fromkeys(enum))
            kinds = {type(value) for value in unique}
            schema: dict[str, Any] = {"enum": unique}
            if kinds == {str}:
                schema = {"type": "string", "enum": unique}
            elif kinds == {int}:
                schema = {"type": "integer", "enum": unique}
            schemas.insert(0, schema)
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}

    def describe(self) -> str:
        schema = self.schema()
        parts = schema.get("anyOf", [schema])
        return " or ".join(_describe_schema(part) for part in parts)


def same(declared: object, value: object) -> bool:
    """Whether ``value`` is the declared value: text ignoring case, numbers by value."""
    if isinstance(declared, str) and isinstance(value, str):
        return declared.casefold() == value.strip().casefold()
    if isinstance(declared, bool) or isinstance(value, bool):
        return False
    return (
        isinstance(declared, int | float) and isinstance(value, int | float) and declared == value
    )


def number(value: int | float) -> int | float:
    """A whole float as an int (``2.0`` → ``2``), anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def short(value: object, limit: int = 60) -> str:
    """A value as JSON for an error message, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _accept(slot_list: SlotList, value: SlotValue) -> SlotValue | None:
    if isinstance(slot_list, TextSlotList):
        for item in slot_list.values:
            out = item.value_out
            if isinstance(out, str | int | float) and same(out, value):
                return out
        return None
    if isinstance(slot_list, RangeSlotList):
        if isinstance(value, str):
            return None
        base = value / slot_list.multiplier if slot_list.multiplier else value
        whole = math.floor(base + 1e-9)
        fraction = base - whole
        fractions = [0.0, *RangeFractionType.get_fractions(slot_list.fraction_type)]
        on_grid = (whole - slot_list.start) % slot_list.step == 0
        in_range = slot_list.start <= whole <= slot_list.stop and on_grid
        if in_range and any(abs(fraction - allowed) < 1e-6 for allowed in fractions):
            return number(value)
        return None
    if isinstance(slot_list, WildcardSlotList) and isinstance(value, str):
        text = value.strip()
        return text if 0 < len(text) <= MAX_WILDCARD_CHARS else None
    return None


def _range_schema(slot_list: RangeSlotList) -> dict[str, Any]:
    scale = slot_list.multiplier or 1
    whole = slot_list.fraction_type is None and float(scale).is_integer()
    schema: dict[str, Any] = {
        "type": "integer" if whole else "number",
        "minimum": number(slot_list.start * scale),
        "maximum": number(slot_list.stop * scale),
    }
    if slot_list.step != 1 and whole:
        schema["multipleOf"] = number(slot_list.step * scale)
    return schema


def _describe_schema(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "minimum" in schema:
        kind = "a whole number" if schema["type"] == "integer" else "a number"
        step = f" in steps of {schema['multipleOf']}" if "multipleOf" in schema else ""
        return f"{kind} from {schema['minimum']} to {schema['maximum']}{step}"
    return f"text of at most {MAX_WILDCARD_CHARS} characters"
