"""Model downloads against a loopback HTTP server that supports Range requests (stdlib only)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant.service import download as fetch_module
from assistant.service.download import fetch, fetch_file
from assistant.service.manifest import (
    DEFAULT_MANIFEST,
    FetchError,
    ModelEntry,
    ModelFile,
    load_manifest,
)
from assistant.service.models import fetch_command, format_status, list_command, status
from tests.support.models import require_model

# --- a file server with Range support and injectable faults --------------------------------------


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after_bytes: int | None = None
    """Send only this much of the body (then close) for the next ``cuts`` responses."""
    cuts: int = 0
    ignore_range: bool = False
    stall_seconds: float = 0.0
    """After ``cut_after_bytes``, wait this long before closing (a stalled transfer)."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        name = self.path.lstrip("/")
        ranged = self.headers.get("Range")
        state.requests.append((name, ranged))
        data = state.files.get(name)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", ranged or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cuts > 0 and state.cut_after_bytes is not None:
            state.cuts -= 1
            body = body[: state.cut_after_bytes]  # then the connection closes: a cut
        self.wfile.write(body)
        if state.stall_seconds:
            self.wfile.flush()
            time.sleep(state.stall_seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FileServer) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = _Server(state)
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def quick_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "RESUME_BACKOFF_SECONDS", 0.01)


def blob(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def model_file(server: FileServer, name: str, data: bytes, **changes: Any) -> ModelFile:
    server.files[name] = data
    values: dict[str, Any] = {
        "dest": f"kind/{name}",
        "url": server.url(name),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    values.update(changes)
    return ModelFile(**values)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- downloading ---------------------------------------------------------------------------------


def test_a_fresh_download_is_verified_and_moved_into_place(
    server: FileServer, tmp_path: Path
) -> None:
    data = blob(300_000)
    file = model_file(server, "model.bin", data)
    out = io.StringIO()

    path = fetch_file(file, tmp_path, stream=out)

    assert path == tmp_path / "kind" / "model.bin"
    assert path.read_bytes() == data
    assert leftovers(tmp_path) == ["kind/model.bin"]
    assert server.requests == [("model.bin", None)]
    lines = out.getvalue().splitlines()  # not a terminal: plain lines, no bar
    assert lines[0] == "kind/model.bin: downloading (300.0 KB)"
    assert re.fullmatch(r"kind/model\.bin: 300\.0 KB in \d+\.\d s", lines[1])
    assert "\r" not in out.getvalue()


def test_a_cut_transfer_is_resumed_with_a_range_request(server: FileServer, tmp_path: Path) -> None:
    data = blob(200_000)
    file = model_file(server, "model.bin", data)
    server.cut_after_bytes, server.cuts = 70_000, 1
    out = io.StringIO()

    path = fetch_file(file, tmp_path, stream=out)

    assert path.read_bytes() == data
    assert server.requests == [("model.bin", None), ("model.bin", "bytes=70000-")]
    assert "resuming" in out.getvalue()
    assert leftovers(tmp_path) == ["kind/model.bin"]


def test_a_part_left_by_an_earlier_run_is_resumed(server: FileServer, tmp_path: Path) -> None:
    data = blob(120_000)
    file = model_file(server, "model.bin", data)
    part = tmp_path / "kind" / "model.bin.part"
    part.parent.mkdir()
    part.write_bytes(data[:50_000])

    path = fetch_file(file, tmp_path, stream=io.StringIO())

    assert path.read_bytes() == data
    assert server.requests == [("model.bin", "bytes=50000-")]


def test_a_server_that_ignores_range_starts_over(server: FileServer, tmp_path: Path) -> None:
    data = blob(80_000)
    file = model_file(server, "model.bin", data)
    server.ignore_range = True
    part = tmp_path / "kind" / "model.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 30_000)  # not even the right bytes

    path = fetch_file(file, tmp_path, stream=io.StringIO())

    assert path.read_bytes() == data


def test_a_complete_part_without_a_known_size_is_checked_and_kept(
    server: FileServer, tmp_path: Path
) -> None:
    data = blob(40_000)
    file = model_file(server, "model.bin", data, size=None)
    part = tmp_path / "kind" / "model.bin.part"
    part.parent.mkdir()
    part.write_bytes(data)

    path = fetch_file(file, tmp_path, stream=io.StringIO())

    assert path.read_bytes() == data
    assert server.requests == [("model.bin", "bytes=40000-")]  # answered 416: nothing more


def test_a_transfer_that_keeps_failing_keeps_its_part_for_next_time(
    server: FileServer, tmp_path: Path
) -> None:
    data = blob(100_000)
    file = model_file(server, "model.bin", data)
    server.cut_after_bytes, server.cuts = 30_000, 2

    with pytest.raises(FetchError, match="run the same command again to resume") as caught:
        fetch_file(file, tmp_path, stream=io.StringIO(), resume_attempts=1)

    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path) == ["kind/model.bin.part"]
    assert (tmp_path / "kind" / "model.bin.part").stat().st_size == 60_000

    path = fetch_file(file, tmp_path, stream=io.StringIO())  # the network is back

    assert path.read_bytes() == data
    assert server.requests[-1] == ("model.bin", "bytes=60000-")


def test_a_stalled_transfer_times_out_and_keeps_its_part(
    server: FileServer, tmp_path: Path
) -> None:
    file = model_file(server, "model.bin", blob(100_000))
    server.cut_after_bytes, server.cuts, server.stall_seconds = 20_000, 1, 0.5

    with pytest.raises(FetchError, match=r"interrupted after 20000 bytes \(timed out\)"):
        fetch_file(file, tmp_path, stream=io.StringIO(), timeout_seconds=0.1, resume_attempts=0)

    assert (tmp_path / "kind" / "model.bin.part").stat().st_size == 20_000


def test_a_bad_checksum_is_refused_and_nothing_is_left(server: FileServer, tmp_path: Path) -> None:
    file = model_file(server, "model.bin", blob(50_000), sha256="0" * 64)

    with pytest.raises(FetchError, match=r"kind/model\.bin: sha256 mismatch .*deleted"):
        fetch_file(file, tmp_path, stream=io.StringIO())

    assert leftovers(tmp_path) == []


def test_a_wrong_size_is_refused_and_nothing_is_left(server: FileServer, tmp_path: Path) -> None:
    data = blob(50_000)
    file = model_file(server, "model.bin", data, size=len(data) + 10)
    server.files["model.bin"] = data

    with pytest.raises(FetchError, match="got 50000 bytes, the manifest says 50010"):
        fetch_file(file, tmp_path, stream=io.StringIO(), resume_attempts=0)

    assert leftovers(tmp_path) == []


def test_http_errors_are_one_line(server: FileServer, tmp_path: Path) -> None:
    file = ModelFile("kind/gone.bin", server.url("gone.bin"), "0" * 64, 10)

    with pytest.raises(FetchError) as caught:
        fetch_file(file, tmp_path, stream=io.StringIO())

    assert str(caught.value) == f"{server.url('gone.bin')}: HTTP 404 Not Found"
    assert leftovers(tmp_path) == []


def test_offline_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/model.bin"
    file = ModelFile("kind/model.bin", url, "0" * 64, 10)

    with pytest.raises(FetchError) as caught:
        fetch_file(file, tmp_path, stream=io.StringIO(), timeout_seconds=2)

    message = str(caught.value)
    assert message.startswith(f"cannot download {url}: ")
    assert "refused" in message
    assert message.endswith("(offline?)")
    assert "\n" not in message


def test_a_whole_file_is_not_downloaded_again_and_a_damaged_one_is(
    server: FileServer, tmp_path: Path
) -> None:
    data = blob(10_000)
    file = model_file(server, "model.bin", data)
    fetch_file(file, tmp_path, stream=io.StringIO())
    out = io.StringIO()

    fetch_file(file, tmp_path, stream=out)
    assert out.getvalue() == "kind/model.bin: already there\n"
    assert len(server.requests) == 1

    (tmp_path / "kind" / "model.bin").write_bytes(b"x" * len(data))
    fetch_file(file, tmp_path, stream=out)
    assert (tmp_path / "kind" / "model.bin").read_bytes() == data
    assert len(server.requests) == 2


def test_files_without_a_published_checksum_need_no_verify(
    server: FileServer, tmp_path: Path
) -> None:
    data = blob(5_000)
    file = model_file(server, "model.bin", data, sha256=None)
    entry = ModelEntry("wake", "odd", (file,))

    with pytest.raises(FetchError, match=r"no published sha256 for kind/model\.bin: .*--no-verify"):
        fetch([entry], tmp_path, stream=io.StringIO())
    assert server.requests == []  # refused before downloading anything

    out = io.StringIO()
    (path,) = fetch([entry], tmp_path, verify=False, stream=out)

    assert path.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert f"NOT verified (no sha256 in the manifest); its sha256 is {digest}" in out.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar(server: FileServer, tmp_path: Path) -> None:
    file = model_file(server, "model.bin", blob(600_000))
    out = _Terminal()

    fetch_file(file, tmp_path, stream=out)

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # without colours and moves
    last = text.rstrip("\n").splitlines()[-1]
    assert re.match(r"kind/model\.bin ━+ 100% 600\.0/600\.0 kB \S+ [kMG]?B/s 0:00:00$", last), last
    assert "downloading" not in text  # the bar replaces the plain lines
    assert (tmp_path / "kind" / "model.bin").stat().st_size == 600_000


# --- the manifest --------------------------------------------------------------------------------


def test_the_manifest_selects_groups_and_names() -> None:
    manifest = load_manifest()
    everything = manifest.select("all")

    assert [(e.group, e.name) for e in everything] == [
        ("wake", "features"),
        ("wake", "hey_jarvis"),
        ("vad", "silero_vad"),
        ("voice", "en_US-lessac-medium"),
        ("whisper", "base.en"),
        ("llm", "qwen2.5-1.5b-instruct-q4_k_m"),
        ("turn", "smart-turn-v3.2-cpu"),
    ]
    assert [e.name for e in manifest.select("whisper", ["small.en", "tiny.en"])] == [
        "small.en",
        "tiny.en",
    ]
    voice = manifest.select("voice", ["en_US-lessac-medium"])[0]
    assert [f.dest for f in voice.files] == [
        "piper/en_US-lessac-medium.onnx",
        "piper/en_US-lessac-medium.onnx.json",
    ]
    with pytest.raises(FetchError, match="no model group 'voices'; groups: wake, vad, voice"):
        manifest.select("voices")
    with pytest.raises(FetchError, match=r"no whisper model 'huge'; whisper models: tiny\.en, "):
        manifest.select("whisper", ["huge"])


def test_the_manifest_is_complete_and_points_at_official_places() -> None:
    manifest = load_manifest()
    files = [f for g in manifest.groups for e in g.entries for f in e.files]
    official = (
        "https://github.com/dscripka/openWakeWord/releases/download/v0.5.1/",
        "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/",
        "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/",
        "https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/main/",
        "https://huggingface.co/pipecat-ai/smart-turn-v3/resolve/main/",
    )

    assert len({f.dest for f in files}) == len(files)
    assert all(f.url.startswith(official) for f in files), [f.url for f in files]
    assert all(Path(f.url).name == Path(f.dest).name for f in files)
    # every default has a checksum, so `fetch all` never needs --no-verify
    assert all(f.sha256 and f.size for e in manifest.select("all") for f in e.files)


@pytest.mark.models
def test_the_manifest_hashes_match_the_real_openwakeword_files() -> None:
    manifest = load_manifest()
    checked = 0
    for entry in [*manifest.group("wake").entries, *manifest.group("vad").entries]:
        for file in entry.files:
            if file.sha256 is None:
                continue
            path = require_model(file.dest)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256, file.dest
            assert path.stat().st_size == file.size, file.dest
            checked += 1
    assert checked == 6


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("groups: [1, 2]", "malformed model manifest"),
        ("groups:\n  wake:\n    models:\n      x: [{url: u, sha256: null}]\n", "'dest'"),
        (
            "groups:\n  wake:\n    models:\n      x: [{dest: ../x, url: u, sha256: null}]\n",
            "must stay inside the models folder",
        ),
        (
            "groups:\n  wake:\n    models:\n      x: [{dest: a, url: u, sha256: ABC}]\n",
            "64 lowercase hex digits",
        ),
        (
            "groups:\n  wake:\n    default: [y]\n    models:\n      x: [{dest: a, url: u}]\n",
            "unknown entries",
        ),
        ("groups: [", "cannot read"),
    ],
)
def test_a_malformed_manifest_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)

    with pytest.raises(FetchError, match=re.escape(problem)):
        load_manifest(path)


# --- list and the command line --------------------------------------------------------------------


def write_manifest(path: Path, server: FileServer, files: dict[str, bytes | None]) -> Path:
    """A one-group manifest; a None body is a file with no published sha256."""
    models: dict[str, Any] = {}
    for name, data in files.items():
        body = data if data is not None else b"unpublished"
        server.files[name] = body
        models[name.split(".")[0]] = [
            {
                "dest": f"kind/{name}",
                "url": server.url(name),
                "sha256": hashlib.sha256(body).hexdigest() if data is not None else None,
                "size": len(body) if data is not None else None,
            }
        ]
    default = [next(iter(models))]
    path.write_text(yaml.safe_dump({"groups": {"kind": {"default": default, "models": models}}}))
    return path


def test_status_tells_verified_from_damaged_and_missing(server: FileServer, tmp_path: Path) -> None:
    data = {
        name: blob(1_000, seed) for seed, name in enumerate(["a.bin", "b.bin", "c.bin", "d.bin"])
    }
    manifest_path = write_manifest(tmp_path / "m.yaml", server, {**data, "e.bin": None})
    models = tmp_path / "models"
    (models / "kind").mkdir(parents=True)
    (models / "kind" / "a.bin").write_bytes(data["a.bin"])
    (models / "kind" / "b.bin").write_bytes(b"x" * 1_000)  # right size, wrong bytes
    (models / "kind" / "c.bin.part").write_bytes(b"x" * 10)
    (models / "kind" / "e.bin").write_bytes(b"whatever")

    statuses = status(load_manifest(manifest_path), models)
    quick = status(load_manifest(manifest_path), models, verify=False)

    assert [s.state for s in statuses] == [
        "verified",
        "wrong sha256",
        "partial",
        "missing",
        "present",
    ]
    assert [s.state for s in quick] == ["present", "present", "partial", "missing", "present"]
    lines = format_status(statuses)
    assert lines[0].split() == ["group", "name", "state", "size", "file"]
    assert lines[1].split() == ["kind", "a", "*", "verified", "1.0", "KB", "kind/a.bin"]
    assert lines[5].split() == ["kind", "e", "present", "?", "kind/e.bin"]


def test_the_commands_fetch_list_and_report_errors(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(2_000)
    manifest_path = write_manifest(tmp_path / "m.yaml", server, {"a.bin": data})
    models = tmp_path / "models"

    assert fetch_command("kind", [], models, manifest_path=manifest_path) == 0
    assert (models / "kind" / "a.bin").read_bytes() == data
    assert list_command(models, manifest_path=manifest_path) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    assert "kind/a.bin" in out

    server.files.clear()
    os.remove(models / "kind" / "a.bin")
    assert fetch_command("kind", ["a"], models, manifest_path=manifest_path) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lingling: {server.url('a.bin')}: HTTP 404 Not Found\n")
    assert fetch_command("nope", [], models, manifest_path=manifest_path) == 1
    assert "lingling: no model group 'nope'" in capsys.readouterr().err

    server.files["a.bin"] = data
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert fetch_command("kind", [], blocked / "models", manifest_path=manifest_path) == 1
    assert capsys.readouterr().err.startswith("lingling: Not a directory: ")


@pytest.mark.parametrize("fault", ["offline", "cut"])
def test_a_failed_download_names_the_file_and_where_to_put_it(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    data = blob(50_000)
    manifest_path = write_manifest(tmp_path / "m.yaml", server, {"a.bin": data})
    models = tmp_path / "models"
    url = server.url("a.bin")
    if fault == "offline":
        url = f"http://127.0.0.1:{closed_port()}/a.bin"
        manifest_path.write_text(manifest_path.read_text().replace(server.url("a.bin"), url))
    else:
        server.cut_after_bytes, server.cuts = 10_000, 10  # every try is cut

    assert fetch_command("kind", [], models, manifest_path=manifest_path) == 1

    *_, failure, advice, source, place = capsys.readouterr().err.strip().splitlines()
    destination = models / "kind" / "a.bin"
    assert failure.startswith(f"lingling: {'cannot download ' if fault == 'offline' else ''}{url}")
    assert advice.startswith("lingling: to fetch by hand, download each file still missing")
    assert (source, place) == (f"  {url}", f"    -> {destination}")
    destination.write_bytes(data)  # the user does just that
    assert fetch_command("kind", [], models, manifest_path=manifest_path) == 0
    assert "kind/a.bin: already there" in capsys.readouterr().err


def test_offline_every_file_still_missing_is_listed_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    models: dict[str, Any] = {
        name: [{"dest": f"kind/{name}.bin", "url": f"{url}/{name}.bin", "sha256": "0" * 64}]
        for name in ("a", "b", "c")
    }
    manifest_path = tmp_path / "m.yaml"
    manifest_path.write_text(
        yaml.safe_dump({"groups": {"kind": {"default": ["a", "b", "c"], "models": models}}})
    )
    folder = tmp_path / "models"
    (folder / "kind").mkdir(parents=True)
    (folder / "kind" / "b.bin").write_bytes(b"already here")

    assert fetch_command("kind", [], folder, manifest_path=manifest_path) == 1

    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"lingling: cannot download {url}/a.bin: ")
    assert lines[2:] == [
        f"  {url}/a.bin",
        f"    -> {folder}/kind/a.bin",
        f"  {url}/c.bin",
        f"    -> {folder}/kind/c.bin",
    ]


def test_the_default_manifest_is_in_the_repository() -> None:
    assert DEFAULT_MANIFEST.name == "manifest.yaml"
    assert DEFAULT_MANIFEST.is_file()
