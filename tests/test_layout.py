"""The layout keeps its promises: a pure core, and modules a reader can hold in their head."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parent.parent / "assistant"
CORE: Final = PACKAGE / "core"
TESTS: Final = PACKAGE.parent / "tests"

FORBIDDEN_IN_CORE: Final = (
    # concurrency, sockets and I/O loops belong to the runtime
    "asyncio",
    "threading",
    "_thread",
    "concurrent",
    "multiprocessing",
    "socket",
    "selectors",
    "ssl",
    "http",
    "urllib.request",
    # vendors belong to the adapters and mqtt/
    "paho",
    "sounddevice",
    "onnxruntime",
    "openwakeword",
    "openai",
    "httpx",
    "httpx2",
    "piper",
    "numpy",  # nothing in the core needs it: audio arithmetic lives in the adapters
    # the rooms around the core: it may use assistant.config and assistant.errors only
    "assistant.runtime",
    "assistant.adapters",
    "assistant.mqtt",
    "assistant.service",
    "assistant.cli",
    "assistant.__main__",
)

MAX_LINES: Final = 450
"""A generous guard over STYLE.md's "keep modules under ~400 lines"."""
TOO_LONG_FOR_NOW: Final[frozenset[str]] = frozenset()
"""Modules (relative to assistant/) allowed over MAX_LINES while someone splits them: keep empty."""


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, package: str) -> list[tuple[int, str]]:
    """Every module ``source`` imports, anywhere in it: top level, functions, TYPE_CHECKING blocks.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a module); relative imports are
    resolved against ``package``; ``importlib.import_module("x")`` and ``__import__("x")`` count
    as importing ``x``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.append((node.lineno, str(first.value)))
    return found


def _package_of(path: Path) -> str:
    """The package that relative imports in ``path`` start from."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _forbidden(module: str) -> str | None:
    for banned in FORBIDDEN_IN_CORE:
        if module == banned or module.startswith(banned + "."):
            return banned
    return None


def _offending_imports(folder: Path, offence: Callable[[str], str | None]) -> list[str]:
    """``path:line imports module (why)`` for every import under ``folder`` that ``offence``
    objects to (it returns why, or None)."""
    modules = _modules(folder)
    assert len(modules) > 5, f"found only {modules} under {folder}: is the walk broken?"
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} ({why})"
        for path in modules
        for line, name in _imported(path.read_text(encoding="utf-8"), _package_of(path))
        if (why := offence(name)) is not None
    ]


def test_the_core_imports_no_io_vendor_or_outer_package() -> None:
    offenders = _offending_imports(CORE, _forbidden)
    assert not offenders, "the core must stay pure (STYLE.md §2):\n" + "\n".join(offenders)


def test_the_import_walk_sees_every_kind_of_import() -> None:
    """The checker itself: a forbidden import in any of these forms is caught."""
    source = """
import os, asyncio.events
from threading import Lock
from paho.mqtt import client
from assistant import mqtt
from .. import runtime
from ..adapters.speaker import Speaker
def later() -> None:
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor
    importlib.import_module("sounddevice")
if TYPE_CHECKING:
    from assistant.service.serve import serve
"""
    names = {name for _, name in _imported(source, "assistant.core")}
    caught = {_forbidden(name) for name in names} - {None}
    assert caught == {
        "asyncio",
        "threading",
        "paho",
        "assistant.mqtt",
        "assistant.runtime",
        "assistant.adapters",
        "numpy",
        "concurrent",
        "sounddevice",
        "assistant.service",
    }
    assert _package_of(CORE / "intents" / "__init__.py") == "assistant.core.intents"
    assert _package_of(CORE / "machine.py") == "assistant.core"
    assert _forbidden("os") is None
    assert _forbidden("assistant.config") is None
    assert _forbidden("assistant.core.ports") is None
    assert _forbidden("httpx2") == "httpx2"
    assert _forbidden("paholike") is None


def test_every_module_is_short_enough() -> None:
    modules = _modules(PACKAGE)
    assert len(modules) > 20, f"found only {len(modules)} modules under {PACKAGE}"
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules
    }
    offenders = sorted(
        f"assistant/{name}: {count} lines"
        for name, count in lengths.items()
        if count > MAX_LINES and name not in TOO_LONG_FOR_NOW
    )
    assert not offenders, f"modules over {MAX_LINES} lines; split them:\n" + "\n".join(offenders)
    stale = sorted(name for name in TOO_LONG_FOR_NOW if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, f"remove from TOO_LONG_FOR_NOW, they are short now: {stale}"


def _harness_offence(module: str) -> str | None:
    """Why a test module may not import ``module``: bench/ builds on tests/support/, never the
    other way round; shared helpers live in tests/support/, not in conftest.py."""
    if module == "bench" or module.startswith("bench."):
        return "move what the test needs from bench/ to tests/support/"
    if module in ("conftest", "tests.conftest") or module.startswith("tests.conftest."):
        return "import helpers from tests/support/; conftest.py only provides fixtures"
    return None


def test_the_tests_import_neither_bench_nor_conftest() -> None:
    offenders = _offending_imports(TESTS, _harness_offence)
    assert not offenders, "\n".join(offenders)
    names = {name for _, name in _imported("from bench.soak import soak\nimport conftest", "tests")}
    assert {_harness_offence(name) for name in names} - {None}  # the check itself
    assert _harness_offence("tests.support.soak") is None
    assert _harness_offence("benchmark") is None
