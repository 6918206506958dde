"""Small JSON state files kept across restarts (timers, volume, the wake word chosen)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

_LOGGER = logging.getLogger(__name__)


def write_json(path: Path | None, value: object, what: str) -> None:
    """Write ``value`` to ``path`` atomically (a crash leaves the old file or the new one); a
    failure is logged, never raised: the setting still applies until the next restart."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(value), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as err:
        _LOGGER.warning("%s: cannot write %s: %s", what, path, err)
