"""llama.cpp's server through the OpenAI client: streamed replies, and the bounded conversation.

``LlamaChat.stream()`` yields the reply's text deltas as they arrive, the tool calls it asks for
(when given ``tools``) once they are complete, then one chunk with llama.cpp's ``timings``
(prompt and generation speed, ``cache_n`` prompt tokens reused from the server's cache).
``Conversation`` builds the messages so that consecutive prompts share their prefix: the server
then only evaluates what is new. Sentences for speech come from
``assistant.core.sentences.SentenceSplitter``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

import httpx2
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    OpenAIError,
    omit,
)

from assistant.config import LlmConfig
from assistant.core.ports import ChatChunk, Message, ToolCall
from assistant.errors import ChatError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolUnionParam
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

_LOGGER = logging.getLogger(__name__)

API_KEY: Final = "no-key"
"""The local servers ignore the key, but the client refuses to start without one."""
MAX_RETRIES: Final = 0
"""No automatic retries: see ``openai_client``."""
CONNECT_TIMEOUT_SECONDS: Final = 3.0
HISTORY_KEEP_FRACTION: Final = 0.5


def openai_client(
    url: str, timeout_seconds: float, http_client: httpx2.AsyncClient | None = None
) -> AsyncOpenAI:
    """The ``AsyncOpenAI`` client both local-server adapters use.

    ``max_retries=0``: the client would also retry timeouts and 5xx answers, which doubles the
    wait past ``timeout_seconds`` while the user stands there, and a failing local server fails
    the same way again; a refused connection means the server is down. The turn fails at once
    with a clear error instead, and the user can simply ask again. Connecting gets at most
    ``CONNECT_TIMEOUT_SECONDS``: the servers are local, and a dead host should fail fast.
    """
    return AsyncOpenAI(
        base_url=url,
        api_key=API_KEY,
        max_retries=MAX_RETRIES,
        timeout=httpx2.Timeout(
            timeout_seconds, connect=min(timeout_seconds, CONNECT_TIMEOUT_SECONDS)
        ),
        http_client=http_client,
    )


def describe_api_error(err: BaseException, server: str, url: str) -> str:
    """One line saying what went wrong talking to ``server`` at ``url``."""
    if isinstance(err, APITimeoutError | httpx2.TimeoutException):
        return f"{server} at {url} did not answer in time"
    if isinstance(err, APIConnectionError | httpx2.TransportError):
        cause = err.__cause__ or err.__context__ or err
        return f"cannot reach {server} at {url}: {cause}"
    if isinstance(err, APIStatusError):
        detail = err.body.get("message") if isinstance(err.body, Mapping) else err.body
        text = f"{server} at {url} answered HTTP {err.status_code}"
        return f"{text}: {_short(str(detail))}" if detail else text
    return f"{server} at {url} failed: {_short(str(err))}"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LlamaChat:
    """``Chat`` on llama.cpp's ``/v1/chat/completions``; one client, its connections reused.

    The client (and an ``http_client`` passed in) is closed by ``aclose()``.
    """

    SERVER: Final = "the llama.cpp server"

    def __init__(self, config: LlmConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        self._config = config
        self._client = openai_client(config.url, config.timeout_seconds, http_client)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncGenerator[ChatChunk, None]:
        """Text deltas in order, then ``ChatChunk(timings=...)`` when the server sent them.

        With ``tools`` (OpenAI function tools) the server may answer with tool calls instead of
        or after text: they come in one ``ChatChunk(tool_calls=...)`` once complete, at the
        ``finish_reason`` (or at the end of the stream), before the timings. Their arguments are
        the model's text, unchecked: validate them before acting.

        Cancelling the task closes the response, and so does ``aclose()`` on the generator (use
        ``contextlib.aclosing`` when leaving the loop early): llama.cpp then stops generating.
        A generator merely abandoned keeps its connection until it is garbage-collected.
        """
        config = self._config
        params = cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages])
        tool_params = cast("list[ChatCompletionToolUnionParam]", [dict(t) for t in tools or ()])
        try:
            stream = await self._client.chat.completions.create(
                model=config.model,
                messages=params,
                stream=True,
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                tools=tool_params or omit,
                tool_choice="auto" if tool_params else omit,
            )
        except (OpenAIError, httpx2.HTTPError) as err:
            raise ChatError(describe_api_error(err, self.SERVER, config.url)) from err
        timings: Mapping[str, float] | None = None
        calls = _ToolCalls()
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield ChatChunk(text=choice.delta.content)
                    if choice.delta.tool_calls:
                        calls.add(choice.delta.tool_calls)
                    if choice.finish_reason is not None and calls:
                        yield ChatChunk(tool_calls=calls.take())
                    if choice.finish_reason == "length":
                        _LOGGER.info("reply cut at max_tokens=%d", config.max_tokens)
                timings = _timings(chunk.model_extra) or timings
        except (OpenAIError, httpx2.HTTPError, ValueError) as err:
            # ValueError: a data line that is not JSON
            raise ChatError(describe_api_error(err, self.SERVER, config.url)) from err
        except (AttributeError, TypeError, KeyError) as err:
            # JSON, but not a chat.completion.chunk (the client does not validate chunks)
            raise ChatError(f"{self.SERVER} at {config.url} sent a malformed chunk: {err}") from err
        finally:
            await stream.close()
        if calls:
            yield ChatChunk(tool_calls=calls.take())
        if timings is not None:
            yield ChatChunk(timings=timings)

    async def aclose(self) -> None:
        await self._client.close()


@dataclass(slots=True)
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _ToolCalls:
    """Tool calls put together from streamed ``delta.tool_calls`` pieces, by ``index``.

    llama.cpp sends a call's ``id``, ``type`` and ``function.name`` in its first piece (again,
    whole, if the name grew while it was parsed), then ``function.arguments`` in fragments.
    """

    def __init__(self) -> None:
        self._calls: dict[int, _PendingCall] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, pieces: Iterable[ChoiceDeltaToolCall]) -> None:
        for piece in pieces:
            call = self._calls.setdefault(piece.index, _PendingCall())
            if piece.id:
                call.id = piece.id
            if piece.function is not None:
                if piece.function.name:
                    call.name = piece.function.name
                if piece.function.arguments:
                    call.arguments.append(piece.function.arguments)

    def take(self) -> tuple[ToolCall, ...]:
        calls = tuple(
            ToolCall(
                id=call.id or f"call_{index}", name=call.name, arguments="".join(call.arguments)
            )
            for index, call in sorted(self._calls.items())
        )
        self._calls.clear()
        return calls


def _timings(extra: Mapping[str, Any] | None) -> dict[str, float] | None:
    value = (extra or {}).get("timings")
    if not isinstance(value, Mapping):
        return None
    return {
        str(key): float(number)
        for key, number in value.items()
        if isinstance(number, int | float) and not isinstance(number, bool)
    }


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
