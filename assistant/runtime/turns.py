"""The work of a turn, off the state machine: transcribe, understand, think, speak.

Each coroutine runs as the turn's one task (so a timeout or a cancel is ``task.cancel()``) and
reports its results as typed events through ``feed``: it tells no observer and writes no record
(it only notes instants on the turn's ``Stopwatch``). Errors propagate to the runtime, which turns
them into ``Failed`` events.

A transcript that matches a local intent is answered from its template at once (the fast path).
Anything else goes to the LLM, which may act only through the same intents, offered as tools:
each call is validated against the declared intents before anything happens.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final

from assistant.config import Config
from assistant.core.audioformat import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from assistant.core.conversation import Conversation, ToolStep, asks_question
from assistant.core.events import (
    Event,
    IntentNotRecognized,
    IntentRecognized,
    PauseTranscribed,
    RecognizedIntent,
    ReplyFinished,
    SentencePlayed,
    SpeakingStarted,
    ToolCallRefused,
    Transcribed,
)
from assistant.core.intents import IntentError, IntentMatch, Intents
from assistant.core.ports import Chat, Speaker, Synthesizer, ToolCall, Transcriber
from assistant.core.sentences import SentenceSplitter, first_clause
from assistant.core.timers import TIMER_INTENTS
from assistant.core.turn_end import weigh_words
from assistant.errors import AssistantError, ChatError
from assistant.runtime.observer import Stopwatch
from assistant.runtime.speculation import Guess, Outlet, Prepared, Speculation, SpeculationStats

_LOGGER = logging.getLogger(__name__)

MAX_TOOL_ROUNDS: Final = 3
"""Tool-call rounds in one turn; the last request offers no tools, so the model must answer."""

CONTEXT_FULL: Final = re.compile(r"context size|exceed_context_size", re.IGNORECASE)
"""How llama.cpp says a prompt does not fit its context (HTTP 400)."""

Feed = Callable[[Event], None]
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
        feed: Feed,
        intents: Intents | None = None,
        timer_reply: Callable[[str, Mapping[str, Any]], str] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._timer_reply = timer_reply
        self._config = config
        self._transcriber = transcriber
        self._chat = chat
        self._synthesizer = synthesizer
        self._speaker = speaker
        self._feed = feed
        self._intents = intents
        self._tools = intents.tools() if intents is not None else None
        self._clock = clock
        self._early = Speculation()
        self._stt_seconds: float | None = None
        """How long the last transcription took (None: none yet)."""
        # Synthesis is CPU work: one thread of its own, so it never waits for (or multiplies)
        # the loop's default threads.
        self._tts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingling-tts")
        self.conversation = Conversation(
            config.llm.system_prompt, config.llm.history_turns, config.llm.history_chars
        )

    def close(self) -> None:
        self.drop_speculation()
        self._tts.shutdown(wait=False, cancel_futures=True)

    # -- work started at a pause -------------------------------------------------------------

    def speculate(self, turn: int, pcm: bytes, *, complete: bool = True) -> None:
        """Transcribe ``pcm`` already, in case the command has ended (speech has paused); the
        transcript comes back as ``PauseTranscribed``, with what its words say. A newer guess at
        the same pause (its margin now heard) replaces the older one but keeps the reply
        prepared from it: the reply is redone only if the words differ.

        A guess before the margin is heard (not ``complete``) is asked for only while the
        transcriber answers before the margin would be heard: whisper-server serves one request
        at a time, so a slower answer would hold up the one that may end the command."""
        vad = self._config.vad
        if not complete and (self._stt_seconds or 0.0) > vad.margin_seconds - vad.speculate_seconds:
            return
        self._early.drop_guess()
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._transcribe(pcm))
        task.add_done_callback(lambda done: self._guessed(turn, done, complete))
        self._early.guess = Guess(pcm, task, loop.time())
        self._early.stats.transcripts += 1

    def _guessed(self, turn: int, task: asyncio.Task[str], complete: bool) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # a failed guess is no error of its own: the real request reports it
        text = task.result()
        words = weigh_words(text, self._is_request)
        self._feed(PauseTranscribed(turn, text, words, complete))

    def _is_request(self, text: str) -> bool:
        """A whole request: the transcript matches a local intent."""
        return self._intents is not None and self._intents.match(text) is not None

    def prepare(self, turn: int, watch: Stopwatch, text: str) -> None:
        """Start answering ``text``, held: nothing is heard and nothing acts until ``reply``
        confirms it."""
        if self._early.prepared is not None:
            if self._early.prepared.text == text:
                return  # the same words again (the margin's transcript): it stands
            self._early.take_prepared("")  # drops it: a newer transcript replaces it
        outlet = Outlet(self._feed, held=True)
        task = asyncio.get_running_loop().create_task(self._answer(turn, watch, text, outlet))
        self._early.prepared = Prepared(text, task, outlet, watch)
        self._early.stats.replies += 1

    def drop_speculation(self) -> None:
        """Speech resumed, or the turn ended: what was started early is of no use."""
        self._early.drop()

    def take_stats(self) -> SpeculationStats:
        """What ran early in the turn that ends; counting starts afresh."""
        stats, self._early.stats = self._early.stats, SpeculationStats()
        return stats

    # -- the turn's stages ------------------------------------------------------------------

    async def transcribe(self, turn: int, watch: Stopwatch, pcm: bytes) -> None:
        guess = self._early.take_guess(pcm)
        if guess is not None:  # the same audio: its transcript is (being) made
            watch.mark("upload", guess.started_at)
            self._early.stats.used = "transcript"
            text = await guess.task
        else:
            watch.mark("upload")
            text = await self._transcribe(pcm)
        watch.mark("transcribed")
        _LOGGER.info("heard %r", text)
        self._feed(Transcribed(turn, text))

    async def time_transcriber(self) -> None:
        """Transcribe half a second of silence, to know already at the first command whether the
        transcriber is fast enough for a guess before the margin (see ``speculate``); it also
        wakes whisper-server's first inference up. A failure is no error: a turn will tell.
        Only with such guesses (``vad.speculate_seconds`` below ``margin_seconds``)."""
        vad = self._config.vad
        early = vad.end_of_turn == "smart" and 0 < vad.speculate_seconds < vad.margin_seconds
        if not early or self._stt_seconds is not None:
            return
        try:
            await self._transcribe(bytes(SAMPLE_RATE_HZ * SAMPLE_WIDTH_BYTES // 2))
        except AssistantError as err:
            _LOGGER.debug("could not time the transcriber: %s", err)

    async def _transcribe(self, pcm: bytes) -> str:
        """``pcm``'s words, noting how long the transcriber took."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        text = await self._transcriber.transcribe(pcm)
        self._stt_seconds = loop.time() - started
        return text

    async def reply(self, turn: int, watch: Stopwatch, text: str) -> None:
        """Answer ``text``, speaking each sentence as soon as it is known: with the reply
        prepared at the pause when it answers the same text."""
        prepared = self._early.take_prepared(text)
        if prepared is None:
            await self._answer(turn, watch, text, Outlet(self._feed))
            return
        self._early.stats.used = "reply"
        prepared.outlet.release()
        try:
            await prepared.task
        except asyncio.CancelledError:
            prepared.task.cancel()  # the turn was cancelled while the prepared reply ran
            raise

    async def _answer(self, turn: int, watch: Stopwatch, text: str, outlet: Outlet) -> None:
        match = self._intents.match(text) if self._intents is not None else None
        if match is not None:
            response = self._act(turn, match, "local", outlet)

            def say(audio: Audio) -> Awaitable[None]:
                return self._say_all(watch, response, audio)

            await self._speak(turn, watch, say, outlet)
            self.conversation.record(text, response)
            self._finish(turn, response, outlet)
            return
        outlet.feed(IntentNotRecognized(turn, text))
        steps: list[ToolStep] = []
        answer: list[str] = []
        spoken: list[str] = []
        timings: dict[str, float] = {}

        def think(audio: Audio) -> Awaitable[None]:
            into = (steps, answer, spoken, timings)
            return self._think(turn, watch, text, into, audio, outlet)

        try:
            await self._speak(turn, watch, think, outlet)
        except ChatError as err:
            # The history outgrew the server's context (llama.cpp answers 400 before any token):
            # forget it and ask again, rather than failing every turn from now on.
            if not (CONTEXT_FULL.search(str(err)) and self.conversation.history):
                raise
            _LOGGER.warning("the conversation outgrew the LLM's context: starting afresh")
            self.conversation.clear()
            steps.clear()
            spoken.clear()
            await self._speak(turn, watch, think, outlet)
        self.conversation.record(text, "".join(answer), steps)
        self._finish(turn, "".join(spoken).strip(), outlet, llm_timings=timings or None)

    async def announce(self, turn: int, watch: Stopwatch, text: str) -> None:
        """Speak ``text`` as it is (a ``say`` request)."""
        outlet = Outlet(self._feed)
        await self._speak(turn, watch, lambda audio: self._say_all(watch, text, audio), outlet)
        self._finish(turn, text, outlet, follow_up=False)

    def _finish(
        self,
        turn: int,
        response: str,
        outlet: Outlet,
        *,
        follow_up: bool = True,
        llm_timings: dict[str, float] | None = None,
    ) -> None:
        window = self._config.intents.follow_up_seconds
        asks = follow_up and window > 0 and asks_question(response)
        outlet.feed(ReplyFinished(turn, response, window if asks else None, llm_timings))

    # -- intents ---------------------------------------------------------------------------

    def _act(self, turn: int, match: IntentMatch, source: str, outlet: Outlet) -> str:
        """Report a recognised intent with its actions, and return what to say."""
        assert self._intents is not None
        _LOGGER.info("intent %s %s (%s)", match.name, match.slots, source)
        intent = RecognizedIntent(match.name, match.slots, match.text, source)
        outlet.feed(IntentRecognized(turn, intent, tuple(self._intents.actions(match))))
        if match.name in TIMER_INTENTS and self._timer_reply is not None:
            return self._timer_reply(match.name, match.slots)  # the timer's own figures
        return self._intents.respond(match, self._clock())

    def _call(self, turn: int, text: str, call: ToolCall, outlet: Outlet) -> str:
        """Act on a tool call only when it names a declared intent with declared slot values."""
        assert self._intents is not None
        try:
            match = self._intents.validate(call.name, call.arguments, text)
            return self._act(turn, match, "llm", outlet)
        except IntentError as err:
            _LOGGER.warning("refused tool call %s(%s): %s", call.name, call.arguments, err)
            outlet.feed(ToolCallRefused(turn, str(err)))
            return f"error: {err}"

    # -- speech ----------------------------------------------------------------------------

    async def _speak(
        self,
        turn: int,
        watch: Stopwatch,
        produce: Callable[[Audio], Awaitable[None]],
        outlet: Outlet,
    ) -> None:
        """Play what ``produce`` puts in the queue while it is still producing (once the outlet
        lets it be heard)."""
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
                    await outlet.opened()
                    watch.mark("first_audio")
                    outlet.feed(SpeakingStarted(turn))
                await self._speaker.play(pcm)
                outlet.feed(SentencePlayed(turn))
            await task  # raises what ended the production early
            await outlet.opened()  # a reply with nothing to say is not over before it is confirmed
        finally:
            task.cancel()

    async def _say_all(self, watch: Stopwatch, text: str, audio: Audio) -> None:
        splitter = SentenceSplitter()
        for index, sentence in enumerate([*splitter.feed(text), *splitter.flush()]):
            await self._say(watch, sentence, audio, first=index == 0)

    async def _think(
        self,
        turn: int,
        watch: Stopwatch,
        text: str,
        into: tuple[list[ToolStep], list[str], list[str], dict[str, float]],
        audio: Audio,
        outlet: Outlet,
    ) -> None:
        """LLM deltas → sentences → speech, one sentence ahead of the speaker; tool calls are
        answered and the model asked again, up to MAX_TOOL_ROUNDS.

        Fills ``into``: the tool-call rounds, the last round's raw text (for the history), all
        the text spoken, and llama.cpp's timings."""
        steps, answer, spoken, timings = into
        splitter = SentenceSplitter()
        said = 0  # sentences said so far

        async def say(sentence: str) -> None:
            nonlocal said
            said += 1
            await self._say(watch, sentence, audio, first=said == 1)

        watch.mark("llm_request")
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            tools = self._tools if round_ < MAX_TOOL_ROUNDS else None
            answer.clear()
            calls: tuple[ToolCall, ...] = ()
            async for chunk in self._chat.stream(self.conversation.messages(text, steps), tools):
                if chunk.timings:
                    timings.update(chunk.timings)
                calls = chunk.tool_calls or calls
                if not chunk.text:
                    continue
                watch.mark("first_token")
                answer.append(chunk.text)
                spoken.append(chunk.text)
                for sentence in splitter.feed(chunk.text):
                    await say(sentence)
            if not calls:
                break
            results = tuple(self._call(turn, text, call, outlet) for call in calls)
            steps.append(ToolStep(calls, results, text="".join(answer)))
        for sentence in splitter.flush():
            await say(sentence)

    async def speech(self, text: str) -> bytes:
        """``text`` synthesised (on the synthesis thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._tts, self._synthesizer.synthesize, text)

    async def _say(self, watch: Stopwatch, sentence: str, audio: Audio, *, first: bool) -> None:
        """Synthesise ``sentence`` into ``audio``; the reply's ``first`` sentence a clause ahead
        (its first clause on its own, when it has one long enough), so it is heard sooner."""
        watch.mark("first_sentence")
        loop = asyncio.get_running_loop()
        for piece in first_clause(sentence) if first else (sentence,):
            pcm = await loop.run_in_executor(self._tts, self._synthesizer.synthesize, piece)
            watch.mark("first_tts")
            await audio.put(pcm)
