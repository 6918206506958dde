"""Intents in Home Assistant's sentence-file format: matched locally, offered to the LLM as tools.

``Intents.load`` reads ``intents/*.yaml`` once (the only I/O here) and checks everything it can
then: templates, lists, responses and actions. Afterwards all is pure and fast:

- ``match(text)`` runs Home Assistant's own matcher (hassil) on a transcript: the fast path.
- ``tools()`` describes the same intents as OpenAI tools, their slots as JSON schema.
- ``validate(name, arguments)`` accepts a tool call only for a declared intent whose arguments
  are exactly the slots of one of its sentence templates, each with a declared value. Nothing a
  transcript or a model says can reach beyond that.
- ``respond(match, now)`` renders the spoken reply, ``actions(match)`` the MQTT messages.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import yaml
from hassil import Intents as HassilIntents
from hassil import is_match, parse_sentence, recognize_best
from hassil.expression import Alternative, Expression, Group, ListReference, RuleReference
from hassil.expression import Sentence as HassilSentence
from hassil.intents import (
    IntentData,
    RangeFractionType,
    RangeSlotList,
    SlotList,
    TextSlotList,
    WildcardSlotList,
)
from hassil.util import merge_dict

from assistant.config import IntentsConfig
from assistant.errors import AssistantError, ConfigError

SlotValue = str | int | float

DEFAULT_RESPONSE: Final = "Done."
"""Said for an intent that has no response template."""
MAX_SHAPES: Final = 512
"""Slot combinations one template may produce; more means a runaway template."""
MAX_WILDCARD_CHARS: Final = 200
CLOCK_VALUES: Final = ("time", "time_24h", "date", "weekday", "month", "day", "year")
RESPONSE_VALUES: Final = (*CLOCK_VALUES, "duration")
"""Names a response template may use besides ``slots.NAME``."""

_TOP_KEYS: Final = {
    "language",
    "intents",
    "lists",
    "expansion_rules",
    "skip_words",
    "settings",
    "responses",
    "descriptions",
    "actions",
}
_ACTION_KEYS: Final = {"topic", "payload", "qos", "retain", "when"}
_PLACEHOLDER: Final = re.compile(r"\{\{\s*(slots\.)?([A-Za-z_]\w*)\s*\}\}")
_TEMPLATE_SYNTAX: Final = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_UNITS: Final = (("hours", "hour"), ("minutes", "minute"), ("seconds", "second"))


class IntentError(AssistantError):
    """A tool call or match that cannot be acted on."""

    code = "intent"


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """An intent with its slot values, from a transcript or a validated tool call."""

    name: str
    slots: dict[str, SlotValue]
    text: str
    """The transcript it was found in ("" for a tool call unless given)."""
    response: str = "default"
    """The response template's key (a sentence block's ``response:``)."""


@dataclass(frozen=True, slots=True)
class MqttAction:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class _ActionTemplate:
    topic: str
    payload: str
    qos: int
    retain: bool
    when: dict[str, tuple[SlotValue, ...]]


@dataclass(slots=True)
class _Slot:
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
            if _same(fixed, value):
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


@dataclass(slots=True)
class _Intent:
    name: str
    file: str
    description: str = ""
    slots: dict[str, _Slot] = field(default_factory=dict)
    shapes: set[frozenset[str]] = field(default_factory=set)
    """The slot names each sentence template (with its block's fixed slots) produces."""
    responses: dict[str, str] = field(default_factory=dict)
    actions: list[_ActionTemplate] = field(default_factory=list)


class Intents:
    """The declared intents; build with ``load`` (files) or ``from_documents`` (parsed YAML)."""

    def __init__(self, hassil: HassilIntents, intents: dict[str, _Intent]) -> None:
        self._hassil = hassil
        self._intents = intents

    @classmethod
    def load(cls, config: IntentsConfig) -> Intents:
        """Read every ``*.yaml`` / ``*.yml`` file in ``config.directory``; ConfigError if bad."""
        directory = config.directory
        if not directory.is_dir():
            raise ConfigError(f"intents: directory {directory} does not exist")
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
        documents: list[tuple[str, Any]] = []
        for path in paths:
            try:
                documents.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                raise ConfigError(f"{path}: cannot read it: {_one_line(err)}") from err
        return cls.from_documents(documents, language=config.language)

    @classmethod
    def from_documents(cls, documents: Sequence[tuple[str, Any]], *, language: str) -> Intents:
        """Intents from parsed YAML documents, each named (for errors) by its file."""
        merged: dict[str, Any] = {"language": language, "intents": {}}
        intents: dict[str, _Intent] = {}
        for source, document in documents:
            if document is None:
                continue
            _check_document(source, document, language)
            for name in document.get("intents") or {}:
                intents.setdefault(name, _Intent(name=name, file=source))
            merge_dict(merged, copy.deepcopy({k: v for k, v in document.items() if v is not None}))
        try:
            hassil = HassilIntents.from_dict(merged)
        except (KeyError, TypeError, ValueError, AssertionError) as err:
            raise ConfigError(f"intents: {_one_line(err)}") from err
        for intent in hassil.intents.values():
            _analyse(intents[intent.name], intent.data, hassil)
        _warm_up(hassil)
        for source, document in documents:
            if document is not None:
                _attach_extras(source, document, intents)
        return cls(hassil, intents)

    @property
    def names(self) -> list[str]:
        return list(self._intents)

    def match(self, text: str) -> IntentMatch | None:
        """The intent a transcript asks for, or None: ignores case, punctuation and filler."""
        if not text.strip():
            return None
        result = recognize_best(text, self._hassil, language=self._hassil.language)
        if result is None:
            return None
        slots: dict[str, SlotValue] = {}
        for entity in result.entities_list:
            value = entity.value
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                return None  # a value no declared list holds
            slots[entity.name] = value.strip() if isinstance(value, str) else _number(value)
        response = result.response if isinstance(result.response, str) else "default"
        return IntentMatch(result.intent.name, slots, text, response)

    def respond(self, match: IntentMatch, now: datetime) -> str:
        """The spoken reply: the intent's response template with its slots and the clock."""
        intent = self._intent(match.name)
        template = intent.responses.get(match.response, intent.responses.get("default"))
        if template is None:
            return DEFAULT_RESPONSE
        values = {**clock_values(now), "duration": spoken_duration(match.slots)}
        text = _render(template, match.slots, values)
        return " ".join(text.split())

    def actions(self, match: IntentMatch) -> list[MqttAction]:
        """The MQTT messages the intent declares for these slot values."""
        actions: list[MqttAction] = []
        for action in self._intent(match.name).actions:
            if not all(
                any(_same(allowed, match.slots.get(slot)) for allowed in values)
                for slot, values in action.when.items()
            ):
                continue
            needed = {m.group(2) for m in _PLACEHOLDER.finditer(action.topic + action.payload)}
            if not needed <= set(match.slots):
                continue
            topic = _render(action.topic, match.slots, {})
            if not topic or any(char in topic for char in "+#\0"):
                raise IntentError(f"{match.name}: action topic {topic!r} is not a valid topic")
            payload = _render(action.payload, match.slots, {})
            actions.append(MqttAction(topic, payload, action.qos, action.retain))
        return actions

    def tools(self) -> list[dict[str, Any]]:
        """The intents as OpenAI function tools, in a stable order (a stable prompt prefix)."""
        tools: list[dict[str, Any]] = []
        for intent in self._intents.values():
            required = set.intersection(*map(set, intent.shapes)) if intent.shapes else set()
            parameters: dict[str, Any] = {
                "type": "object",
                "properties": {name: slot.schema() for name, slot in intent.slots.items()},
                "required": [name for name in intent.slots if name in required],
                "additionalProperties": False,
            }
            function = {
                "name": intent.name,
                "description": intent.description or f"The {intent.name} intent.",
                "parameters": parameters,
            }
            tools.append({"type": "function", "function": function})
        return tools

    def validate(self, name: str, arguments: str, text: str = "") -> IntentMatch:
        """The match a tool call stands for; IntentError unless every part of it is declared."""
        intent = self._intents.get(name)
        if intent is None:
            raise IntentError(f"{_short(name)} is not a declared intent")
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError as err:
            raise IntentError(f"{name}: the arguments are not valid JSON: {err}") from err
        if not isinstance(args, dict):
            raise IntentError(f"{name}: the arguments must be a JSON object")
        unknown = [key for key in args if key not in intent.slots]
        if unknown:
            known = ", ".join(intent.slots) or "none"
            raise IntentError(f"{name} has no slot {_short(unknown[0])} (its slots: {known})")
        if frozenset(args) not in intent.shapes:
            shapes = sorted(sorted(shape) for shape in intent.shapes)
            expected = "; ".join(", ".join(shape) or "no arguments" for shape in shapes)
            got = ", ".join(args) or "none"
            raise IntentError(f"{name} takes one of: {expected} (got: {got})")
        slots: dict[str, SlotValue] = {}
        for key, value in args.items():
            slot = intent.slots[key]
            accepted = slot.accept(value)
            if accepted is None:
                raise IntentError(
                    f"{name}: {key}={_short(value)} is not allowed: {slot.describe()}"
                )
            slots[key] = accepted
        return IntentMatch(name, slots, text)

    def _intent(self, name: str) -> _Intent:
        intent = self._intents.get(name)
        if intent is None:
            raise IntentError(f"{_short(name)} is not a declared intent")
        return intent


def print_intent(text: str, config: IntentsConfig) -> int:
    """``lingling intent TEXT``: print the local match as JSON; 0 if one, 1 if none."""
    found = Intents.load(config).match(text)
    if found is None:
        print(json.dumps({"intent": None}))
        return 1
    print(json.dumps({"intent": found.name, "slots": found.slots}, ensure_ascii=False))
    return 0


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
            parts.append(f"{_number(value)} {unit}{'' if value == 1 else 's'}")
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)


# --- loading ---------------------------------------------------------------------------------


def _check_document(source: str, document: Any, language: str) -> None:
    """The shape of one file, before hassil sees it (hassil's own errors name no file)."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping with `intents`, `lists`, ...")
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown section {unknown[0]!r}")
    if document.get("language", language) != language:
        problem = f"language is {document['language']!r}, but intents.language is {language!r}"
        raise ConfigError(f"{source}: {problem}")
    intents = _mapping(source, document, "intents")
    for name, intent in intents.items():
        data = intent.get("data") if isinstance(intent, dict) else None
        if not isinstance(data, list) or not all(isinstance(block, dict) for block in data):
            raise ConfigError(f"{source}: intent {name}: expected `data:` with a list of blocks")
        for block in data:
            sentences = block.get("sentences")
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                raise ConfigError(f"{source}: intent {name}: `sentences` must be a list of text")
            for slot, value in (block.get("slots") or {}).items():
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    raise ConfigError(f"{source}: intent {name}: slot {slot} must be one value")
    for key in ("lists", "expansion_rules", "descriptions", "actions"):
        _mapping(source, document, key)
    if not isinstance(document.get("skip_words") or [], list):
        raise ConfigError(f"{source}: `skip_words` must be a list")
    present = {key: value for key, value in document.items() if value is not None}
    try:  # parses every list, rule and sentence of this file
        single = HassilIntents.from_dict({**present, "language": language, "intents": intents})
        for intent_data in single.intents.values():
            for block_data in intent_data.data:
                _ = block_data.sentences
    except Exception as err:  # hassil raises many kinds; all mean a bad file
        raise ConfigError(f"{source}: {_one_line(err)}") from err


def _mapping(source: str, document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: `{key}` must be a mapping")
    return value


def _analyse(intent: _Intent, blocks: Iterable[IntentData], hassil: HassilIntents) -> None:
    """Collect the intent's slots and the slot sets its templates produce."""
    for block in blocks:
        if block.requires_context:
            continue  # needs context Lingling never has: it can never match
        lists = {**hassil.slot_lists, **block.slot_lists}
        rules = {**hassil.expansion_rules, **block.expansion_rules}
        for sentence in block.sentences:
            try:
                shapes = _shapes(sentence.expression, lists, rules, intent.slots, 0)
            except _Unresolved as err:
                problem = f"sentence {sentence.text!r} uses {err}, which no file defines"
                raise ConfigError(f"{intent.file}: intent {intent.name}: {problem}") from err
            intent.shapes.update(shape | frozenset(block.slots) for shape in shapes)
        for name, value in block.slots.items():
            fixed = intent.slots.setdefault(name, _Slot()).fixed
            if value not in fixed:
                fixed.append(value)
    for slot in intent.slots.values():
        for slot_list in slot.lists:
            if isinstance(slot_list, TextSlotList):
                for value in slot_list.values:
                    out = value.value_out
                    if isinstance(out, bool) or not isinstance(out, str | int | float):
                        problem = f"list {slot_list.name}: give each `in:` value an `out:`"
                        raise ConfigError(f"{intent.file}: intent {intent.name}: {problem}")


def _warm_up(hassil: HassilIntents) -> None:
    """Build hassil's number-word tables now, not on the first spoken number (≈15 ms each)."""
    sentence = parse_sentence("{number}")
    for slot_list in hassil.slot_lists.values():
        if isinstance(slot_list, RangeSlotList) and slot_list.words:
            is_match("one", sentence, {"number": slot_list}, language=hassil.language)


class _Unresolved(Exception):
    pass


def _shapes(
    expression: Expression,
    lists: Mapping[str, SlotList],
    rules: Mapping[str, HassilSentence],
    slots: dict[str, _Slot],
    depth: int,
) -> set[frozenset[str]]:
    if depth > 32:
        raise _Unresolved("expansion rules that refer to each other")
    if isinstance(expression, ListReference):
        if expression.is_capture:
            return {frozenset()}
        bounds = expression.get_inline_range()
        if bounds is not None:
            slot_list: SlotList = RangeSlotList(None, bounds[0], bounds[1], bounds[2])
        elif expression.list_name in lists:
            slot_list = lists[expression.list_name]
        else:
            raise _Unresolved(f"list {{{expression.list_name}}}")
        known = slots.setdefault(expression.slot_name, _Slot()).lists
        if not any(slot_list is other for other in known):
            known.append(slot_list)
        return {frozenset({expression.slot_name})}
    if isinstance(expression, RuleReference):
        rule = rules.get(expression.rule_name)
        if rule is None:
            raise _Unresolved(f"rule <{expression.rule_name}>")
        return _shapes(rule.expression, lists, rules, slots, depth + 1)
    if isinstance(expression, Alternative):
        found: set[frozenset[str]] = set()
        for item in expression.items:
            found |= _shapes(item, lists, rules, slots, depth + 1)
        return found or {frozenset()}
    if isinstance(expression, Group):  # a sequence or a permutation: every item
        combined: set[frozenset[str]] = {frozenset()}
        for item in expression.items:
            item_shapes = _shapes(item, lists, rules, slots, depth + 1)
            combined = {a | b for a in combined for b in item_shapes}
            if len(combined) > MAX_SHAPES:
                raise _Unresolved(f"more than {MAX_SHAPES} slot combinations")
        return combined
    return {frozenset()}  # text


def _attach_extras(source: str, document: Mapping[str, Any], intents: dict[str, _Intent]) -> None:
    """Lingling's sections: responses, descriptions and actions, checked against the intents."""

    def declared(name: Any, section: str) -> _Intent:
        if name not in intents:
            raise ConfigError(f"{source}: {section} for {name!r}, which no file declares")
        return intents[name]

    responses = document.get("responses") or {}
    by_intent = responses.get("intents") or {} if isinstance(responses, dict) else None
    if not isinstance(by_intent, dict):  # other keys (Home Assistant's `errors`) are ignored
        raise ConfigError(f"{source}: expected `responses: intents: NAME: {{KEY: text}}`")
    for name, templates in by_intent.items():
        intent = declared(name, "responses")
        if not isinstance(templates, dict) or not all(
            isinstance(t, str) for t in templates.values()
        ):
            raise ConfigError(f"{source}: responses for {name}: expected `KEY: text` entries")
        for key, template in templates.items():
            _check_template(source, f"response {name}.{key}", template, intent, RESPONSE_VALUES)
            intent.responses[str(key)] = template
    for name, description in (document.get("descriptions") or {}).items():
        if not isinstance(description, str):
            raise ConfigError(f"{source}: description of {name} must be text")
        declared(name, "a description").description = description.strip()
    for name, actions in (document.get("actions") or {}).items():
        intent = declared(name, "actions")
        if not isinstance(actions, list):
            raise ConfigError(f"{source}: actions for {name}: expected a list")
        intent.actions.extend(_action(source, intent, action) for action in actions)


def _action(source: str, intent: _Intent, action: Any) -> _ActionTemplate:
    where = f"{source}: action for {intent.name}"
    if not isinstance(action, dict) or not isinstance(action.get("topic"), str):
        raise ConfigError(f"{where}: expected a mapping with `topic` and `payload`")
    unknown = sorted(set(action) - _ACTION_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    topic, payload = action["topic"], action.get("payload", "")
    qos, retain = action.get("qos", 1), action.get("retain", False)
    if isinstance(payload, int | float) and not isinstance(payload, bool):
        payload = str(payload)
    if not isinstance(payload, str):
        raise ConfigError(f"{where}: `payload` must be text")
    if qos not in (0, 1, 2) or isinstance(qos, bool) or not isinstance(retain, bool):
        raise ConfigError(f"{where}: `qos` must be 0, 1 or 2 and `retain` true or false")
    if not topic or any(char in topic for char in "+#\0"):
        raise ConfigError(f"{where}: {topic!r} is not a topic one can publish to")
    for template in (topic, payload):
        _check_template(source, f"action for {intent.name}", template, intent, ())
    when: dict[str, tuple[SlotValue, ...]] = {}
    for slot, values in (action.get("when") or {}).items():
        allowed = tuple(values) if isinstance(values, list) else (values,)
        declared = intent.slots.get(slot)
        if declared is None or any(declared.accept(value) is None for value in allowed):
            raise ConfigError(f"{where}: `when` {slot}={_short(values)} is not a declared value")
        when[slot] = allowed
    return _ActionTemplate(topic, payload, qos, retain, when)


def _check_template(
    source: str, what: str, template: str, intent: _Intent, values: Sequence[str]
) -> None:
    if _TEMPLATE_SYNTAX.search(_PLACEHOLDER.sub("", template)):
        problem = "only {{ slots.NAME }} and {{ NAME }} substitutions are supported"
        raise ConfigError(f"{source}: {what}: {problem}")
    for found in _PLACEHOLDER.finditer(template):
        is_slot, name = found.group(1), found.group(2)
        if is_slot and name not in intent.slots:
            raise ConfigError(f"{source}: {what}: {intent.name} has no slot {name!r}")
        if not is_slot and name not in values:
            known = ", ".join(values) or "none here"
            raise ConfigError(f"{source}: {what}: unknown value {name!r} (known: {known})")


# --- values ----------------------------------------------------------------------------------


def _accept(slot_list: SlotList, value: SlotValue) -> SlotValue | None:
    if isinstance(slot_list, TextSlotList):
        for item in slot_list.values:
            out = item.value_out
            if isinstance(out, str | int | float) and _same(out, value):
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
            return _number(value)
        return None
    if isinstance(slot_list, WildcardSlotList) and isinstance(value, str):
        text = value.strip()
        return text if 0 < len(text) <= MAX_WILDCARD_CHARS else None
    return None


def _same(declared: object, value: object) -> bool:
    if isinstance(declared, str) and isinstance(value, str):
        return declared.casefold() == value.strip().casefold()
    if isinstance(declared, bool) or isinstance(value, bool):
        return False
    return (
        isinstance(declared, int | float) and isinstance(value, int | float) and declared == value
    )


def _range_schema(slot_list: RangeSlotList) -> dict[str, Any]:
    scale = slot_list.multiplier or 1
    whole = slot_list.fraction_type is None and float(scale).is_integer()
    schema: dict[str, Any] = {
        "type": "integer" if whole else "number",
        "minimum": _number(slot_list.start * scale),
        "maximum": _number(slot_list.stop * scale),
    }
    if slot_list.step != 1 and whole:
        schema["multipleOf"] = _number(slot_list.step * scale)
    return schema


def _describe_schema(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "minimum" in schema:
        kind = "a whole number" if schema["type"] == "integer" else "a number"
        step = f" in steps of {schema['multipleOf']}" if "multipleOf" in schema else ""
        return f"{kind} from {schema['minimum']} to {schema['maximum']}{step}"
    return f"text of at most {MAX_WILDCARD_CHARS} characters"


def _number(value: int | float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _render(template: str, slots: Mapping[str, SlotValue], values: Mapping[str, str]) -> str:
    def substitute(found: re.Match[str]) -> str:
        value = slots.get(found.group(2)) if found.group(1) else values.get(found.group(2))
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(substitute, template)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
