"""The conversation's history as the LLM sees it, bounded, and the messages for a new question.

``Conversation`` builds the messages so that consecutive prompts share their prefix: the server
then only evaluates what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from assistant.config import LlmConfig
from assistant.core.ports import ToolCall

HISTORY_KEEP_FRACTION: Final = 0.5


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One round of tool calls in a turn: what the model said and asked for, and the results.

    ``results[i]`` answers ``calls[i]`` (say so when a call was refused: the model reads it).
    """

    calls: tuple[ToolCall, ...]
    results: tuple[str, ...]
    text: str = ""
    """The model's text before the calls, as it wrote it (often empty)."""

    def __post_init__(self) -> None:
        if len(self.calls) != len(self.results):
            raise ValueError("a tool step needs one result per call")

    def messages(self) -> list[dict[str, Any]]:
        """The assistant message with ``tool_calls``, then one ``tool`` message per result."""
        calls = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in self.calls
        ]
        messages: list[dict[str, Any]] = [
            {"role": "assistant", "content": self.text or None, "tool_calls": calls}
        ]
        messages += [
            {"role": "tool", "tool_call_id": call.id, "content": result}
            for call, result in zip(self.calls, self.results, strict=True)
        ]
        return messages

    def chars(self) -> int:
        calls = sum(len(call.name) + len(call.arguments) for call in self.calls)
        return len(self.text) + calls + sum(len(result) for result in self.results)


@dataclass(frozen=True, slots=True)
class _Exchange:
    user: str
    reply: str
    steps: tuple[ToolStep, ...] = ()

    def chars(self) -> int:
        return len(self.user) + len(self.reply) + sum(step.chars() for step in self.steps)


class Conversation:
    """The system prompt, a bounded history of exchanges and the new question.

    An exchange is the question, the tool-call rounds of its turn (if any) and the final reply;
    the next prompts replay all of it exactly, so the server's cache still holds it.

    History grows until it would hold more than ``history_turns`` exchanges or
    ``history_chars`` characters (tool calls and results count); then the oldest exchanges are
    dropped until it is back to half of both limits (the newest exchange stays when it fits the
    limits on its own). Dropping in a batch, and never rewriting what is kept, leaves the
    prompt's prefix unchanged for several turns in a row, so llama.cpp reuses its cached
    tokens; dropping one exchange per turn would change the prefix right after the system prompt
    on every turn.
    """

    def __init__(self, system_prompt: str, history_turns: int, history_chars: int) -> None:
        if history_turns < 0 or history_chars < 0:
            raise ValueError("history limits must not be negative")
        self.system_prompt = system_prompt
        self.history_turns = history_turns
        self.history_chars = history_chars
        self._history: list[_Exchange] = []

    @classmethod
    def from_config(cls, config: LlmConfig) -> Conversation:
        return cls(config.system_prompt, config.history_turns, config.history_chars)

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The kept (user, assistant) exchanges, oldest first (without their tool calls)."""
        return tuple((exchange.user, exchange.reply) for exchange in self._history)

    def messages(self, user_text: str, steps: Sequence[ToolStep] = ()) -> list[dict[str, Any]]:
        """The prompt for ``user_text``; with ``steps``, the prompt that continues its turn
        after those tool-call rounds (it starts with the turn's first prompt)."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        for exchange in self._history:
            messages.append({"role": "user", "content": exchange.user})
            for step in exchange.steps:
                messages += step.messages()
            messages.append({"role": "assistant", "content": exchange.reply})
        messages.append({"role": "user", "content": user_text})
        for step in steps:
            messages += step.messages()
        return messages

    def record(self, user_text: str, reply_text: str, steps: Sequence[ToolStep] = ()) -> None:
        """Remember an exchange. Pass the reply as the model wrote it (the raw deltas joined),
        and the turn's tool-call rounds as sent, so the next prompt repeats the tokens the
        server already has in its cache."""
        history = self._history
        history.append(_Exchange(user_text, reply_text, tuple(steps)))
        if len(history) <= self.history_turns and self._chars() <= self.history_chars:
            return
        keep_turns = int(self.history_turns * HISTORY_KEEP_FRACTION)
        keep_chars = int(self.history_chars * HISTORY_KEEP_FRACTION)
        while history and (len(history) > keep_turns or self._chars() > keep_chars):
            newest_fits = len(history) == 1 and self.history_turns >= 1
            if newest_fits and self._chars() <= self.history_chars:
                break
            del history[0]

    def clear(self) -> None:
        self._history.clear()

    def _chars(self) -> int:
        return sum(exchange.chars() for exchange in self._history)


def asks_question(reply: str) -> bool:
    """Whether a reply ends by asking something (then listen again without the wake word)."""
    return reply.rstrip().rstrip("\"')»”").endswith("?")
