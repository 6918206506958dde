"""Managed servers: found, started, waited for, restarted when they die, stopped on every way out.

A small stand-in program speaks the part of the servers' protocol that managing them uses
(``--host``/``--port``, ``GET /health``: 503 while loading, then 200); the real whisper-server
and llama-server run in tests/test_managed_loop.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from assistant.config import Config, ServerConfig
from assistant.config_files import load_config
from assistant.errors import ConfigError
from assistant.service.servers import (
    LLAMA,
    WHISPER,
    ManagedServer,
    ServerError,
    ServerSpec,
    find_binary,
    specs,
)
from tests.support.broker import eventually, free_port
from tests.support.servers import FakeWhisperServer

STAND_IN = '''#!{python}
"""Answers GET /health: 503 for --load-seconds, then 200; prints what it does."""
import argparse, http.server, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--host"); parser.add_argument("--port", type=int)
parser.add_argument("-m"); parser.add_argument("--load-seconds", type=float, default=0.0)
parser.add_argument("--exit-code", type=int, default=None)
parser.add_argument("--inference-path")
args, _ = parser.parse_known_args()
if args.exit_code is not None:
    print("cannot load the model", flush=True)
    sys.exit(args.exit_code)
ready_at = time.monotonic() + args.load_seconds
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        ok = time.monotonic() >= ready_at
        body = b'{{"status":"ok"}}' if ok else b'{{"status":"loading model"}}'
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
print(f"listening on {{args.host}}:{{args.port}} with {{args.m}}", flush=True)
http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
'''


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "fake-server"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "whisper" / "tiny.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"model")
    return path


def spec(binary: Path, model: Path, *args: str, timeout_seconds: float = 10.0) -> ServerSpec:
    url = f"http://127.0.0.1:{free_port()}/v1"
    return ServerSpec(WHISPER, binary, model, url, args, timeout_seconds)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


# -- finding what to run ------------------------------------------------------------------------


def test_the_binary_comes_from_the_config_then_the_environment_path_and_cache(
    tmp_path: Path, stand_in: Path
) -> None:
    server = ServerConfig(model="m")
    cache = tmp_path / "cache"
    cached = cache / "servers" / "whisper-1.9.1" / "bin" / "whisper-server"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    env = {"LINGLING_CACHE": str(cache), "PATH": ""}
    assert find_binary(WHISPER, server, env) == cached
    env["LINGLING_WHISPER_SERVER"] = str(stand_in)
    assert find_binary(WHISPER, server, env) == stand_in
    named = ServerConfig(model="m", binary=str(cached))
    assert find_binary(WHISPER, named, env) == cached


def test_a_missing_binary_or_model_is_a_config_error_naming_the_key(
    tmp_path: Path, stand_in: Path
) -> None:
    env = {"LINGLING_CACHE": str(tmp_path / "empty"), "PATH": ""}
    config = Config.model_validate(
        {"models_dir": str(tmp_path / "models"), "llm": {"server": {"model": "q.gguf"}}}
    )
    with pytest.raises(ConfigError, match=r"llm.server.binary: no llama-server found .*build-s"):
        specs(config, env)
    env["LINGLING_LLAMA_SERVER"] = str(stand_in)
    with pytest.raises(ConfigError, match=r"llm.server.model: no model file .*llm/q.gguf"):
        specs(config, env)


def test_the_command_line_has_the_url_s_host_and_port(tmp_path: Path, stand_in: Path) -> None:
    models = tmp_path / "models"
    for relative in ("whisper/base.bin", "llm/q.gguf"):
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).write_bytes(b"x")
    config = Config.model_validate(
        {
            "models_dir": str(models),
            "stt": {"url": "http://127.0.0.1:9080/v1", "server": {"model": "base.bin"}},
            "llm": {
                "url": "http://localhost:9081/v1",
                "server": {"model": "q.gguf", "binary": str(stand_in), "args": ["-c", "4096"]},
            },
        }
    )
    whisper, llama = specs(config, {"LINGLING_WHISPER_SERVER": str(stand_in)})
    assert whisper.kind is WHISPER
    assert whisper.argv == [
        str(stand_in),
        *("-m", str(models / "whisper/base.bin"), "--host", "127.0.0.1", "--port", "9080"),
        *("--inference-path", "/v1/audio/transcriptions"),
    ]
    assert llama.kind is LLAMA
    assert llama.argv[-2:] == ["-c", "4096"]
    assert llama.health_url == "http://localhost:9081/health"


def test_a_managed_server_must_listen_on_this_machine() -> None:
    with pytest.raises(ValueError, match=r"stt\.url must be a loopback address"):
        Config.model_validate(
            {"stt": {"url": "http://192.0.2.7:8080/v1", "server": {"model": "m"}}}
        )


def test_a_file_that_names_a_url_alone_runs_its_own_server(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stt:\n  url: http://127.0.0.1:9999/v1\n")
    config = load_config(path, env={})
    assert config.stt.server is None
    assert config.llm.server is not None  # the bundled config runs llama-server
    path.write_text("stt:\n  server:\n    model: tiny.bin\n")
    assert load_config(path, env={}).stt.server == ServerConfig(model="tiny.bin")


# -- running ------------------------------------------------------------------------------------


async def test_start_waits_for_health_and_stop_ends_the_server(
    stand_in: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="assistant.service.servers")
    server = ManagedServer(spec(stand_in, model, "--load-seconds", "0.3"))
    await asyncio.wait_for(server.start(), 10)
    pid = server.pid
    assert pid is not None
    assert alive(pid)
    await eventually(lambda: "[whisper-server] listening on 127.0.0.1:" in caplog.text)
    await asyncio.wait_for(server.stop(), 10)
    assert not alive(pid)


async def test_a_server_that_dies_is_started_again(stand_in: Path, model: Path) -> None:
    server = ManagedServer(spec(stand_in, model))
    await asyncio.wait_for(server.start(), 10)
    first = server.pid
    assert first is not None
    os.kill(first, 9)
    await eventually(lambda: server.restarts == 1, 10.0, "restarted")
    assert server.pid not in (None, first)
    await asyncio.wait_for(server.stop(), 10)


async def test_a_server_that_cannot_start_is_a_clear_error(stand_in: Path, model: Path) -> None:
    server = ManagedServer(spec(stand_in, model, "--exit-code", "3"))
    with pytest.raises(ServerError, match="exited with code 3 while starting"):
        await asyncio.wait_for(server.start(), 10)
    await server.stop()


async def test_a_server_that_never_answers_is_stopped_after_its_start_timeout(
    stand_in: Path, model: Path
) -> None:
    server = ManagedServer(spec(stand_in, model, "--load-seconds", "60", timeout_seconds=0.5))
    with pytest.raises(ServerError, match=r"did not answer .*/health within 0.5 s"):
        await asyncio.wait_for(server.start(), 10)
    pid = server.pid
    assert pid is not None
    assert not alive(pid)
    await server.stop()


# -- the doctor -----------------------------------------------------------------------------------


def test_the_doctor_names_a_managed_server_s_program_model_and_port(
    tmp_path: Path, stand_in: Path, model: Path
) -> None:
    from assistant.service.checks import Status
    from assistant.service.probes import llama_check, whisper_check

    port = free_port()
    config = Config.model_validate(
        {
            "models_dir": str(model.parents[1]),
            "stt": {
                "url": f"http://127.0.0.1:{port}/v1",
                "server": {"model": model.name, "binary": str(stand_in)},
            },
            "llm": {"url": f"http://127.0.0.1:{free_port()}/v1", "server": {"model": "q.gguf"}},
        }
    )
    check = whisper_check(config, "", 1.0)
    assert check.status is Status.PASS, check
    assert check.detail == f"Lingling runs {stand_in} -m {model} on http://127.0.0.1:{port}"
    check = llama_check(config, "", 1.0)
    assert check.status is Status.FAIL, check
    assert "llm.server" in check.detail  # no program, or no q.gguf: named by its key
    # Something else already holds the port Lingling would run whisper-server on.
    with FakeWhisperServer(" hi\n").start(port):
        check = whisper_check(config, "", 1.0)
    assert check.status is Status.FAIL, check
    assert "something already answers there" in check.detail
