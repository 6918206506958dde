"""Running Lingling: load the models, open the audio, connect, and run the loop.

Also the checks made once at start-up, before anything is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from assistant.config import Config
from assistant.config_files import find_model
from assistant.core.ports import Microphone, Speaker, TurnDetector
from assistant.errors import ConfigError
from assistant.runtime.observer import JsonlEventLog, Observer, TurnRecord
from assistant.runtime.timers import default_state_file
from assistant.service.notify import Notifier, watchdog_loop
from assistant.service.servers import ManagedServer
from assistant.service.servers import specs as server_specs

if TYPE_CHECKING:
    from assistant.core.intents import Intents
    from assistant.runtime.runtime import Runtime

_LOGGER = logging.getLogger("assistant")

SERVICE_MARKERS: Final = ("INVOCATION_ID",)
"""What systemd sets for every process of a unit (NOTIFY_SOCKET alone may come from a test or a
supervisor that speaks the notify protocol)."""


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """True when systemd started this process (it sets these variables for its units)."""
    env = os.environ if env is None else env
    return any(env.get(name) for name in SERVICE_MARKERS)


def refuse_root(env: Mapping[str, str] | None = None, uid: int | None = None) -> None:
    """Raise ConfigError when running as root under systemd.

    The system unit runs Lingling as its own ``lingling`` user; root there means the unit was
    edited or copied without ``User=``, and a process holding a microphone and talking to the
    network must not have root's rights. Root outside systemd (a container, a shell) is left to
    whoever started it.
    """
    uid = os.geteuid() if uid is None else uid
    if uid == 0 and under_systemd(env):
        raise ConfigError(
            "refusing to run as root under systemd: set User=lingling in the unit "
            "(deploy/lingling.service does; deploy/install.sh creates the user)"
        )


def _load_intents(config: Config) -> Intents | None:
    from assistant.core.intents import Intents

    return Intents.load(config.intents) if config.intents.enabled else None


@dataclass(frozen=True, slots=True)
class RunOptions:
    input: Path | None = None
    """Read this WAV instead of the microphone."""
    output: Path | None = None
    """Write what would be played to this WAV instead of the speaker."""
    fast: bool = False
    """Read ``input`` as fast as turns allow, not in real time."""
    input_start: float | None = None
    """Start reading ``input`` at this wall-clock time (UNIX seconds), as other processes do."""
    events: Path | None = None
    """Write state and turn events here (JSONL)."""
    listen_once: bool = False
    """Run one turn without the wake word, then stop."""


async def serve(
    config: Config,
    options: RunOptions,
    observers: Sequence[Observer] = (),
    notifier: Notifier | None = None,
) -> None:
    """Start the managed servers, load the models, open the audio and run until the input ends
    or the task is cancelled; the servers are stopped on every way out."""
    if (options.fast or options.input_start is not None) and options.input is None:
        raise ConfigError("--fast and --input-start need --input")
    servers = [ManagedServer(spec) for spec in server_specs(config)]
    starting = asyncio.gather(*(server.start() for server in servers))
    try:
        await _serve(config, options, observers, notifier, starting)
    finally:
        await asyncio.shield(asyncio.gather(*(server.stop() for server in servers)))
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting  # retrieved: a start that failed has been reported already


async def _serve(
    config: Config,
    options: RunOptions,
    observers: Sequence[Observer],
    notifier: Notifier | None,
    servers_started: Awaitable[object],
) -> None:
    from assistant.adapters.llama import LlamaChat
    from assistant.adapters.microphone import SoundDeviceMicrophone
    from assistant.adapters.openwakeword import OpenWakeWord
    from assistant.adapters.piper import PiperSynthesizer
    from assistant.adapters.silero import SileroVad
    from assistant.adapters.speaker import SoundDeviceSpeaker
    from assistant.adapters.wavfile import WavFileMicrophone, WavFileSpeaker
    from assistant.adapters.whisper import WhisperTranscriber
    from assistant.runtime.runtime import Runtime
    from assistant.runtime.wake_words import WakeWordChoice

    realtime = not options.fast
    # A file for a microphone (a test, a demo) keeps its settings to itself.
    state_dir = None if options.input is not None else default_state_file().parent
    wake_words = WakeWordChoice(
        config.wake,
        config.models_dir,
        OpenWakeWord,
        state_file=state_dir / "wake_word.json" if state_dir is not None else None,
    )
    # The models load in parallel, while the servers load theirs.
    wake_word, vad, turn_detector, synthesizer, intents, _ = await asyncio.gather(
        asyncio.to_thread(OpenWakeWord, wake_words.config(), config.models_dir),
        asyncio.to_thread(SileroVad, config.vad, config.models_dir),
        asyncio.to_thread(_load_turn_detector, config),
        asyncio.to_thread(PiperSynthesizer, config.tts, config.models_dir),
        asyncio.to_thread(_load_intents, config),
        servers_started,
    )
    await asyncio.to_thread(synthesizer.warm)
    microphone: Microphone
    speaker: Speaker
    if options.input is not None:
        microphone = WavFileMicrophone(
            options.input, realtime=realtime, start_at=options.input_start
        )
    else:
        microphone = SoundDeviceMicrophone(config.audio)
    if options.output is not None:
        speaker = WavFileSpeaker(options.output, synthesizer.sample_rate_hz, realtime=realtime)
    else:
        speaker = SoundDeviceSpeaker(config.audio, synthesizer.sample_rate_hz)
    all_observers: list[Observer] = list(observers)
    ended = _TurnEnded()
    if options.listen_once:
        all_observers.append(ended)
    event_log = JsonlEventLog.open(options.events) if options.events else None
    if event_log is not None:
        all_observers.append(event_log)
    transcriber = WhisperTranscriber(config.stt)
    chat = LlamaChat(config.llm)
    bridge = claims = None
    if config.mqtt.enabled:
        from assistant.mqtt.arbitration import ClaimExchange
        from assistant.mqtt.bridge import MqttBridge

        bridge = MqttBridge(
            config.mqtt,
            on_request=lambda request: runtime.request(request),
            loop=asyncio.get_running_loop(),
            intent_names=intents.names if intents is not None else (),
            wake_words=wake_words.options,
        )
        all_observers.append(bridge)
        if config.mqtt.arbitration:
            claims = ClaimExchange(
                bridge,
                loop=asyncio.get_running_loop(),
                on_claim=lambda claim: runtime.arbiter.heard(claim),
                max_payload_bytes=config.mqtt.max_payload_bytes,
            )
            all_observers.append(claims)
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
        turn_detector=turn_detector,
        # A file for a microphone (a test, a demo) keeps its timers to itself, unless told.
        timers_file=config.timers.state_file
        or (default_state_file() if options.input is None else None),
        volume_file=state_dir / "volume.json" if state_dir is not None else None,
        wake_words=wake_words,
        audio_clock=options.input is not None,
        claims=claims,
    )
    words = ", ".join(w.model for w in wake_words.config().words())
    _LOGGER.info("ready: listening for %s", words)
    notifier = notifier or Notifier.from_env()
    notifier.ready(f"listening for {words}")
    watchdog = asyncio.get_running_loop().create_task(watchdog_loop(notifier, lambda: True))
    if bridge is not None:
        bridge.start()
    # Connect to both servers now, in the background: the first turn does not pay for it (nor
    # for not knowing whether the transcriber is fast enough for an early guess).
    warming = asyncio.gather(transcriber.warm_up(), chat.warm_up(), runtime.work.time_transcriber())
    try:
        if options.listen_once:
            await _one_turn(runtime, ended)
        else:
            await runtime.run()
    finally:
        watchdog.cancel()
        warming.cancel()
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


def _load_turn_detector(config: Config) -> TurnDetector | None:
    """The end-of-turn model, when the end of a turn is decided from evidence."""
    if config.vad.end_of_turn != "smart":
        return None
    from assistant.adapters.smart_turn import SmartTurn

    path = find_model(config.models_dir, config.vad.turn_model, ("turn",), "vad.turn_model")
    return SmartTurn(path)


class _TurnEnded(Observer):
    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def turn_finished(self, record: TurnRecord) -> None:
        self.ended.set()


async def _one_turn(runtime: Runtime, ended: _TurnEnded) -> None:
    """``lingling listen``: one turn without the wake word."""
    from assistant.core.events import ListenRequested

    loop = asyncio.get_running_loop()
    running = loop.create_task(runtime.run())
    waiting = loop.create_task(ended.ended.wait())
    try:
        await runtime.started.wait()
        runtime.request(ListenRequested())
        await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
