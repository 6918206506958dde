"""The stop word: how fast a spoken "stop" ends a ring, and how often Lingling's own voice would.

Reaction: stop words said by espeak-ng voices and the real Piper voice (joe-medium) over the
ring as the microphone hears it (at two levels), through the real Silero VAD and the runtime's
``Bursts``. The reaction is audio time from the word's true end to the burst's end, plus one
transcription of the burst (a GPU-fast whisper, 50 ms; this CPU's whisper base, 2.1 s: FACTS.md).

False stops: Lingling's replies spoken by the Piper voice, as the microphone would hear them while
it speaks (no echo cancellation), through the same VAD and ``Bursts``. Each burst taken would be
one transcription; whether it stops depends on its words. No trained whisper model runs here, so
the words of a burst are those of the reply whose middle lies inside it (placed by their share of
the reply's characters): a perfect transcriber's answer. Replies hold the stop words inside
sentences ("I will stop the music"), where they must not stop anything.

    .venv/bin/python -m bench.stop_word [--quick]
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from assistant.adapters.earcons import earcon_pcm
from assistant.adapters.silero import SileroVad
from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ
from assistant.core.commands import Earcon
from assistant.core.stop_word import Bursts, is_stop_phrase
from bench.common import Report, have_models, models_dir, p50, p95, parser
from tests.support.scenarios import Audio, frames, speak, speak_piper

WORDS: Final = ("stop", "cancel", "enough", "quiet", "stop it", "that's enough")
ESPEAK: Final = (("en-us", 150), ("en-gb", 180), ("en-us+f3", 130))
RING_GAINS: Final = (0.25, 0.5)
"""The ring as the microphone hears it: -12 and -6 dB of what is played."""
STT_SECONDS: Final = {"GPU whisper (50 ms)": 0.05, "this CPU, whisper base (2.1 s)": 2.1}
REPLIES: Final = (
    "The timer is set for ten minutes.",
    "It is twenty past three.",
    "Sure.",
    "OK.",
    "Done.",
    "The kitchen light is on.",
    "I turned off all the lights in the living room.",
    "Your pasta timer is done.",
    "I will stop the music.",
    "That should be enough for four people.",
    "The library is a quiet place to read.",
    "You can cancel the timer by saying cancel.",
    "Tomorrow will be sunny, with a high of twenty two degrees.",
    "Yes.",
    "No, the garage door is closed.",
    "Enough rain fell last night to fill the barrel.",
    "Stop.",
    "The volume is set to forty.",
    "There are two timers: the pasta timer has four minutes left, and the egg timer one.",
    "Once upon a time, a little fox lived at the edge of a quiet forest. Every morning it ran to "
    "the river, and every evening it came home to sleep.",
)
"""What Lingling says: short answers, answers holding a stop word inside, and one ("Stop.")
that a perfect transcriber would take for the stop word."""


@dataclass(frozen=True, slots=True)
class Reaction:
    voice: str
    word: str
    ring_gain: float
    seconds: float | None
    """From the word's true end to the burst's end (audio time); None: no burst taken."""


def _bursts(vad: SileroVad, audio: Audio) -> list[tuple[int, int]]:
    """(first sample, end sample) of each burst the runtime would transcribe."""
    vad.reset()
    bursts = Bursts()
    found = []
    for index, frame in enumerate(frames(audio)):
        burst = bursts.process(vad.process(frame), frame)
        if burst is not None:
            end = (index + 1) * FRAME_SAMPLES
            found.append((end - len(burst) // 2, end))
    return found


def _voiced_end(samples: Audio) -> int:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    return int(loud[-1]) + 1 if len(loud) else len(samples)


def reactions(vad: SileroVad, quick: bool) -> list[Reaction]:
    ring = np.frombuffer(earcon_pcm(Earcon.RING, SAMPLE_RATE_HZ), np.int16).astype(np.int32)
    voices: list[tuple[str, object]] = [(f"espeak {v} {w}", (v, w)) for v, w in ESPEAK]
    root = models_dir()
    piper = root / "piper" / "en_US-joe-medium.onnx" if root else None
    if piper is not None and piper.exists():
        voices.append(("piper joe", piper))
    if quick:
        voices = voices[:1] + voices[-1:]
    found = []
    for (label, voice), word, gain in (
        (v, w, g) for v in voices for w in WORDS for g in RING_GAINS
    ):
        if isinstance(voice, Path):
            said = speak_piper(word.capitalize() + ".", voice)
        else:
            assert isinstance(voice, tuple)
            said = speak(word, *voice)
        rings = np.tile((ring * gain).astype(np.int32), 4)
        at = len(ring) + SAMPLE_RATE_HZ // 10  # into the second ring
        mixed = rings.copy()
        mixed[at : at + len(said)] += said
        audio = np.clip(mixed, -32768, 32767).astype(np.int16)
        true_end = at + _voiced_end(said)
        taken = [end for _, end in _bursts(vad, audio) if end >= true_end]
        seconds = (taken[0] - true_end) / SAMPLE_RATE_HZ if taken else None
        found.append(Reaction(label, word, gain, seconds))
    return found


_WORD: Final = re.compile(r"\S+")


def _words_inside(text: str, duration: int, first: int, end: int) -> str:
    """The words of ``text`` (spoken over ``duration`` samples) whose middle lies in a burst."""
    words = list(_WORD.finditer(text))
    inside = []
    for match in words:
        middle = (match.start() + match.end()) / 2 / len(text) * duration
        if first <= middle < end:
            inside.append(match.group())
    return " ".join(inside)


def false_stops(vad: SileroVad, voice: Path) -> tuple[float, list[tuple[str, str]], int]:
    """Seconds of speech, the bursts taken (reply, words inside), and the stops among them."""
    seconds = 0.0
    taken: list[tuple[str, str]] = []
    stops = 0
    gap = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)  # Lingling pauses between replies
    for reply in REPLIES:
        said = speak_piper(reply, voice)
        seconds += len(said) / SAMPLE_RATE_HZ
        audio = np.concatenate([gap, said, gap])
        for first, end in _bursts(vad, audio):
            words = _words_inside(reply, len(said), first - len(gap), end - len(gap))
            taken.append((reply, words))
            stops += is_stop_phrase(words)
    return seconds, taken, stops


def _ms(values: Sequence[float]) -> str:
    return f"{p50(values) * 1000:.0f} / {p95(values) * 1000:.0f}" if values else "-"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    report = Report("stop_word", "The stop word: reaction and false stops")
    root = models_dir()
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    needed = ("openwakeword/silero_vad.onnx", "piper/en_US-joe-medium.onnx")
    if not have_models(root, *needed) or missing:
        report.text(f"Skipped: needs {', '.join(needed)} and espeak-ng + sox.")
        report.emit(args.json)
        return 0
    assert root is not None
    vad = SileroVad(VadConfig(), root)

    found = reactions(vad, args.quick)
    heard = [r.seconds for r in found if r.seconds is not None]
    rows = []
    for label, stt in STT_SECONDS.items():
        rows.append((label, _ms([s + stt for s in heard])))
    report.text(
        f"Reaction: {len(found)} stop words ({len(WORDS)} phrases, each voice, the ring at -12 and "
        f"-6 dB); taken: {len(heard)} of {len(found)}. True end of the word → burst ended "
        f"(audio): p50 / p95 {_ms(heard)} ms; then one transcription:"
    )
    report.table(("transcriber", "word's end → ring stopped, p50 / p95 ms"), rows)
    missed = [f"{r.voice} {r.word!r} at {r.ring_gain:g}" for r in found if r.seconds is None]
    if missed:
        report.text("Not taken: " + "; ".join(missed) + ".")

    seconds, taken, stops = false_stops(vad, root / "piper" / "en_US-joe-medium.onnx")
    report.text(
        f"False stops: {len(REPLIES)} replies, {seconds:.0f} s of Lingling's own voice (Piper "
        f"joe) heard by the microphone: {len(taken)} bursts taken ({len(taken) / seconds * 60:.1f} "
        f"transcriptions a minute of speech), {stops} of them a stop word by their words."
    )
    rows = [(reply if len(reply) < 60 else reply[:57] + "...", words) for reply, words in taken]
    report.table(("reply", "words of the burst"), rows)
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
