"""The sound card speaker: PCM played through a PortAudio output stream, stoppable at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from typing import Any, Final

from assistant.adapters.devices import dispose, resolve_device, sounddevice_module
from assistant.config import AudioConfig
from assistant.core.audioformat import SAMPLE_WIDTH_BYTES
from assistant.errors import AudioError

_LOGGER = logging.getLogger(__name__)

OVERRUN_SECONDS: Final = 5.0
"""A play that has not finished this long after its audio's end has failed."""
SPEAKER_BLOCK_SECONDS: Final = 0.02
"""Output callback block: how soon ``stop()`` takes effect, on top of the device's latency."""


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
            dispose(stream, f"speaker {self.device_name!r}")

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
        sd = sounddevice_module()
        device, self.device_name = resolve_device(sd, self._spec, "output")
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
            dispose(stream, f"speaker {self.device_name!r}")
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
