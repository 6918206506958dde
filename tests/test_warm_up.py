"""The first turn does not pay for connecting: both clients connect to their servers at start."""

from __future__ import annotations

import asyncio

from assistant.adapters.llama import LlamaChat
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import LlmConfig, SttConfig
from tests.support.broker import free_port
from tests.support.fakes import SPEECH
from tests.support.servers import FakeLlamaServer, FakeWhisperServer


async def test_warming_up_opens_the_connection_the_first_request_uses() -> None:
    with (
        FakeWhisperServer(" turn on the light\n") as whisper,
        FakeLlamaServer("Sure.") as llama,
    ):
        transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
        chat = LlamaChat(LlmConfig(url=llama.v1_url))
        try:
            assert await asyncio.wait_for(transcriber.warm_up(), 5)
            assert await asyncio.wait_for(chat.warm_up(), 5)
            assert await transcriber.transcribe(SPEECH * 5) == "turn on the light"
            async for _ in chat.stream([{"role": "user", "content": "hi"}]):
                pass
        finally:
            await transcriber.aclose()
            await chat.aclose()
    # the request came on the connection the warm-up opened
    assert whisper.requests[0].client_port == whisper.health_checks[0]
    assert llama.requests[0].client_port == llama.health_checks[0]


async def test_a_server_that_is_not_there_yet_is_no_error_at_start() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    transcriber = WhisperTranscriber(SttConfig(url=url))
    chat = LlamaChat(LlmConfig(url=url))
    try:
        assert await asyncio.wait_for(transcriber.warm_up(), 5) is False
        assert await asyncio.wait_for(chat.warm_up(), 5) is False
    finally:
        await transcriber.aclose()
        await chat.aclose()
