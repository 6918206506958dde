"""The sound card microphone: 80 ms frames from a PortAudio input stream, reopened by the runtime
when it fails."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator
from typing import Any, Final

from assistant.adapters.devices import dispose, resolve_device, sounddevice_module
from assistant.config import AudioConfig
from assistant.core.audioformat import FRAME_SAMPLES, SAMPLE_RATE_HZ
from assistant.errors import AudioError

_LOGGER = logging.getLogger(__name__)

QUEUE_SECONDS: Final = 3.0
"""Microphone audio buffered for a slow consumer before the oldest frames are dropped."""
STALL_SECONDS: Final = 2.0
"""A microphone that delivers nothing for this long has failed."""


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
        _, self.device_name = resolve_device(sounddevice_module(), self._spec, "input")

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
        dispose(stream, f"microphone {self.device_name!r}")
        if self._iterating:
            self._put(None)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        sd = sounddevice_module()
        device, self.device_name = resolve_device(sd, self._spec, "input")
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
            dispose(stream, f"microphone {self.device_name!r}")
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
