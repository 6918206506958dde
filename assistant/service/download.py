"""Downloading the manifest's files, for ``lingling models fetch``.

A download goes to ``<dest>.part`` (resumed with an HTTP Range request when one is left over), is
checked against the manifest's size and sha256, and only then renamed into place: a file under its
real name is always a whole, verified one. urllib downloads; rich draws the progress bar.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Final

import rich.console
import rich.progress

from assistant import __version__
from assistant.service.manifest import FetchError, ModelEntry, ModelFile

CHUNK_BYTES: Final = 256 * 1024
TIMEOUT_SECONDS: Final = 30.0
"""Connecting, and each read: a transfer silent this long has stalled."""
RESUME_ATTEMPTS: Final = 3
"""An interrupted transfer is resumed this many times before giving up (the .part stays)."""
RESUME_BACKOFF_SECONDS: Final = 0.5
"""Wait before the first resume; each further one waits this much longer."""


def fetch(
    entries: Iterable[ModelEntry],
    models_dir: Path,
    *,
    verify: bool = True,
    stream: IO[str] | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    resume_attempts: int = RESUME_ATTEMPTS,
) -> list[Path]:
    """Fetch every file of ``entries`` that is not already there and whole; return their paths.

    Files without a published sha256 are refused unless ``verify`` is False (checked before any
    download starts).
    """
    files = [file for entry in entries for file in entry.files]
    if verify:
        unverifiable = [file.dest for file in files if file.sha256 is None]
        if unverifiable:
            raise FetchError(
                f"no published sha256 for {', '.join(unverifiable)}: run again with --no-verify "
                "to accept it unchecked"
            )
    return [
        fetch_file(
            file,
            models_dir,
            stream=stream,
            timeout_seconds=timeout_seconds,
            resume_attempts=resume_attempts,
        )
        for file in files
    ]


def fetch_file(
    file: ModelFile,
    models_dir: Path,
    *,
    stream: IO[str] | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    resume_attempts: int = RESUME_ATTEMPTS,
) -> Path:
    """Download one file into ``models_dir / file.dest`` unless it is already there and whole."""
    out = sys.stderr if stream is None else stream
    path = models_dir / file.dest
    if path.is_file():
        if _whole(path, file):
            print(f"{file.dest}: already there", file=out)
            return path
        print(f"{file.dest}: does not match the manifest; fetching it again", file=out)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    for attempt in range(1, resume_attempts + 2):
        try:
            _download(file, part, out, timeout_seconds)
            break
        except _Unreachable as err:
            raise DownloadError(str(err), url=file.url, path=path) from err
        except _Interrupted as err:
            if attempt > resume_attempts:
                raise DownloadError(
                    f"{file.url}: {err}; {part.stat().st_size} bytes kept in {part.name}: "
                    "run the same command again to resume",
                    url=file.url,
                    path=path,
                ) from err
            print(f"{file.dest}: {err}; resuming (attempt {attempt + 1})", file=out)
            time.sleep(RESUME_BACKOFF_SECONDS * attempt)
    digest = file_sha256(part)
    size = part.stat().st_size
    if file.size is not None and size != file.size:
        part.unlink()
        raise FetchError(
            f"{file.dest}: got {size} bytes, the manifest says {file.size}; the download was "
            "deleted"
        )
    if file.sha256 is not None and digest != file.sha256:
        part.unlink()
        raise FetchError(
            f"{file.dest}: sha256 mismatch (expected {file.sha256}, got {digest}); the download "
            "was deleted"
        )
    os.replace(part, path)
    if file.sha256 is None:
        print(
            f"{file.dest}: NOT verified (no sha256 in the manifest); its sha256 is {digest}",
            file=out,
        )
    return path


class DownloadError(FetchError):
    """A file that could not be downloaded (offline, an HTTP error, a transfer that kept
    failing): ``url`` is where it comes from, ``path`` where it goes, so that it can be put there
    by hand."""

    def __init__(self, message: str, *, url: str, path: Path) -> None:
        super().__init__(message)
        self.url = url
        self.path = path


class _Interrupted(Exception):
    """The transfer stopped part-way; what arrived is in the .part file."""


class _Unreachable(Exception):
    """The server could not be reached, or refused the file."""


def _download(file: ModelFile, part: Path, out: IO[str], timeout_seconds: float) -> None:
    """Append the rest of ``file`` to ``part`` (from its current size)."""
    have = part.stat().st_size if part.exists() else 0
    if file.size is not None and have > file.size:
        part.unlink()  # not the file the manifest describes: start over
        have = 0
    if file.size is not None and have == file.size:
        return  # complete already (a previous run stopped before checking it)
    headers = {"User-Agent": f"lingling/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(file.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and have:  # nothing after what we have: let the checks decide
            return
        raise _Unreachable(f"{file.url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise _Unreachable(f"cannot download {file.url}: {err.reason} (offline?)") from err
    except (TimeoutError, OSError) as err:
        raise _Unreachable(f"cannot download {file.url}: {err} (offline?)") from err
    with response:
        start = _start_offset(response, have)
        total = _total(response, start, file.size)
        _check_space(part.parent, (total or 0) - start)
        with part.open("r+b" if start and part.exists() else "wb") as sink:
            sink.truncate(start)
            sink.seek(start)
            progress = Progress(file.dest, total, start, out)
            while True:
                try:
                    chunk = response.read1(CHUNK_BYTES)  # what has arrived: a stall loses nothing
                except (TimeoutError, OSError, http.client.HTTPException) as err:
                    sink.flush()
                    progress.finish(interrupted=True)
                    raise _Interrupted(f"interrupted after {progress.done} bytes ({err})") from err
                if not chunk:
                    break
                try:
                    sink.write(chunk)
                except OSError as err:  # a full disk: resuming would not help
                    raise FetchError(f"cannot write {part}: {err.strerror or err}") from err
                progress.advance(len(chunk))
            sink.flush()
            os.fsync(sink.fileno())
            progress.finish()
            if total is not None and progress.done < total:
                raise _Interrupted(f"the server sent {progress.done} of {total} bytes")


def _start_offset(response: Any, have: int) -> int:
    """Where the body starts in the file: ``have`` for a matching 206, 0 for a full 200."""
    if response.status != 206:
        return 0  # the server ignored the Range header: start over
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != have:
        raise FetchError(
            f"{response.url}: bad Content-Range {response.headers.get('Content-Range')!r}"
        )
    return have


def _total(response: Any, start: int, expected: int | None) -> int | None:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return start + int(length)
    return expected


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(f"{folder}: needs {human_size(needed)}, only {human_size(free)} free")


def _whole(path: Path, file: ModelFile) -> bool:
    if file.size is not None and path.stat().st_size != file.size:
        return False
    return file.sha256 is None or file_sha256(path) == file.sha256


def file_sha256(path: Path) -> str:
    """The file's sha256 as 64 lowercase hex digits, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def human_size(count: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 MB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """A rich progress bar on a terminal; a line at the start and one at the end otherwise (logs,
    CI)."""

    def __init__(self, name: str, total: int | None, start: int, out: IO[str]) -> None:
        self.name = name
        self.total = total
        self.done = start
        self._out = out
        self._started = time.monotonic()
        self._bar: rich.progress.Progress | None = None
        if getattr(out, "isatty", lambda: False)():
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("{task.description}"),
                rich.progress.BarColumn(),
                rich.progress.TaskProgressColumn(),
                rich.progress.DownloadColumn(),
                rich.progress.TransferSpeedColumn(),
                rich.progress.TimeRemainingColumn(),
                console=rich.console.Console(file=out),
            )
            self._task = self._bar.add_task(name, total=total, completed=start)
            self._bar.start()
        else:
            size = human_size(total) if total is not None else "unknown size"
            resumed = f", resuming at {human_size(start)}" if start else ""
            print(f"{name}: downloading ({size}{resumed})", file=out, flush=True)

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)

    def finish(self, *, interrupted: bool = False) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not interrupted:
            seconds = time.monotonic() - self._started
            print(
                f"{self.name}: {human_size(self.done)} in {seconds:.1f} s",
                file=self._out,
                flush=True,
            )
