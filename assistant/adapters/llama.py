"""llama.cpp's server through the OpenAI client: streamed replies.

``LlamaChat.stream()`` yields the reply's text deltas as they arrive, the tool calls it asks for
(when given ``tools``) once they are complete, then one chunk with llama.cpp's ``timings``
(prompt and generation speed, ``cache_n`` prompt tokens reused from the server's cache).
``assistant.core.conversation.Conversation`` builds the messages. Sentences for speech come from
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

from assistant.adapters.endpoints import server_root
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


async def warm_up(client: AsyncOpenAI, url: str) -> bool:
    """Open a connection to the server now (``GET /health``), so that the first turn does not
    pay for it; True when the server answered. A server that is not there yet is the first
    turn's business: it is reported then."""
    try:
        response = await client.get(server_root(url) + "/health", cast_to=httpx2.Response)
    except (OpenAIError, httpx2.HTTPError) as err:
        _LOGGER.debug("warming up %s: %s", url, err)
        return False
    return response.is_success


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

    async def warm_up(self) -> bool:
        """Connect now, so the first turn does not pay for it."""
        return await warm_up(self._client, self._config.url)

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
