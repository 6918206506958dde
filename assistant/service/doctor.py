"""``lingling doctor``: check a setup piece by piece and say how to fix what is wrong.

Each check does the real thing where it can: the models are loaded by the same adapters the
assistant uses and run once, the servers are asked for ``/health``, the broker gets a real MQTT
CONNECT. Nothing here prints a secret: the MQTT password is only read from its environment
variable, and any text that could carry it is scrubbed before it is shown.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from assistant.config_files import load_config
from assistant.errors import ConfigError
from assistant.service.checks import Check, Status, audio_checks, fail, model_checks, ok
from assistant.service.probes import HTTP_TIMEOUT_SECONDS, llama_check, mqtt_check, whisper_check


def run_checks(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    timeout_seconds: float = HTTP_TIMEOUT_SECONDS,
) -> list[Check]:
    """Every check, in order: config, models, audio devices, servers, broker."""
    env = os.environ if env is None else env
    c = f" -c {shlex.quote(str(config_path))}" if config_path is not None else ""
    try:
        config = load_config(config_path, env=env)
    except ConfigError as err:
        where = config_path if config_path is not None else "config.yaml"
        failed = [
            fail("config", str(err), f"correct it in {where} (config.yaml documents every key)"),
            Check("other checks", Status.SKIP, "skipped until the config loads"),
        ]
        return [_scrub(check, [env.get("LINGLING_MQTT_PASSWORD", "")]) for check in failed]
    source = str(config_path) if config_path is not None else "the bundled config.yaml"
    checks = [ok("config", f"{source} loads; models in {config.models_dir}")]
    checks += _guard("models", lambda: model_checks(config, c))
    checks += _guard("audio", lambda: audio_checks(config))
    checks += _guard("whisper.cpp server", lambda: [whisper_check(config, c, timeout_seconds)])
    checks += _guard("llama.cpp server", lambda: [llama_check(config, c, timeout_seconds)])
    checks += _guard("MQTT broker", lambda: [mqtt_check(config, env)])
    secrets = [env.get(config.mqtt.password_env, "")]
    return [_scrub(check, secrets) for check in checks]


def _guard(name: str, produce: Callable[[], list[Check]]) -> list[Check]:
    """The checks ``produce`` makes; one failed check if it raises something unforeseen."""
    try:
        return produce()
    except Exception as err:  # a broken check must not take the whole report down
        detail = f"the check itself failed: {type(err).__name__}: {err}"
        return [fail(name, detail, "this is a bug in `lingling doctor`: please report this line")]


# --- the report ----------------------------------------------------------------------------------


def _scrub(check: Check, secrets: Sequence[str]) -> Check:
    detail, fix = check.detail, check.fix
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
            fix = fix.replace(secret, "***") if fix else fix
    return replace(check, detail=detail, fix=fix)


def _marks(stream: IO[str]) -> dict[Status, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return {Status.PASS: "ok  ", Status.FAIL: "FAIL", Status.SKIP: "skip"}
    return {Status.PASS: "✓", Status.FAIL: "✗", Status.SKIP: "-"}


def print_report(checks: Sequence[Check], stream: IO[str] | None = None) -> int:
    """One line per check, the fix under each failure, a summary; 1 if anything failed."""
    out = sys.stdout if stream is None else stream
    marks = _marks(out)
    for check in checks:
        print(f"{marks[check.status]} {check.name}: {check.detail}", file=out)
        if check.failed and check.fix:
            print(f"    fix: {check.fix}", file=out)
    failed = sum(check.failed for check in checks)
    passed = sum(check.status is Status.PASS for check in checks)
    skipped = len(checks) - failed - passed
    summary = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    print(summary, file=out)
    return 1 if failed else 0
