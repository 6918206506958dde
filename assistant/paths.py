"""Where Lingling's files are: what it ships, the user's config, the models.

What Lingling ships (``config.yaml``, ``intents/``, ``models/manifest.yaml``) is the checkout's
own, at its top, when it runs from one (a clone, an editable install); installed from the wheel,
it is package data (``assistant/data/``), read through ``importlib.resources``. The user's config
is the file named with ``-c``, else the first of ``config_search_path`` that exists. Models are
in ``models/`` in a checkout and in ``default_models_dir`` otherwise (``load_config`` applies the
order: $LINGLING_MODELS, then ``models_dir``).
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from assistant.errors import ConfigError

SYSTEM_CONFIG: Final = Path("/etc/lingling/config.yaml")
_CHECKOUT: Final = Path(__file__).resolve().parent.parent


def is_checkout(folder: Path) -> bool:
    """Whether ``folder`` is Lingling's source tree (a clone, or an editable install's source)."""
    return (folder / "pyproject.toml").is_file() and (folder / "assistant").is_dir()


def bundled(name: str) -> Path:
    """A file or folder Lingling ships: ``config.yaml``, ``intents``, ``models/manifest.yaml``.

    Running from a checkout it is the checkout's own, at the top; installed from the wheel it is
    the package data (``assistant/data/NAME``).
    """
    if is_checkout(_CHECKOUT):
        return _CHECKOUT / name
    data = importlib.resources.files("assistant").joinpath("data", *name.split("/"))
    if not isinstance(data, Path):  # e.g. a zipped package: Lingling needs real files
        raise ConfigError(f"{name}: Lingling's package data is not in a folder ({data})")
    return data


def config_search_path(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the user's config is looked for when none is named, first first:
    ``$XDG_CONFIG_HOME/lingling/config.yaml`` (``~/.config/...``), ``/etc/lingling/config.yaml``."""
    env = os.environ if env is None else env
    found = []
    config_home = env.get("XDG_CONFIG_HOME") or (
        str(Path(env["HOME"]) / ".config") if env.get("HOME") else ""
    )
    if config_home:
        found.append(Path(config_home) / "lingling" / "config.yaml")
    found.append(SYSTEM_CONFIG)
    return found


def user_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The user's config file: ``path`` when given, else the first of ``config_search_path``
    that exists, else None (the bundled defaults alone)."""
    if path is not None:
        return path
    return next((found for found in config_search_path(env) if found.is_file()), None)


def default_models_dir(env: Mapping[str, str] | None = None) -> Path:
    """The models folder outside a checkout: ``$XDG_DATA_HOME/lingling/models``
    (``~/.local/share/lingling/models``)."""
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME")
    if data_home:
        return Path(data_home).expanduser().resolve() / "lingling" / "models"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "lingling" / "models"


def intents_beside(path: Path) -> Path | None:
    """The ``intents/`` folder beside a user's config file, if there is one."""
    folder = path.parent / "intents"
    return folder.resolve() if folder.is_dir() else None
