"""``lingling models fetch`` and ``lingling models list``: the manifest's files and their state.

The manifest is ``assistant.service.manifest``, the downloads ``assistant.service.download``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from assistant.service.download import DownloadError, fetch, file_sha256, human_size
from assistant.service.manifest import (
    DEFAULT_MANIFEST,
    FetchError,
    Manifest,
    ModelEntry,
    ModelFile,
    load_manifest,
)

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
    return "verified" if file_sha256(path) == file.sha256 else "wrong sha256"


def format_status(statuses: Sequence[FileStatus]) -> list[str]:
    """One line per file: group, name (``*``: a default), state, size, path under the folder."""
    rows = [
        (
            s.entry.group,
            s.entry.name + (" *" if s.default else ""),
            s.state,
            human_size(s.file.size) if s.file.size is not None else "?",
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
    entries: list[ModelEntry] = []
    try:
        entries = load_manifest(manifest_path).select(group, names)
        paths = fetch(entries, models_dir, verify=verify)
    except DownloadError as err:
        print(f"lingling: {err}", file=sys.stderr)
        missing = [
            (file.url, models_dir / file.dest)
            for entry in entries
            for file in entry.files
            if not (models_dir / file.dest).is_file()
        ]
        print(
            "lingling: to fetch by hand, download each file still missing and put it at the "
            "path under it; the same command then checks them:",
            file=sys.stderr,
        )
        for url, path in missing or [(err.url, err.path)]:
            print(f"  {url}\n    -> {path}", file=sys.stderr)
        return 1
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
