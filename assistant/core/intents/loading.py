"""Reading and checking the sentence files: everything that can be wrong is found at load time.

``read_documents`` is the only I/O of the intents. ``build`` checks each file's shape before
hassil parses it (hassil's errors name no file), works out every intent's slots and the slot sets
its templates produce, and checks Lingling's own sections: responses, descriptions and actions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from hassil import Intents as HassilIntents
from hassil import is_match, parse_sentence
from hassil.expression import Alternative, Expression, Group, ListReference, RuleReference
from hassil.expression import Sentence as HassilSentence
from hassil.intents import IntentData, RangeSlotList, SlotList, TextSlotList
from hassil.util import merge_dict

from assistant.core.intents.responses import PLACEHOLDER, RESPONSE_VALUES, TEMPLATE_SYNTAX
from assistant.core.intents.slots import Slot, SlotValue, short
from assistant.errors import ConfigError

MAX_SHAPES: Final = 512
"""Slot combinations one template may produce; more means a runaway template."""

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


@dataclass(frozen=True, slots=True)
class ActionTemplate:
    topic: str
    payload: str
    qos: int
    retain: bool
    when: dict[str, tuple[SlotValue, ...]]


@dataclass(slots=True)
class IntentSpec:
    """One declared intent, as the sentence files describe it."""

    name: str
    file: str
    description: str = ""
    slots: dict[str, Slot] = field(default_factory=dict)
    shapes: set[frozenset[str]] = field(default_factory=set)
    """The slot names each sentence template (with its block's fixed slots) produces."""
    responses: dict[str, str] = field(default_factory=dict)
    actions: list[ActionTemplate] = field(default_factory=list)


def read_documents(directory: Path) -> list[tuple[str, Any]]:
    """Every ``*.yaml`` / ``*.yml`` file in ``directory``, parsed, with its path; ConfigError."""
    if not directory.is_dir():
        raise ConfigError(f"intents: directory {directory} does not exist")
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    documents: list[tuple[str, Any]] = []
    for path in paths:
        try:
            documents.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read it: {one_line(err)}") from err
    return documents


def build(
    documents: Sequence[tuple[str, Any]], language: str
) -> tuple[HassilIntents, dict[str, IntentSpec]]:
    """hassil's intents and Lingling's view of them, from documents each named by its file."""
    merged: dict[str, Any] = {"language": language, "intents": {}}
    intents: dict[str, IntentSpec] = {}
    for source, document in documents:
        if document is None:
            continue
        _check_document(source, document, language)
        for name in document.get("intents") or {}:
            intents.setdefault(name, IntentSpec(name=name, file=source))
        merge_dict(merged, copy.deepcopy({k: v for k, v in document.items() if v is not None}))
    try:
        hassil = HassilIntents.from_dict(merged)
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"intents: {one_line(err)}") from err
    for intent in hassil.intents.values():
        _analyse(intents[intent.name], intent.data, hassil)
    _warm_up(hassil)
    for source, document in documents:
        if document is not None:
            _attach_extras(source, document, intents)
    return hassil, intents


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


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
        raise ConfigError(f"{source}: {one_line(err)}") from err


def _mapping(source: str, document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: `{key}` must be a mapping")
    return value


def _analyse(intent: IntentSpec, blocks: Iterable[IntentData], hassil: HassilIntents) -> None:
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
            fixed = intent.slots.setdefault(name, Slot()).fixed
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
    slots: dict[str, Slot],
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
        known = slots.setdefault(expression.slot_name, Slot()).lists
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


def _attach_extras(
    source: str, document: Mapping[str, Any], intents: dict[str, IntentSpec]
) -> None:
    """Lingling's sections: responses, descriptions and actions, checked against the intents."""

    def declared(name: Any, section: str) -> IntentSpec:
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


def _action(source: str, intent: IntentSpec, action: Any) -> ActionTemplate:
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
            raise ConfigError(f"{where}: `when` {slot}={short(values)} is not a declared value")
        when[slot] = allowed
    return ActionTemplate(topic, payload, qos, retain, when)


def _check_template(
    source: str, what: str, template: str, intent: IntentSpec, values: Sequence[str]
) -> None:
    if TEMPLATE_SYNTAX.search(PLACEHOLDER.sub("", template)):
        problem = "only {{ slots.NAME }} and {{ NAME }} substitutions are supported"
        raise ConfigError(f"{source}: {what}: {problem}")
    for found in PLACEHOLDER.finditer(template):
        is_slot, name = found.group(1), found.group(2)
        if is_slot and name not in intent.slots:
            raise ConfigError(f"{source}: {what}: {intent.name} has no slot {name!r}")
        if not is_slot and name not in values:
            known = ", ".join(values) or "none here"
            raise ConfigError(f"{source}: {what}: unknown value {name!r} (known: {known})")
