"""What ``lingling doctor`` reports, and its checks of this machine: the models and the sound cards.

Each check does the real thing: the models are loaded by the same adapters the assistant uses and
run once, the sound devices are looked up as the assistant opens them. The servers and the broker
are checked in ``assistant.service.probes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from assistant.config import Config
from assistant.config_files import find_model
from assistant.errors import AssistantError, ConfigError

SILENT_FRAME: Final = bytes(2560)  # one 80 ms frame of 16 kHz int16 silence


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    """What to do about a failure, in one line."""

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


def ok(name: str, detail: str) -> Check:
    """A passed check."""
    return Check(name, Status.PASS, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    """A failed check, with what to do about it."""
    return Check(name, Status.FAIL, detail, fix)


def fetch_hint(c: str, group: str, name: str | None = None) -> str:
    """The ``lingling models fetch`` command for a model ("" if the manifest has none)."""
    from assistant.service.manifest import FetchError, load_manifest

    try:
        entries = load_manifest().select(group, [name] if name else [])
    except FetchError:
        return ""
    names = "" if name is None else f" {entries[0].name}"
    return f"lingling models fetch{c} {group}{names}"


def timed(action: Callable[[], Any]) -> float:
    """How long ``action()`` took, in milliseconds."""
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def model_checks(config: Config, c: str) -> list[Check]:
    from assistant.adapters.openwakeword import FEATURE_MODELS

    checks = []
    folder = config.models_dir / "openwakeword"
    missing = [name for name in FEATURE_MODELS if not (folder / name).is_file()]
    if missing:
        fix = fetch_hint(c, "wake", "features") or f"put {', '.join(FEATURE_MODELS)} in {folder}"
        checks.append(fail("wake word features", f"missing {', '.join(missing)} in {folder}", fix))
    words_found = not missing
    for index, word in enumerate(config.wake.words()):
        name = f"wake word {word.model}"
        try:
            path = find_model(
                config.models_dir, word.model, ("openwakeword",), f"wake.models[{index}]"
            )
        except ConfigError as err:
            words_found = False
            fix = fetch_hint(c, "wake", word.model) or (
                f"put {word.model}.onnx in {folder}, or change wake.models"
            )
            checks.append(fail(name, str(err), fix))
            continue
        checks.append(ok(name, str(path)))
    if words_found:
        checks.append(_load_wake_words(config, c))
    checks.append(_load_vad(config, c))
    if config.vad.end_of_turn == "smart":
        checks.append(_load_turn_model(config, c))
    checks.append(_load_voice(config, c))
    return checks


def _load_wake_words(config: Config, c: str) -> Check:
    from assistant.adapters.openwakeword import OpenWakeWord

    try:
        wake = OpenWakeWord(config.wake, config.models_dir)
        ms = timed(lambda: wake.process(SILENT_FRAME))
    except (AssistantError, OSError, ValueError) as err:
        fix = "fetch them again: " + (fetch_hint(c, "wake") or "see models/README.md")
        return fail("openWakeWord", f"cannot run the models: {err}", fix)
    return ok("openWakeWord", f"{', '.join(wake.wake_words)} loaded and ran ({ms:.0f} ms)")


def _load_vad(config: Config, c: str) -> Check:
    from assistant.adapters.silero import SileroVad

    hint = fetch_hint(c, "vad") or "see models/README.md"
    try:
        vad = SileroVad(config.vad, config.models_dir)
        vad.process(SILENT_FRAME)
    except ConfigError as err:
        return fail("Silero VAD", str(err), hint)
    except (AssistantError, OSError, ValueError) as err:
        return fail("Silero VAD", str(err), f"the file is damaged or not Silero v4: {hint}")
    return ok("Silero VAD", f"{config.vad.model} loaded and ran")


def _load_turn_model(config: Config, c: str) -> Check:
    from assistant.adapters.smart_turn import SmartTurn

    name = "end-of-turn model"
    hint = fetch_hint(c, "turn") or "see models/README.md"
    try:
        path = find_model(config.models_dir, config.vad.turn_model, ("turn",), "vad.turn_model")
        turn = SmartTurn(path)
        ms = timed(lambda: turn.probability(SILENT_FRAME))
    except ConfigError as err:
        return fail(name, str(err), f"{hint}, or set vad.end_of_turn: silence")
    except (AssistantError, OSError, ValueError) as err:
        return fail(name, str(err), f"the file is damaged or not Smart Turn v3: {hint}")
    return ok(name, f"{config.vad.turn_model} loaded and ran ({ms:.0f} ms)")


def _load_voice(config: Config, c: str) -> Check:
    from assistant.adapters.piper import PiperSynthesizer

    name = f"Piper voice {config.tts.voice}"
    hint = fetch_hint(c, "voice", config.tts.voice) or (
        f"put {config.tts.voice}.onnx and {config.tts.voice}.onnx.json in "
        f"{config.models_dir / 'piper'}, or change tts.voice"
    )
    try:
        voice = PiperSynthesizer(config.tts, config.models_dir, threads=1)
        ms = timed(lambda: voice.synthesize("Hello."))
    except ConfigError as err:
        return fail(name, str(err), hint)
    except (AssistantError, OSError, ValueError) as err:
        return fail(name, str(err), f"the voice is damaged: {hint}")
    return ok(name, f"{voice.sample_rate_hz} Hz, said 'Hello.' in {ms:.0f} ms")


# --- audio ---------------------------------------------------------------------------------------


def audio_checks(config: Config) -> list[Check]:
    from assistant.adapters.devices import Kind, resolve_device, sounddevice_module

    checks = []
    wanted: tuple[tuple[Kind, str | int | None], ...] = (
        ("input", config.audio.input_device),
        ("output", config.audio.output_device),
    )
    try:
        sd = sounddevice_module()
    except AssistantError as err:
        return [
            fail("audio", str(err), "install PortAudio (Debian: apt-get install libportaudio2)")
        ]
    for kind, spec in wanted:
        name = f"audio {kind}"
        try:
            _, device = resolve_device(sd, spec, kind)
        except AssistantError as err:
            fix = (
                f"list devices with `lingling devices`, then set audio.{kind}_device "
                "(a name or part of it, an index, or null for the default)"
            )
            if spec is None:
                fix = "connect a sound card (or start the sound server); see `lingling devices`"
            checks.append(fail(name, str(err), fix))
            continue
        which = "the default" if spec is None else f"audio.{kind}_device {spec!r}"
        checks.append(ok(name, f"{device} ({which})"))
    return checks
