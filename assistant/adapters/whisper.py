"""whisper.cpp's server through the OpenAI client.

The server must be started with ``--inference-path /v1/audio/transcriptions`` (its default path,
``/inference``, is not the OpenAI one). It decodes the WAV and resamples by itself.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import httpx2
from openai import OpenAIError, omit

from assistant.adapters.llama import describe_api_error, openai_client, warm_up
from assistant.config import SttConfig
from assistant.core.audioformat import SAMPLE_WIDTH_BYTES, pcm_seconds, to_wav
from assistant.errors import TranscriptionError

_LOGGER = logging.getLogger(__name__)

MODEL: Final = "whisper-1"
"""Required by the OpenAI API; whisper.cpp ignores it and uses the model it was started with."""
UPLOAD_NAME: Final = "command.wav"
_ANNOTATION: Final = re.compile(r"\[[^\]]*\]")  # [BLANK_AUDIO], [Music]: never speech


class WhisperTranscriber:
    """``Transcriber`` on whisper.cpp's server; one client, its connections reused.

    The client (and an ``http_client`` passed in) is closed by ``aclose()``.
    """

    SERVER: Final = "the whisper.cpp server"

    def __init__(self, config: SttConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        self._config = config
        self._client = openai_client(config.url, config.timeout_seconds, http_client)

    async def warm_up(self) -> bool:
        """Connect now, so the first turn does not pay for it."""
        return await warm_up(self._client, self._config.url)

    async def transcribe(self, pcm: bytes) -> str:
        """The text spoken in 16 kHz mono int16 ``pcm``; "" for none.

        whisper.cpp answers ``" text\\n"`` per 30 s segment and ``""`` for audio under ~0.12 s;
        whitespace is collapsed and bracketed annotations (``[BLANK_AUDIO]``) are dropped.
        """
        pcm = pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH_BYTES]
        if not pcm:
            return ""
        config = self._config
        _LOGGER.debug("transcribing %.2f s of audio", pcm_seconds(pcm))
        try:
            result = await self._client.audio.transcriptions.create(
                file=(UPLOAD_NAME, to_wav(pcm), "audio/wav"),
                model=MODEL,
                response_format="json",
                temperature=0.0,
                language=config.language if config.language else omit,
            )
        except (OpenAIError, httpx2.HTTPError, ValueError) as err:  # ValueError: not JSON
            raise TranscriptionError(describe_api_error(err, self.SERVER, config.url)) from err
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise TranscriptionError(f"{self.SERVER} at {config.url} answered without a text")
        return " ".join(_ANNOTATION.sub(" ", text).split())

    async def aclose(self) -> None:
        await self._client.close()
