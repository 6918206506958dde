"""``lingling``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from assistant import __version__
from assistant.config import Config
from assistant.config_files import DEFAULT_CONFIG, load_config
from assistant.errors import AssistantError, ConfigError
from assistant.paths import config_search_path, default_models_dir, is_checkout, user_config

_LOGGER = logging.getLogger("assistant")
_WITHOUT_C = "without -c: ~/.config/lingling/config.yaml, else /etc/lingling/config.yaml, if there"
CONFIG_HELP = f"YAML file over the bundled defaults ({_WITHOUT_C})"
MODELS_CONFIG_HELP = f"use this config's models_dir ({_WITHOUT_C})"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.command == "devices":
        return _devices()
    if args.command == "diagram":
        return _diagram(args.output, args.format)
    config_path = user_config(getattr(args, "config", None))
    if args.command == "doctor":
        from assistant.service.doctor import print_report, run_checks

        return print_report(run_checks(config_path))
    try:
        if args.command in ("run", "listen"):
            from assistant.service.serve import refuse_root

            refuse_root()
        config = load_config(config_path)
        if args.command in ("run", "listen"):
            _LOGGER.info("config: %s", config_path or "the bundled config.yaml")
        if args.command == "intent":
            from assistant.core.intents import print_intent

            return print_intent(" ".join(args.text), config.intents)
        if args.command == "models":
            from assistant.service.models import fetch_command, list_command

            if args.models_command == "fetch":
                verify = not args.no_verify
                return fetch_command(args.group, args.names, config.models_dir, verify=verify)
            return list_command(config.models_dir, verify=not args.quick)
    except ConfigError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "say":
            return asyncio.run(_say(config, " ".join(args.text), args.output))
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
    parser = argparse.ArgumentParser(
        prog="lingling",
        description="A local-first voice assistant.",
        epilog=_where_things_are(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lingling {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="listen for the wake word and answer")
    run.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
    run.add_argument("--input", type=Path, help="read this 16 kHz mono WAV instead of the mic")
    run.add_argument("--output", type=Path, help="write what would be played to this WAV")
    run.add_argument("--fast", action="store_true", help="read --input as fast as possible")
    run.add_argument(
        "--input-start",
        type=float,
        metavar="EPOCH",
        help="start reading --input at this time (UNIX seconds): processes hear it together",
    )
    run.add_argument("--events", type=Path, help="write state and turn events here (JSONL)")
    listen = commands.add_parser("listen", help="run one turn without the wake word")
    listen.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
    say = commands.add_parser("say", help="speak TEXT with the configured voice")
    say.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
    say.add_argument("--output", type=Path, help="write it to this WAV instead of playing it")
    say.add_argument("text", nargs="+")
    commands.add_parser("devices", help="list audio devices")
    intent = commands.add_parser("intent", help="print the local intent TEXT matches, as JSON")
    intent.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
    intent.add_argument("text", nargs="+", help="a sentence, as it would be transcribed")
    doctor = commands.add_parser("doctor", help="check config, models, devices, servers, broker")
    doctor.add_argument("-c", "--config", type=Path, help=CONFIG_HELP)
    diagram = commands.add_parser("diagram", help="draw the state machine (Mermaid by default)")
    diagram.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write it to a file: .mmd/.md (Mermaid), .dot/.gv, or .png/.svg/.pdf (Graphviz)",
    )
    diagram.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    models = commands.add_parser("models", help="download models and list what is there")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    fetch = models_commands.add_parser("fetch", help="download models (models/manifest.yaml)")
    fetch.add_argument("-c", "--config", type=Path, help=MODELS_CONFIG_HELP)
    fetch.add_argument("group", help="wake, vad, voice, whisper, llm, or all")
    fetch.add_argument("names", nargs="*", help="entries of the group (default: its defaults)")
    fetch.add_argument(
        "--no-verify", action="store_true", help="accept files that have no published sha256"
    )
    listing = models_commands.add_parser("list", help="what the manifest offers, what is here")
    listing.add_argument("-c", "--config", type=Path, help=MODELS_CONFIG_HELP)
    listing.add_argument("--quick", action="store_true", help="compare sizes only, no hashing")
    return parser


def _where_things_are() -> str:
    """The epilog of ``lingling --help``: which files Lingling reads, in order."""
    if is_checkout(DEFAULT_CONFIG.parent):
        models = f"{DEFAULT_CONFIG.parent / 'models'} in this checkout"
    else:
        models = str(default_models_dir())
    search = "".join(f"\n  {path}" for path in config_search_path())
    return (
        f"Configuration: the bundled defaults ({DEFAULT_CONFIG}) overlaid by one file, which\n"
        f"needs only the keys it changes: -c FILE, else the first of these that exists:{search}\n"
        "Intents: intents.directory, else an intents/ folder beside that file (instead of the\n"
        "bundled ones), else the bundled ones.\n"
        f"Models: $LINGLING_MODELS, else models_dir, by default {models}."
    )


def _setup_logging(level: str) -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    # Libraries speak only when something is wrong; our own lines say what happened.
    for name in ("transitions", "httpx2", "httpcore2", "openai"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _diagram(output: Path | None, fmt: str) -> int:
    from assistant.service.diagram import DiagramError, dot, mermaid, render

    if output is None:
        print(mermaid() if fmt == "mermaid" else dot(), end="")
        return 0
    try:
        render(output)
    except DiagramError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    return 0


async def _say(config: Config, text: str, output: Path | None) -> int:
    """``lingling say TEXT``: speak one sentence and exit."""
    from assistant.adapters.piper import PiperSynthesizer
    from assistant.adapters.speaker import SoundDeviceSpeaker
    from assistant.adapters.wavfile import WavFileSpeaker
    from assistant.core.ports import Speaker

    synthesizer = await asyncio.to_thread(PiperSynthesizer, config.tts, config.models_dir)
    pcm = await asyncio.to_thread(synthesizer.synthesize, text)
    speaker: Speaker
    if output is not None:
        speaker = WavFileSpeaker(output, synthesizer.sample_rate_hz, realtime=False)
    else:
        speaker = SoundDeviceSpeaker(config.audio, synthesizer.sample_rate_hz)
    try:
        await speaker.play(pcm)
    finally:
        close = getattr(speaker, "close", None)
        if close is not None:
            close()
    return 0


def _devices() -> int:
    from assistant.adapters.devices import list_devices

    try:
        lines = list_devices()
    except AssistantError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines) if lines else "no audio devices found")
    return 0


async def _run(config: Config, args: argparse.Namespace) -> int:
    from assistant.service.notify import Notifier
    from assistant.service.serve import RunOptions, serve

    options = RunOptions(
        input=getattr(args, "input", None),
        output=getattr(args, "output", None),
        fast=getattr(args, "fast", False),
        input_start=getattr(args, "input_start", None),
        events=getattr(args, "events", None),
        listen_once=args.command == "listen",
    )
    notifier = Notifier.from_env()
    task = asyncio.current_task()
    assert task is not None

    def stop() -> None:
        notifier.stopping()
        task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await serve(config, options, notifier=notifier)
    except asyncio.CancelledError:
        _LOGGER.info("stopped")
    finally:
        notifier.close()
    return 0
