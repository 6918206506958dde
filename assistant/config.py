"""Configuration: every section and its settings, with their defaults and their checks.

``assistant.config_files.load_config`` reads the bundled ``config.yaml`` and the user's file into
a ``Config``; a bad key or value raises ConfigError with one line naming its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)


def _between(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return AfterValidator(check)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


Fraction = Annotated[float, _between(0.0, 1.0)]
Seconds = Annotated[float, AfterValidator(_positive)]


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


Url = Annotated[str, AfterValidator(_url)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WakeWordConfig(_Section):
    """One wake word with its own threshold and refractory time."""

    model: str
    """A name looked up in ``<models_dir>/openwakeword`` (``hey_jarvis``), or an .onnx path."""
    threshold: Fraction | None = None
    """Score that fires this word; defaults to ``wake.threshold``."""
    refractory_seconds: Annotated[float, _between(0.0, 60.0)] | None = None
    """Time after a detection during which this word cannot fire again."""


class WakeConfig(_Section):
    models: list[str | WakeWordConfig] = Field(min_length=1)
    """Wake words listened for at once."""
    threshold: Fraction = 0.5
    refractory_seconds: Annotated[float, _between(0.0, 60.0)] = 2.0

    def words(self) -> list[WakeWordConfig]:
        """Every wake word with the section's defaults filled in."""
        words = []
        for entry in self.models:
            word = WakeWordConfig(model=entry) if isinstance(entry, str) else entry
            words.append(
                word.model_copy(
                    update={
                        "threshold": self.threshold if word.threshold is None else word.threshold,
                        "refractory_seconds": self.refractory_seconds
                        if word.refractory_seconds is None
                        else word.refractory_seconds,
                    }
                )
            )
        return words


class VadConfig(_Section):
    model: str = "silero_vad"
    """Silero VAD (ONNX): a name looked up in the models directory, or a path."""
    threshold: Fraction = 0.5
    """Speech probability above which a frame counts as speech."""
    silence_seconds: Annotated[float, _between(0.1, 5.0)] = 0.7
    """Trailing silence that ends a command."""
    min_speech_seconds: Annotated[float, _between(0.0, 2.0)] = 0.16
    """Speech needed before a command counts as started."""
    no_speech_seconds: Annotated[float, _between(0.5, 60.0)] = 5.0
    """Listening with no speech for this long goes back to idle."""
    max_command_seconds: Annotated[float, _between(1.0, 120.0)] = 15.0
    """A command is cut after this long."""
    margin_seconds: Annotated[float, _between(0.0, 1.0)] = 0.16
    """Audio kept before and after the speech in the upload."""
    speculate_seconds: Annotated[float, _between(0.0, 5.0)] = 0.08
    """A pause: after this much silence the command is transcribed already, in case it has ended
    (with ``end_of_turn: smart`` the end is decided and the reply prepared here too); if speech
    resumes it is all dropped. 0 turns it off; otherwise it is below ``silence_seconds``. Below
    ``margin_seconds`` (``smart`` only; with ``silence`` it counts as ``margin_seconds``), the
    audio there is is sent and the reply prepared from its words, but the command is not ended
    on them (its last sound may be missing): once the margin is heard it is transcribed again
    (and the end-of-turn model scores it), and ended on those words; the prepared reply is kept
    if they are the same. Two
    requests a pause: once a transcription has taken longer than the gap between the two, the
    early one is no longer asked for (a one-at-a-time whisper-server would make the second
    wait)."""
    end_of_turn: Literal["smart", "silence"] = "smart"
    """``smart``: at each pause, weigh the end-of-turn model and the words of the early
    transcript, and prepare the reply (held until the end is confirmed); ``silence``: the
    command ends after ``silence_seconds``, whatever was said."""
    turn_model: str = "smart-turn-v3.2-cpu"
    """End-of-turn model (Smart Turn ONNX): a name in ``<models_dir>/turn``, or a path."""
    turn_threshold: Fraction = 0.5
    """``smart``: the end-of-turn probability that ends a turn at a pause when the words say
    neither complete nor unfinished."""
    turn_unfinished_below: Fraction = 0.1
    """``smart``: an end-of-turn probability this low says the speaker goes on: unless the words
    are a whole request, the pause may last up to ``max_pause_seconds``, as with unfinished
    words (0: never)."""
    turn_doubt_below: Fraction = 0.05
    """``smart``: an end-of-turn probability this low, known before the words, makes even a
    whole request wait for ``silence_seconds`` (0: never)."""
    max_pause_seconds: Annotated[float, _between(0.1, 10.0)] = 1.5
    """``smart``: how long a pause may last when the words say the sentence is unfinished ("set
    a timer for …"), or the end-of-turn model that the speaker goes on."""

    @model_validator(mode="after")
    def _consistent(self) -> VadConfig:
        for key in ("turn_unfinished_below", "turn_doubt_below"):
            if (value := getattr(self, key)) > self.turn_threshold:
                limit = self.turn_threshold
                raise ValueError(f"{key} ({value:g}) must not be above turn_threshold ({limit:g})")
        if self.speculate_seconds >= self.silence_seconds:
            raise ValueError(
                f"speculate_seconds ({self.speculate_seconds:g}) must be below silence_seconds "
                f"({self.silence_seconds:g}): no pause would come before the end (0 turns pauses "
                "off)"
            )
        return self


class AudioConfig(_Section):
    input_device: str | int | None = None
    """Microphone by name (a substring) or index; null for the system default."""
    output_device: str | int | None = None
    """Speaker by name (a substring) or index; null for the system default."""
    preroll_seconds: Annotated[float, _between(0.0, 5.0)] = 1.0
    """Audio kept before listening starts, so a command said right after the wake word is kept."""
    earcons: bool = True
    """Play a short sound on waking and on errors."""


class ServerConfig(_Section):
    """A server Lingling starts, watches and stops itself, on its section's ``url``."""

    model: str
    """The model file: a name in ``<models_dir>/whisper`` (or ``/llm``), or a path."""
    binary: str | None = None
    """The server program; null: $LINGLING_WHISPER_SERVER (or $LINGLING_LLAMA_SERVER), then
    whisper-server (llama-server) on PATH, then what scripts/build-servers built."""
    args: list[str] = Field(default_factory=list)
    """More arguments: threads, GPU layers, context size…"""
    start_timeout_seconds: Seconds = 120.0
    """How long the server may take to load its model and answer ``/health``."""


def _managed_on_this_machine(section: str) -> Any:
    def check(config: Any) -> Any:
        if config.server is not None and not _is_loopback(config.url):
            raise ValueError(
                f"a server Lingling starts listens on this machine: {section}.url must be a "
                f"loopback address (127.0.0.1, localhost), or set {section}.server: null"
            )
        return config

    return check


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


class SttConfig(_Section):
    url: Url = "http://127.0.0.1:8080/v1"
    """whisper.cpp server started with ``--inference-path /v1/audio/transcriptions``."""
    language: str | None = "en"
    timeout_seconds: Seconds = 15.0
    server: ServerConfig | None = None
    """Start whisper-server on ``url`` (null: the server at ``url`` is yours to run)."""

    _on_this_machine = model_validator(mode="after")(_managed_on_this_machine("stt"))


class LlmConfig(_Section):
    url: Url = "http://127.0.0.1:8081/v1"
    """llama.cpp server (OpenAI-compatible API)."""
    model: str = "default"
    system_prompt: str = (
        "You are Lingling, a voice assistant in a home. Answer in one or two short spoken "
        "sentences, without lists or markdown."
    )
    """What the model is told first: the reply is spoken, so short and without formatting."""
    history_turns: Annotated[int, Field(ge=0, le=100)] = 6
    """Earlier exchanges sent along with each question."""
    history_chars: Annotated[int, Field(ge=0, le=100_000)] = 4000
    max_tokens: Annotated[int, Field(ge=1, le=8192)] = 256
    temperature: Annotated[float, _between(0.0, 2.0)] = 0.7
    timeout_seconds: Seconds = 30.0
    """Time allowed until the reply starts playing."""
    server: ServerConfig | None = None
    """Start llama-server on ``url`` (null: the server at ``url`` is yours to run)."""

    _on_this_machine = model_validator(mode="after")(_managed_on_this_machine("llm"))


class TtsConfig(_Section):
    voice: str = "en_US-lessac-medium"
    """Piper voice: a name looked up in ``<models_dir>/piper`` or a path to an .onnx file."""
    speaker_id: int | None = None
    length_scale: Annotated[float, _between(0.1, 5.0)] | None = None
    threads: Annotated[int, Field(ge=1, le=64)] | None = None
    """CPU threads Piper synthesises with; null: 2, or 1 on a single core (two synthesise a
    sentence about a third faster than one on a 2-core machine; more were not measured)."""
    playback_timeout_seconds: Seconds = 60.0
    """Watchdog: speaking longer than this without progress ends the turn."""


class MqttTlsConfig(_Section):
    ca_file: Path | None = None
    """CA certificate(s) to trust; null uses the system's."""
    cert_file: Path | None = None
    """Client certificate, for brokers that ask for one."""
    key_file: Path | None = None


class MqttConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password_env: str = "LINGLING_MQTT_PASSWORD"
    """The password is read from this environment variable, never from the file."""
    tls: MqttTlsConfig | None = None
    """Set (even to {}) to connect with TLS."""
    topic_prefix: str = "lingling"
    site: str | None = None
    """This assistant's name in topics; null means the host name."""
    discovery: bool = True
    """Announce the device to Home Assistant (MQTT discovery)."""
    discovery_prefix: str = "homeassistant"
    hermes: bool = False
    """Also speak Rhasspy's Hermes topics."""
    keepalive_seconds: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_max_seconds: Annotated[float, _between(1.0, 600.0)] = 30.0
    max_payload_bytes: Annotated[int, Field(ge=16, le=1_000_000)] = 65_536
    """Command payloads larger than this are logged and ignored."""
    arbitration: bool = True
    """Several satellites, one answer: each claims a wake word it hears on
    ``<topic_prefix>/_arbitration/claims``, and only the one that heard it best answers (false:
    this satellite answers every wake word it hears)."""
    arbitration_seconds: Annotated[float, _between(0.02, 1.0)] = 0.15
    """How long a claim waits for the other satellites' (shorter than the awake earcon, 0.16 s,
    so that it adds no delay)."""


class IntentsConfig(_Section):
    enabled: bool = True
    directory: Path = Path("intents")
    """Intent definitions (YAML), relative to the file that sets it."""
    language: str = "en"
    follow_up_seconds: Annotated[float, _between(0.0, 60.0)] = 5.0
    """After a reply that asks a question, listen this long without the wake word (0: never)."""


class TimersConfig(_Section):
    ring_seconds: Annotated[float, _between(1.0, 3600.0)] = 60.0
    """A finished timer rings until stopped, or this long."""
    state_file: Path | None = None
    """Where timers are kept across restarts; null: $STATE_DIRECTORY/timers.json under systemd,
    else ~/.local/state/lingling/timers.json."""


class Config(_Section):
    models_dir: Path = Path("models")
    """Where models are looked up; the environment variable LINGLING_MODELS overrides it."""
    wake: WakeConfig = WakeConfig(models=["hey_jarvis"])
    vad: VadConfig = VadConfig()
    audio: AudioConfig = AudioConfig()
    stt: SttConfig = SttConfig()
    llm: LlmConfig = LlmConfig()
    tts: TtsConfig = TtsConfig()
    mqtt: MqttConfig = MqttConfig()
    intents: IntentsConfig = IntentsConfig()
    timers: TimersConfig = TimersConfig()
    stop_words: list[Annotated[str, StringConstraints(pattern=r"^[a-z']+$")]] = [
        "stop",
        "cancel",
        "enough",
        "quiet",
    ]
    """Said alone, any of these stops a ringing timer (and, with ``barge_in``, Lingling's
    speech), without the wake word; [] turns the stop word off."""
    barge_in: bool = False
    """Let the wake word interrupt Lingling while it thinks or speaks. Without echo cancellation
    (see the README) its own voice could wake it: leave it off then."""
