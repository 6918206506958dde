"""WhisperTranscriber through the real AsyncOpenAI client on a loopback whisper.cpp server."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Iterator

import httpx2
import pytest

from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import SttConfig
from assistant.core.audioformat import SAMPLE_RATE_HZ
from assistant.errors import TranscriptionError
from tests.support.http import CountingTransport
from tests.support.servers import FakeWhisperServer

# half a second of a ramp, so every sample differs from its neighbours
PCM = b"".join((i * 37 % 65536 - 32768).to_bytes(2, "little", signed=True) for i in range(8000))


@pytest.fixture
def whisper() -> Iterator[FakeWhisperServer]:
    with FakeWhisperServer() as server:
        yield server


async def transcribe(config: SttConfig, pcm: bytes = PCM) -> str:
    transcriber = WhisperTranscriber(config)
    try:
        return await asyncio.wait_for(transcriber.transcribe(pcm), 1)
    finally:
        await transcriber.aclose()


async def test_returns_the_stripped_text(whisper: FakeWhisperServer) -> None:
    assert await transcribe(SttConfig(url=whisper.v1_url)) == "turn on the kitchen light"


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (" turn on the light\n turn it off\n", "turn on the light turn it off"),  # two segments
        (" [BLANK_AUDIO]\n", ""),
        (" [Music] stop the music\n", "stop the music"),
        ("", ""),
    ],
)
async def test_segments_are_joined_and_annotations_dropped(answer: str, text: str) -> None:
    with FakeWhisperServer(answer) as whisper:
        assert await transcribe(SttConfig(url=whisper.v1_url)) == text


async def test_uploads_a_16khz_mono_wav_holding_exactly_the_pcm(whisper: FakeWhisperServer) -> None:
    await transcribe(SttConfig(url=whisper.v1_url))

    (request,) = whisper.requests
    with wave.open(io.BytesIO(request.wav), "rb") as reader:
        assert reader.getframerate() == SAMPLE_RATE_HZ
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.readframes(reader.getnframes()) == PCM
    assert request.pcm == PCM
    assert request.filename is not None
    assert request.filename.endswith(".wav")


async def test_asks_for_json_at_temperature_zero_in_the_configured_language(
    whisper: FakeWhisperServer,
) -> None:
    await transcribe(SttConfig(url=whisper.v1_url, language="de"))
    fields = whisper.requests[0].fields
    assert fields["response_format"] == "json"
    assert float(fields["temperature"]) == 0.0
    assert fields["language"] == "de"


async def test_no_language_leaves_the_choice_to_the_server(whisper: FakeWhisperServer) -> None:
    await transcribe(SttConfig(url=whisper.v1_url, language=None))
    assert "language" not in whisper.requests[0].fields


async def test_no_audio_is_no_text_without_a_request(whisper: FakeWhisperServer) -> None:
    assert await transcribe(SttConfig(url=whisper.v1_url), b"") == ""
    assert await transcribe(SttConfig(url=whisper.v1_url), b"\x01") == ""
    assert whisper.requests == []


async def test_an_odd_trailing_byte_is_dropped(whisper: FakeWhisperServer) -> None:
    await transcribe(SttConfig(url=whisper.v1_url), PCM + b"\x7f")
    assert whisper.requests[0].pcm == PCM


async def test_requests_reuse_one_connection(whisper: FakeWhisperServer) -> None:
    transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
    try:
        for _ in range(3):
            await asyncio.wait_for(transcriber.transcribe(PCM), 1)
    finally:
        await transcriber.aclose()
    assert len({request.client_port for request in whisper.requests}) == 1


async def test_unreachable_server_raises_transcription_error_after_one_attempt() -> None:
    server = FakeWhisperServer().start()
    url = server.v1_url
    server.stop()
    transport = CountingTransport()
    transcriber = WhisperTranscriber(
        SttConfig(url=url), http_client=httpx2.AsyncClient(transport=transport)
    )
    try:
        with pytest.raises(TranscriptionError, match=r"cannot reach the whisper\.cpp server") as e:
            await asyncio.wait_for(transcriber.transcribe(PCM), 1)
    finally:
        await transcriber.aclose()
    assert e.value.code == "stt"
    assert url in str(e.value)
    assert transport.attempts == 1  # no retry


@pytest.mark.parametrize(
    ("status", "detail"), [(500, "failed to process audio"), (400, "Invalid request")]
)
async def test_http_error_raises_transcription_error(
    whisper: FakeWhisperServer, status: int, detail: str
) -> None:
    whisper.error_status = status
    with pytest.raises(TranscriptionError, match=f"HTTP {status}: {detail}"):
        await transcribe(SttConfig(url=whisper.v1_url))
    assert len(whisper.requests) == 1  # no retry


async def test_the_default_inference_path_is_a_clear_404(whisper: FakeWhisperServer) -> None:
    # a server started without --inference-path, or a url without /v1
    with pytest.raises(TranscriptionError, match="HTTP 404: File Not Found"):
        await transcribe(SttConfig(url=whisper.url))


async def test_a_slow_server_times_out_and_the_request_is_dropped(
    whisper: FakeWhisperServer,
) -> None:
    whisper.delay_seconds = 5
    transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url, timeout_seconds=0.2))
    try:
        with pytest.raises(TranscriptionError, match="did not answer in time") as caught:
            await asyncio.wait_for(transcriber.transcribe(PCM), 1)
        # the client hung up on the request it gave up on, before being closed itself
        await asyncio.to_thread(whisper.wait_for_hang_ups, 1)
    finally:
        await transcriber.aclose()
    assert caught.value.code == "stt"
    assert len(whisper.requests) == 1  # one attempt only


async def test_cancelling_raises_cancelled_error(whisper: FakeWhisperServer) -> None:
    whisper.hang = True
    transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
    try:
        task = asyncio.create_task(transcriber.transcribe(PCM))
        await asyncio.to_thread(whisper.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
        await asyncio.to_thread(whisper.wait_for_hang_ups, 1)  # the request was dropped
    finally:
        await transcriber.aclose()


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="not json", headers={"Content-Type": "application/json"}),
        httpx2.Response(200, json={"segments": []}),
        httpx2.Response(200, text=" turn on\n", headers={"Content-Type": "text/html"}),
    ],
    ids=["broken-json", "no-text", "plain-text"],
)
async def test_an_answer_without_a_transcript_raises_transcription_error(
    response: httpx2.Response,
) -> None:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda request: response))
    transcriber = WhisperTranscriber(SttConfig(url="http://whisper.test/v1"), http_client=client)
    try:
        with pytest.raises(TranscriptionError, match=r"whisper\.test"):
            await asyncio.wait_for(transcriber.transcribe(PCM), 1)
    finally:
        await transcriber.aclose()
    assert client.is_closed  # the transcriber owns the client it was given
