"""WAV files standing in for the microphone and the speaker (``--input`` / ``--output``, tests)."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

from assistant.core.audioformat import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE_HZ,
    SAMPLE_WIDTH_BYTES,
    pcm_seconds,
)
from assistant.errors import AudioError

_LOGGER = logging.getLogger(__name__)


def _need(path: Path) -> str:
    return f"need 16 kHz mono 16-bit (sox {path.name} -r 16000 -c 1 -b 16 out.wav)"


def _describe(rate_hz: int, channels: int, width_bytes: int) -> str:
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")
    return f"{rate_hz} Hz {layout} {8 * width_bytes}-bit"


def _open_checked(path: Path) -> wave.Wave_read:
    """Open ``path`` for reading; AudioError unless it is 16 kHz mono int16 PCM."""
    try:
        wav = wave.open(str(path), "rb")  # noqa: SIM115 (returned open)
    except FileNotFoundError as err:
        raise AudioError(f"{path}: no such file") from err
    except OSError as err:
        raise AudioError(f"{path}: {err.strerror or err}") from err
    except (wave.Error, EOFError) as err:
        raise AudioError(f"{path}: not a PCM WAV file ({err}); {_need(path)}") from err
    rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
    if (rate, channels, width) != (SAMPLE_RATE_HZ, 1, SAMPLE_WIDTH_BYTES):
        wav.close()
        raise AudioError(f"{path}: {_describe(rate, channels, width)}; {_need(path)}")
    return wav


class WavFileMicrophone:
    """Frames from a 16 kHz mono 16-bit WAV; the last frame is padded with silence.

    ``realtime=True`` delivers frame *i* when it would have been complete on a real microphone
    (``start + (i + 1) * FRAME_SECONDS`` on the event loop's clock, so no drift accumulates and
    a consumer that fell behind catches up);
    ``realtime=False`` delivers frames as fast as the consumer takes them. Each ``frames()``
    call reads the file from the start. With ``start_at`` (UNIX seconds) the file plays from
    then, as a sound in the room would: reading waits for it, or, when late, begins where the
    file has got to. Several processes given one ``start_at`` hear their files together.
    """

    def __init__(self, path: Path, *, realtime: bool, start_at: float | None = None) -> None:
        self.path = path
        self._realtime = realtime
        self._start_at = start_at
        with _open_checked(path) as wav:
            self.duration_seconds = wav.getnframes() / SAMPLE_RATE_HZ

    @property
    def realtime(self) -> bool:
        return self._realtime

    async def frames(self) -> AsyncGenerator[bytes, None]:
        wav = _open_checked(self.path)
        loop = asyncio.get_running_loop()
        try:
            if self._start_at is not None:  # the file plays from then, heard or not
                late_seconds = time.time() - self._start_at
                if late_seconds < 0:
                    await asyncio.sleep(-late_seconds)
                else:  # like a microphone opened late: what was played before is not heard
                    wav.setpos(min(wav.getnframes(), round(late_seconds * SAMPLE_RATE_HZ)))
            start = loop.time()
            index = 0
            while True:
                frame = wav.readframes(FRAME_SAMPLES)
                if not frame:
                    return
                if len(frame) < FRAME_BYTES:
                    frame += bytes(FRAME_BYTES - len(frame))
                index += 1
                if self._realtime:
                    await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - loop.time()))
                else:
                    await asyncio.sleep(0)  # let other tasks run between frames
                yield frame
        finally:
            wav.close()


class WavFileSpeaker:
    """Appends everything played, in order, to a 16-bit mono WAV at ``sample_rate_hz``.

    The header is rewritten after each play, so the file is valid between plays even if the
    process is killed. ``realtime=True`` makes ``play`` take the audio's duration on the event
    loop's clock; a play cut short by ``stop()`` (or cancelled) writes only the part that was
    "heard" up to then.
    ``realtime=False`` writes at once and returns. Call ``close()`` when done.
    """

    def __init__(self, path: Path, sample_rate_hz: int, *, realtime: bool) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.path = path
        self._realtime = realtime
        self._lock = asyncio.Lock()  # plays run one after another, in call order
        self._stop = asyncio.Event()  # replaced by stop(): plays started before it end
        try:
            self._file: BinaryIO | None = path.open("wb")
        except OSError as err:
            raise AudioError(f"{path}: {err.strerror or err}") from err
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 (open until close())
        self._wav.setnchannels(1)
        self._wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        self._wav.setframerate(sample_rate_hz)
        self._append(b"")  # writes a valid empty WAV

    async def play(self, pcm: bytes) -> None:
        if self._file is None:
            raise AudioError(f"{self.path}: speaker is closed")
        pcm = pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH_BYTES]
        stop = self._stop
        async with self._lock:
            if stop.is_set():
                return
            if not self._realtime:
                self._append(pcm)
                return
            loop = asyncio.get_running_loop()
            start = loop.time()
            heard = pcm
            try:
                async with asyncio.timeout(pcm_seconds(pcm, self.sample_rate_hz)):
                    await stop.wait()
                heard = self._heard(pcm, loop.time() - start)
            except TimeoutError:
                pass  # played in full
            except asyncio.CancelledError:
                heard = self._heard(pcm, loop.time() - start)
                raise
            finally:
                self._append(heard)

    def stop(self) -> None:
        self._stop.set()
        self._stop = asyncio.Event()

    def close(self) -> None:
        if self._file is None:
            return
        self._wav.close()
        self._file.close()
        self._file = None

    def _heard(self, pcm: bytes, seconds: float) -> bytes:
        samples = min(len(pcm) // SAMPLE_WIDTH_BYTES, int(seconds * self.sample_rate_hz))
        return pcm[: samples * SAMPLE_WIDTH_BYTES]

    def _append(self, pcm: bytes) -> None:
        if self._file is None:
            return
        try:
            self._wav.writeframes(pcm)  # also patches the header's lengths
            self._file.flush()
        except OSError as err:
            raise AudioError(f"{self.path}: {err.strerror or err}") from err
        _LOGGER.debug("wrote %d bytes to %s", len(pcm), self.path)
