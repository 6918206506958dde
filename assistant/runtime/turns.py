"""The work of a turn, off the state machine: transcribe, understand, think, speak.

Each coroutine runs as the turn's one task (so a timeout or a cancel is ``task.cancel()``) and
reports its results as events through ``feed``; errors propagate to the runtime, which turns them
into ``failed`` events.

A transcript that matches a local intent is answered from its template at once (the fast path).
Anything else goes to the LLM, which may act only through the same intents, offered as tools:
each call is validated against the declared intents before anything happens.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Final

from assistant.config import Config
from assistant.core.commands import Phase
from assistant.core.conversation import Conversation, ToolStep, asks_question
from assistant.core.intents import IntentError, IntentMatch, Intents
from assistant.core.ports import Chat, Speaker, Synthesizer, ToolCall, Transcriber
from assistant.core.sentences import SentenceSplitter
from assistant.errors import ChatError
from assistant.runtime.observer import Observer, RecognizedIntent, TurnRecord

_LOGGER = logging.getLogger(__name__)

MAX_TOOL_ROUNDS: Final = 3
"""Tool-call rounds in one turn; the last request offers no tools, so the model must answer."""

CONTEXT_FULL: Final = re.compile(r"context size|exceed_context_size", re.IGNORECASE)
"""How llama.cpp says a prompt does not fit its context (HTTP 400)."""

Feed = Callable[..., None]
Audio = asyncio.Queue[bytes | None]


class TurnWork:
    def __init__(
        self,
        config: Config,
        *,
        transcriber: Transcriber,
        chat: Chat,
        synthesizer: Synthesizer,
        speaker: Speaker,
        observers: Sequence[Observer],
        feed: Feed,
        intents: Intents | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._config = config
        self._transcriber = transcriber
        self._chat = chat
        self._synthesizer = synthesizer
        self._speaker = speaker
        self._observers = observers
        self._feed = feed
        self._intents = intents
        self._tools = intents.tools() if intents is not None else None
        self._now = monotonic
        self._clock = clock
        self._speculation: tuple[bytes, asyncio.Task[str], float] | None = None
        # Synthesis is CPU work: one thread of its own, so it never waits for (or multiplies)
        # the loop's default threads.
        self._tts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingling-tts")
        self.conversation = Conversation(
            config.llm.system_prompt, config.llm.history_turns, config.llm.history_chars
        )

    def close(self) -> None:
        self.drop_speculation()
        self._tts.shutdown(wait=False, cancel_futures=True)

    def speculate(self, pcm: bytes) -> None:
        """Transcribe ``pcm`` already, in case the command has ended (speech has paused)."""
        self.drop_speculation()
        task = asyncio.get_running_loop().create_task(self._transcriber.transcribe(pcm))
        self._speculation = (pcm, task, self._now())

    def drop_speculation(self) -> None:
        """Speech resumed, or the turn ended: the early transcript is of no use."""
        if self._speculation is not None:
            _, task, _ = self._speculation
            task.cancel()
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failed guess is not an error of its own
            self._speculation = None

    async def transcribe(self, record: TurnRecord, pcm: bytes) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None and speculation[0] == pcm:
            _, task, started = speculation  # the same audio: its transcript is (being) made
            record.mark("upload", started)
            text = await task
        else:
            if speculation is not None:
                self._speculation = speculation
                self.drop_speculation()
            record.mark("upload", self._now())
            text = await self._transcriber.transcribe(pcm)
        record.mark("transcribed", self._now())
        record.transcript = text
        _LOGGER.info("heard %r", text)
        for observer in self._observers:
            observer.transcript_ready(record.turn, text)
        self._feed("transcribed", turn=record.turn, text=text)

    async def reply(self, record: TurnRecord, text: str) -> None:
        """Answer ``text``, speaking each sentence as soon as it is known."""
        match = self._intents.match(text) if self._intents is not None else None
        if match is not None:
            response = self._act(record, match, "local")
            await self._speak(record, lambda audio: self._say_all(record, response, audio))
            self.conversation.record(text, response)
            self._finish(record, response)
            return
        for observer in self._observers:
            observer.intent_not_recognized(record.turn, text)
        steps: list[ToolStep] = []
        answer: list[str] = []
        try:
            await self._speak(record, lambda a: self._think(record, text, steps, answer, a))
        except ChatError as err:
            # The history outgrew the server's context (llama.cpp answers 400 before any token):
            # forget it and ask again, rather than failing every turn from now on.
            if not (CONTEXT_FULL.search(str(err)) and self.conversation.history):
                raise
            _LOGGER.warning("the conversation outgrew the LLM's context: starting afresh")
            self.conversation.clear()
            steps.clear()
            await self._speak(record, lambda a: self._think(record, text, steps, answer, a))
        self.conversation.record(text, "".join(answer), steps)
        self._finish(record, record.response or "")

    async def announce(self, record: TurnRecord, text: str) -> None:
        """Speak ``text`` as it is (a ``say`` request)."""
        await self._speak(record, lambda audio: self._say_all(record, text, audio))
        self._finish(record, text, follow_up=False)

    def _finish(self, record: TurnRecord, response: str, *, follow_up: bool = True) -> None:
        record.response = response
        for observer in self._observers:
            observer.response_ready(record.turn, response)
        window = self._config.intents.follow_up_seconds
        asks = follow_up and window > 0 and asks_question(response)
        self._feed("reply_finished", turn=record.turn, follow_up_seconds=window if asks else None)

    # -- intents ---------------------------------------------------------------------------

    def _act(self, record: TurnRecord, match: IntentMatch, source: str) -> str:
        """Publish a recognised intent, run its actions, and return what to say."""
        assert self._intents is not None
        _LOGGER.info("intent %s %s (%s)", match.name, match.slots, source)
        intent = RecognizedIntent(match.name, match.slots, match.text, source)
        actions = self._intents.actions(match)
        for observer in self._observers:
            observer.intent_recognized(record.turn, intent)
            for action in actions:
                observer.action_requested(
                    record.turn, action.topic, action.payload, action.qos, action.retain
                )
        return self._intents.respond(match, self._clock())

    def _call(self, record: TurnRecord, text: str, call: ToolCall) -> str:
        """Act on a tool call only when it names a declared intent with declared slot values."""
        assert self._intents is not None
        try:
            match = self._intents.validate(call.name, call.arguments, text)
            return self._act(record, match, "llm")
        except IntentError as err:
            _LOGGER.warning("refused tool call %s(%s): %s", call.name, call.arguments, err)
            for observer in self._observers:
                observer.error_reported(record.turn, "tool_call_refused", str(err), Phase.THINKING)
            return f"error: {err}"

    # -- speech ----------------------------------------------------------------------------

    async def _speak(self, record: TurnRecord, produce: Callable[[Audio], Awaitable[None]]) -> None:
        """Play what ``produce`` puts in the queue while it is still producing."""
        audio: Audio = asyncio.Queue(maxsize=2)

        async def producer() -> None:
            try:
                await produce(audio)
            except asyncio.CancelledError:
                raise
            except BaseException:
                while not audio.empty():  # the turn has failed: wake the speaker side at once
                    audio.get_nowait()
                audio.put_nowait(None)
                raise
            await audio.put(None)

        task = asyncio.get_running_loop().create_task(producer())
        try:
            first = True
            while (pcm := await audio.get()) is not None:
                if first:
                    first = False
                    record.mark("first_audio", self._now())
                    self._feed("speaking_started", turn=record.turn)
                await self._speaker.play(pcm)
                self._feed("sentence_played", turn=record.turn)
            await task  # raises what ended the production early
        finally:
            task.cancel()

    async def _say_all(self, record: TurnRecord, text: str, audio: Audio) -> None:
        splitter = SentenceSplitter()
        for sentence in [*splitter.feed(text), *splitter.flush()]:
            await self._say(record, sentence, audio)

    async def _think(
        self,
        record: TurnRecord,
        text: str,
        steps: list[ToolStep],
        answer: list[str],
        audio: Audio,
    ) -> None:
        """LLM deltas → sentences → speech, one sentence ahead of the speaker; tool calls are
        answered and the model asked again, up to MAX_TOOL_ROUNDS."""
        splitter = SentenceSplitter()
        spoken: list[str] = []
        record.mark("llm_request", self._now())
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            tools = self._tools if round_ < MAX_TOOL_ROUNDS else None
            answer.clear()
            calls: tuple[ToolCall, ...] = ()
            async for chunk in self._chat.stream(self.conversation.messages(text, steps), tools):
                if chunk.timings:
                    record.llm_timings = dict(chunk.timings)
                calls = chunk.tool_calls or calls
                if not chunk.text:
                    continue
                record.mark("first_token", self._now())
                answer.append(chunk.text)
                spoken.append(chunk.text)
                record.response = "".join(spoken).strip()
                for sentence in splitter.feed(chunk.text):
                    await self._say(record, sentence, audio)
            if not calls:
                break
            results = tuple(self._call(record, text, call) for call in calls)
            steps.append(ToolStep(calls, results, text="".join(answer)))
        for sentence in splitter.flush():
            await self._say(record, sentence, audio)

    async def _say(self, record: TurnRecord, sentence: str, audio: Audio) -> None:
        record.mark("first_sentence", self._now())
        loop = asyncio.get_running_loop()
        pcm = await loop.run_in_executor(self._tts, self._synthesizer.synthesize, sentence)
        record.mark("first_tts", self._now())
        await audio.put(pcm)
