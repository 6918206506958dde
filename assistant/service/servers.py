"""Servers Lingling runs itself: whisper-server and llama-server, started, watched and stopped.

With a ``server`` section under ``stt`` or ``llm`` Lingling starts the server on its section's
URL, waits for its ``/health`` before it is ready, restarts it with backoff when it dies (the
turn in flight fails with a clear error; the next one works), passes its output to the log at
DEBUG, and stops it on every way out: SIGTERM, SIGINT, an exception. Against a ``kill -9`` of
Lingling itself, each server runs with a parent-death signal (Linux ``PR_SET_PDEATHSIG``, set by
util-linux's ``setpriv --pdeathsig KILL`` before it executes the server, so no Python runs in the
child): the kernel kills it when Lingling goes, whatever the way. macOS has no such signal: there
a ``kill -9`` of Lingling leaves its servers running (launchd restarts Lingling, which then finds
the port taken and says so); every other way out stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx2

from assistant.adapters.endpoints import server_root
from assistant.config import Config, ServerConfig
from assistant.errors import AssistantError, ConfigError

_LOGGER = logging.getLogger(__name__)

CACHE_ENV: Final = "LINGLING_CACHE"
RESTART_SECONDS: Final = 0.5
MAX_RESTART_SECONDS: Final = 30.0
STOP_SECONDS: Final = 5.0
"""A server that does not end this long after SIGTERM is killed."""
HEALTH_POLL_SECONDS: Final = 0.1


class ServerError(AssistantError):
    code = "server"


@dataclass(frozen=True, slots=True)
class Kind:
    """What differs between the two servers."""

    name: str
    """For messages: "whisper.cpp server"."""
    program: str
    env: str
    models: str
    """The folder under ``models_dir`` where its model names are looked up."""
    section: str
    extra: tuple[str, ...] = ()


WHISPER: Final = Kind(
    "whisper.cpp server",
    "whisper-server",
    "LINGLING_WHISPER_SERVER",
    "whisper",
    "stt",
    ("--inference-path", "/v1/audio/transcriptions"),
)
LLAMA: Final = Kind("llama.cpp server", "llama-server", "LINGLING_LLAMA_SERVER", "llm", "llm")


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One managed server: what to run and where it answers."""

    kind: Kind
    binary: Path
    model: Path
    url: str
    args: tuple[str, ...]
    start_timeout_seconds: float

    @property
    def argv(self) -> list[str]:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        return [
            str(self.binary),
            *("-m", str(self.model), "--host", host, "--port", str(port)),
            *self.kind.extra,
            *self.args,
        ]

    @property
    def health_url(self) -> str:
        return server_root(self.url) + "/health"


def specs(config: Config, env: dict[str, str] | None = None) -> list[ServerSpec]:
    """The servers the config asks Lingling to run; ConfigError names what is missing."""
    env = dict(os.environ) if env is None else env
    found = []
    for kind, url, server in (
        (WHISPER, config.stt.url, config.stt.server),
        (LLAMA, config.llm.url, config.llm.server),
    ):
        if server is not None:
            binary = find_binary(kind, server, env)
            model = find_model_file(config.models_dir, kind, server)
            args = tuple(server.args)
            found.append(ServerSpec(kind, binary, model, url, args, server.start_timeout_seconds))
    return found


def find_binary(kind: Kind, server: ServerConfig, env: dict[str, str]) -> Path:
    key = f"{kind.section}.server.binary"
    if server.binary is not None:
        path = Path(server.binary).expanduser()
        named = shutil.which(str(path)) if len(path.parts) == 1 else str(path)
        if named is None or not Path(named).is_file():
            raise ConfigError(f"{key}: no such program: {server.binary}")
        return Path(named)
    candidates = [env.get(kind.env), shutil.which(kind.program)]
    cache = Path(env.get(CACHE_ENV) or Path.home() / ".cache" / "lingling") / "servers"
    candidates += [str(p) for p in sorted(cache.glob(f"*/bin/{kind.program}"), reverse=True)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ConfigError(
        f"{key}: no {kind.program} found (${kind.env}, PATH, {cache}): build it with "
        f"scripts/build-servers, or set {key}"
    )


def find_model_file(models_dir: Path, kind: Kind, server: ServerConfig) -> Path:
    key = f"{kind.section}.server.model"
    name = Path(server.model).expanduser()
    path = name if name.is_absolute() or len(name.parts) > 1 else models_dir / kind.models / name
    if not path.is_file():
        raise ConfigError(
            f"{key}: no model file {path} (lingling models fetch {kind.models}, or set {key})"
        )
    return path


def _with_parent_death(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it when Lingling's process ends (Linux)."""
    setpriv = shutil.which("setpriv")
    if sys.platform.startswith("linux") and setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv]
    if sys.platform.startswith("linux"):
        _LOGGER.warning("setpriv (util-linux) not found: a server may outlive a killed Lingling")
    return argv


class ManagedServer:
    """Runs one server: ``start()`` returns once it is healthy; ``stop()`` ends it for good."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._output: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the server and wait until it answers ``/health`` (ServerError otherwise)."""
        await self._spawn()
        self._watch = asyncio.get_running_loop().create_task(self._keep_running())

    async def _spawn(self) -> None:
        spec = self.spec
        _LOGGER.info("starting %s: %s", spec.kind.name, " ".join(spec.argv))
        try:
            process = await asyncio.create_subprocess_exec(
                *_with_parent_death(spec.argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as err:
            raise ServerError(f"cannot start {spec.kind.name} ({spec.binary}): {err}") from err
        self._process = process
        self._output = asyncio.get_running_loop().create_task(self._log_output(process))
        if self._stopping:  # stop() came while it was being started
            await self._end(process)
            raise ServerError(f"{spec.kind.name} stopped while starting")
        await self._wait_healthy(process)
        _LOGGER.info("%s ready at %s (pid %d)", spec.kind.name, server_root(spec.url), process.pid)

    async def _wait_healthy(self, process: asyncio.subprocess.Process) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.start_timeout_seconds
        async with httpx2.AsyncClient(timeout=1.0) as client:
            while True:
                if self._stopping:
                    await self._end(process)
                    raise ServerError(f"{spec.kind.name} stopped while starting")
                if process.returncode is not None:
                    raise ServerError(
                        f"{spec.kind.name} exited with code {process.returncode} while starting "
                        f"(run it by hand to see why: {' '.join(spec.argv)})"
                    )
                with contextlib.suppress(httpx2.HTTPError):
                    if (await client.get(spec.health_url)).status_code == 200:
                        return
                if loop.time() > deadline:
                    await self._end(process)
                    raise ServerError(
                        f"{spec.kind.name} did not answer {spec.health_url} within "
                        f"{spec.start_timeout_seconds:g} s"
                    )
                await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def _log_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        prefix = self.spec.kind.program
        async for line in process.stdout:
            _LOGGER.debug("[%s] %s", prefix, line.decode(errors="replace").rstrip())

    async def _keep_running(self) -> None:
        """Restart the server with backoff whenever it dies, until ``stop()``."""
        delay_seconds = RESTART_SECONDS
        while not self._stopping:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            _LOGGER.warning(
                "%s exited (code %s); restarting in %g s", self.spec.kind.name, code, delay_seconds
            )
            await asyncio.sleep(delay_seconds)
            delay_seconds = min(delay_seconds * 2, MAX_RESTART_SECONDS)
            try:
                await self._spawn()
            except ServerError as err:
                _LOGGER.warning("%s", err)
                continue
            self.restarts += 1
            delay_seconds = RESTART_SECONDS

    async def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after STOP_SECONDS) and stop watching it."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        if self._process is not None:
            await self._end(self._process)
        if self._output is not None:
            self._output.cancel()

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
