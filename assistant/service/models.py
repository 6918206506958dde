"""Model downloads for ``lingling models fetch`` and ``lingling models list``.

The files, their official URLs, sizes and sha256 live in ``models/manifest.yaml``. A download goes
to ``<dest>.part`` (resumed with an HTTP Range request when one is left over), is checked against
the manifest's size and sha256, and only then renamed into place: a file under its real name is
always a whole, verified one. Standard library only (urllib).
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

import yaml

from assistant import __version__
from assistant.errors import AssistantError

DEFAULT_MANIFEST: Final = Path(__file__).resolve().parents[2] / "models" / "manifest.yaml"
ALL: Final = "all"
CHUNK_BYTES: Final = 256 * 1024
TIMEOUT_SECONDS: Final = 30.0
"""Connecting, and each read: a transfer silent this long has stalled."""
RESUME_ATTEMPTS: Final = 3
"""An interrupted transfer is resumed this many times before giving up (the .part stays)."""
RESUME_BACKOFF_SECONDS: Final = 0.5
"""Wait before the first resume; each further one waits this much longer."""
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


class FetchError(AssistantError):
    code = "fetch"


@dataclass(frozen=True, slots=True)
class ModelFile:
    dest: str
    """Path under the models folder, e.g. ``whisper/ggml-base.en.bin``."""
    url: str
    sha256: str | None
    """None: no published checksum; fetching it needs ``verify=False``."""
    size: int | None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    group: str
    name: str
    files: tuple[ModelFile, ...]


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    description: str
    default: tuple[str, ...]
    entries: tuple[ModelEntry, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    groups: tuple[Group, ...]

    def group(self, name: str) -> Group:
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join([*(g.name for g in self.groups), ALL])
        raise FetchError(f"no model group {name!r}; groups: {known}")

    def select(self, group: str, names: Sequence[str] = ()) -> list[ModelEntry]:
        """Entries to fetch: ``names`` in ``group``, or its defaults; ``all``: every default."""
        if group == ALL:
            if names:
                raise FetchError("`all` takes no names: it fetches every group's defaults")
            return [entry for g in self.groups for entry in _defaults(g)]
        chosen = self.group(group)
        if not names:
            return _defaults(chosen)
        by_name = {entry.name: entry for entry in chosen.entries}
        selected = []
        for name in names:
            if name not in by_name:
                raise FetchError(f"no {group} model {name!r}; {group} models: {', '.join(by_name)}")
            selected.append(by_name[name])
        return selected


def _defaults(group: Group) -> list[ModelEntry]:
    return [entry for entry in group.entries if entry.name in group.default]


def load_manifest(path: Path = DEFAULT_MANIFEST) -> Manifest:
    """Read and check ``manifest.yaml``; FetchError naming the bad entry if it is malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise FetchError(f"{path}: cannot read the model manifest: {err}") from err
    try:
        groups = tuple(_group(name, body) for name, body in dict(data["groups"]).items())
    except (KeyError, TypeError, ValueError) as err:
        raise FetchError(f"{path}: malformed model manifest: {err}") from err
    return Manifest(groups)


def _group(name: str, body: dict[str, Any]) -> Group:
    entries = []
    for entry_name, files in dict(body["models"]).items():
        entries.append(
            ModelEntry(
                str(name), str(entry_name), tuple(_file(f"{name}.{entry_name}", f) for f in files)
            )
        )
    default = tuple(str(item) for item in body.get("default", []))
    missing = set(default) - {entry.name for entry in entries}
    if missing:
        raise ValueError(f"{name}.default names unknown entries {sorted(missing)}")
    return Group(str(name), str(body.get("description", "")), default, tuple(entries))


def _file(where: str, body: dict[str, Any]) -> ModelFile:
    dest = str(body["dest"])
    if Path(dest).is_absolute() or ".." in Path(dest).parts:
        raise ValueError(f"{where}: dest must stay inside the models folder: {dest}")
    sha256 = body.get("sha256")
    if sha256 is not None and not _SHA256.fullmatch(str(sha256)):
        raise ValueError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    size = body.get("size")
    return ModelFile(
        dest=dest,
        url=str(body["url"]),
        sha256=None if sha256 is None else str(sha256),
        size=None if size is None else int(size),
    )


# --- downloading ---------------------------------------------------------------------------------


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
        except _Interrupted as err:
            if attempt > resume_attempts:
                raise FetchError(
                    f"{file.url}: {err}; {part.stat().st_size} bytes kept in {part.name}: "
                    "run the same command again to resume"
                ) from err
            print(f"{file.dest}: {err}; resuming (attempt {attempt + 1})", file=out)
            time.sleep(RESUME_BACKOFF_SECONDS * attempt)
    digest = _sha256(part)
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


class _Interrupted(Exception):
    """The transfer stopped part-way; what arrived is in the .part file."""


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
        raise FetchError(f"{file.url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise FetchError(f"cannot download {file.url}: {err.reason} (offline?)") from err
    except (TimeoutError, OSError) as err:
        raise FetchError(f"cannot download {file.url}: {err} (offline?)") from err
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
        raise FetchError(f"{folder}: needs {_size(needed)}, only {_size(free)} free")


def _whole(path: Path, file: ModelFile) -> bool:
    if file.size is not None and path.stat().st_size != file.size:
        return False
    return file.sha256 is None or _sha256(path) == file.sha256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """A progress bar on a terminal; a line at the start and the end otherwise (logs, CI)."""

    WIDTH: Final = 24
    INTERVAL_SECONDS: Final = 0.1

    def __init__(self, name: str, total: int | None, start: int, out: IO[str]) -> None:
        self.name = name
        self.total = total
        self.done = start
        self._out = out
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._first = start
        self._shown = 0.0
        resumed = f", resuming at {_size(start)}" if start else ""
        if not self._tty:
            size = _size(total) if total is not None else "unknown size"
            print(f"{name}: downloading ({size}{resumed})", file=out, flush=True)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self._tty and now - self._shown >= self.INTERVAL_SECONDS:
            self._shown = now
            self._draw(now)

    def finish(self, *, interrupted: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            self._draw(now)
            self._out.write("\n")
            self._out.flush()
        elif not interrupted:
            seconds = now - self._started
            print(f"{self.name}: {_size(self.done)} in {seconds:.1f} s", file=self._out, flush=True)

    def _draw(self, now: float) -> None:
        rate = (self.done - self._first) / max(now - self._started, 1e-6)
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = round(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"{self.name} [{bar}] {fraction:4.0%} {_size(self.done)}/{_size(self.total)}"
        else:
            text = f"{self.name} {_size(self.done)}"
        self._out.write(f"\r{text} {_size(rate)}/s\x1b[K")
        self._out.flush()


# --- what is there -------------------------------------------------------------------------------

State = Literal["verified", "present", "wrong size", "wrong sha256", "partial", "missing"]


@dataclass(frozen=True, slots=True)
class FileStatus:
    entry: ModelEntry
    file: ModelFile
    path: Path
    state: State
    default: bool


def status(manifest: Manifest, models_dir: Path, *, verify: bool = True) -> list[FileStatus]:
    """Each manifest file's state in ``models_dir``; ``verify`` hashes the files that are there
    (seconds for the big ones), otherwise only sizes are compared."""
    result = []
    for group in manifest.groups:
        for entry in group.entries:
            for file in entry.files:
                path = models_dir / file.dest
                result.append(
                    FileStatus(
                        entry, file, path, _state(path, file, verify), entry.name in group.default
                    )
                )
    return result


def _state(path: Path, file: ModelFile, verify: bool) -> State:
    if not path.is_file():
        return "partial" if path.with_name(path.name + ".part").is_file() else "missing"
    if file.size is not None and path.stat().st_size != file.size:
        return "wrong size"
    if not verify or file.sha256 is None:
        return "present"
    return "verified" if _sha256(path) == file.sha256 else "wrong sha256"


def format_status(statuses: Sequence[FileStatus]) -> list[str]:
    """One line per file: group, name (``*``: a default), state, size, path under the folder."""
    rows = [
        (
            s.entry.group,
            s.entry.name + (" *" if s.default else ""),
            s.state,
            _size(s.file.size) if s.file.size is not None else "?",
            s.file.dest,
        )
        for s in statuses
    ]
    header = ("group", "name", "state", "size", "file")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    return [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)), row[4]]
        )
        for row in [header, *rows]
    ]


# --- the command line ----------------------------------------------------------------------------


def fetch_command(
    group: str,
    names: Sequence[str],
    models_dir: Path,
    *,
    verify: bool = True,
    manifest_path: Path = DEFAULT_MANIFEST,
) -> int:
    """``lingling models fetch GROUP [NAME...]``: 0 when every file is there, 1 otherwise."""
    try:
        entries = load_manifest(manifest_path).select(group, names)
        paths = fetch(entries, models_dir, verify=verify)
    except FetchError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the models folder cannot be created or written
        print(f"lingling: {err.strerror or err}: {err.filename or models_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nlingling: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"{len(paths)} file(s) in {models_dir}", file=sys.stderr)
    return 0


def list_command(
    models_dir: Path, *, verify: bool = True, manifest_path: Path = DEFAULT_MANIFEST
) -> int:
    """``lingling models list``: what the manifest offers and what is in ``models_dir``."""
    try:
        statuses = status(load_manifest(manifest_path), models_dir, verify=verify)
    except FetchError as err:
        print(f"lingling: {err}", file=sys.stderr)
        return 1
    print(f"models folder: {models_dir}  (* = fetched by `lingling models fetch all`)")
    print("\n".join(format_status(statuses)))
    if not models_dir.is_dir():
        print("the folder does not exist yet: `lingling models fetch all` creates it")
    return 0
