"""Intents in Home Assistant's sentence-file format: matched locally, offered to the LLM as tools.

``Intents.load`` reads ``intents/*.yaml`` once (the only I/O here) and checks everything it can
then: templates, lists, responses and actions. Afterwards all is pure and fast:

- ``match(text)`` runs Home Assistant's own matcher (hassil) on a transcript: the fast path.
- ``tools()`` describes the same intents as OpenAI tools, their slots as JSON schema.
- ``validate(name, arguments)`` accepts a tool call only for a declared intent whose arguments
  are exactly the slots of one of its sentence templates, each with a declared value. Nothing a
  transcript or a model says can reach beyond that.
- ``respond(match, now)`` renders the spoken reply, ``actions(match)`` the MQTT messages.

The modules: ``loading`` (reading and checking the files), ``slots`` (declared values and their
schemas), ``matching`` (the ``Intents`` above), ``responses`` (templates, clock, MQTT actions).
"""

from assistant.core.intents.loading import MAX_SHAPES
from assistant.core.intents.matching import IntentError, IntentMatch, Intents, print_intent
from assistant.core.intents.responses import (
    CLOCK_VALUES,
    DEFAULT_RESPONSE,
    RESPONSE_VALUES,
    MqttAction,
    clock_values,
    spoken_duration,
)
from assistant.core.intents.slots import MAX_WILDCARD_CHARS, SlotValue

__all__ = [
    "CLOCK_VALUES",
    "DEFAULT_RESPONSE",
    "MAX_SHAPES",
    "MAX_WILDCARD_CHARS",
    "RESPONSE_VALUES",
    "IntentError",
    "IntentMatch",
    "Intents",
    "MqttAction",
    "SlotValue",
    "clock_values",
    "print_intent",
    "spoken_duration",
]
