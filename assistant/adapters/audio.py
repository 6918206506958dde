"""Sound card microphone and speaker through sounddevice (PortAudio).

sounddevice is imported only when a device is opened or listed, so importing this module needs no
PortAudio. The WAV file stand-ins are in ``assistant.adapters.wavfile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any, Final, Literal

from assistant.config import AudioConfig
from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from assistant.errors import AudioError

_LOGGER = logging.getLogger(__name__)

QUEUE_SECONDS: Final = 3.0
"""Microphone audio buffered for a slow consumer before the oldest frames are dropped."""
STALL_SECONDS: Final = 2.0
"""A microphone that delivers nothing for this long has failed."""
OVERRUN_SECONDS: Final = 5.0
"""A play that has not finished this long after its audio's end has failed."""
CLOSE_SECONDS: Final = 1.0
"""Longest wait for a stream to close; a hung sound server must not freeze the event loop."""
SPEAKER_BLOCK_SECONDS: Final = 0.02
"""Output callback block: how soon ``stop()`` takes effect, on top of the device's latency."""

Kind = Literal["input", "output"]


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as err:  # the PortAudio library itself is missing
        raise AudioError(f"cannot load PortAudio ({err}): apt-get install libportaudio2") from err
    return sounddevice


def _short(devices: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['index']} {d['name']!r}" for d in devices) or "none"


def _resolve(sd: Any, spec: str | int | None, kind: Kind) -> tuple[int | None, str]:
    """The PortAudio device index (None: the default) and its name, for messages."""
    key = f"audio.{kind}_device"
    try:
        devices: list[dict[str, Any]] = list(sd.query_devices())
        default = int(sd.default.device[0 if kind == "input" else 1])
    except sd.PortAudioError as err:
        raise AudioError(f"{key}: cannot list devices: {err}") from err
    capable = [d for d in devices if d[f"max_{kind}_channels"] > 0]
    if not capable:
        raise AudioError(f"{key}: no {kind} device found (no sound card, or no sound server?)")
    if spec is None:
        chosen = next((d for d in capable if d["index"] == default), capable[0])
        return None, str(chosen["name"])
    if isinstance(spec, int):
        match = [d for d in capable if d["index"] == spec]
    else:
        wanted = spec.casefold()
        match = [d for d in capable if d["name"].casefold() == wanted] or [
            d for d in capable if wanted in d["name"].casefold()
        ]
    if not match:
        raise AudioError(f"{key}: no {kind} device {spec!r}; {kind} devices: {_short(capable)}")
    if len(match) > 1:
        _LOGGER.debug("%s %r matches %s; using the first", key, spec, _short(match))
    return int(match[0]["index"]), str(match[0]["name"])


def _dispose(stream: Any, what: str) -> None:
    """Abort and close ``stream``, waiting at most CLOSE_SECONDS (then it finishes on its own)."""

    def run() -> None:
        try:
            stream.abort()
            stream.close()
        except Exception as err:  # a dead device may refuse; it is gone either way
            _LOGGER.debug("closing %s: %s", what, err)

    thread = threading.Thread(target=run, name=f"close {what}", daemon=True)
    thread.start()
    thread.join(CLOSE_SECONDS)
    if thread.is_alive():
        _LOGGER.warning("%s did not close within %g s; leaving it behind", what, CLOSE_SECONDS)


def list_devices() -> list[str]:
    """One line per PortAudio device, for ``lingling devices``; empty without a sound card."""
    sd = _sounddevice()
    default_in, default_out = (int(i) for i in sd.default.device)
    lines = []
    for d in sd.query_devices():
        marks = [
            label
            for label, index in (("default input", default_in), ("default output", default_out))
            if d["index"] == index
        ]
        hostapi = sd.query_hostapis(d["hostapi"])["name"]
        line = (
            f"{d['index']:>3} {d['name']} ({hostapi}): {d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:.0f} Hz"
        )
        lines.append(line + (f" [{', '.join(marks)}]" if marks else ""))
    return lines


class SoundDeviceMicrophone:
    """16 kHz mono int16 from a sound card, in FRAME_BYTES frames.

    The device is looked up in the constructor (AudioError for an unknown one); the stream opens
    when ``frames()`` starts and closes when it ends. If the stream dies (PortAudio error, device
    unplugged, nothing delivered for ``stall_seconds``), ``frames()`` raises AudioError: iterate
    ``frames()`` again, after a backoff, to reopen. Frames the consumer has not taken within
    ``queue_seconds`` are dropped, oldest first, and counted in ``dropped_frames``. Iterate inside
    ``contextlib.aclosing(mic.frames())`` so that leaving the loop early closes the stream.
    """

    realtime: Final = True

    def __init__(
        self,
        config: AudioConfig,
        *,
        queue_seconds: float = QUEUE_SECONDS,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self._spec = config.input_device
        self._stall_seconds = stall_seconds
        frames = max(1, round(queue_seconds * SAMPLE_RATE_HZ / FRAME_SAMPLES))
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(frames)  # None: stream ended
        self._stream: Any = None
        self._generation = 0  # the open stream's number; calls from older streams are ignored
        self._iterating = False
        self.dropped_frames = 0
        """Frames dropped because the consumer fell behind (the loop may log this)."""
        self.overflows = 0
        """Blocks in which PortAudio reported an input overflow (audio lost before it got here)."""
        _, self.device_name = _resolve(_sounddevice(), self._spec, "input")

    async def frames(self) -> AsyncGenerator[bytes, None]:
        if self._iterating:
            raise AudioError("microphone: frames() is already being iterated")
        self._iterating = True
        try:
            self._open(asyncio.get_running_loop())
            while True:
                try:
                    async with asyncio.timeout(self._stall_seconds):
                        frame = await self._queue.get()
                except TimeoutError as err:
                    raise AudioError(
                        f"microphone {self.device_name!r}: no audio for {self._stall_seconds:g} s"
                    ) from err
                if frame is None:
                    raise AudioError(f"microphone {self.device_name!r}: the stream stopped")
                yield frame
        finally:
            self._iterating = False
            self.close()

    def close(self) -> None:
        """Close the stream (idempotent); a ``frames()`` still running then raises AudioError."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._generation += 1
        _dispose(stream, f"microphone {self.device_name!r}")
        if self._iterating:
            self._put(None)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        sd = _sounddevice()
        device, self.device_name = _resolve(sd, self._spec, "input")
        while not self._queue.empty():
            self._queue.get_nowait()
        self._generation += 1
        push = functools.partial(self._push, self._generation)
        push_end = functools.partial(self._push_end, self._generation)

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio's thread: hand the bytes to the loop, nothing else.
            try:
                loop.call_soon_threadsafe(push, bytes(indata), bool(status))
            except RuntimeError:  # the loop is closed
                raise sd.CallbackAbort from None

        def finished() -> None:  # PortAudio's thread, once the stream has stopped
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(push_end)

        try:
            stream = sd.RawInputStream(
                samplerate=SAMPLE_RATE_HZ,
                channels=1,
                dtype="int16",
                blocksize=FRAME_SAMPLES,
                device=device,
                callback=callback,
                finished_callback=finished,
            )
        except (sd.PortAudioError, ValueError) as err:
            raise AudioError(f"microphone {self.device_name!r}: cannot open: {err}") from err
        try:
            stream.start()
        except sd.PortAudioError as err:
            _dispose(stream, f"microphone {self.device_name!r}")
            raise AudioError(f"microphone {self.device_name!r}: cannot start: {err}") from err
        self._stream = stream
        _LOGGER.debug("microphone %r open, latency %.3f s", self.device_name, stream.latency)

    def _push(self, generation: int, data: bytes, flagged: bool) -> None:
        if generation != self._generation:
            return  # a late block from a closed stream
        if flagged:
            self.overflows += 1
        self._put(data)  # PortAudio adapts the host's blocks: always FRAME_SAMPLES here

    def _push_end(self, generation: int) -> None:
        if generation == self._generation and self._iterating:
            self._put(None)

    def _put(self, item: bytes | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_frames += 1
        self._queue.put_nowait(item)


class _Utterance:
    __slots__ = ("done", "loop", "pos", "stopped", "view")

    def __init__(self, pcm: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.view = memoryview(pcm)
        self.pos = 0  # bytes already handed to PortAudio
        self.stopped = False
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()


def _resolve_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SoundDeviceSpeaker:
    """Mono int16 playback at ``sample_rate_hz`` on one output stream, opened in the constructor.

    The stream runs all the time, playing silence between utterances. ``play`` returns when the
    last sample reaches the output (PortAudio's DAC time) or when ``stop()`` is called; plays
    made at the same time are queued in call order. ``stop()`` (and cancelling a ``play``)
    silences the audio from the next callback block on. If the stream dies, pending plays raise
    AudioError and the next ``play`` reopens it.
    """

    def __init__(self, config: AudioConfig, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._spec = config.output_device
        self._lock = threading.Lock()  # guards _current and _pending against the callback
        self._current: _Utterance | None = None
        self._pending: deque[_Utterance] = deque()
        self._silence = bytes(SAMPLE_WIDTH_BYTES * sample_rate_hz)  # 1 s, sliced as needed
        self._stream: Any = None
        self._generation = 0  # the open stream's number; calls from older streams are ignored
        self._stopped: asyncio.Future[None] | None = None  # resolved by the next stop()
        self.underflows = 0
        """Callback blocks PortAudio reported as output underflows."""
        self.device_name = ""
        self._open()

    async def play(self, pcm: bytes) -> None:
        pcm = pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH_BYTES]
        if not pcm:
            return
        if self._stream is None or not self._stream.active:
            self.close()
            self._open()
        loop = asyncio.get_running_loop()
        if self._stopped is None:
            self._stopped = loop.create_future()
        stopped = self._stopped
        utterance = _Utterance(pcm, loop)
        with self._lock:
            self._pending.append(utterance)
        try:
            done, _ = await asyncio.wait(
                (utterance.done, stopped),
                timeout=self._queued_seconds() + OVERRUN_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            self._cancel(utterance)
            raise
        if not done:
            self._cancel(utterance)
            self.close()  # reopened by the next play
            raise AudioError(f"speaker {self.device_name!r}: playback stalled")
        if utterance.done.done():
            utterance.done.result()  # raises AudioError if the stream died

    def stop(self) -> None:
        for utterance in self._take_all():
            _resolve_future(utterance.done)
        if self._stopped is not None:  # also ends plays whose audio is still in the device
            _resolve_future(self._stopped)
            self._stopped = None

    def close(self) -> None:
        """Stop playing and close the stream (idempotent); the next ``play`` reopens it."""
        self.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            self._generation += 1
            _dispose(stream, f"speaker {self.device_name!r}")

    def _take_all(self) -> list[_Utterance]:
        """Unqueue and mark stopped everything queued or playing (any thread)."""
        with self._lock:
            taken = list(self._pending)
            if self._current is not None:
                taken.append(self._current)
            self._pending.clear()
            self._current = None
            for utterance in taken:
                utterance.stopped = True
        return taken

    def _queued_seconds(self) -> float:
        with self._lock:
            queued = sum(len(u.view) - u.pos for u in self._pending)
            if self._current is not None:
                queued += len(self._current.view) - self._current.pos
        latency = float(self._stream.latency) if self._stream is not None else 0.0
        return latency + queued / (SAMPLE_WIDTH_BYTES * self.sample_rate_hz)

    def _cancel(self, utterance: _Utterance) -> None:
        with self._lock:
            utterance.stopped = True
            if utterance in self._pending:
                self._pending.remove(utterance)
        _resolve_future(utterance.done)

    def _open(self) -> None:
        sd = _sounddevice()
        device, self.device_name = _resolve(sd, self._spec, "output")
        self._generation += 1
        try:
            stream = sd.RawOutputStream(
                samplerate=self.sample_rate_hz,
                channels=1,
                dtype="int16",
                blocksize=round(self.sample_rate_hz * SPEAKER_BLOCK_SECONDS),
                device=device,
                callback=functools.partial(self._callback, self._generation),
                finished_callback=functools.partial(self._stream_finished, self._generation),
            )
        except (sd.PortAudioError, ValueError) as err:
            raise AudioError(
                f"speaker {self.device_name!r}: cannot open at {self.sample_rate_hz} Hz: {err}"
            ) from err
        try:
            stream.start()
        except sd.PortAudioError as err:
            _dispose(stream, f"speaker {self.device_name!r}")
            raise AudioError(f"speaker {self.device_name!r}: cannot start: {err}") from err
        self._stream = stream
        _LOGGER.debug("speaker %r open, latency %.3f s", self.device_name, stream.latency)

    def _callback(
        self, generation: int, outdata: Any, frames: int, time_info: Any, status: Any
    ) -> None:
        # PortAudio's thread: copy queued PCM into outdata and pad with silence; never block long.
        if status.output_underflow:
            self.underflows += 1
        size = len(outdata)
        filled = 0
        with self._lock:
            while filled < size and generation == self._generation:
                utterance = self._current
                if utterance is None:
                    if not self._pending:
                        break
                    utterance = self._current = self._pending.popleft()
                if utterance.stopped:
                    self._current = None
                    continue
                count = min(size - filled, len(utterance.view) - utterance.pos)
                outdata[filled : filled + count] = utterance.view[
                    utterance.pos : utterance.pos + count
                ]
                utterance.pos += count
                filled += count
                if utterance.pos == len(utterance.view):
                    self._current = None
                    self._finished(utterance, time_info, filled)
        if filled < size:
            outdata[filled:size] = self._silence[: size - filled]

    def _finished(self, utterance: _Utterance, time_info: Any, end_bytes: int) -> None:
        # The last sample is heard at this buffer's DAC time plus its offset in the buffer.
        ahead = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 < ahead < 1.0:  # a host API that does not report it
            ahead = self._stream.latency if self._stream is not None else 0.0
        delay = ahead + end_bytes / (SAMPLE_WIDTH_BYTES * self.sample_rate_hz)
        with contextlib.suppress(RuntimeError):  # the loop is closed; nobody waits
            utterance.loop.call_soon_threadsafe(
                utterance.loop.call_later, delay, _resolve_future, utterance.done
            )

    def _stream_finished(self, generation: int) -> None:
        # PortAudio's thread, once the stream has stopped: after close(), or because it died.
        if generation != self._generation:
            return
        for utterance in self._take_all():
            with contextlib.suppress(RuntimeError):  # the loop is closed
                utterance.loop.call_soon_threadsafe(self._fail, utterance)

    def _fail(self, utterance: _Utterance) -> None:
        if not utterance.done.done():
            error = AudioError(f"speaker {self.device_name!r}: the stream stopped")
            utterance.done.set_exception(error)
