"""The service files and the installer: systemd-analyze accepts the units, plistlib reads the
launchd plist, and ``install.sh --dry-run`` shows every step while changing nothing."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from assistant.config_files import load_config

REPO = Path(__file__).parent.parent
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "install.sh"


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (comments skipped); a key may repeat."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def install(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHON": "python3.11",
        **(env or {}),
    }
    return subprocess.run(
        ["bash", str(INSTALL), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=False,
    )


def written(output: str, path: str) -> str:
    """The content a dry run shows for ``+ write PATH``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"+ write {path} "))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("    ") and line != "":
            break
        body.append(line[4:])
    while body and body[-1] == "":
        body.pop()
    return "\n".join(body) + "\n"


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")}


def fake_executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


# --- the units -----------------------------------------------------------------------------------


def test_the_system_unit_has_the_service_contract() -> None:
    settings = unit_settings((DEPLOY / "lingling.service").read_text())

    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "User": "lingling",
        "SupplementaryGroups": "audio",
        "After": "network-online.target sound.target",
        "ExecStart": "/opt/lingling/.venv/bin/lingling run -c /etc/lingling/config.yaml",
        "Environment": "LINGLING_MODELS=/var/lib/lingling/models",
        "Documentation": "file:///opt/lingling/doc/README.md",
        "StateDirectory": "lingling",
        "ConfigurationDirectory": "lingling",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "LockPersonality": "yes",
    }.items():
        assert value in settings.get(key, []), key
    assert int(settings["WatchdogSec"][0]) > 0
    assert int(settings["RestartSec"][0]) > 0
    # sounddevice's CFFI callbacks need W+X memory: see the comment in the unit
    assert "MemoryDenyWriteExecute" not in settings


def size(value: str) -> int:
    """A systemd size (``3G``, ``512M``, ``1024``) in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if value[-1:] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


@pytest.mark.parametrize("unit", ["lingling.service", "lingling-user.service"])
def test_the_units_make_room_for_lingling_and_its_two_servers(unit: str) -> None:
    settings = unit_settings((DEPLOY / unit).read_text())
    # Qwen2.5 1.5B Q4_K_M in llama-server, whisper base.en in whisper-server, Lingling: ~2.3 GB
    # (the sums are in lingling.service); both limits leave room above that.
    assert size(settings["MemoryHigh"][0]) >= 3 * (1 << 30)
    assert size(settings["MemoryMax"][0]) > size(settings["MemoryHigh"][0])
    assert 256 <= int(settings["TasksMax"][0]) <= 4096  # threads of all three; not unbounded
    # the servers are found on the unit's PATH, the install's own bin/ first
    (path,) = [v for v in settings["Environment"] if v.startswith("PATH=")]
    prefix = "/opt/lingling" if unit == "lingling.service" else "%h/.local/share/lingling"
    assert path.split("=", 1)[1].split(":") == [
        f"{prefix}/bin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ]


def test_the_user_unit_runs_from_the_home_directory() -> None:
    settings = unit_settings((DEPLOY / "lingling-user.service").read_text())

    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["ExecStart"] == [
        "%h/.local/share/lingling/.venv/bin/lingling run -c %h/.config/lingling/config.yaml"
    ]
    assert settings["WantedBy"] == ["default.target"]
    assert "User" not in settings


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return found


def verify(unit: Path, *, user: bool = False, env: dict[str, str] | None = None) -> str:
    """``systemd-analyze verify``'s complaints about ``unit`` (empty: accepted)."""
    command = [_systemd_analyze(), *(["--user"] if user else []), "verify", unit.name]
    result = subprocess.run(
        command,
        cwd=unit.parent,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    return (result.stdout + result.stderr).strip() + (
        f" (exit code {result.returncode})" if result.returncode else ""
    )


def test_systemd_analyze_accepts_the_installed_system_unit(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    result = install(tmp_path, "--dry-run", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "units" / "lingling.service"
    unit.parent.mkdir()
    unit.write_text(written(result.stdout, "/etc/systemd/system/lingling.service"))
    fake_executable(prefix / ".venv" / "bin" / "lingling")  # what the install would create

    assert f"ExecStart={prefix}/.venv/bin/lingling run -c /etc/lingling/config.yaml" in (
        unit.read_text()
    )
    assert verify(unit) == ""


def test_systemd_analyze_accepts_the_installed_user_unit(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    result = install(tmp_path, "--dry-run", "--user", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home"
    unit = tmp_path / "units" / "lingling.service"
    unit.parent.mkdir()
    unit.write_text(written(result.stdout, f"{home}/.config/systemd/user/lingling.service"))
    fake_executable(prefix / ".venv" / "bin" / "lingling")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)

    assert (
        f"ExecStart={prefix}/.venv/bin/lingling run -c {home}/.config/lingling/config.yaml"
        in unit.read_text()
    )
    assert verify(unit, user=True, env={"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}) == ""


def test_systemd_analyze_would_catch_a_mistake(tmp_path: Path) -> None:
    unit = tmp_path / "lingling.service"
    fake_executable(tmp_path / "lingling")
    text = (DEPLOY / "lingling.service").read_text()
    text = text.replace("/opt/lingling/.venv/bin/lingling", str(tmp_path / "lingling"))
    unit.write_text(text.replace("NotifyAccess=main", "NotifyAcces=main"))

    assert "Unknown key" in verify(unit)


# --- launchd -------------------------------------------------------------------------------------


def test_the_plist_is_a_keep_alive_agent_with_logs() -> None:
    plist = plistlib.loads((DEPLOY / "com.lingling.assistant.plist").read_bytes())

    assert plist["Label"] == "com.lingling.assistant"
    assert plist["ProgramArguments"] == [
        "@PREFIX@/.venv/bin/lingling",
        "run",
        "-c",
        "@CONFIG_DIR@/config.yaml",
    ]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart unless it exited cleanly
    assert plist["StandardOutPath"] == "@LOG_DIR@/lingling.log"
    assert plist["StandardErrorPath"] == "@LOG_DIR@/lingling.err.log"
    assert plist["EnvironmentVariables"]["LINGLING_MODELS"] == "@PREFIX@/models"
    # launchd's PATH has no Homebrew: whisper-server and llama-server must be found
    path = plist["EnvironmentVariables"]["PATH"].split(":")
    assert path[:2] == ["@PREFIX@/bin", "/opt/homebrew/bin"]


@pytest.mark.skipif(shutil.which("plutil") is None, reason="plutil is macOS only")
def test_plutil_accepts_the_plist() -> None:
    result = subprocess.run(
        ["plutil", "-lint", str(DEPLOY / "com.lingling.assistant.plist")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_macos_install_writes_a_complete_launch_agent(tmp_path: Path) -> None:
    result = install(tmp_path, "--dry-run", env={"LINGLING_INSTALL_OS": "Darwin"})
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home"

    text = written(result.stdout, f"{home}/Library/LaunchAgents/com.lingling.assistant.plist")
    plist = plistlib.loads(text.encode())

    assert "@" not in text.split("-->", 1)[1]  # every placeholder filled in
    prefix = f"{home}/.local/share/lingling"
    assert plist["ProgramArguments"][0] == f"{prefix}/.venv/bin/lingling"
    assert plist["ProgramArguments"][3] == f"{home}/.config/lingling/config.yaml"
    assert plist["StandardOutPath"] == f"{home}/Library/Logs/lingling/lingling.log"
    assert "launchctl bootstrap gui/" in result.stdout
    assert "macOS: installing a LaunchAgent" in result.stdout


# --- install.sh ----------------------------------------------------------------------------------


def test_shellcheck_accepts_the_installer() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("mode", [["--user"], []])
def test_a_dry_run_prints_every_step_and_touches_nothing(tmp_path: Path, mode: list[str]) -> None:
    prefix = tmp_path / "prefix"
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep").write_text("untouched")
    before = snapshot(tmp_path)
    system_paths = [Path("/etc/lingling"), Path("/etc/systemd/system/lingling.service")]
    existed = {path: path.exists() for path in system_paths}

    result = install(tmp_path, "--dry-run", "--prefix", str(prefix), *mode)

    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before
    assert not prefix.exists()
    assert {path: path.exists() for path in system_paths} == existed
    out = result.stdout
    wheel = f"{prefix}/wheels/lingling-VERSION-py3-none-any.whl"
    assert f"+ build the wheel of {REPO.resolve()} into {prefix}/wheels" in out
    assert f"{prefix}/.venv/bin/python -m pip install" in out
    assert f" -c {REPO.resolve()}/constraints.txt {wheel}\n" in out  # the wheel, tested versions
    assert " -e " not in out  # no editable install,
    assert "/src" not in out  # and no copy of the source
    assert f"+ install -m 0644 {REPO.resolve()}/README.md {prefix}/doc/README.md" in out
    assert "Dry run: nothing was changed." in out
    assert "models fetch -c " in out
    assert " doctor -c " in out
    config_dir = f"{home}/.config/lingling" if mode else "/etc/lingling"
    intents = " ".join(str(path) for path in sorted((REPO.resolve() / "intents").glob("*.yaml")))
    assert f"+ install -m 06{'0' if mode else '4'}0 {intents} {config_dir}/intents/" in out
    if mode:
        assert f"+ write {home}/.config/lingling/config.yaml (mode 0600):" in out
        assert "systemctl --user enable --now lingling" in out
        assert "useradd" not in out
    else:
        assert "+ write /etc/lingling/config.yaml (mode 0640):" in out
        assert "+ write /etc/systemd/system/lingling.service (mode 0644):" in out
        assert "sudo systemctl enable --now lingling" in out
        assert "+ install -d -o lingling -g lingling -m 0750 /var/lib/lingling" in out
        assert "+ chgrp -R lingling /etc/lingling/config.yaml /etc/lingling/intents" in out


def test_the_installed_config_loads_with_its_folders_resolved(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    result = install(tmp_path, "--dry-run", "--user", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    config_path = tmp_path / "config.yaml"
    config_path.write_text(written(result.stdout, f"{tmp_path}/home/.config/lingling/config.yaml"))

    (tmp_path / "intents").mkdir()  # what the install copies beside it

    config = load_config(config_path, env={})

    assert config.models_dir == prefix / "models"
    assert config.intents.directory == tmp_path / "intents"


def test_the_installer_puts_found_servers_on_the_units_path(tmp_path: Path) -> None:
    found = tmp_path / "built"
    fake_executable(found / "whisper-server")
    fake_executable(found / "llama-server")
    prefix = tmp_path / "prefix"
    env = {
        "LINGLING_WHISPER_SERVER": str(found / "whisper-server"),
        "LINGLING_LLAMA_SERVER": str(found / "llama-server"),
    }

    result = install(tmp_path, "--dry-run", "--user", "--prefix", str(prefix), env=env)

    assert result.returncode == 0, result.stderr
    for name in ("whisper-server", "llama-server"):
        assert f"+ install -D -m 0755 {found / name} {prefix}/bin/{name}" in result.stdout
    assert "Lingling starts whisper-server and llama-server itself" in result.stdout
    unit = written(result.stdout, f"{tmp_path}/home/.config/systemd/user/lingling.service")
    assert f"Environment=PATH={prefix}/bin:/usr/local/bin:/usr/bin:/bin" in unit


def test_without_servers_the_installer_says_how_to_build_them(tmp_path: Path) -> None:
    result = install(
        tmp_path,
        "--dry-run",
        "--user",
        env={"LINGLING_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )

    assert result.returncode == 0, result.stderr
    assert "Build whisper-server and llama-server: " in result.stdout
    assert "scripts/build-servers, then run this again" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["--prefix"], "--prefix needs a directory"),
        (["--wheel"], "--wheel needs a file"),
    ],
)
def test_the_installer_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = install(tmp_path, *args)

    assert result.returncode == 2
    assert message in result.stderr


def test_the_installer_explains_itself(tmp_path: Path) -> None:
    result = install(tmp_path, "--help")

    assert result.returncode == 0
    assert "--dry-run" in result.stdout
    assert "set -euo" not in result.stdout
