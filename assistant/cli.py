"""``lingling``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant import __version__
from assistant.config import Config, load_config
from assistant.errors import AssistantError, ConfigError
from assistant.events import JsonlEventLog, Observer
from assistant.ports import Microphone, Speaker

if TYPE_CHECKING:
    from assistant.intents import Intents

_LOGGER = logging.getLogger("assistant")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.command == "devices":
        return _devices()
    try:
        config = load_config(args.config)
        if args.command == "intent":
            from assistant.intents import print_intent

            return print_intent(" ".join(args.text), config.intents)
    except ConfigError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(config, args))
    except ConfigError as err:  # e.g. a model the config names is not there
        print(f"lingling: {err}", file=sys.stderr)
        return 2
    except AssistantError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lingling", description="A local-first voice assistant.")
    parser.add_argument("--version", action="version", version=f"lingling {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="listen for the wake word and answer")
    run.add_argument("-c", "--config", type=Path, help="YAML file over the bundled defaults")
    run.add_argument("--input", type=Path, help="read this 16 kHz mono WAV instead of the mic")
    run.add_argument("--output", type=Path, help="write what would be played to this WAV")
    run.add_argument("--fast", action="store_true", help="read --input as fast as possible")
    run.add_argument("--events", type=Path, help="write state and turn events here (JSONL)")
    commands.add_parser("devices", help="list audio devices")
    intent = commands.add_parser("intent", help="print the local intent TEXT matches, as JSON")
    intent.add_argument("-c", "--config", type=Path, help="YAML file over the bundled defaults")
    intent.add_argument("text", nargs="+", help="a sentence, as it would be transcribed")
    return parser


def _setup_logging(level: str) -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    # Libraries speak only when something is wrong; our own lines say what happened.
    for name in ("transitions", "httpx2", "httpcore2", "openai"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _devices() -> int:
    from assistant.audio import list_devices

    try:
        lines = list_devices()
    except AssistantError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines) if lines else "no audio devices found")
    return 0


def _load_intents(config: Config) -> Intents | None:
    from assistant.intents import Intents

    return Intents.load(config.intents) if config.intents.enabled else None


@dataclass(frozen=True, slots=True)
class RunOptions:
    input: Path | None = None
    output: Path | None = None
    fast: bool = False
    events: Path | None = None


async def _run(config: Config, args: argparse.Namespace) -> int:
    options = RunOptions(input=args.input, output=args.output, fast=args.fast, events=args.events)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(signum, task.cancel)
    try:
        await serve(config, options)
    except asyncio.CancelledError:
        _LOGGER.info("stopped")
    return 0


async def serve(config: Config, options: RunOptions, observers: Sequence[Observer] = ()) -> None:
    """Load the models, open the audio and run until the input ends or the task is cancelled."""
    from assistant.app import Runtime
    from assistant.audio import SoundDeviceMicrophone, SoundDeviceSpeaker
    from assistant.llm import LlamaChat
    from assistant.stt import WhisperTranscriber
    from assistant.tts import PiperSynthesizer
    from assistant.vad import SileroVad
    from assistant.wakeword import OpenWakeWord
    from assistant.wavio import WavFileMicrophone, WavFileSpeaker

    if options.fast and options.input is None:
        raise ConfigError("--fast needs --input")
    realtime = not options.fast
    # The models load in parallel: the wake word's import dominates start-up.
    wake_word, vad, synthesizer, intents = await asyncio.gather(
        asyncio.to_thread(OpenWakeWord, config.wake, config.models_dir),
        asyncio.to_thread(SileroVad, config.vad, config.models_dir),
        asyncio.to_thread(PiperSynthesizer, config.tts, config.models_dir),
        asyncio.to_thread(_load_intents, config),
    )
    await asyncio.to_thread(synthesizer.warm)
    microphone: Microphone
    speaker: Speaker
    if options.input is not None:
        microphone = WavFileMicrophone(options.input, realtime=realtime)
    else:
        microphone = SoundDeviceMicrophone(config.audio)
    if options.output is not None:
        speaker = WavFileSpeaker(options.output, synthesizer.sample_rate_hz, realtime=realtime)
    else:
        speaker = SoundDeviceSpeaker(config.audio, synthesizer.sample_rate_hz)
    all_observers = list(observers)
    event_log = JsonlEventLog.open(options.events) if options.events else None
    if event_log is not None:
        all_observers.append(event_log)
    transcriber = WhisperTranscriber(config.stt)
    chat = LlamaChat(config.llm)
    bridge = None
    if config.mqtt.enabled:
        from assistant.mqtt import MqttBridge

        bridge = MqttBridge(
            config.mqtt,
            on_request=lambda request: runtime.request(request),
            loop=asyncio.get_running_loop(),
            intent_names=intents.names if intents is not None else (),
        )
        all_observers.append(bridge)
    runtime = Runtime(
        config,
        microphone=microphone,
        speaker=speaker,
        wake_word=wake_word,
        vad=vad,
        transcriber=transcriber,
        chat=chat,
        synthesizer=synthesizer,
        observers=all_observers,
        intents=intents,
        audio_clock=options.input is not None,
    )
    _LOGGER.info("ready: listening for %s", ", ".join(w.model for w in config.wake.words()))
    if bridge is not None:
        bridge.start()
    try:
        await runtime.run()
    finally:
        if bridge is not None:
            await bridge.stop()  # first, so that "offline" goes out at once
        for closer in (transcriber.aclose(), chat.aclose()):
            with contextlib.suppress(Exception):
                await closer
        for resource in (microphone, speaker):
            close = getattr(resource, "close", None)
            if close is not None:
                close()
        if event_log is not None:
            event_log.close()
