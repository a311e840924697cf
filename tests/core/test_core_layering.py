"""The layering DESIGN.md fixes, checked two ways: what a process really loads, and what files import.

- Nothing outside ``otelcockpit/tui/`` imports textual; a non-TUI subcommand loads no textual module.
- ``fleet``, ``adoption``, ``policy`` and ``rollout`` import no backend, no server, no HTTP library.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import otelcockpit

PKG = Path(otelcockpit.__file__).resolve().parent
CORE_PACKAGES = ("fleet", "adoption", "policy", "rollout")
CORE_FORBIDDEN = (
    "textual",
    "httpx",
    "starlette",
    "uvicorn",
    "websockets",
    "otelcockpit.backends",
    "otelcockpit.opamp_server",
    "otelcockpit.fm_fake",
    "otelcockpit.tui",
)
# Libraries a non-TUI command must not pay for at start-up (import them inside handlers).
HEAVY = ("textual", "httpx", "starlette", "uvicorn", "websockets")


def existing_core_packages() -> tuple[list[str], list[str]]:
    present = [p for p in CORE_PACKAGES if (PKG / p / "__init__.py").is_file()]
    missing = [p for p in CORE_PACKAGES if p not in present]
    return present, missing


def run_python(code: str, config_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTELCOCKPIT_")}
    env["OTELCOCKPIT_CONFIG"] = str(config_dir / "config.yaml")  # no user config
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60
    )


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_core_packages_load_no_backend_server_http_or_textual(tmp_path: Path) -> None:
    present, missing = existing_core_packages()
    assert "fleet" in present
    proc = run_python(
        f"""
        import importlib, json, pkgutil, sys
        for name in {present!r}:
            pkg = importlib.import_module("otelcockpit." + name)
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                importlib.import_module(info.name)
        print(json.dumps(sorted(sys.modules)))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "otelcockpit.fleet.matchers" in modules
    assert loaded(modules, CORE_FORBIDDEN) == []
    if missing:
        print(f"not built yet, skipped: {', '.join(missing)}")


def test_a_non_tui_subcommand_loads_no_textual(tmp_path: Path) -> None:
    present, _ = existing_core_packages()
    proc = run_python(
        f"""
        import contextlib, importlib, io, json, sys
        for name in {present!r}:
            importlib.import_module("otelcockpit." + name)
        import otelcockpit.cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = otelcockpit.cli.main(["status", "--json", "--demo-collectors", "50"])
        print(json.dumps({{"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}}))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["code"] == 0 and json.loads(result["out"])["total"] == 50
    assert "otelcockpit.commands.fleet" in result["modules"]
    assert loaded(result["modules"], ("textual",)) == []
    assert loaded(result["modules"], HEAVY) == [], "import heavy libraries inside handlers, not at module top"


def test_textual_is_importable_so_these_checks_mean_something(tmp_path: Path) -> None:
    # The check above would pass trivially if textual were never importable; make sure it is.
    proc = run_python("import textual, sys; print('textual' in sys.modules)", tmp_path)
    assert proc.stdout.strip() == "True", proc.stderr


# --- static: what the files import ---------------------------------------------------------------


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def imports_in(text: str, here: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module a file imports (absolute names; relative imports resolved), with line numbers."""
    tree = ast.parse(text)
    package = here if is_package else here.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out.extend((node.lineno, f"{mod}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def hits(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PKG.parent)}:{line} imports {mod}"
        for line, mod in imports_of(path)
        if any(mod == p or mod.startswith(p + ".") for p in prefixes)
    ]


def package_files(*, exclude: tuple[str, ...] = ()) -> list[Path]:
    return [
        p
        for p in sorted(PKG.rglob("*.py"))
        if not any(p.is_relative_to(PKG / e) for e in exclude) and "_pb2" not in p.name
    ]


def test_static_nothing_outside_tui_imports_textual() -> None:
    files = package_files(exclude=("tui",))
    assert PKG / "cli.py" in files
    bad = [h for f in files for h in hits(f, ("textual",))]
    assert bad == []


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_static_core_packages_import_no_backend_server_or_http(package: str) -> None:
    root = PKG / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else []
    if not files:
        pytest.skip(f"otelcockpit/{package}/ has no Python file yet")
    bad = [h for f in files for h in hits(f, CORE_FORBIDDEN)]
    assert bad == []


def test_the_import_scanner_sees_relative_and_dynamic_imports() -> None:
    text = (
        "from ..backends import demo\n"
        "from . import matchers\n"
        "import importlib\n"
        "def f():\n"
        "    import textual.app\n"
        "    importlib.import_module('httpx')\n"
    )
    mods = [m for _, m in imports_in(text, "otelcockpit.fleet.sample", False)]
    assert {"otelcockpit.backends", "otelcockpit.backends.demo", "otelcockpit.fleet.matchers"} <= set(mods)
    assert "textual.app" in mods and "httpx" in mods  # imports inside functions count too
    assert [m for _, m in imports_in("from .model import X\n", "otelcockpit.fleet", True)][
        0
    ] == "otelcockpit.fleet.model"


def test_no_snapshot_or_fixture_names_a_path_of_this_machine():
    """Snapshots are compared on other machines: they must not embed where this checkout lives."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    checkout = str(root)
    for folder in (root / "tests" / "tui" / "__snapshots__", root / "fixtures"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert checkout not in path.read_text(errors="replace"), path.relative_to(root)
