"""Endpointing: true speech end → end decided by Silero VAD + ``Endpointer``, and early cuts.

Command clips come from espeak-ng (tests/support/scenarios.py) with their true sample positions:
several commands, voices and speeds, white noise at three levels, and commands with a 0.3-0.6 s
pause in the middle. Each clip is scored once by the real VAD (as the runtime feeds it: reset, then
80 ms frames from a little before the command), and the probabilities are replayed through the
``Endpointer`` for each ``silence_seconds`` from 0.2 to 0.8 s.

* delay = decided end (end of the frame that returned SPEECH_ENDED) - true end of the command;
* early cut = the end was decided before the true end (the command was cut, e.g. in its pause);
* upload cut = the frames the endpointer selects for upload miss part of the command.

Then: the same with the VAD reporting each frame's last Silero window instead of the highest
(where the VAD's lag comes from), and the runtime's speculative endpointing
(``vad.speculate_seconds``: the upload starts at a short pause, is dropped if speech resumes, and
is used when the safe hangover ends on the same audio), replayed on the same clips.

    .venv/bin/python -m bench.endpointing [--quick]
"""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from assistant.adapters.silero import WINDOW_SAMPLES, SileroVad
from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.endpointer import Endpoint, Endpointer
from bench.common import Report, have_models, mean, models_dir, p50, p95, parser
from tests.support.scenarios import Audio, Scenario, concat, silence, speak

DEFAULT_SILENCE: Final = VadConfig().silence_seconds
SILENCES: Final = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
LEAD_SECONDS: Final = 0.4
"""Audio before the command that the VAD sees: the runtime starts it one frame before the wake
word's detection frame, and commands follow the wake word after a short pause."""
TARGET_SECONDS: Final = 0.3
COMMANDS: Final = (
    "turn on the kitchen light",
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "turn off the lights in the living room",
    "what time is it",
    "play some jazz in the bedroom",
    "dim the hallway lights to thirty percent",
    "is the front door locked",
)
PAUSED: Final = (
    ("turn on the kitchen light", "and the hallway"),
    ("set a timer for", "twenty minutes"),
    ("what is the weather like", "in Paris tomorrow"),
    ("play some music", "in the living room"),
)
PAUSES: Final = (0.3, 0.45, 0.6)
VOICES: Final = (("en-us", 150), ("en-gb", 180), ("en-us+f3", 130))
NOISES: Final = (0.0, 300.0, 600.0)
SPECULATIVE: Final = (0.16, 0.24, 0.32)
"""``speculate_seconds`` compared (the config's default is added)."""
BACKEND_SECONDS: Final = (0.3, 1.0)


@dataclass(frozen=True, slots=True)
class Clip:
    group: str  # "plain" or "pause 0.3 s"…
    noise_rms: float
    scene: Scenario
    probabilities: tuple[float, ...]
    """Per frame, as the runtime's SileroVad reports it (the highest of its windows)."""
    last_window: tuple[float, ...] | None = None
    """Per frame, the probability of the last window the frame completed (a variant)."""


@dataclass(frozen=True, slots=True)
class Decision:
    delay_seconds: float | None
    """Decided end - true end; None when no end was decided (no speech found)."""
    upload_cut: bool
    release_seconds: float | None = None
    """End of the last frame the VAD still called speech - true end (the VAD's own lag)."""


def build_clips(quick: bool, root: Path) -> list[Clip]:
    vad = SileroVad(VadConfig(), root)
    variant = LastWindowVad.make(root)
    cases: list[tuple[str, Audio, float]] = []
    voices = VOICES[:2] if quick else VOICES
    commands = COMMANDS[:4] if quick else COMMANDS
    for (voice, wpm), text in itertools.product(voices, commands):
        cases.append(("plain", speak(text, voice, wpm), 0.0))
    for (voice, wpm), (first, second), pause in itertools.product(voices[:2], PAUSED, PAUSES):
        audio = concat(speak(first, voice, wpm), silence(pause), speak(second, voice, wpm))
        cases.append((f"pause {pause:g} s", audio, pause))
    clips = []
    for seed, ((group, audio, _), noise_rms) in enumerate(itertools.product(cases, NOISES)):
        scene = Scenario.build(
            audio,
            wake=None,
            lead_seconds=LEAD_SECONDS,
            trail_seconds=1.5,
            noise_rms=noise_rms,
            seed=seed,
        )
        vad.reset()
        probabilities = tuple(vad.process(frame) for frame in scene.frames())
        last_window = None
        if variant is not None:
            variant.reset()
            last_window = tuple(variant.process(frame) for frame in scene.frames())
        clips.append(Clip(group, noise_rms, scene, probabilities, last_window))
    return clips


class LastWindowVad(SileroVad):
    """Silero VAD reporting, per 80 ms frame, the last window it completed rather than the
    highest: the frame holding the end of speech can then already count as silence. Built on
    ``SileroVad``'s internals; None from ``make`` when they have changed."""

    @classmethod
    def make(cls, root: Path) -> LastWindowVad | None:
        try:
            vad = cls(VadConfig(), root)
            vad.process(bytes(2 * FRAME_SAMPLES))
            vad.reset()
        except (AttributeError, TypeError, KeyError):
            return None
        return vad

    def process(self, frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32) / 32768.0
        last = None
        start = 0
        while start < samples.size:
            take = min(WINDOW_SAMPLES - self._filled, samples.size - start)
            self._window[0, self._filled : self._filled + take] = samples[start : start + take]
            self._filled += take
            start += take
            if self._filled == WINDOW_SAMPLES:
                self._filled = 0
                last = self._infer()
        if last is not None:
            self._probability = last
        return self._probability


def decide(
    clip: Clip, silence_seconds: float, probabilities: Sequence[float] | None = None
) -> Decision:
    endpointer = Endpointer(VadConfig(silence_seconds=silence_seconds))
    for index, probability in enumerate(probabilities or clip.probabilities):
        endpoint = endpointer.process(probability)
        if endpoint is Endpoint.SPEECH_ENDED:
            decided = (index + 1) * FRAME_SECONDS
            true_end = clip.scene.command_end / SAMPLE_RATE_HZ
            frames = endpointer.command_frames()
            first = (frames.start or 0) * FRAME_SAMPLES
            last = frames.stop * FRAME_SAMPLES
            cut = first > clip.scene.command_start or last < clip.scene.command_end
            margin = round(VadConfig().margin_seconds / FRAME_SECONDS)
            release = (frames.stop - margin) * FRAME_SECONDS - true_end
            return Decision(decided - true_end, cut, release)
        if endpoint is Endpoint.NO_SPEECH:
            break
    return Decision(None, True)


@dataclass(frozen=True, slots=True)
class Speculation:
    start_seconds: float | None
    """The runtime's speculative upload (its last SPEECH_PAUSED) - true end; None: none."""
    discarded: int
    """SPEECH_RESUMED: speculative uploads dropped because speech went on."""
    same_audio: bool
    """The speculative upload is the audio the end decides on (so its transcript is used)."""


def speculate(clip: Clip, speculate_seconds: float) -> Speculation:
    """Replay the runtime's Endpointer with ``speculate_seconds`` and the default hangover."""
    endpointer = Endpointer(VadConfig(speculate_seconds=speculate_seconds))
    paused_at: float | None = None
    upload: slice | None = None
    discarded = 0
    true_end = clip.scene.command_end / SAMPLE_RATE_HZ
    for index, probability in enumerate(clip.probabilities):
        endpoint = endpointer.process(probability)
        if endpoint is Endpoint.SPEECH_PAUSED:
            paused_at, upload = (index + 1) * FRAME_SECONDS, endpointer.command_frames()
        elif endpoint is Endpoint.SPEECH_RESUMED:
            discarded += 1
            paused_at = upload = None
        elif endpoint is Endpoint.SPEECH_ENDED:
            same = upload is not None and upload == endpointer.command_frames()
            start = None if paused_at is None else paused_at - true_end
            return Speculation(start, discarded, same)
        elif endpoint is Endpoint.NO_SPEECH:
            break
    return Speculation(None, discarded, False)


def is_cut(decision: Decision) -> bool:
    """The command was cut: its end decided inside it, or never decided."""
    return decision.delay_seconds is None or decision.delay_seconds < 0


def delays(decisions: Iterable[Decision]) -> list[float]:
    """The delays of the decisions that did not cut the command."""
    return [d.delay_seconds for d in decisions if d.delay_seconds is not None and not is_cut(d)]


def rate(part: int, whole: int) -> str:
    return f"{100 * part / max(1, whole):.1f} %"


def tradeoff(report: Report, clips: Sequence[Clip]) -> None:
    paused = [c for c in clips if c.group != "plain"]
    plain = [c for c in clips if c.group == "plain"]
    rows = []
    for seconds in SILENCES:
        decided = {id(clip): decide(clip, seconds) for clip in clips}
        ok = delays(decided.values())
        mark = " (default)" if seconds == DEFAULT_SILENCE else ""
        rows.append(
            (
                f"{seconds:.1f}{mark}",
                p50(ok),
                p95(ok),
                rate(sum(is_cut(decided[id(c)]) for c in plain), len(plain)),
                rate(sum(is_cut(decided[id(c)]) for c in paused), len(paused)),
                rate(sum(d.upload_cut for d in decided.values()), len(clips)),
                sum(d.delay_seconds is None for d in decided.values()),
            )
        )
    report.text(
        f"{len(clips)} clips: {len(plain)} commands said in one go, {len(paused)} with a pause "
        "mid-command. Delays: seconds from the true end of the command to the decided end, over "
        "the clips that were not cut; an early cut is an end decided inside the command."
    )
    headers = (
        "silence_seconds",
        "delay p50 s",
        "delay p95 s",
        "early cuts (no pause)",
        "early cuts (paused)",
        "upload cut (all)",
        "no end",
    )
    report.table(headers, rows)
    default = [decide(clip, DEFAULT_SILENCE) for clip in clips]
    ok = delays(default)
    cuts = sum(is_cut(d) for d in default)
    report.target(
        f"endpointing delay p50 (default {DEFAULT_SILENCE:g} s)",
        f"{p50(ok):.2f} s",
        f"≤ {TARGET_SECONDS:g} s",
        p50(ok) <= TARGET_SECONDS,
    )
    report.target(
        f"commands cut (default {DEFAULT_SILENCE:g} s)", f"{cuts} of {len(clips)}", "0", cuts == 0
    )
    groups = sorted({(c.group, c.noise_rms) for c in clips}, key=lambda g: (g[0] != "plain", g))
    group_rows = []
    for group, noise_rms in groups:
        members = [
            d
            for c, d in zip(clips, default, strict=True)
            if (c.group, c.noise_rms) == (group, noise_rms)
        ]
        values = delays(members)
        lags = [d.release_seconds for d in members if d.release_seconds is not None]
        group_rows.append(
            (
                group,
                f"{noise_rms:g}",
                len(members),
                p50(lags),
                p50(values),
                max(values, default=float("nan")),
                sum(is_cut(d) for d in members),
            )
        )
    report.text(
        f"At the default `silence_seconds: {DEFAULT_SILENCE:g}`, by kind of clip. VAD lag = end "
        "of the last frame the VAD still called speech - true end (the delay is this lag plus "
        "the hangover, rounded up to whole 80 ms frames):"
    )
    headers = ("clips", "noise RMS", "n", "VAD lag p50 s", "delay p50 s", "delay max s", "cut")
    report.table(headers, group_rows)


def speculation(report: Report, clips: Sequence[Clip]) -> None:
    if not hasattr(Endpoint, "SPEECH_PAUSED") or "speculate_seconds" not in VadConfig.model_fields:
        report.text("Speculative endpointing: not in this runtime (no `vad.speculate_seconds`).")
        return
    default = VadConfig().speculate_seconds
    fixed = [decide(clip, DEFAULT_SILENCE).delay_seconds for clip in clips]
    rows = []
    default_starts: list[float] = []
    for h in sorted({*SPECULATIVE, default}):
        results = [speculate(clip, h) for clip in clips]
        pairs = [
            (r.start_seconds if r.start_seconds is not None and r.same_audio else confirm, confirm)
            for r, confirm in zip(results, fixed, strict=True)
            if confirm is not None
        ]
        starts = [start for start, _ in pairs]
        if h == default:
            default_starts = starts
        used = sum(1 for r in results if r.start_seconds is not None and r.same_audio)
        plain = [r.discarded for c, r in zip(clips, results, strict=True) if c.group == "plain"]
        paused = [r.discarded for c, r in zip(clips, results, strict=True) if c.group != "plain"]
        mark = " (default)" if h == default else ""
        row: list[object] = [
            f"{h:.2f}{mark}",
            p50(starts),
            p95(starts),
            rate(used, len(clips)),
            f"{mean(plain):.2f}",
            f"{mean(paused):.2f}",
        ]
        for backend in BACKEND_SECONDS:
            savings = [
                (confirm + backend) - max(start + backend, confirm) for start, confirm in pairs
            ]
            row.append(p50(savings))
        rows.append(row)
    report.text(
        "Speculative endpointing as the runtime does it (`vad.speculate_seconds`: the upload "
        "starts at the first short pause, is dropped when speech resumes, and its transcript is "
        f"used when the {DEFAULT_SILENCE:g} s hangover ends on the same audio; nothing is cut "
        "that the hangover does not cut). Work starts = speculative upload (or the end, when "
        "none was usable) - true end. Saving = how much earlier the first audio can play than "
        "when the work starts at the end, for back-ends (STT + LLM first sentence + TTS) of "
        + " and ".join(f"{b:g} s" for b in BACKEND_SECONDS)
        + " (when the LLM and TTS also start speculatively; with STT alone, at most the STT "
        "time)."
    )
    headers = ["speculate_seconds", "work starts p50 s", "p95 s", "speculation used"]
    headers += ["dropped / command (no pause)", "dropped / command (paused)"]
    headers += [f"saving p50 s (back-ends {b:g} s)" for b in BACKEND_SECONDS]
    report.table(headers, rows)
    report.target(
        f"work starts after the true end, p50 (speculate_seconds {default:g})",
        f"{p50(default_starts):.2f} s",
        f"≤ {TARGET_SECONDS:g} s",
        p50(default_starts) <= TARGET_SECONDS,
    )


def vad_variant(report: Report, clips: Sequence[Clip]) -> None:
    """The hangover trade-off with the last-window VAD variant, beside the runtime's."""
    if any(clip.last_window is None for clip in clips):
        return
    rows = []
    for seconds in (0.5, 0.6, DEFAULT_SILENCE):
        for name, pick in (("max of windows (now)", False), ("last window", True)):
            decided = [decide(clip, seconds, clip.last_window if pick else None) for clip in clips]
            ok = delays(decided)
            lags = [d.release_seconds for d in decided if d.release_seconds is not None]
            rows.append(
                (f"{seconds:.1f}", name, p50(lags), p50(ok), sum(is_cut(d) for d in decided))
            )
    report.text(
        "Where the VAD lag comes from: `SileroVad` gives a frame the highest probability of the "
        "2-3 Silero windows (32 ms) it completes, so the frame holding the end of speech counts "
        "as speech. Reporting the frame's last window instead (same clips, same endpointer):"
    )
    report.table(
        ("silence_seconds", "frame probability", "VAD lag p50 s", "delay p50 s", "cut"), rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "").parse_args(argv)
    report = Report("endpointing", "Endpointing delay and early cuts (Silero VAD + Endpointer)")
    root = models_dir()
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if not have_models(root, "openwakeword/silero_vad.onnx") or missing:
        report.text(f"Skipped: needs silero_vad.onnx and espeak-ng + sox (missing: {missing}).")
        report.target("endpointing delay p50", "-", f"≤ {TARGET_SECONDS:g} s", None)
    else:
        assert root is not None
        clips = build_clips(args.quick, root)
        tradeoff(report, clips)
        vad_variant(report, clips)
        speculation(report, clips)
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
