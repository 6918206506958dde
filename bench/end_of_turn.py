"""End of turn: true end of speech → end decided, → first audio, and commands cut.

Spoken commands (bench/utterances.py) go through the real ``Runtime`` with the real openWakeWord,
Silero VAD and Smart Turn models and the real Piper voice (en_US-joe-medium) speaking the reply,
paced like a microphone. Commands are said in one go or with a hesitation of 0.3-0.8 s in the
middle ("set a timer for … twenty minutes"), by espeak-ng voices (SSML breaks), by the Piper voice
(a comma's pause stretched) and by people (JFK's 11 s sentence, "yes", "no"); some are local
intents, the others go to the LLM.

The back-ends stand for a machine: the transcriber (``bench.live.OneAtATime``) takes a fixed time
per request and serves one at a time like whisper-server, and answers with the words that lie
wholly inside the audio it was sent, so the words' evidence at a pause is what a real transcriber
would hear; the chat model streams a fixed reply at the given speed. Both ends of the turn are
compared: ``vad.end_of_turn: silence`` (the fixed 0.7 s hangover) and ``smart`` (the end decided
at a pause from Smart Turn's probability and the words), on the same clips, interleaved.

A command is cut when the transcript used does not hold all its words. ``--quick`` runs fewer
clips and no sweep of the settings.

    .venv/bin/python -m bench.end_of_turn [--quick]
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from assistant.adapters.piper import default_threads
from assistant.config import VadConfig
from assistant.core.audioformat import SAMPLE_RATE_HZ
from assistant.core.turn_end import weigh_words
from bench.common import (
    Report,
    have_models,
    mean,
    models_dir,
    p50,
    p95,
    parser,
    percentile,
    quiet_logs,
)
from bench.endpointing import VOICES
from bench.turn_runs import (
    NEEDED,
    REPLY,
    Backends,
    Models,
    Setting,
    Turn,
    measure,
    run_turn,
)
from bench.utterances import Clip, Command, espeak_command, piper_command
from bench.utterances import recorded_command as recorded
from tests.support.scenarios import recording

PAUSED: Final = (
    ("set a timer for", "twenty minutes"),
    ("turn on the", "kitchen light"),
    ("what is the weather like", "tomorrow"),
    ("tell me a joke about", "cats"),
)
ONE_GO: Final = (
    "turn on the kitchen light",
    "what is the weather like tomorrow",
    "what time is it",
    "tell me a joke about cats",
)
PAUSES: Final = (0.3, 0.55, 0.8)
PIPER_SCALES: Final = (1.0, 1.2)
MODES: Final = ("silence", "smart")
KINDS: Final = ("espeak", "piper", "recorded")
TARGET_MS: Final = 400.0
AIM_MS: Final = 250.0
MAX_CUT: Final = 0.05
GPU: Final = Backends("GPU box", 0.05, 0.05, 100.0)
CPU: Final = Backends("this CPU", 2.1, 0.3, 10.0)
"""whisper base: ≈2.1 s a request on these 2 cores (FACTS.md). Qwen2.5 1.5B Q4_K_M: no speed
was measured here; FACTS.md's anchor (3B Q4_K_M ≈ 70-80 prompt tokens/s on a small CPU) gives
≈150 tokens/s for 1.5B, so ≈0.3 s for the ~30 uncached tokens of a turn (system prompt and tools
cached), and 10 tokens/s generated is assumed."""


DEFAULT: Final = Setting("default")
BARE: Final = Setting("default, the recording's words without punctuation")
"""JFK once more, its words as a transcriber that writes no punctuation would give them."""
FAST: Final = {"speculate_seconds": 0.08, "margin_seconds": 0.08}
SWEEP: Final = (
    Setting("default: pause 0.08 s, margin 0.16 s"),
    Setting("pause 0.16 s, at the margin (the default before)", {"speculate_seconds": 0.16}),
    Setting("pause 0.08 s, margin 0.08 s", FAST),
    Setting("a sure 'goes on' not listened to", {"turn_unfinished_below": 0.0}),
)


def commands(root: Path) -> list[Command]:
    """27 commands; the first 10 (``CORE``) hold every kind: espeak, Piper and recorded, paused
    and said in one go, local intents and questions for the LLM."""
    piper, espeak = piper_command, espeak_command
    (us, us_wpm), (gb, gb_wpm) = VOICES[:2]
    return [
        *(
            piper(root, *words, pause)
            for words, pause in zip(PAUSED, (0.3, 0.55, 0.8, 0.55), strict=True)
        ),
        piper(root, ONE_GO[0]),
        piper(root, ONE_GO[1]),
        espeak(*PAUSED[0], 0.8, us, us_wpm),
        espeak(*PAUSED[2], 0.3, gb, gb_wpm),
        espeak(ONE_GO[2], "", 0.0, us, us_wpm),
        recorded("speechcommands_yes_1000ms"),
        # the rest
        *(
            piper(root, *words, pause, 1.2)
            for words, pause in zip(PAUSED, (0.8, 0.3, 0.55, 0.3), strict=True)
        ),
        piper(root, ONE_GO[2], "", 0.0, 1.2),
        piper(root, ONE_GO[3], "", 0.0, 1.2),
        espeak(*PAUSED[1], 0.3, us, us_wpm),
        espeak(*PAUSED[2], 0.55, us, us_wpm),
        espeak(*PAUSED[3], 0.8, us, us_wpm),
        espeak(*PAUSED[0], 0.55, gb, gb_wpm),
        espeak(*PAUSED[1], 0.8, gb, gb_wpm),
        espeak(*PAUSED[3], 0.3, gb, gb_wpm),
        espeak(ONE_GO[0], "", 0.0, gb, gb_wpm),
        espeak(ONE_GO[1], "", 0.0, us, us_wpm),
        espeak(ONE_GO[3], "", 0.0, gb, gb_wpm),
        recorded("jfk"),
        recorded("speechcommands_no_1000ms"),
    ]


CORE: Final = 10
"""The first 10 commands: those run with ``--quick``."""
SWEPT: Final = (0, 1, 2, 3, 5, 6, 7, 9)
"""The commands the settings are swept on."""
ON_CPU: Final = ((0, 4, 5, 6), (0, 3, 4, 5, 6))
"""The commands run on the CPU back-ends: with ``--quick``, without."""


THRESHOLD: Final = VadConfig().turn_threshold
"""Audio alone ends a turn above it (with neutral words)."""


def report(
    turns: Sequence[Turn],
    seconds: float,
    load: str,
    is_request: Callable[[str], bool],
    costs: Sequence[tuple[str, float, float]],
) -> Report:
    """``load``: the load average when the run began; ``is_request(text)``: the text is a whole
    local intent; ``costs``: from ``model_costs``."""
    out = Report("end_of_turn", "End of turn: true end of speech → end decided → first audio")
    main = [t for t in turns if t.setting == DEFAULT]
    out.text(
        f"{len(turns)} turns in {seconds:.0f} s on a shared machine (1-minute load average "
        f"{load} at the start, {load_average()} at the end). Back-ends: {GPU.describe()}; "
        f"{CPU.describe()} (whisper base and Qwen2.5 1.5B on these 2 cores: see the module). "
        f"The reply: an intent's own answer, or the LLM's {REPLY!r}, both spoken by the real Piper "
        "voice (its synthesis is part of the first audio). Delays in ms from the true end of "
        "the command (its last sample, as a microphone hears it) over the commands not cut; "
        "cut = the transcript used does not hold all the command's words."
    )
    rows = []
    for backends in (GPU, CPU):
        for mode in MODES:
            group = [t for t in main if t.backends == backends and t.mode == mode]
            for kind in (*KINDS, "all"):
                some = [t for t in group if kind in ("all", t.clip.command.kind)]
                if some:
                    rows.append((backends.name, mode, kind, *delay_cells(some)))
    out.table(("back-ends", "end of turn", "voice", *DELAY_HEADERS), rows)
    smart = [t for t in main if t.mode == "smart" and t.backends == GPU]
    out.text(
        "The local models' own time (ms, p50 of 5 calls), called back to back and after 0.5 s "
        "idle each, as in a turn, where each runs once per pause (cold caches):"
    )
    out.table(("model", "back to back", "after 0.5 s idle"), costs)
    reasons = Counter(t.record.end_reason for t in smart if t.record is not None)
    out.text(
        "What ended the commands (GPU back-ends, `smart`): "
        + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
        + "."
    )
    probabilities(out, [t for t in main if t.mode == "smart"])
    words(out, [t for t in smart if t.clip.command.paused], is_request)
    punctuation(out, [t for t in smart if t.clip.command.kind == "recorded"], turns, is_request)
    breakdown(out, smart, is_request)
    sweep(out, turns)
    targets(out, smart)
    return out


def delay_cells(turns: Sequence[Turn]) -> tuple[object, ...]:
    """n, end decided p50/p95, first audio p50/p95, cut (paused), cut (all), no turn."""
    kept = [t for t in turns if t.heard and not t.cut]
    ends = [v for t in kept if (v := t.ms("speech_end")) is not None]
    audio = [v for t in kept if (v := t.ms("first_audio")) is not None]
    turned = [t for t in turns if t.record is not None]
    paused = [t for t in turned if t.clip.command.paused]
    return (
        len(turns),
        *(percentile(values, q) if values else None for values in (ends, audio) for q in (50, 95)),
        share(sum(t.cut for t in paused), len(paused)),
        share(sum(t.cut for t in turned), len(turned)),
        len(turns) - len(turned),
    )


DELAY_HEADERS: Final = (
    "n",
    "end decided p50",
    "p95",
    "first audio p50",
    "p95",
    "cut (paused)",
    "cut (all)",
    "no turn",
)


def share(count: int, total: int) -> str:
    return f"{count}/{total}" if total else "-"


def probabilities(out: Report, turns: Sequence[Turn]) -> None:
    """Smart Turn's probability at every pause the runtime asked it about, each pause once."""
    seen: dict[tuple[str, int, int], tuple[str, str, float]] = {}
    costs = []
    for turn in turns:
        for score in turn.scores:
            span = turn.clip.where(score.pcm)
            where = "true end" if span.stop >= turn.clip.true_end else "mid-command"
            key = (turn.clip.command.label, span.start, span.stop)
            seen[key] = (turn.clip.command.kind, where, score.probability)
            costs.append((score.finished_at - score.started_at) * 1000)
    rows = []
    for kind in KINDS:
        for where in ("mid-command", "true end"):
            values = [p for k, w, p in seen.values() if (k, w) == (kind, where)]
            if values:
                above = sum(p > THRESHOLD for p in values)
                rows.append(
                    (kind, where, len(values), p50(values), min(values), max(values), above)
                )
    out.text(
        "Smart Turn's probability that the turn is complete, at each pause the runtime asked it "
        "about with the default settings (each pause of each clip once; mid-command = the pause "
        "ends before the command's true end):"
    )
    out.table(("voice", "pause", "n", "p50", "min", "max", f"> {THRESHOLD}"), rows)
    out.text(f"Smart Turn's own run: p50 {p50(costs):.0f} ms, p95 {p95(costs):.0f} ms.")


def words(out: Report, turns: Sequence[Turn], is_request: Callable[[str], bool]) -> None:
    """Paused commands: what audio alone would have done at the hesitation, and what audio and
    words did."""
    rows = []
    alone = together = 0
    for turn in turns:
        mid = [
            (turn.clip.where(s.pcm).stop, s.probability)
            for s in turn.scores
            if turn.clip.where(s.pcm).stop < turn.clip.true_end
        ]
        top = max(mid, key=lambda item: item[1], default=None)
        heard = ""
        if top is not None:
            heard = next(
                (r.text for r in turn.stt.requests if turn.clip.where(r.pcm).stop == top[0]), ""
            )
        evidence = weigh_words(heard, is_request) if top else None
        audio_cuts = top is not None and top[1] > THRESHOLD
        alone += audio_cuts
        together += turn.cut
        reason = turn.record.end_reason if turn.record else "missed"
        rows.append(
            (
                turn.clip.command.label,
                None if top is None else top[1],
                heard or "-",
                evidence or "-",
                "cut" if audio_cuts else "",
                "cut" if turn.cut else "",
                reason,
            )
        )
    out.text(
        "What the words add (GPU back-ends, `smart`): each paused command, Smart Turn's highest "
        "probability at a pause inside it, the words heard there and what they say; audio alone "
        f"(probability > {THRESHOLD}) would have cut {alone} of {len(turns)}, audio and words "
        f"cut {together}."
    )
    out.table(
        ("command", "p mid", "words at the pause", "words say", "audio alone", "cut", "ended by"),
        rows,
    )


def punctuation(
    out: Report,
    recorded: Sequence[Turn],
    turns: Sequence[Turn],
    is_request: Callable[[str], bool],
) -> None:
    """The paused recording with whisper's punctuation (as in every other table) and without."""
    bare = [(t, "none") for t in turns if t.setting == BARE]
    if not bare:
        return
    kept = [(t, "as whisper.cpp writes the clip") for t in recorded if t.clip.command.paused]
    rows = []
    for turn, marks in kept + bare:
        # the words the first pause was weighed on: those of an upload Smart Turn scored
        scored = {turn.clip.where(s.pcm).stop for s in turn.scores}
        first = next(
            (
                r.text
                for r in turn.stt.requests
                if (stop := turn.clip.where(r.pcm).stop) in scored and stop < turn.clip.true_end
            ),
            None,
        )
        rows.append(
            (
                marks,
                first or "-",
                weigh_words(first, is_request) if first is not None else "-",
                turn.record.end_reason if turn.record else "missed",
                "cut" if turn.cut else "",
                turn.ms("first_audio"),
            )
        )
    out.text(
        "The recording's punctuation (GPU back-ends, `smart`): whisper ends a piece of a "
        "sentence with a comma where it hears one go on (`weigh_words` calls that unfinished); "
        "the transcriber here gives JFK's words the punctuation whisper.cpp writes for the whole "
        "clip. Whether whisper writes the comma on the piece alone (the words and 0.16 s of "
        "silence, nothing after) cannot be checked on these machines (no trained whisper "
        "weights): the same clip without any punctuation:"
    )
    out.table(
        ("punctuation", "words at the first pause", "words say", "ended by", "cut", "first audio"),
        rows,
    )


def breakdown(out: Report, turns: Sequence[Turn], is_request: Callable[[str], bool]) -> None:
    intents = [p for t in turns if is_request(t.clip.command.text) and (p := t.parts())]
    llm = [p for t in turns if not is_request(t.clip.command.text) and (p := t.parts())]
    every = intents + llm
    if not every:
        return
    names = list(every[0])
    names.insert(names.index("pause heard → end decided"), "Smart Turn (in parallel with STT)")
    rows = []
    for name in dict.fromkeys(names):
        column = [[p[name] for p in group if name in p] for group in (intents, llm, every, every)]
        rows.append(
            (
                name,
                *(p50(v) if v else None for v in column[:3]),
                p95(column[3]) if column[3] else None,
            )
        )
    ended = sum(t.parts() is not None for t in turns)
    out.text(
        f"Where the time goes (GPU back-ends, `smart`): the {ended} of {len(turns)} commands "
        "whose end was decided at their last pause (by the words or the audio) and not cut. "
        "Audio times (frame, VAD lag, the silence up to the upload's whole margin) come from "
        "the clip; the rest from the loop's clock. The reply is prepared from the first words "
        "at the pause (with the default settings, of the audio there is after 0.08 s of "
        "silence), and plays once the end is decided on the words of the upload with the "
        "whole margin (and Smart Turn's score of it) (ms):"
    )
    out.table(("part", "intents p50", "LLM p50", "all p50", "all p95"), rows)


def sweep(out: Report, turns: Sequence[Turn]) -> None:
    rows = []
    for setting in SWEEP:
        group = [t for t in turns if t.setting == setting]
        if group:
            requests = mean([len(t.stt.requests) for t in group])
            rows.append((setting.name, *delay_cells(group), requests))
    if not rows:
        return
    out.text(
        "Settings swept (GPU back-ends, `smart`; each clip in every setting one after the "
        "other); the settings are `vad.*` config. The pause is `speculate_seconds`: below "
        "`margin_seconds` the audio there is is transcribed and the reply prepared from its "
        "words, and the command is transcribed again (and ended on those words, with Smart "
        "Turn's score) once the margin is heard; with a 0.08 s margin the words at the pause are "
        "final. `turn_unfinished_below: 0` is the end of turn before it listened to Smart "
        "Turn's sure 'goes on':"
    )
    out.table(("setting", *DELAY_HEADERS, "requests / turn"), rows)


def targets(out: Report, smart: Sequence[Turn]) -> None:
    kept = [v for t in smart if t.heard and not t.cut and (v := t.ms("first_audio")) is not None]
    paused = [t for t in smart if t.clip.command.paused and t.record is not None]
    cut = sum(t.cut for t in paused)
    median = p50(kept)
    out.target(
        "end of turn: true end → first audio p50 (GPU back-ends, smart, Piper reply)",
        f"{median:.0f} ms",
        f"≤ {TARGET_MS:.0f} ms (aim {AIM_MS:.0f})",
        bool(kept) and median <= TARGET_MS,
    )
    out.target(
        "end of turn: paused commands cut (GPU back-ends, smart)",
        f"{cut} of {len(paused)}",
        f"≤ {MAX_CUT:.0%}",
        bool(paused) and cut <= MAX_CUT * len(paused),
    )


def model_costs(models: Models) -> list[tuple[str, float, float]]:
    """Smart Turn on 3 s of speech and Piper on the LLM's first sentence (with 1 thread and the
    default), and on a first clause: p50 ms back to back, and after 0.5 s idle."""
    pcm = recording("jfk")[: 3 * SAMPLE_RATE_HZ].tobytes()
    sentence = REPLY.split(". ")[0] + "."
    clause = "It should be sunny,"
    threads = default_threads()
    calls: dict[str, Callable[[], object]] = {
        "Smart Turn, 3 s of speech": lambda: models.turn.probability(pcm),
        f"Piper (1 thread), {sentence!r}": lambda: models.tts(1).synthesize(sentence),
        f"Piper ({threads} threads, the default), {sentence!r}": lambda: models.tts().synthesize(
            sentence
        ),
        f"Piper ({threads} threads), a first clause: {clause!r}": lambda: models.tts().synthesize(
            clause
        ),
    }
    return [(name, timed(call, 0.0), timed(call, 0.5)) for name, call in calls.items()]


def timed(call: Callable[[], object], idle_seconds: float, times: int = 5) -> float:
    spans = []
    for _ in range(times):
        time.sleep(idle_seconds)
        started = time.perf_counter()
        call()
        spans.append((time.perf_counter() - started) * 1000)
    return p50(spans)


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__ or "")
    options = args.parse_args(argv)
    quiet_logs()
    root = models_dir()
    if root is None or not have_models(root, *NEEDED):
        print("Skipped: needs LINGLING_MODELS with " + ", ".join(NEEDED))
        return 0
    started, load = time.monotonic(), load_average()
    models = Models.load(root)
    costs = model_costs(models)
    quick = options.quick
    clips = [Clip(c) for c in commands(root)]
    main_clips = clips[:CORE] if quick else clips
    cpu_clips = [clips[i] for i in ON_CPU[0 if quick else 1]]
    sweep_clips = [] if quick else [clips[i] for i in SWEPT]
    bare_clips = [] if quick else [Clip(recorded("jfk", punctuated=False))]
    modes = [(mode, DEFAULT) for mode in MODES]
    plan = [
        (GPU, main_clips, modes),
        (CPU, cpu_clips, modes),
        (GPU, sweep_clips, [("smart", setting) for setting in SWEEP]),
        (GPU, bare_clips, [("smart", BARE)]),
    ]

    async def run() -> list[Turn]:
        await run_turn(models, main_clips[0], GPU, "smart", DEFAULT)  # warm-up, not counted
        return await measure(models, plan)

    turns = asyncio.run(run())
    seconds = time.monotonic() - started

    def is_request(text: str) -> bool:
        return models.intents.match(text) is not None

    report(turns, seconds, load, is_request, costs).emit(options.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
