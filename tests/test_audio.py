"""WAV file stand-ins, and the sound card adapters through a private PulseAudio (mark ``audio``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from assistant.adapters.devices import list_devices
from assistant.adapters.microphone import SoundDeviceMicrophone
from assistant.adapters.speaker import SoundDeviceSpeaker
from assistant.adapters.wavfile import WavFileMicrophone, WavFileSpeaker
from assistant.config import AudioConfig
from assistant.core.audioformat import FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.ports import Microphone, Speaker
from assistant.errors import AudioError
from tests.support.clock import virtual_clock

DATA_DIR = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
VIRTUAL_AUDIO = REPO / "scripts" / "virtual-audio.sh"


def write_wav(path: Path, pcm: bytes, rate_hz: int = SAMPLE_RATE_HZ, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[int, int, bytes]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.readframes(wav.getnframes())


def ramp(samples: int, start: int = 1) -> bytes:
    """Distinct, non-zero samples, so order and padding are visible."""
    return ((np.arange(samples) + start) % 30000 + 1).astype(np.int16).tobytes()


def tone(seconds: float, rate_hz: int, hz: float = 440.0) -> bytes:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (np.sin(2 * np.pi * hz * t) * 10000).astype(np.int16).tobytes()


async def collect(frames: AsyncIterator[bytes]) -> list[bytes]:
    return [frame async for frame in frames]


async def arrival_times(mic: Microphone, busy: dict[int, float] | None = None) -> list[float]:
    """When each frame arrived, on the loop's clock from the start; ``busy`` maps a frame's
    index to how long the consumer then works on it."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = []
    async for _ in mic.frames():
        times.append(loop.time() - start)
        await asyncio.sleep((busy or {}).get(len(times) - 1, 0.0))
    return times


# --- WavFileMicrophone -------------------------------------------------------------------------


async def test_wav_microphone_yields_whole_frames_padding_the_last(tmp_path: Path) -> None:
    pcm = ramp(2 * FRAME_SAMPLES + 100)
    mic: Microphone = WavFileMicrophone(write_wav(tmp_path / "in.wav", pcm), realtime=False)

    frames = await asyncio.wait_for(collect(mic.frames()), 1)

    assert [len(frame) for frame in frames] == [FRAME_BYTES] * 3
    assert b"".join(frames) == pcm + bytes(FRAME_BYTES - 200)
    assert not mic.realtime
    assert await asyncio.wait_for(collect(mic.frames()), 1) == frames  # each call starts over


async def test_wav_microphone_reads_a_recording() -> None:
    path = DATA_DIR / "speechcommands_yes_1000ms.wav"
    mic = WavFileMicrophone(path, realtime=False)

    frames = await asyncio.wait_for(collect(mic.frames()), 1)

    assert mic.duration_seconds == pytest.approx(1.0)
    assert len(frames) == 13  # 16000 samples = 12.5 frames
    assert b"".join(frames)[: 16000 * 2] == read_wav(path)[2]


@virtual_clock
async def test_wav_microphone_realtime_delivers_each_frame_once_it_is_complete() -> None:
    path = DATA_DIR / "speechcommands_yes_1000ms.wav"

    realtime = await arrival_times(WavFileMicrophone(path, realtime=True))
    fast = await arrival_times(WavFileMicrophone(path, realtime=False))

    assert realtime == pytest.approx([(i + 1) * FRAME_SECONDS for i in range(13)])
    assert fast == [0.0] * 13


@virtual_clock
async def test_wav_microphone_plays_from_a_given_time_for_several_processes() -> None:
    path = DATA_DIR / "speechcommands_yes_1000ms.wav"
    pcm = read_wav(path)[2]
    early = WavFileMicrophone(path, realtime=True, start_at=time.time() + 5.0)
    late = WavFileMicrophone(path, realtime=True, start_at=time.time() - 0.5)

    held = await arrival_times(early)
    caught_up = await asyncio.wait_for(collect(late.frames()), 1)

    # held until then (wall time), then paced as usual from there
    assert held[0] == pytest.approx(5.0 + FRAME_SECONDS, abs=0.05)
    assert [b - a for a, b in itertools.pairwise(held)] == pytest.approx([FRAME_SECONDS] * 12)
    # half a second late: the first half second was played before it listened
    skipped = pcm.find(b"".join(caught_up)[:3200])
    assert 16_000 <= skipped <= 16_000 + 320  # 0.5 s of samples (and the few ms it took to start)
    assert len(caught_up) == 7  # the 0.5 s left: 6.25 frames


@virtual_clock
async def test_wav_microphone_realtime_lets_a_slow_consumer_catch_up(tmp_path: Path) -> None:
    # Pacing is scheduled by frame index: time lost in the consumer is not added to the total.
    mic = WavFileMicrophone(write_wav(tmp_path / "in.wav", ramp(10 * FRAME_SAMPLES)), realtime=True)

    times = await arrival_times(mic, busy={0: 0.3, 5: 0.04})

    # frames 2-4 were due while the consumer was busy with the first: they come at once after it
    assert times == pytest.approx([0.08, 0.38, 0.38, 0.38, 0.4, 0.48, 0.56, 0.64, 0.72, 0.8])


@pytest.mark.parametrize(
    ("rate_hz", "channels", "width", "described"),
    [
        (44100, 2, 2, "44100 Hz stereo 16-bit"),
        (16000, 2, 2, "16000 Hz stereo 16-bit"),
        (22050, 1, 2, "22050 Hz mono 16-bit"),
        (16000, 1, 1, "16000 Hz mono 8-bit"),
        (16000, 1, 4, "16000 Hz mono 32-bit"),
    ],
)
def test_wav_microphone_rejects_other_formats(
    tmp_path: Path, rate_hz: int, channels: int, width: int, described: str
) -> None:
    path = tmp_path / "input.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate_hz)
        wav.writeframes(bytes(width * channels * 100))

    with pytest.raises(AudioError) as caught:
        WavFileMicrophone(path, realtime=False)

    assert str(caught.value) == (
        f"{path}: {described}; need 16 kHz mono 16-bit (sox input.wav -r 16000 -c 1 -b 16 out.wav)"
    )
    assert caught.value.code == "audio"


def test_wav_microphone_rejects_what_is_not_a_wav(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioError, match=r"notes\.wav: not a PCM WAV file .*need 16 kHz"):
        WavFileMicrophone(text, realtime=False)
    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        WavFileMicrophone(tmp_path / "missing.wav", realtime=False)


# --- WavFileSpeaker ----------------------------------------------------------------------------


async def test_wav_speaker_writes_everything_played_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker: Speaker = WavFileSpeaker(path, 22050, realtime=False)
    assert isinstance(speaker, WavFileSpeaker)
    assert read_wav(path) == (22050, 1, b"")  # valid before anything is played
    parts = [ramp(1000), ramp(1, start=5000), ramp(333, start=9000)]

    await asyncio.wait_for(speaker.play(parts[0]), 1)
    assert read_wav(path) == (22050, 1, parts[0])  # valid between plays, before close()
    await asyncio.wait_for(asyncio.gather(*(speaker.play(part) for part in parts[1:])), 1)
    speaker.close()
    speaker.close()

    assert read_wav(path) == (22050, 1, b"".join(parts))
    with pytest.raises(AudioError, match="closed"):
        await speaker.play(parts[0])


@virtual_clock
async def test_wav_speaker_realtime_play_takes_the_audio_duration(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    speaker = WavFileSpeaker(tmp_path / "out.wav", 16000, realtime=True)
    start = loop.time()
    await asyncio.wait_for(speaker.play(tone(0.5, 16000)), 2)
    assert loop.time() - start == pytest.approx(0.5)
    speaker.close()


@virtual_clock
async def test_wav_speaker_stop_ends_plays_early_and_keeps_what_was_heard(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    path = tmp_path / "out.wav"
    speaker = WavFileSpeaker(path, 16000, realtime=True)
    first, queued, later = tone(2.0, 16000), tone(1.0, 16000, hz=880), ramp(1600)
    plays = [asyncio.create_task(speaker.play(pcm)) for pcm in (first, queued)]
    await asyncio.sleep(0.3)

    stopped_at = loop.time()
    speaker.stop()
    await asyncio.wait_for(asyncio.gather(*plays), 1)
    assert loop.time() == stopped_at  # both ended at once, without waiting for their audio
    await asyncio.wait_for(speaker.play(later), 1)  # stop() ends only what was already asked for
    speaker.close()

    _, _, written = read_wav(path)
    heard = written[: -len(later)]
    assert written.endswith(later)
    assert len(heard) / 32000 == pytest.approx(0.3, abs=1 / 16000)  # nothing of the queued one
    assert first.startswith(heard)


@virtual_clock
async def test_wav_speaker_cancelled_play_keeps_what_was_heard(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker = WavFileSpeaker(path, 16000, realtime=True)
    play = asyncio.create_task(speaker.play(tone(2.0, 16000)))
    await asyncio.sleep(0.2)
    play.cancel()
    with pytest.raises(asyncio.CancelledError):
        await play
    speaker.close()
    assert len(read_wav(path)[2]) / 32000 == pytest.approx(0.2, abs=1 / 16000)


# --- sounddevice adapters on a fake sounddevice module (no PortAudio needed) -------------------


class FakeFlags:
    def __init__(self, problem: bool = False) -> None:
        self.output_underflow = problem

    def __bool__(self) -> bool:
        return self.output_underflow


class FakeStream:
    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.options = options
        self.callback = options["callback"]
        self.active = False
        self.closed = False
        self.latency = 0.05

    def start(self) -> None:
        self.active = True

    def abort(self) -> None:
        if self.active:
            self.active = False
            self.options["finished_callback"]()

    def close(self) -> None:
        self.closed = True

    def die(self) -> None:
        """What PortAudio does when the device goes away: stop and call finished_callback."""
        self.abort()

    def record(self, pcm: bytes) -> None:
        self.callback(pcm, len(pcm) // 2, None, FakeFlags())

    def pull(self, dac_ahead_seconds: float = 0.01) -> bytes:
        """Run one output callback; return what it wrote."""
        out = bytearray(b"\xee" * 2 * self.options["blocksize"])
        times = SimpleNamespace(currentTime=10.0, outputBufferDacTime=10.0 + dac_ahead_seconds)
        self.callback(out, self.options["blocksize"], times, FakeFlags())
        return bytes(out)


class FakeSoundDevice:
    """Stands in for the ``sounddevice`` module: two devices, streams driven by the test."""

    class PortAudioError(Exception):
        pass

    class CallbackAbort(Exception):
        pass

    def __init__(self) -> None:
        self.devices = [
            {"index": 0, "name": "USB Mic", "hostapi": 0, "max_input_channels": 1,
             "max_output_channels": 0, "default_samplerate": 48000.0},
            {"index": 1, "name": "Speakers", "hostapi": 0, "max_input_channels": 0,
             "max_output_channels": 2, "default_samplerate": 44100.0},
        ]  # fmt: skip
        self.default = SimpleNamespace(device=[0, 1])
        self.streams: list[FakeStream] = []
        self.refuse = False

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def query_hostapis(self, index: int) -> dict[str, Any]:
        return {"name": "ALSA"}

    def _stream(self, kind: str, options: dict[str, Any]) -> FakeStream:
        if self.refuse:
            raise self.PortAudioError("Device unavailable [PaErrorCode -9985]")
        self.streams.append(FakeStream(kind, **options))
        return self.streams[-1]

    def RawInputStream(self, **options: Any) -> FakeStream:
        return self._stream("input", options)

    def RawOutputStream(self, **options: Any) -> FakeStream:
        return self._stream("output", options)


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    fake = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


async def settle() -> None:
    """Let callbacks handed to the loop with call_soon_threadsafe run."""
    for _ in range(3):
        await asyncio.sleep(0)


def frame(tag: int) -> bytes:
    return bytes([tag]) * FRAME_BYTES


async def test_microphone_opens_16k_mono_int16_in_80ms_blocks(fake_sd: FakeSoundDevice) -> None:
    mic = SoundDeviceMicrophone(AudioConfig(input_device="usb"))
    assert mic.device_name == "USB Mic"
    assert fake_sd.streams == []  # opened by frames(), not by the constructor

    async with contextlib.aclosing(mic.frames()) as frames:
        first = asyncio.ensure_future(anext(frames))
        await settle()
        (stream,) = fake_sd.streams
        options = {k: v for k, v in stream.options.items() if "callback" not in k}
        assert options == {
            "samplerate": 16000, "channels": 1, "dtype": "int16", "blocksize": 1280, "device": 0
        }  # fmt: skip
        for tag in (1, 2, 3):
            stream.record(frame(tag))
        assert await asyncio.wait_for(first, 1) == frame(1)
        assert await asyncio.wait_for(anext(frames), 1) == frame(2)
        assert await asyncio.wait_for(anext(frames), 1) == frame(3)
    assert stream.closed
    assert not stream.active


async def test_microphone_drops_the_oldest_frames_when_full(fake_sd: FakeSoundDevice) -> None:
    mic = SoundDeviceMicrophone(AudioConfig(), queue_seconds=0.16)  # room for 2 frames
    async with contextlib.aclosing(mic.frames()) as frames:
        first = asyncio.ensure_future(anext(frames))
        await settle()
        stream = fake_sd.streams[0]
        for tag in range(1, 7):
            stream.record(frame(tag))
        await settle()
        assert await asyncio.wait_for(first, 1) == frame(5)
        assert await asyncio.wait_for(anext(frames), 1) == frame(6)
        assert mic.dropped_frames == 4
        stream.record(frame(7))
        assert await asyncio.wait_for(anext(frames), 1) == frame(7)
        assert mic.dropped_frames == 4


async def test_microphone_fails_when_the_stream_dies_and_reopens(fake_sd: FakeSoundDevice) -> None:
    mic = SoundDeviceMicrophone(AudioConfig(), stall_seconds=0.2)
    async with contextlib.aclosing(mic.frames()) as frames:
        first = asyncio.ensure_future(anext(frames))
        await settle()
        fake_sd.streams[0].record(frame(1))
        assert await asyncio.wait_for(first, 1) == frame(1)
        fake_sd.streams[0].die()
        with pytest.raises(AudioError, match="'USB Mic': the stream stopped"):
            await asyncio.wait_for(anext(frames), 1)

    async with contextlib.aclosing(mic.frames()) as frames:  # iterating again reopens
        second = asyncio.ensure_future(anext(frames))
        await settle()
        old, new = fake_sd.streams
        old.record(frame(7))  # a late block from the dead stream is ignored
        new.record(frame(8))
        assert await asyncio.wait_for(second, 1) == frame(8)
        with pytest.raises(AudioError, match=r"'USB Mic': no audio for 0\.2 s"):
            await asyncio.wait_for(anext(frames), 1)
    assert new.closed

    fake_sd.refuse = True
    with pytest.raises(AudioError, match="'USB Mic': cannot open: Device unavailable"):
        await anext(mic.frames())


def test_devices_are_looked_up_by_index_or_name(fake_sd: FakeSoundDevice) -> None:
    assert SoundDeviceMicrophone(AudioConfig(input_device=0)).device_name == "USB Mic"
    assert SoundDeviceMicrophone(AudioConfig(input_device="usb mic")).device_name == "USB Mic"
    with pytest.raises(AudioError) as caught:
        SoundDeviceMicrophone(AudioConfig(input_device="speakers"))  # output only
    assert str(caught.value) == (
        "audio.input_device: no input device 'speakers'; input devices: 0 'USB Mic'"
    )
    with pytest.raises(AudioError, match="no output device 0; output devices: 1 'Speakers'"):
        SoundDeviceSpeaker(AudioConfig(output_device=0), 16000)
    assert list_devices() == [
        "  0 USB Mic (ALSA): 1 in, 0 out, 48000 Hz [default input]",
        "  1 Speakers (ALSA): 0 in, 2 out, 44100 Hz [default output]",
    ]
    fake_sd.devices = []
    assert list_devices() == []
    with pytest.raises(AudioError, match="no input device found"):
        SoundDeviceMicrophone(AudioConfig())


async def test_speaker_feeds_the_callback_then_pads_with_silence(fake_sd: FakeSoundDevice) -> None:
    speaker = SoundDeviceSpeaker(AudioConfig(output_device="speak"), 16000)
    (stream,) = fake_sd.streams
    assert stream.active
    block = stream.options["blocksize"]
    assert (stream.options["samplerate"], stream.options["channels"]) == (16000, 1)
    assert (stream.options["dtype"], stream.options["device"]) == ("int16", 1)
    assert stream.pull() == bytes(2 * block)  # silence while idle

    pcm = ramp(block + 10)
    play = asyncio.create_task(speaker.play(pcm + b"\x01"))  # an odd trailing byte is dropped
    await settle()
    assert stream.pull() == pcm[: 2 * block]
    assert stream.pull() == pcm[2 * block :] + bytes(2 * block - 20)
    await settle()
    assert not play.done()  # the last sample is still on its way to the DAC
    await asyncio.wait_for(play, 1)
    assert stream.pull() == bytes(2 * block)
    speaker.close()
    assert stream.closed


@virtual_clock
async def test_speaker_play_waits_for_the_dac(fake_sd: FakeSoundDevice) -> None:
    loop = asyncio.get_running_loop()
    speaker = SoundDeviceSpeaker(AudioConfig(), 16000)
    stream = fake_sd.streams[0]
    play = asyncio.create_task(speaker.play(ramp(100)))
    await settle()
    pulled_at = loop.time()
    stream.pull(dac_ahead_seconds=0.2)
    await asyncio.wait_for(play, 1)
    # the buffer reaches the DAC in 0.2 s, and the last of its 100 samples 6.25 ms after that
    assert loop.time() - pulled_at == pytest.approx(0.2 + 100 / 16000)
    speaker.close()


async def test_speaker_stop_silences_the_next_block(fake_sd: FakeSoundDevice) -> None:
    speaker = SoundDeviceSpeaker(AudioConfig(), 16000)
    stream = fake_sd.streams[0]
    block = stream.options["blocksize"]
    first, second = ramp(10 * block), ramp(10 * block, start=7)
    plays = [asyncio.create_task(speaker.play(pcm)) for pcm in (first, second)]
    await settle()
    assert stream.pull() == first[: 2 * block]

    speaker.stop()
    await asyncio.wait_for(asyncio.gather(*plays), 1)
    assert stream.pull() == bytes(2 * block)  # neither the rest nor the queued one

    later = asyncio.create_task(speaker.play(second))  # stop() ends only earlier plays
    await settle()
    assert stream.pull() == second[: 2 * block]
    later.cancel()
    with pytest.raises(asyncio.CancelledError):
        await later
    assert stream.pull() == bytes(2 * block)  # a cancelled play is silenced too
    speaker.close()


@virtual_clock
async def test_speaker_stop_ends_a_play_waiting_for_the_dac(fake_sd: FakeSoundDevice) -> None:
    loop = asyncio.get_running_loop()
    speaker = SoundDeviceSpeaker(AudioConfig(), 16000)
    play = asyncio.create_task(speaker.play(ramp(100)))
    await settle()
    fake_sd.streams[0].pull(dac_ahead_seconds=0.9)
    await settle()
    stopped_at = loop.time()
    speaker.stop()
    await asyncio.wait_for(play, 1)
    assert loop.time() == stopped_at  # not 0.9 s later, when the DAC would have played it
    speaker.close()


async def test_speaker_fails_when_the_stream_dies_and_reopens(fake_sd: FakeSoundDevice) -> None:
    speaker = SoundDeviceSpeaker(AudioConfig(), 16000)
    play = asyncio.create_task(speaker.play(ramp(1000)))
    await settle()
    fake_sd.streams[0].die()
    with pytest.raises(AudioError, match="'Speakers': the stream stopped"):
        await asyncio.wait_for(play, 1)

    play = asyncio.create_task(speaker.play(ramp(100)))  # reopens
    await settle()
    old, new = fake_sd.streams
    assert old.closed
    old.pull()  # a late callback from the old stream takes nothing
    new.pull()
    await asyncio.wait_for(play, 1)

    new.die()
    fake_sd.refuse = True
    with pytest.raises(AudioError, match="'Speakers': cannot open at 16000 Hz: Device unavail"):
        await speaker.play(ramp(100))
    speaker.close()


# --- sounddevice through a private PulseAudio ----------------------------------------------------


class PulseServer:
    """scripts/virtual-audio.sh in ``folder``: default sink "speaker", mic fed through "micfeed"."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = f"unix:{folder}/native"
        self.pid = 0

    def start(self) -> None:
        subprocess.run([str(VIRTUAL_AUDIO), str(self.folder)], check=True, capture_output=True)
        self.pid = int((self.folder / "pulse.pid").read_text())

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _running(self.pid):
            time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _rescan_devices() -> None:
    # PortAudio lists devices once, when it starts: restart it to see the new sound server.
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


def _need_tools() -> None:
    missing = [
        tool for tool in ("pulseaudio", "pactl", "paplay", "parec") if not shutil.which(tool)
    ]
    reason = ""
    if missing:
        reason = (
            f"{', '.join(missing)} not installed: apt-get install -y --no-install-recommends "
            "pulseaudio pulseaudio-utils libasound2-plugins"
        )
    else:
        try:
            import sounddevice  # noqa: F401
        except OSError as err:
            reason = f"PortAudio not installed ({err}): apt-get install -y libportaudio2"
    if reason and os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI the audio tests must run")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """A private PulseAudio for this module's tests, with PULSE_SERVER pointing at it."""
    _need_tools()
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PULSE_SERVER", server.address)
        server.start()
        try:
            _rescan_devices()
            yield server
        finally:
            server.stop()
    _rescan_devices()


def device_index(name: str) -> int:
    import sounddevice

    return int(next(d["index"] for d in sounddevice.query_devices() if d["name"] == name))


def best_correlation(recorded: bytes, reference: bytes) -> float:
    """Normalised cross-correlation of ``reference`` with the best-aligned part of ``recorded``."""
    rec = np.frombuffer(recorded, np.int16).astype(np.float64)
    ref = np.frombuffer(reference, np.int16).astype(np.float64)
    if len(rec) < len(ref):
        return 0.0
    lag = int(np.argmax(np.abs(np.correlate(rec, ref, "valid"))))
    part = rec[lag : lag + len(ref)]
    return float(np.dot(part, ref) / (np.linalg.norm(part) * np.linalg.norm(ref) + 1e-9))


async def record_while(mic: SoundDeviceMicrophone, *command: str) -> bytes:
    """Record until ``command`` (started once audio flows) has exited, plus 5 frames."""
    frames: list[bytes] = []
    process: Any = None
    after = 0
    async with contextlib.aclosing(mic.frames()) as stream:
        async for frame in stream:
            frames.append(frame)
            if process is None and len(frames) == 2:
                process = await asyncio.create_subprocess_exec(*command)
            if process is not None and process.returncode is not None:
                after += 1
                if after > 5:
                    break
    assert process is not None
    assert await process.wait() == 0
    return b"".join(frames)


@pytest.mark.audio
async def test_microphone_records_what_is_played_into_micfeed(pulse: PulseServer) -> None:
    path = DATA_DIR / "wyoming_hey_jarvis.wav"
    mic: Microphone = SoundDeviceMicrophone(AudioConfig(input_device="pulse"))
    assert isinstance(mic, SoundDeviceMicrophone)

    recorded = await asyncio.wait_for(record_while(mic, "paplay", "-d", "micfeed", str(path)), 10)

    assert mic.realtime
    assert mic.dropped_frames == 0
    assert best_correlation(recorded, read_wav(path)[2]) > 0.9


@pytest.mark.audio
async def test_microphone_and_speaker_fail_when_the_server_dies_and_reopen(
    pulse: PulseServer,
) -> None:
    try:
        mic = SoundDeviceMicrophone(AudioConfig(), stall_seconds=0.5)
        speaker = SoundDeviceSpeaker(AudioConfig(), 16000)
        play = asyncio.create_task(speaker.play(tone(5.0, 16000)))
        async with contextlib.aclosing(mic.frames()) as frames:
            await asyncio.wait_for(anext(frames), 2)
            pulse.signal(signal.SIGSTOP)  # hung: no audio comes, and closing must not hang
            with pytest.raises(AudioError, match=r"no audio for 0\.5 s"):
                await asyncio.wait_for(anext(frames), 3)
        pulse.signal(signal.SIGCONT)
        async with contextlib.aclosing(mic.frames()) as frames:
            await asyncio.wait_for(anext(frames), 2)
            pulse.signal(signal.SIGKILL)  # gone
            with pytest.raises(AudioError, match="the stream stopped"):
                await asyncio.wait_for(anext(frames), 1)
        with pytest.raises(AudioError, match="the stream stopped"):
            await asyncio.wait_for(play, 1)

        pulse.start()
        async with contextlib.aclosing(mic.frames()) as frames:
            await asyncio.wait_for(anext(frames), 2)
        await asyncio.wait_for(speaker.play(tone(0.1, 16000)), 2)
        speaker.close()
    finally:
        pulse.signal(signal.SIGCONT)
        if not _running(pulse.pid):
            pulse.start()  # for the tests that follow


async def record_speaker(seconds: float, rate_hz: int) -> bytes:
    """What reaches the "speaker" sink during the next ``seconds``."""
    process = await asyncio.create_subprocess_exec(
        *("parec", "-d", "speaker.monitor", "--raw", "--format=s16le", "--channels=1"),
        *(f"--rate={rate_hz}", "--latency-msec=100"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    chunks = []
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while chunk := await process.stdout.read(65536):
                    chunks.append(chunk)
    finally:
        process.terminate()
        await process.wait()
    return b"".join(chunks)


RECORD_SECONDS = 2.0
"""How long the stop tests record: a tone that is not cut off fills it (1.9 s after the start)."""
CUT_SECONDS = 1.0
"""Less tone than this was cut off: it played for ~0.3 s; not cut, it would fill the recording.
A generous bound, so that a slow machine (a late ``stop()``) does not fail the test."""


def loud_seconds(pcm: bytes, rate_hz: int) -> float:
    """How long the tone is audible (in 10 ms windows)."""
    window = rate_hz // 100
    samples = np.frombuffer(pcm, np.int16).astype(np.float64)
    windows = samples[: len(samples) // window * window].reshape(-1, window)
    return float(np.sum(np.abs(windows).max(axis=1) > 1000) / 100)


@pytest.mark.audio
async def test_speaker_play_returns_once_played(pulse: PulseServer) -> None:
    speaker: Speaker = SoundDeviceSpeaker(AudioConfig(output_device="pulse"), 22050)
    assert isinstance(speaker, SoundDeviceSpeaker)
    recording = asyncio.create_task(record_speaker(1.2, 22050))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await asyncio.wait_for(speaker.play(tone(0.5, 22050)), 3)
        returned = loop.time()
    finally:
        speaker.close()
    heard = loud_seconds(await recording, 22050)

    # Not before the sink has played it: a lower bound, which a slow machine cannot break (how
    # soon after, play() returns is bench's business).
    assert returned - started >= 0.5
    assert 0.45 <= heard <= 0.55


@pytest.mark.audio
async def test_speaker_stop_silences_it_at_once(pulse: PulseServer) -> None:
    speaker = SoundDeviceSpeaker(AudioConfig(output_device="PULSE"), 22050)
    recording = asyncio.create_task(record_speaker(RECORD_SECONDS, 22050))
    await asyncio.sleep(0.1)
    try:
        plays = [asyncio.create_task(speaker.play(tone(2.0, 22050))) for _ in range(2)]
        await asyncio.sleep(0.3)
        speaker.stop()
        await settle()
        assert all(play.done() for play in plays)  # ended by stop(), not by their audio
        await asyncio.sleep(RECORD_SECONDS - 0.4)
    finally:
        speaker.close()
    heard = loud_seconds(await recording, 22050)

    assert 0.15 <= heard < CUT_SECONDS  # ~0.3 s, not the rest of the recording


@pytest.mark.audio
async def test_speaker_cancelled_play_stops_the_sound(pulse: PulseServer) -> None:
    speaker = SoundDeviceSpeaker(AudioConfig(), 22050)
    recording = asyncio.create_task(record_speaker(RECORD_SECONDS, 22050))
    await asyncio.sleep(0.1)
    try:
        play = asyncio.create_task(speaker.play(tone(2.0, 22050)))
        await asyncio.sleep(0.3)
        play.cancel()
        with pytest.raises(asyncio.CancelledError):
            await play
        await asyncio.sleep(RECORD_SECONDS - 0.4)
    finally:
        speaker.close()
    assert 0.15 <= loud_seconds(await recording, 22050) < CUT_SECONDS  # ~0.3 s, not 1.9 s


@pytest.mark.audio
def test_devices_are_chosen_by_name_or_index(pulse: PulseServer) -> None:
    lines = list_devices()
    assert any(" pulse (ALSA): " in line for line in lines)
    assert any(line.endswith("[default input, default output]") for line in lines)

    assert SoundDeviceMicrophone(AudioConfig(input_device="PuLs")).device_name == "pulse"
    assert SoundDeviceMicrophone(AudioConfig()).device_name == "default"
    index = device_index("default")
    assert SoundDeviceMicrophone(AudioConfig(input_device=index)).device_name == "default"
    speaker = SoundDeviceSpeaker(AudioConfig(output_device="default"), 16000)
    assert speaker.device_name == "default"
    speaker.close()

    with pytest.raises(AudioError) as caught:
        SoundDeviceMicrophone(AudioConfig(input_device="usb headset"))
    assert str(caught.value).startswith("audio.input_device: no input device 'usb headset'; ")
    assert "'pulse'" in str(caught.value)
    assert "'default'" in str(caught.value)
    with pytest.raises(AudioError, match=r"audio\.output_device: no output device 99; output"):
        SoundDeviceSpeaker(AudioConfig(output_device=99), 16000)
