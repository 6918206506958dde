"""Reading configuration files: the bundled ``config.yaml`` under an optional user file, validated.

This is the only module that reads configuration files. A bad key or value raises ConfigError with
one line naming its path, e.g. ``wake.threshold: must be between 0 and 1``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from assistant.config import Config
from assistant.errors import ConfigError
from assistant.paths import bundled, default_models_dir, intents_beside, is_checkout

DEFAULT_CONFIG: Final = bundled("config.yaml")
MODELS_ENV: Final = "LINGLING_MODELS"


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> Config:
    """Load the bundled defaults (``base``, by default ``DEFAULT_CONFIG``), overlay ``path``
    (which may be partial; ``assistant.paths.user_config`` finds the user's own) and validate.

    A relative path is relative to the file that sets it. The models folder is $LINGLING_MODELS,
    else ``models_dir`` (``models/`` in a checkout; outside one the bundled value means
    ``default_models_dir``). The intents folder is ``intents.directory``; a user file that does
    not set it uses an ``intents/`` folder beside it if there is one, instead of the bundled ones.
    """
    env = os.environ if env is None else env
    base = DEFAULT_CONFIG if base is None else base
    data = _read_yaml(base)
    user: dict[str, Any] = {}
    if path is not None:
        user = _read_yaml(path)
        data = _merge(data, _own_servers(user))
    if env.get(MODELS_ENV):
        data["models_dir"] = env[MODELS_ENV]
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err

    def anchored(value: Path, *keys: str) -> Path:
        """A relative path is relative to the file that set it."""
        source: Any = user
        for key in keys:
            source = source.get(key, {}) if isinstance(source, dict) else {}
        anchor = path.parent if path is not None and source != {} else base.parent
        return (anchor / value.expanduser()).resolve()

    models_dir = anchored(config.models_dir, "models_dir")
    if env.get(MODELS_ENV):
        models_dir = Path(env[MODELS_ENV]).expanduser().resolve()
    elif "models_dir" not in user and not is_checkout(base.parent):
        models_dir = default_models_dir(env)
    intents_dir = anchored(config.intents.directory, "intents", "directory")
    if path is not None and not _sets(user, "intents", "directory"):
        intents_dir = intents_beside(path) or intents_dir
    intents = config.intents.model_copy(update={"directory": intents_dir})
    return config.model_copy(update={"models_dir": models_dir, "intents": intents})


def find_model(models_dir: Path, name: str, kinds: tuple[str, ...], key: str) -> Path:
    """Resolve a model name or path; ``key`` names the config entry in the error."""
    candidate = Path(name).expanduser()
    if candidate.suffix == ".onnx" or len(candidate.parts) > 1:
        if candidate.is_file():
            return candidate
        raise ConfigError(f"{key}: no such file: {candidate}")
    for kind in kinds:
        folder = models_dir / kind
        exact = folder / f"{name}.onnx"
        if exact.is_file():
            return exact
        versions = sorted(folder.glob(f"{name}_v*.onnx"))
        if versions:
            return versions[-1]
    where = " or ".join(str(models_dir / kind) for kind in kinds)
    raise ConfigError(
        f"{key}: no model {name!r} in {where} "
        "(see models/README.md; LINGLING_MODELS sets the folder)"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of settings")
    return data


def _own_servers(user: dict[str, Any]) -> dict[str, Any]:
    """A file that names a server's ``url`` and no ``server`` means the server there is its
    own: Lingling does not start one."""
    user = dict(user)
    for section in ("stt", "llm"):
        value = user.get(section)
        if isinstance(value, dict) and "url" in value and "server" not in value:
            user[section] = {**value, "server": None}
    return user


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_UNION_BRANCHES: Final = {"str", "int", "float", "none", "WakeWordConfig"}


def _describe(err: ValidationError) -> str:
    # In a union (``str | WakeWordConfig``) the deepest error is the one that explains the value.
    first = max(err.errors(), key=lambda error: len(error["loc"]))
    path = ""
    for part in first["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_BRANCHES or part.startswith("function-"):
            continue  # a union branch's name, not a key
        else:
            name = part if re.fullmatch(r"[\w-]+", part) else json.dumps(part)
            path += f".{name}" if path else name
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required"
    elif kind == "value_error":
        message = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
    else:
        message = first["msg"][0].lower() + first["msg"][1:]
    return f"{path or '(top level)'}: {message}"


def _sets(settings: dict[str, Any], *keys: str) -> bool:
    """Whether ``settings`` (a file's contents) sets the key at ``keys``."""
    for key in keys:
        if not isinstance(settings, dict) or key not in settings:
            return False
        settings = settings[key]
    return True
