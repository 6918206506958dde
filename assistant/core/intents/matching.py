"""The declared intents at run time: matching transcripts, checking tool calls, answering.

All pure and fast once loaded: ``match`` runs Home Assistant's own matcher (hassil), ``validate``
accepts a tool call only within what the sentence files declare, ``respond`` and ``actions``
render the reply and the MQTT messages, ``tools`` offers the intents to the LLM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hassil import Intents as HassilIntents
from hassil import recognize_best

from assistant.config import IntentsConfig
from assistant.core.intents.loading import IntentSpec, build, read_documents
from assistant.core.intents.responses import (
    DEFAULT_RESPONSE,
    PLACEHOLDER,
    MqttAction,
    clock_values,
    render,
    spoken_duration,
)
from assistant.core.intents.slots import SlotValue, number, same, short
from assistant.errors import AssistantError


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


class Intents:
    """The declared intents; build with ``load`` (files) or ``from_documents`` (parsed YAML)."""

    def __init__(self, hassil: HassilIntents, intents: dict[str, IntentSpec]) -> None:
        self._hassil = hassil
        self._intents = intents

    @classmethod
    def load(cls, config: IntentsConfig) -> Intents:
        """Read every ``*.yaml`` / ``*.yml`` file in ``config.directory``; ConfigError if bad."""
        documents = read_documents(config.directory)
        return cls.from_documents(documents, language=config.language)

    @classmethod
    def from_documents(cls, documents: Sequence[tuple[str, Any]], *, language: str) -> Intents:
        """Intents from parsed YAML documents, each named (for errors) by its file."""
        hassil, intents = build(documents, language)
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
            slots[entity.name] = value.strip() if isinstance(value, str) else number(value)
        response = result.response if isinstance(result.response, str) else "default"
        return IntentMatch(result.intent.name, slots, text, response)

    def respond(self, match: IntentMatch, now: datetime) -> str:
        """The spoken reply: the intent's response template with its slots and the clock."""
        intent = self._intent(match.name)
        template = intent.responses.get(match.response, intent.responses.get("default"))
        if template is None:
            return DEFAULT_RESPONSE
        values = {**clock_values(now), "duration": spoken_duration(match.slots)}
        text = render(template, match.slots, values)
        return " ".join(text.split())

    def actions(self, match: IntentMatch) -> list[MqttAction]:
        """The MQTT messages the intent declares for these slot values."""
        actions: list[MqttAction] = []
        for action in self._intent(match.name).actions:
            if not all(
                any(same(allowed, match.slots.get(slot)) for allowed in values)
                for slot, values in action.when.items()
            ):
                continue
            needed = {m.group(2) for m in PLACEHOLDER.finditer(action.topic + action.payload)}
            if not needed <= set(match.slots):
                continue
            topic = render(action.topic, match.slots, {})
            if not topic or any(char in topic for char in "+#\0"):
                raise IntentError(f"{match.name}: action topic {topic!r} is not a valid topic")
            payload = render(action.payload, match.slots, {})
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
            raise IntentError(f"{short(name)} is not a declared intent")
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError as err:
            raise IntentError(f"{name}: the arguments are not valid JSON: {err}") from err
        if not isinstance(args, dict):
            raise IntentError(f"{name}: the arguments must be a JSON object")
        unknown = [key for key in args if key not in intent.slots]
        if unknown:
            known = ", ".join(intent.slots) or "none"
            raise IntentError(f"{name} has no slot {short(unknown[0])} (its slots: {known})")
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
                raise IntentError(f"{name}: {key}={short(value)} is not allowed: {slot.describe()}")
            slots[key] = accepted
        return IntentMatch(name, slots, text)

    def _intent(self, name: str) -> IntentSpec:
        intent = self._intents.get(name)
        if intent is None:
            raise IntentError(f"{short(name)} is not a declared intent")
        return intent


def print_intent(text: str, config: IntentsConfig) -> int:
    """``lingling intent TEXT``: print the local match as JSON; 0 if one, 1 if none."""
    found = Intents.load(config).match(text)
    if found is None:
        print(json.dumps({"intent": None}))
        return 1
    print(json.dumps({"intent": found.name, "slots": found.slots}, ensure_ascii=False))
    return 0
