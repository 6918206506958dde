"""LlamaChat through the real AsyncOpenAI client on loopback llama.cpp servers; Conversation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest

from assistant.adapters.llama import LlamaChat, openai_client
from assistant.config import IntentsConfig, LlmConfig
from assistant.core.conversation import Conversation, ToolStep, asks_question
from assistant.core.intents import IntentError, Intents
from assistant.core.ports import ChatChunk, Message, ToolCall
from assistant.core.sentences import SentenceSplitter, first_clause
from assistant.errors import ChatError
from tests.support.http import CountingTransport
from tests.support.servers import FakeLlamaServer, FakeReply, FakeToolCall

INTENTS_DIR = Path(__file__).parent.parent / "intents"

REPLY = "Sure. The kitchen light is on now. Anything else?"
TIMING_KEYS = {
    "cache_n",
    "prompt_n",
    "prompt_ms",
    "prompt_per_token_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_token_ms",
    "predicted_per_second",
}
QUESTION: list[Message] = [{"role": "user", "content": "turn on the kitchen light"}]


@pytest.fixture
def llama() -> Iterator[FakeLlamaServer]:
    with FakeLlamaServer(REPLY) as server:
        yield server


async def collect(chat: LlamaChat, messages: Sequence[Message]) -> list[ChatChunk]:
    async def run() -> list[ChatChunk]:
        return [chunk async for chunk in chat.stream(messages)]

    return await asyncio.wait_for(run(), 1)


def make_chat(url: str, **overrides: object) -> LlamaChat:
    return LlamaChat(LlmConfig.model_validate({"url": url, **overrides}))


async def test_stream_yields_each_delta_in_order_then_the_timings(llama: FakeLlamaServer) -> None:
    chat = make_chat(llama.v1_url)
    try:
        chunks = await collect(chat, QUESTION)
    finally:
        await chat.aclose()

    texts = [chunk.text for chunk in chunks if chunk.text]
    assert texts == [
        "Sure.",
        " The",
        " kitchen",
        " light",
        " is",
        " on",
        " now.",
        " Anything",
        " else?",
    ]
    assert chunks[-1].text == ""
    assert chunks[-1].timings is not None
    assert set(chunks[-1].timings) == TIMING_KEYS
    assert chunks[-1].timings["predicted_n"] == 10  # nine words and the end-of-text token
    assert all(chunk.timings is None for chunk in chunks[:-1])


async def test_request_carries_the_configured_model_and_sampling(llama: FakeLlamaServer) -> None:
    chat = make_chat(llama.v1_url, model="qwen", max_tokens=42, temperature=0.2)
    try:
        await collect(chat, QUESTION)
    finally:
        await chat.aclose()

    (request,) = llama.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["stream"] is True
    assert request.body["model"] == "qwen"
    assert request.body["max_tokens"] == 42
    assert request.body["temperature"] == 0.2
    assert request.body["messages"] == QUESTION


async def test_max_tokens_cuts_the_reply(llama: FakeLlamaServer) -> None:
    chat = make_chat(llama.v1_url, max_tokens=3)
    try:
        chunks = await collect(chat, QUESTION)
    finally:
        await chat.aclose()
    assert "".join(chunk.text for chunk in chunks) == "Sure. The kitchen"
    assert llama.requests[0].chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_a_stable_prefix_is_served_from_the_prompt_cache(llama: FakeLlamaServer) -> None:
    conversation = Conversation("You are Lingling.", history_turns=6, history_chars=4000)
    chat = make_chat(llama.v1_url)
    cached = []
    try:
        for question in ("turn on the kitchen light", "and the hall light", "thanks"):
            chunks = await collect(chat, conversation.messages(question))
            reply = "".join(chunk.text for chunk in chunks)
            conversation.record(question, reply)
            assert chunks[-1].timings is not None
            cached.append(chunks[-1].timings)
    finally:
        await chat.aclose()

    first, *later = cached
    assert first["cache_n"] == 0
    for timings in later:
        assert timings["cache_n"] > timings["prompt_n"]  # only the new exchange is evaluated


async def test_first_sentence_is_ready_while_the_rest_is_still_to_come(
    llama: FakeLlamaServer,
) -> None:
    llama.hold_after_tokens = 2  # "Sure." " The", then the other 7 tokens once resumed
    chat = make_chat(llama.v1_url)
    splitter = SentenceSplitter()
    sentences: list[str] = []
    sent_by_then: list[str | None] = []
    try:
        async with asyncio.timeout(2):  # a client that waited for the whole reply would hang
            async for chunk in chat.stream(QUESTION):
                sentences += splitter.feed(chunk.text)
                if sentences and not sent_by_then:
                    chunks = llama.requests[0].chunks
                    sent_by_then = [c["choices"][0]["delta"].get("content") for c in chunks]
                    llama.resume()
    finally:
        await chat.aclose()
    sentences += splitter.flush()

    assert sent_by_then == [None, "Sure.", " The"]  # the role, then two tokens
    assert sentences == ["Sure.", "The kitchen light is on now.", "Anything else?"]


async def test_unreachable_server_raises_chat_error_after_one_attempt() -> None:
    server = FakeLlamaServer().start()
    url = server.v1_url
    server.stop()  # nothing listens on the port now
    transport = CountingTransport()
    chat = LlamaChat(LlmConfig(url=url), http_client=httpx2.AsyncClient(transport=transport))
    try:
        with pytest.raises(ChatError, match=r"cannot reach the llama\.cpp server") as caught:
            await collect(chat, QUESTION)
    finally:
        await chat.aclose()
    assert caught.value.code == "llm"
    assert url in str(caught.value)
    assert transport.attempts == 1  # no retry


@pytest.mark.parametrize("status", [500, 503, 400])
async def test_http_error_raises_chat_error(llama: FakeLlamaServer, status: int) -> None:
    llama.error_status = status
    chat = make_chat(llama.v1_url)
    try:
        with pytest.raises(ChatError, match=f"HTTP {status}: the fake server was told to fail"):
            await collect(chat, QUESTION)
    finally:
        await chat.aclose()
    assert len(llama.requests) == 1  # no retry


async def test_error_in_the_stream_raises_chat_error_after_the_text_so_far(
    llama: FakeLlamaServer,
) -> None:
    llama.error_after_tokens = 2
    chat = make_chat(llama.v1_url)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in chat.stream(QUESTION):
            received.append(chunk.text)

    try:
        with pytest.raises(ChatError, match="fake failure"):
            await asyncio.wait_for(consume(), 1)
    finally:
        await chat.aclose()
    assert received == ["Sure.", " The"]


async def test_a_stalled_stream_times_out_and_is_dropped(llama: FakeLlamaServer) -> None:
    llama.stall_after_tokens = 1
    chat = make_chat(llama.v1_url, timeout_seconds=0.2)
    try:
        with pytest.raises(ChatError, match="did not answer in time") as caught:
            await collect(chat, QUESTION)
        await asyncio.to_thread(llama.wait_for_hang_ups, 1)  # before the client is closed
    finally:
        await chat.aclose()
    assert caught.value.code == "llm"
    (request,) = llama.requests  # one attempt only
    assert request.client_disconnected


async def test_cancelling_a_waiting_stream_raises_cancelled_error(llama: FakeLlamaServer) -> None:
    llama.hang = True
    chat = make_chat(llama.v1_url)
    task = asyncio.create_task(collect(chat, QUESTION))
    try:
        await asyncio.to_thread(llama.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
        await asyncio.to_thread(llama.wait_for_hang_ups, 1)  # the request was dropped
    finally:
        await chat.aclose()


async def test_cancelling_in_the_middle_of_a_stream_raises_cancelled_error(
    llama: FakeLlamaServer,
) -> None:
    llama.stall_after_tokens = 1
    chat = make_chat(llama.v1_url)
    received: list[str] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in chat.stream(QUESTION):
            received.append(chunk.text)
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
    finally:
        await chat.aclose()
    assert received == ["Sure."]


# --- on a mock transport: what the loopback server cannot easily send -----------------------

# A stream captured from llama-server (llama.cpp b1-0c1e570, two-sentences.gguf) with
# stream_options.include_usage: the timings ride on the usage chunk, which has no choices.
REAL_USAGE_STREAM = b"""\
data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],\
"created":1795614059,"id":"chatcmpl-BLaF","model":"/m/two-sentences.gguf",\
"system_fingerprint":"b1-0c1e570","object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Sure."}}],\
"created":1795614059,"id":"chatcmpl-BLaF","model":"/m/two-sentences.gguf",\
"system_fingerprint":"b1-0c1e570","object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1795614059,\
"id":"chatcmpl-BLaF","model":"/m/two-sentences.gguf","system_fingerprint":"b1-0c1e570",\
"object":"chat.completion.chunk"}

data: {"choices":[],"created":1795614059,"id":"chatcmpl-BLaF","model":"/m/two-sentences.gguf",\
"system_fingerprint":"b1-0c1e570","object":"chat.completion.chunk","usage":{"completion_tokens":1,\
"prompt_tokens":56,"total_tokens":57,"prompt_tokens_details":{"cached_tokens":55}},\
"timings":{"cache_n":55,"prompt_n":1,"prompt_ms":0.433,"prompt_per_token_ms":0.433,\
"prompt_per_second":2309.4688221709007,"predicted_n":1,"predicted_ms":0.42,\
"predicted_per_token_ms":0.0,"predicted_per_second":0.0}}

data: [DONE]

"""


class RecordingStream(httpx2.AsyncByteStream):
    def __init__(self, parts: Sequence[bytes]) -> None:
        self.parts = parts
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def aclose(self) -> None:
        self.closed = True


def mock_chat(stream: RecordingStream) -> LlamaChat:
    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(reply))
    return LlamaChat(LlmConfig(url="http://llama.test/v1"), http_client=client)


async def test_timings_on_a_usage_chunk_without_choices_are_read() -> None:
    chat = mock_chat(RecordingStream([REAL_USAGE_STREAM]))
    try:
        chunks = await collect(chat, QUESTION)
    finally:
        await chat.aclose()
    assert [chunk.text for chunk in chunks[:-1]] == ["Sure."]
    assert chunks[-1].timings is not None
    assert chunks[-1].timings["cache_n"] == 55


async def test_a_data_line_that_is_not_json_raises_chat_error() -> None:
    chat = mock_chat(RecordingStream([b'data: {"choices": [\n\n']))
    try:
        with pytest.raises(ChatError, match=r"llama\.test"):
            await collect(chat, QUESTION)
    finally:
        await chat.aclose()


async def test_leaving_the_loop_early_closes_the_response() -> None:
    stream = RecordingStream([REAL_USAGE_STREAM])
    chat = mock_chat(stream)
    try:
        chunks = chat.stream(QUESTION)
        async with asyncio.timeout(1):
            async for _ in chunks:
                break
            await chunks.aclose()
    finally:
        await chat.aclose()
    assert stream.closed


# --- Conversation (pure) ---------------------------------------------------------------------


def exchange(number: int, size: int = 1) -> tuple[str, str]:
    return f"q{number}" * size, f"a{number}" * size


def test_messages_put_the_system_prompt_first_and_the_question_last() -> None:
    conversation = Conversation("Be brief.", history_turns=6, history_chars=4000)
    assert conversation.messages("hi") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    conversation.record("hi", "Hello!")
    assert conversation.messages("how are you") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "how are you"},
    ]


def test_an_empty_system_prompt_sends_no_system_message() -> None:
    conversation = Conversation("", history_turns=6, history_chars=4000)
    assert conversation.messages("hi") == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("turns", "chars", "size", "recorded", "kept"),
    [
        # grows to the turn limit, then drops the oldest down to half of it
        (4, 4000, 1, 4, [1, 2, 3, 4]),
        (4, 4000, 1, 5, [4, 5]),
        (4, 4000, 1, 7, [4, 5, 6, 7]),
        (4, 4000, 1, 8, [7, 8]),
        (5, 4000, 1, 6, [5, 6]),
        # each exchange is 20 characters here: the character limit works the same way
        (10, 70, 5, 3, [1, 2, 3]),
        (10, 70, 5, 4, [4]),
        # the newest exchange stays when it fits the limits on its own
        (1, 4000, 1, 1, [1]),
        (1, 4000, 1, 3, [3]),
        (10, 25, 5, 2, [2]),
        # no history at all, or one exchange longer than the whole budget
        (0, 4000, 1, 3, []),
        (10, 19, 5, 1, []),
    ],
)
def test_history_is_bounded_by_turns_and_characters(
    turns: int, chars: int, size: int, recorded: int, kept: list[int]
) -> None:
    conversation = Conversation("system", history_turns=turns, history_chars=chars)
    for number in range(1, recorded + 1):
        conversation.record(*exchange(number, size))
    assert conversation.history == tuple(exchange(number, size) for number in kept)


def test_the_prompt_prefix_stays_stable_between_trims() -> None:
    conversation = Conversation("system", history_turns=6, history_chars=4000)
    stable = 0
    previous: list[dict[str, str]] | None = None
    for number in range(1, 21):
        question, answer = exchange(number)
        prompt = conversation.messages(question)
        if previous is not None and prompt[: len(previous)] == previous:
            stable += 1
        conversation.record(question, answer)
        previous = [*prompt, {"role": "assistant", "content": answer}]
    # trims happen after turns 7, 11, 15 and 19: only the prompts right after them change
    assert stable == 19 - 4


def test_record_keeps_the_text_exactly() -> None:
    conversation = Conversation("system", history_turns=6, history_chars=4000)
    conversation.record("  turn it on ", "**Done.**\n")
    assert conversation.history == (("  turn it on ", "**Done.**\n"),)
    conversation.clear()
    assert not conversation.history


def test_from_config_takes_the_llm_section() -> None:
    config = LlmConfig(system_prompt="Hi.", history_turns=2, history_chars=10)
    conversation = Conversation.from_config(config)
    assert (conversation.system_prompt, conversation.history_turns) == ("Hi.", 2)
    assert conversation.history_chars == 10


# --- SentenceSplitter (pure) -----------------------------------------------------------------

# (reply, sentences): each reply is fed whole, word by word and character by character
SPLITS = [
    ("Sure. The kitchen light is on now. Anything else?",
     ["Sure.", "The kitchen light is on now.", "Anything else?"]),
    ("It is 3.5 degrees. Nice.", ["It is 3.5 degrees.", "Nice."]),
    ("Dr. Smith and Mr. Jones arrived. Then e.g. apples, i.e. fruit, etc. are fine.",
     ["Dr. Smith and Mr. Jones arrived.", "Then e.g. apples, i.e. fruit, etc. are fine."]),
    ("The U.S. team won. J. R. R. Tolkien wrote it.",
     ["The U.S. team won.", "J. R. R. Tolkien wrote it."]),
    ("Well... maybe not. Hmm… let me think. Okay… Fine.",
     ["Well... maybe not.", "Hmm… let me think.", "Okay…", "Fine."]),
    ("Really? Yes! Done.", ["Really?", "Yes!", "Done."]),
    ('He said "hi." Then he left.', ['He said "hi."', "Then he left."]),
    ("Version 2. Then version 3.", ["Version 2.", "Then version 3."]),
    ("First line\nSecond line", ["First line", "Second line"]),
    ("## Steps\n1. Open the **app**.\n2. Tap `start`.\n- Say _hello_ now.\n* Done",
     ["Steps", "Open the app.", "Tap start.", "Say hello now.", "Done"]),
    ("See [the docs](https://example.com/a.b). Bye.", ["See the docs.", "Bye."]),
    ("Hi.\n\n---\n\n***\n> Quoted text.\nBye.", ["Hi.", "Quoted text.", "Bye."]),
    ("Lots   of\tspace   here .  And more.", ["Lots of space here.", "And more."]),
    ("In 2024. Prices rose 4.5 percent.", ["In 2024.", "Prices rose 4.5 percent."]),
    ("No. I cannot.", ["No.", "I cannot."]),
    ("...", []),
    ("", []),
]  # fmt: skip


def split_all(deltas: Sequence[str]) -> list[str]:
    splitter = SentenceSplitter()
    sentences = [sentence for delta in deltas for sentence in splitter.feed(delta)]
    return sentences + splitter.flush()


@pytest.mark.parametrize(("reply", "sentences"), SPLITS)
@pytest.mark.parametrize("pieces", ["whole", "words", "characters"])
def test_sentence_splitter_table(reply: str, sentences: list[str], pieces: str) -> None:
    if pieces == "whole":
        deltas = [reply]
    elif pieces == "words":
        deltas = re.findall(r"\s*\S+|\s+", reply)
    else:
        deltas = list(reply)
    assert split_all(deltas) == sentences


@pytest.mark.parametrize(
    ("sentence", "pieces"),
    [
        ("It should be sunny, and mild today.", ("It should be sunny,", "and mild today.")),
        ("The kitchen light is on; the hall too.", ("The kitchen light is on;", "the hall too.")),
        ("Here is the plan: we leave at 10:30.", ("Here is the plan:", "we leave at 10:30.")),
        ("It should be sunny — and mild.", ("It should be sunny —", "and mild.")),
        # the first break is too early: the next one
        ("Sure, the light is on, and the fan too.", ("Sure, the light is on,", "and the fan too.")),
        # no break long enough, or nothing after it
        ("Sure, done.", ("Sure, done.",)),
        ("OK, turning on the kitchen light.", ("OK, turning on the kitchen light.",)),
        ("It should be sunny and mild.", ("It should be sunny and mild.",)),
        ("That costs 1,000 euros in all.", ("That costs 1,000 euros in all.",)),
        ("A well-known well-loved song.", ("A well-known well-loved song.",)),
        ("It should be sunny, ...", ("It should be sunny, ...",)),
    ],
)
def test_the_first_clause_of_a_sentence(sentence: str, pieces: tuple[str, ...]) -> None:
    assert first_clause(sentence) == pieces


def test_each_sentence_comes_out_as_soon_as_the_next_word_starts() -> None:
    splitter = SentenceSplitter()
    tokens = ["Sure.", " The", " light", " is", " on.", " Anything", " else?"]
    assert [splitter.feed(token) for token in tokens] == [
        [],
        ["Sure."],  # short, but first: out at once
        [],
        [],
        [],
        ["The light is on."],
        [],
    ]
    assert splitter.flush() == ["Anything else?"]


def test_a_sentence_ending_in_a_newline_comes_out_at_once() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Done!\n") == ["Done!"]
    assert splitter.feed("Next: an ") == []


def test_flush_resets_the_splitter() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("1. One. Two") == ["One."]
    assert splitter.flush() == ["Two"]
    assert splitter.flush() == []
    assert split_all(["2. Again."]) == ["Again."]
    assert splitter.feed("3. Three. ") == []
    assert splitter.flush() == ["Three."]


# --- tool calls through the real client on the loopback llama.cpp server ----------------------

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "HassTurnOn",
            "description": "Turns on a light or device.",
            "parameters": {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": ["kitchen light", "fan"]}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    }
]
TURN_ON_KITCHEN = FakeToolCall("HassTurnOn", '{"name": "kitchen light"}', id="call-kitchen")


async def collect_with_tools(
    chat: LlamaChat, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = TOOLS
) -> list[ChatChunk]:
    async def run() -> list[ChatChunk]:
        return [chunk async for chunk in chat.stream(messages, tools=tools)]

    return await asyncio.wait_for(run(), 1)


def tool_calls(chunks: Sequence[ChatChunk]) -> list[ToolCall]:
    return [call for chunk in chunks for call in chunk.tool_calls]


async def test_a_tool_call_is_assembled_from_its_streamed_pieces() -> None:
    with FakeLlamaServer(script=[FakeReply(tool_calls=[TURN_ON_KITCHEN])]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()

    assert tool_calls(chunks) == [
        ToolCall(id="call-kitchen", name="HassTurnOn", arguments='{"name": "kitchen light"}')
    ]
    assert [chunk.text for chunk in chunks if chunk.text] == []
    with_calls = [index for index, chunk in enumerate(chunks) if chunk.tool_calls]
    assert with_calls == [len(chunks) - 2]  # one chunk, right before the timings
    assert chunks[-1].timings is not None
    (request,) = llama.requests
    assert request.body["tools"] == TOOLS
    assert request.body["tool_choice"] == "auto"
    pieces = [
        c for c in request.chunks if c.get("choices") and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(pieces) > 5  # the arguments came in many fragments
    assert request.chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_text_before_a_tool_call_streams_first() -> None:
    reply = FakeReply("Sure, one moment.", tool_calls=[TURN_ON_KITCHEN])
    with FakeLlamaServer(script=[reply]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()
    assert [chunk.text for chunk in chunks if chunk.text] == ["Sure,", " one", " moment."]
    assert [call.name for call in tool_calls(chunks)] == ["HassTurnOn"]
    assert chunks.index(next(c for c in chunks if c.tool_calls)) == 3


async def test_two_tool_calls_in_one_reply_come_in_order() -> None:
    fan = FakeToolCall("HassTurnOn", '{"name": "fan"}')
    with FakeLlamaServer(script=[FakeReply(tool_calls=[TURN_ON_KITCHEN, fan])]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()
    first, second = tool_calls(chunks)
    assert (first.id, first.arguments) == ("call-kitchen", '{"name": "kitchen light"}')
    assert (second.name, second.arguments) == ("HassTurnOn", '{"name": "fan"}')
    assert re.fullmatch(r"[A-Za-z0-9]{32}", second.id)  # llama.cpp's generated id
    assert sum(1 for chunk in chunks if chunk.tool_calls) == 1


@pytest.mark.parametrize(
    "call",
    [
        FakeToolCall("UnlockDoor", '{"door": "front"}'),
        FakeToolCall("HassTurnOn", '{"name": "front door lock"}'),
        FakeToolCall("HassTurnOn", '{"name": "kitchen'),
        FakeToolCall("HassTurnOn", ['{"na', 'me": "fan", "then": "UnlockDoor"', "}"]),
    ],
)
async def test_invalid_tool_calls_arrive_unchanged_for_validation(call: FakeToolCall) -> None:
    with FakeLlamaServer(script=[FakeReply(tool_calls=[call])]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()
    (received,) = tool_calls(chunks)
    arguments = call.arguments if isinstance(call.arguments, str) else "".join(call.arguments)
    assert (received.name, received.arguments) == (call.name, arguments)
    with pytest.raises(IntentError):
        Intents.load(IntentsConfig(directory=INTENTS_DIR)).validate(
            received.name, received.arguments
        )


async def test_arguments_split_into_single_characters_are_joined() -> None:
    arguments = '{"name": "kitchen light"}'
    call = FakeToolCall("HassTurnOn", list(arguments), id="c1")
    with FakeLlamaServer(script=[FakeReply(tool_calls=[call])]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()
    assert tool_calls(chunks) == [ToolCall("c1", "HassTurnOn", arguments)]
    assert len(llama.requests[0].chunks) > len(arguments)


async def test_a_tool_call_cut_by_max_tokens_still_arrives_and_fails_validation() -> None:
    with FakeLlamaServer(script=[FakeReply(tool_calls=[TURN_ON_KITCHEN])]) as llama:
        chat = make_chat(llama.v1_url, max_tokens=4)
        try:
            chunks = await collect_with_tools(chat, QUESTION)
        finally:
            await chat.aclose()
    (call,) = tool_calls(chunks)
    assert call.arguments == '{"name'
    assert llama.requests[0].chunks[-1]["choices"][0]["finish_reason"] == "length"
    with pytest.raises(IntentError, match="not valid JSON"):
        Intents.load(IntentsConfig(directory=INTENTS_DIR)).validate(call.name, call.arguments)


async def test_without_tools_none_are_sent_and_none_come_back() -> None:
    with FakeLlamaServer(script=[FakeReply("Hello.", tool_calls=[TURN_ON_KITCHEN])]) as llama:
        chat = make_chat(llama.v1_url)
        try:
            chunks = await collect(chat, QUESTION)
        finally:
            await chat.aclose()
    assert "tools" not in llama.requests[0].body
    assert "tool_choice" not in llama.requests[0].body
    assert tool_calls(chunks) == []
    assert [chunk.text for chunk in chunks if chunk.text] == ["Hello."]


async def test_a_tool_turn_round_trip_replays_into_the_next_prompts() -> None:
    """Local validation between two requests, then the answer; the next turn's prompt starts
    with everything the server already has in its cache."""
    intents = Intents.load(IntentsConfig(directory=INTENTS_DIR))
    script: list[str | Sequence[str] | FakeReply] = [
        FakeReply(tool_calls=[TURN_ON_KITCHEN]),
        "The kitchen light is on.",
        "You are welcome.",
    ]
    conversation = Conversation("You are Lingling.", history_turns=6, history_chars=4000)
    question = "could you light up the kitchen"
    with FakeLlamaServer(script=script) as llama:
        chat = make_chat(llama.v1_url)
        try:
            first = await collect_with_tools(chat, conversation.messages(question), intents.tools())
            (call,) = tool_calls(first)
            found = intents.validate(call.name, call.arguments, text=question)
            step = ToolStep((call,), (intents.respond(found, datetime(2025, 5, 6, 15, 5)),))
            second = await collect_with_tools(
                chat, conversation.messages(question, [step]), intents.tools()
            )
            reply = "".join(chunk.text for chunk in second)
            conversation.record(question, reply, [step])
            third = await collect_with_tools(chat, conversation.messages("thanks"), intents.tools())
        finally:
            await chat.aclose()

    assert found.slots == {"name": "kitchen light"}
    assert reply == "The kitchen light is on."
    assert tool_calls(second) == []
    replayed = llama.requests[1].body["messages"]
    assert replayed[:2] == llama.requests[0].body["messages"]
    assert replayed[2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-kitchen",
                    "type": "function",
                    "function": {"name": "HassTurnOn", "arguments": '{"name": "kitchen light"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-kitchen", "content": "Turned on the kitchen light."},
    ]
    assert llama.requests[2].body["messages"][:4] == replayed
    for chunks in (second, third):
        timings = chunks[-1].timings
        assert timings is not None
        assert timings["cache_n"] > timings["prompt_n"]  # the tool turn stayed in the cache
    assert "".join(chunk.text for chunk in third) == "You are welcome."


async def test_the_fake_server_refuses_what_llama_cpp_refuses() -> None:
    with FakeLlamaServer() as llama:
        chat = make_chat(llama.v1_url)
        try:
            bad_tool = [{"id": "a", "function": {"name": "x", "arguments": "{}"}}]  # no type
            no_type: list[Message] = [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": bad_tool},
            ]
            with pytest.raises(ChatError, match="HTTP 500: Failed to parse messages: Missing"):
                await collect_with_tools(chat, no_type)
            with pytest.raises(ChatError, match="HTTP 400: All non-assistant messages"):
                await collect_with_tools(chat, [{"role": "tool", "tool_call_id": "a"}])
        finally:
            await chat.aclose()


async def test_a_non_streamed_answer_carries_the_tool_calls() -> None:
    with FakeLlamaServer(script=[FakeReply(tool_calls=[TURN_ON_KITCHEN])]) as llama:
        client = openai_client(llama.v1_url, 1.0)
        try:
            answer = await client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "hi"}], tools=cast(Any, TOOLS)
            )
        finally:
            await client.close()
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == ""
    (call,) = choice.message.tool_calls or []
    assert call.id == "call-kitchen"
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == (
        "HassTurnOn",
        '{"name": "kitchen light"}',
    )


# A stream shaped like llama.cpp's when the parser discovers a call with part of its arguments
# and the name grows while it is parsed (both re-sent whole), with no id from the template, and
# no finish_reason before the stream ends.
GROWING_NAME_STREAM = b"""\
data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],\
"created":1,"id":"chatcmpl-x","model":"m","object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"tool_calls":[{"index":0,\
"function":{"name":"HassTurn","arguments":"{\\"na"}}]}}],"created":1,"id":"chatcmpl-x","model":"m",\
"object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"tool_calls":[{"index":0,\
"function":{"name":"HassTurnOn","arguments":"me\\": \\"fan\\"}"}}]}}],"created":1,\
"id":"chatcmpl-x","model":"m","object":"chat.completion.chunk"}

data: [DONE]

"""


async def test_a_name_sent_again_replaces_the_first_and_a_missing_id_is_made_up() -> None:
    chat = mock_chat(RecordingStream([GROWING_NAME_STREAM]))
    try:
        chunks = await collect_with_tools(chat, QUESTION)
    finally:
        await chat.aclose()
    assert tool_calls(chunks) == [ToolCall("call_0", "HassTurnOn", '{"name": "fan"}')]


# --- Conversation with tool calls (pure) ------------------------------------------------------

STEP = ToolStep(
    (ToolCall("c1", "HassTurnOn", '{"name": "fan"}'),), ("Turned on the fan.",), text="On it."
)


def test_a_recorded_tool_turn_is_replayed_in_order() -> None:
    conversation = Conversation("sys", history_turns=6, history_chars=4000)
    conversation.record("fan on", "Done.", [STEP])
    assert conversation.messages("thanks") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "fan on"},
        {
            "role": "assistant",
            "content": "On it.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "HassTurnOn", "arguments": '{"name": "fan"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Turned on the fan."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "thanks"},
    ]
    assert conversation.history == (("fan on", "Done."),)


def test_the_continuation_prompt_extends_the_first_prompt() -> None:
    conversation = Conversation("sys", history_turns=6, history_chars=4000)
    conversation.record("hi", "Hello!")
    first = conversation.messages("fan on")
    second = conversation.messages("fan on", [STEP, STEP])
    assert second[: len(first)] == first
    assert [m["role"] for m in second[len(first) :]] == ["assistant", "tool"] * 2


def test_tool_calls_and_results_count_toward_the_character_limit() -> None:
    step = ToolStep((ToolCall("c", "N", "x" * 30),), ("y" * 30,))
    conversation = Conversation("sys", history_turns=10, history_chars=100)
    conversation.record("q1", "a1", [step])  # 2 + 2 + 1 + 30 + 30 = 65 characters
    assert len(conversation.history) == 1
    conversation.record("q2", "a2", [step])  # 130 > 100: only the newest one fits
    assert conversation.history == (("q2", "a2"),)


def test_a_tool_step_needs_one_result_per_call() -> None:
    with pytest.raises(ValueError, match="one result per call"):
        ToolStep((ToolCall("c", "N", "{}"),), ())


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("Which light do you mean?", True),
        ('Did you say "the fan?"', True),
        ("Anything else? ", True),
        ("The kitchen light is on.", False),
        ("Why? Because it is late.", False),
        ("", False),
    ],
)
def test_asks_question(reply: str, question: bool) -> None:
    assert asks_question(reply) is question
