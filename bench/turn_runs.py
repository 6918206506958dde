"""Turns through the real ``Runtime`` with the real models, paced like a microphone, on
back-ends that stand for a machine (bench/live.py); what each turn did, for the reports.

Used by ``bench.end_of_turn``.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from assistant.adapters.openwakeword import OpenWakeWord
from assistant.adapters.piper import PiperSynthesizer
from assistant.adapters.silero import SileroVad
from assistant.adapters.smart_turn import SmartTurn
from assistant.config import Config, IntentsConfig, TtsConfig, VadConfig, WakeConfig
from assistant.core.audioformat import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.intents import Intents
from assistant.runtime.observer import TurnRecord
from assistant.runtime.runtime import Runtime
from bench.common import ROOT
from bench.live import OneAtATime, PacedMicrophone, RecordingTurnDetector, Score, TimedChat
from bench.utterances import PIPER_VOICE, Clip
from tests.support.fakes import FakeSpeaker
from tests.support.turns import TurnLog, config

REPLY: Final = "It should be sunny and mild. Anything else?"
"""What the LLM says (a word a token)."""
MS_PER_SAMPLE: Final = 1000.0 / SAMPLE_RATE_HZ
TURN_MODEL: Final = "turn/smart-turn-v3.2-cpu.onnx"
NEEDED: Final = (
    "openwakeword/hey_jarvis_v0.1.onnx",
    "openwakeword/silero_vad.onnx",
    TURN_MODEL,
    PIPER_VOICE,
)


@dataclass(frozen=True, slots=True)
class Backends:
    name: str
    stt_seconds: float
    first_token_seconds: float
    tokens_per_second: float

    def describe(self) -> str:
        return (
            f"{self.name}: STT {self.stt_seconds * 1000:g} ms a request (one at a time), LLM "
            f"first token {self.first_token_seconds * 1000:g} ms then "
            f"{self.tokens_per_second:g} tokens/s"
        )


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    vad: Mapping[str, Any] = field(default_factory=dict)
    """``vad.*`` config."""
    tts_threads: int | None = None
    """Piper's threads (as ``tts.threads``); None: the default."""


@dataclass
class Models:
    """The real models, loaded once and shared by the turns (each runtime resets what it uses)."""

    root: Path
    wake: OpenWakeWord
    vad: SileroVad
    turn: SmartTurn
    intents: Intents
    _voices: dict[int | None, PiperSynthesizer] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Models:
        return cls(
            root,
            OpenWakeWord(WakeConfig(models=["hey_jarvis"]), root),
            SileroVad(VadConfig(), root),
            SmartTurn(root / TURN_MODEL),
            Intents.load(IntentsConfig(directory=ROOT / "intents")),
        )

    def tts(self, threads: int | None = None) -> PiperSynthesizer:
        """The Piper voice (warmed up) with ``threads`` (None: the adapter's default)."""
        if threads not in self._voices:
            config = TtsConfig(voice=str(self.root / PIPER_VOICE))
            voice = self._voices[threads] = PiperSynthesizer(config, self.root, threads=threads)
            voice.warm()
        return self._voices[threads]


@dataclass
class Turn:
    clip: Clip
    backends: Backends
    mode: str
    setting: Setting
    config: Config
    record: TurnRecord | None
    true_end_at: float
    """When the command's last sample was spoken (monotonic seconds)."""
    mic: PacedMicrophone
    stt: OneAtATime
    scores: list[Score]

    @property
    def heard(self) -> bool:
        return self.record is not None and "first_audio" in self.record.marks

    @property
    def cut(self) -> bool:
        """The transcript used does not hold all the command's words (False without a turn)."""
        return self.record is not None and self.record.transcript != self.clip.command.text

    def ms(self, mark: str) -> float | None:
        if self.record is None or mark not in self.record.marks:
            return None
        return (self.record.marks[mark] - self.true_end_at) * 1000.0

    def frames(self, seconds: float) -> int:
        return math.ceil(round(seconds / FRAME_SECONDS, 6))

    def pause_heard(self) -> tuple[int, int] | None:
        """(end of the last frame the VAD called speech, where the pause was heard) in samples,
        for a turn that ended at its last pause; None otherwise."""
        if self.record is None or self.record.end_reason not in ("words", "audio"):
            return None
        if not self.stt.requests:
            return None
        vad = self.config.vad
        margin = self.frames(vad.margin_seconds)
        speech_end = self.clip.where(self.stt.requests[-1].pcm).stop - margin * FRAME_SAMPLES
        pause = max(self.frames(vad.speculate_seconds), margin)
        return speech_end, speech_end + pause * FRAME_SAMPLES

    def parts(self) -> dict[str, float] | None:
        """Where the time went (ms) in a turn that ended at its last pause, not cut."""
        heard = self.pause_heard()
        record = self.record
        if heard is None or record is None or self.cut or not self.heard:
            return None
        speech_end, pause = heard
        end = self.clip.true_end
        frame_end = math.ceil(end / FRAME_SAMPLES) * FRAME_SAMPLES
        at = {**record.marks, "true end": self.true_end_at, "pause": self.mic.heard_at(pause)}
        request = self.stt.requests[-1]
        # The reply is prepared from the first words at this pause: before the margin is heard
        # when the pause is announced sooner (vad.speculate_seconds below vad.margin_seconds).
        first = next(r for r in self.stt.requests if self.clip.where(r.pcm).stop > speech_end)
        at.update(asked=request.asked_at, answered=request.answered_at, words=first.answered_at)

        def ms(start: str, stop: str) -> float:
            return (at[stop] - at[start]) * 1000.0

        result = {
            "true end → end of its 80 ms frame": (frame_end - end) * MS_PER_SAMPLE,
            "VAD lag (frames still called speech)": (speech_end - frame_end) * MS_PER_SAMPLE,
            "silence that makes a pause": (pause - speech_end) * MS_PER_SAMPLE,
            "pause heard → upload": ms("pause", "asked"),
            "STT (the words)": ms("asked", "answered"),
            "pause heard → end decided": ms("pause", "speech_end"),
            "true end → end decided": ms("true end", "speech_end"),
            "true end → first words at the pause": ms("true end", "words"),
            "first words → first sentence (LLM)": ms("words", "first_sentence"),
            "synthesis of the first sentence": ms("first_sentence", "first_tts"),
            "end decided → first audio": ms("speech_end", "first_audio"),
            "true end → first audio": ms("true end", "first_audio"),
        }
        for score in self.scores:
            if self.clip.where(score.pcm).stop == pause:
                seconds = score.finished_at - score.started_at
                result["Smart Turn (in parallel with STT)"] = seconds * 1000.0
        return result


async def run_turn(
    models: Models, clip: Clip, backends: Backends, mode: str, setting: Setting
) -> Turn:
    cfg = config(vad={"end_of_turn": mode, **setting.vad})
    log = TurnLog()
    mic = PacedMicrophone(clip.frames, until=lambda: bool(log.records))
    stt = OneAtATime(backends.stt_seconds, clip.words)
    chat = TimedChat(REPLY, backends.first_token_seconds, backends.tokens_per_second)
    detector = RecordingTurnDetector(models.turn)
    tts = models.tts(setting.tts_threads)
    runtime = Runtime(
        cfg,
        microphone=mic,
        speaker=FakeSpeaker(sample_rate_hz=tts.sample_rate_hz),
        wake_word=models.wake,
        vad=models.vad,
        transcriber=stt,
        chat=chat,
        synthesizer=tts,
        observers=[log],
        intents=models.intents,
        turn_detector=detector if mode == "smart" else None,
    )
    await runtime.work.time_transcriber()  # as lingling run does at start, before any command
    stt.requests.clear()
    await asyncio.wait_for(runtime.run(), 90)
    record = log.records[0] if log.records else None
    true_end = mic.heard_at(clip.true_end)
    return Turn(clip, backends, mode, setting, cfg, record, true_end, mic, stt, detector.scores)


Variant = tuple[str, Setting]
"""``vad.end_of_turn`` and the other settings of a run."""


async def measure(
    models: Models, plan: Sequence[tuple[Backends, Sequence[Clip], Sequence[Variant]]]
) -> list[Turn]:
    """Each (back-ends, clips, variants): every clip in every variant, the variants of a clip
    one after the other (so a change in the machine's load touches them alike)."""
    turns: list[Turn] = []
    for backends, clips, variants in plan:
        for clip in clips:
            for mode, setting in variants:
                turn = await run_turn(models, clip, backends, mode, setting)
                turns.append(turn)
                progress(turn)
    return turns


def progress(turn: Turn) -> None:
    """One line on stderr per turn: what it did."""
    audio = turn.ms("first_audio")
    said = "-" if audio is None else f"{audio:.0f} ms"
    transcript = turn.record.transcript if turn.record else None
    reason = turn.record.end_reason if turn.record else "no turn"
    cut = f", CUT to {transcript!r}" if turn.cut else ""
    scores = ", ".join(f"{score.probability:.2f}" for score in turn.scores)
    name = f"{turn.backends.name:9} {turn.mode:7} {turn.setting.name[:24]:24}"
    print(
        f"{name} {turn.clip.command.label}: first audio {said}, ended by {reason}{cut}"
        + (f" (Smart Turn {scores})" if scores else ""),
        file=sys.stderr,
        flush=True,
    )
