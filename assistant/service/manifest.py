"""The model manifest, ``models/manifest.yaml``: every file Lingling can fetch, with its official
URL, size and sha256, grouped (wake, vad, whisper, ...) with each group's defaults. Installed from
the wheel, it is package data (``assistant.paths.bundled``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from assistant.errors import AssistantError
from assistant.paths import bundled

DEFAULT_MANIFEST: Final = bundled("models/manifest.yaml")
ALL: Final = "all"
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
