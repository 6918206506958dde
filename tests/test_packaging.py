"""The package installs anywhere: the wheel carries config.yaml, intents/ and the model manifest
as package data and declares every package the code imports; installed, Lingling reads its own
data and keeps the user's files in the user's folders. In a checkout, the checkout's files win.

``scripts/test-wheel`` goes further: it installs the wheel with pip into a fresh virtualenv and
runs the ``lingling`` commands from another folder.
"""

from __future__ import annotations

import ast
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Final

import pytest

from assistant.config_files import DEFAULT_CONFIG
from assistant.paths import bundled, is_checkout
from assistant.service.manifest import DEFAULT_MANIFEST

REPO: Final = Path(__file__).resolve().parent.parent
PACKAGE_DATA: Final = ("config.yaml", "intents", "models/manifest.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built by hatchling (no network, well under a second)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    (built,) = out.glob("lingling-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's files unpacked, as pip would lay them out in site-packages."""
    folder = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


def checkout_files() -> dict[str, bytes]:
    """Every package-data file in the checkout, by its path there."""
    files = {}
    for name in PACKAGE_DATA:
        path = REPO / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[file.relative_to(REPO).as_posix()] = file.read_bytes()
    return files


# --- in a checkout -------------------------------------------------------------------------------


def test_in_a_checkout_the_checkouts_own_files_are_used() -> None:
    assert is_checkout(REPO)
    assert DEFAULT_CONFIG == REPO / "config.yaml"
    assert DEFAULT_MANIFEST == REPO / "models" / "manifest.yaml"
    assert bundled("intents") == REPO / "intents"
    assert not (REPO / "assistant" / "data").exists()  # only the wheel has a copy


# --- the wheel -----------------------------------------------------------------------------------


def test_the_wheel_carries_the_config_the_intents_and_the_manifest(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = {
            name: archive.read(f"assistant/data/{name}")
            for name in checkout_files()
            if f"assistant/data/{name}" in names
        }

    assert data == checkout_files()
    assert "assistant/cli.py" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/")]


def test_the_wheel_declares_every_package_the_code_imports(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.parser.Parser().parsestr(
            archive.read("lingling-0.1.0.dist-info/METADATA").decode()
        )
        entry_points = archive.read("lingling-0.1.0.dist-info/entry_points.txt").decode()
    declared = {
        _normal(re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0])
        for requirement in metadata.get_all("Requires-Dist", [])
        if "extra ==" not in requirement
    }
    imported = set()
    for path in (REPO / "assistant").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"assistant", "__future__"}
    distributions = packages_distributions()
    needed = {_normal(distributions[module][0]) for module in third_party}

    assert needed <= declared, f"imported but not declared: {sorted(needed - declared)}"
    assert "openwakeword" not in declared  # only the parity tests use it
    assert metadata["Requires-Python"] == "<3.14,>=3.11"
    assert "lingling = assistant.cli:main" in entry_points


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- installed from the wheel --------------------------------------------------------------------


def run_installed(site: Path, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by Python with the unpacked wheel first on its path, from an empty folder,
    with an empty home and no LINGLING_MODELS."""
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    home.mkdir(exist_ok=True)
    elsewhere.mkdir(exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LINGLING_", "XDG_")) and key != "PYTHONPATH"
    }
    env.update({"HOME": str(home), "PYTHONPATH": str(site)})
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_installed_it_reads_its_package_data_and_the_users_folders(
    site: Path, tmp_path: Path
) -> None:
    code = (
        "import json, assistant\n"
        "from assistant.config_files import DEFAULT_CONFIG, load_config\n"
        "from assistant.service.manifest import DEFAULT_MANIFEST, load_manifest\n"
        "config = load_config()\n"
        "print(json.dumps({'package': assistant.__file__, 'config': str(DEFAULT_CONFIG),\n"
        "    'manifest': str(DEFAULT_MANIFEST), 'models': str(config.models_dir),\n"
        "    'intents': str(config.intents.directory),\n"
        "    'groups': [g.name for g in load_manifest().groups]}))\n"
    )
    result = run_installed(site, tmp_path, code)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    data = site / "assistant" / "data"

    assert found["package"] == str(site / "assistant" / "__init__.py")
    assert found["config"] == str(data / "config.yaml")
    assert found["manifest"] == str(data / "models" / "manifest.yaml")
    assert found["intents"] == str(data / "intents")
    assert found["models"] == str(tmp_path / "home" / ".local" / "share" / "lingling" / "models")
    assert {"wake", "vad", "voice", "whisper", "llm"} <= set(found["groups"])


def test_installed_the_users_config_and_intents_beside_it_are_found(
    site: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "home" / ".config" / "lingling"
    (folder / "intents").mkdir(parents=True)
    (folder / "config.yaml").write_text("models_dir: mine\n", encoding="utf-8")
    (folder / "intents" / "garage.yaml").write_text(
        "language: en\nintents:\n  OpenGarage:\n    data:\n      - sentences: [open the garage]\n"
        "responses:\n  intents:\n    OpenGarage:\n      default: Opening the garage.\n",
        encoding="utf-8",
    )
    code = "from assistant.cli import main; raise SystemExit(main(['intent', 'open the garage']))"

    result = run_installed(site, tmp_path, code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["intent"] == "OpenGarage"
    listing = run_installed(
        site, tmp_path, "from assistant.cli import main; raise SystemExit(main(['models', 'list']))"
    )
    assert listing.returncode == 0, listing.stderr
    assert f"models folder: {folder / 'mine'}" in listing.stdout


# --- the scripts ---------------------------------------------------------------------------------

SCRIPTS: Final = sorted(  # deploy/install.sh: tests/test_deploy.py
    [REPO / ".ci" / "run", *(path for path in (REPO / "scripts").iterdir() if path.is_file())]
)


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")

    assert readme.index("```sh") < readme.index("\n## ")  # before anything else
    assert commands == ["scripts/run", "scripts/test"]
    assert ci.rstrip().splitlines()[-1] == "scripts/test"  # exactly the README's test command


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_shellcheck_accepts_the_scripts(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
