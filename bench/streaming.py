"""Streamed first audio vs waiting for the whole reply, on the same loopback LLM at 20 tokens/s.

Both variants run in one process through the real ``Runtime``, turn by turn interleaved (streamed,
buffered, streamed, …), with the real ``WhisperTranscriber`` and ``LlamaChat`` against the
loopback servers and the real Piper tone voice. The baseline is ``BufferedChat``: a ``Chat`` that
reads the whole reply before it yields it (no runtime change).

    .venv/bin/python -m bench.streaming [--quick]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from assistant.adapters.llama import LlamaChat
from assistant.adapters.piper import PiperSynthesizer
from assistant.adapters.whisper import WhisperTranscriber
from assistant.config import LlmConfig, SttConfig
from assistant.core.ports import Chat, ChatChunk, Message
from bench.common import (
    Report,
    have_models,
    models_dir,
    p50,
    p95,
    parser,
    quiet_logs,
    span_ms,
)
from tests.support.servers import FakeLlamaServer, FakeWhisperServer, tokenize
from tests.support.turns import config, run_tagged_turns

TOKENS_PER_SECOND: Final = 20.0
REPLIES: Final = {
    "short (3 sentences)": "Sure. The kitchen light is on now. Anything else?",
    "longer (4 sentences)": (
        "The weather tomorrow looks mostly sunny with a light breeze. Expect a high of "
        "twenty two degrees in the afternoon and a low of twelve at night. There is a small "
        "chance of rain in the evening, so you may want an umbrella. Anything else?"
    ),
}


class BufferedChat:
    """The baseline: the whole reply first, then all of it at once."""

    def __init__(self, inner: Chat) -> None:
        self._inner = inner

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncIterator[ChatChunk]:
        chunks = [chunk async for chunk in self._inner.stream(messages, tools)]
        text = "".join(chunk.text for chunk in chunks)
        if text:
            yield ChatChunk(text=text)
        for chunk in chunks:
            if chunk.tool_calls or chunk.timings:
                yield ChatChunk(timings=chunk.timings, tool_calls=chunk.tool_calls)


class AlternatingChat:
    """Streamed on even calls, buffered on odd ones; ``modes`` says which, call by call."""

    def __init__(self, inner: Chat) -> None:
        self._streamed = inner
        self._buffered = BufferedChat(inner)
        self.modes: list[str] = []

    def stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> AsyncIterator[ChatChunk]:
        buffered = len(self.modes) % 2 == 1
        self.modes.append("buffered" if buffered else "streamed")
        chat: Chat = self._buffered if buffered else self._streamed
        return chat.stream(messages, tools)


async def compare(reply: str, pairs: int) -> dict[str, list[float]]:
    """Speech end → first audio (ms) per mode, over ``pairs`` interleaved pairs of turns."""
    root = models_dir()
    assert root is not None
    cfg = config(tts={"voice": "tone_voice"})
    turns = 2 * pairs
    with (
        FakeWhisperServer(" What will the weather be like tomorrow?\n") as whisper,
        FakeLlamaServer(reply, tokens_per_second=TOKENS_PER_SECOND) as llama,
    ):
        transcriber = WhisperTranscriber(SttConfig(url=whisper.v1_url))
        inner = LlamaChat(LlmConfig(url=llama.v1_url, model="tiny"))
        chat = AlternatingChat(inner)
        synthesizer = PiperSynthesizer(cfg.tts, root)
        await asyncio.to_thread(synthesizer.warm)
        log = await run_tagged_turns(
            cfg,
            transcriber=transcriber,
            chat=chat,
            synthesizer=synthesizer,
            turns=turns,
            closers=(transcriber.aclose, inner.aclose),
        )
    records = log.answered()
    if log.errors or len(records) != turns:
        raise RuntimeError(f"{len(records)} of {turns} turns answered: {log.errors[:3]}")
    result: dict[str, list[float]] = {"streamed": [], "buffered": []}
    # the first pair warms the connections and is left out
    for mode, record in list(zip(chat.modes, records, strict=True))[2:]:
        value = span_ms(record, "speech_end", "first_audio")
        if value is not None:
            result[mode].append(value)
    return result


async def measure(report: Report, pairs: int) -> None:
    rows = []
    ratios = []
    for name, reply in REPLIES.items():
        result = await compare(reply, pairs)
        streamed, buffered = result["streamed"], result["buffered"]
        ratio = p50(buffered) / p50(streamed)
        ratios.append(ratio)
        rows.append(
            (
                name,
                len(tokenize(reply)),
                len(streamed),
                p50(streamed),
                p95(streamed),
                p50(buffered),
                p95(buffered),
                f"{ratio:.1f}x",
            )
        )
    report.text(
        f"Speech end → first audio (ms), loopback LLM at {TOKENS_PER_SECOND:g} tokens/s, "
        f"{pairs - 1} interleaved pairs of turns per reply (one warm-up pair left out)."
    )
    headers = (
        "reply",
        "tokens",
        "pairs",
        "streamed p50",
        "streamed p95",
        "buffered p50",
        "buffered p95",
        "buffered / streamed",
    )
    report.table(headers, rows)
    report.target(
        "streaming: first audio earlier than the whole-reply baseline",
        " / ".join(f"{r:.1f}x" for r in ratios),
        "> 1x",
        all(r > 1 for r in ratios),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    quiet_logs()
    report = Report("streaming", "Streamed first audio vs the whole-reply baseline")
    if not have_models(models_dir(), "piper/tone_voice.onnx"):
        report.text("Skipped: no `piper/tone_voice.onnx` under LINGLING_MODELS.")
        report.target("streaming vs baseline", "-", "> 1x", None)
    else:
        asyncio.run(measure(report, 6 if args.quick else 16))
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
