"""The README's steps underneath: build the wheel, install it in a fresh venv, run the entry point.

The wheel must carry ``themes/`` and ``fixtures/`` (as ``otelcockpit/_data/...``) so an installed
cockpit runs its demo without a checkout. To stay fast and offline, the fresh venv is created
without pip, the wheel goes in with ``--no-deps``, and a ``.pth`` line lends it the dependencies
already installed in the environment running the tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import otelcockpit

CHECKOUT = Path(otelcockpit.__file__).resolve().parent.parent
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "fixtures").is_dir()

pytestmark = pytest.mark.skipif(not IN_CHECKOUT, reason="needs the source checkout (pyproject.toml)")


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def data_files(folder: str) -> list[str]:
    root = CHECKOUT / folder
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("hatchling") is None:
        pytest.fail(
            "hatchling is not installed: add it to the dev extras (the wheel is built without isolation)"
        )
    out = tmp_path_factory.mktemp("dist")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(CHECKOUT),
        ],
        cwd=out,
    )
    wheels = list(out.glob("otelcockpit-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_themes_and_fixtures(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("themes", "fixtures"):
        files = data_files(folder)
        assert files, f"{folder}/ is empty in the checkout"
        missing = [f for f in files if f"otelcockpit/_data/{folder}/{f}" not in names]
        assert missing == [], f"not in the wheel: {missing}"
    assert "otelcockpit/_data/fixtures/demo/fleet.yaml" in names
    assert "otelcockpit/cli.py" in names and "otelcockpit/fleet/matchers.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^otelcockpit = otelcockpit\.cli:main$", text, re.M), text
    assert not any(n.startswith(("tests/", "bench/", ".venv/")) for n in names)


def test_fresh_install_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(
        run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ]
    )
    # Lend the dependencies of this environment (appended after the venv's own site-packages, so the
    # freshly installed otelcockpit wins over any editable install there).
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (purelib / "zz_borrowed_deps.pth").write_text("".join(f"{d}\n" for d in borrowed))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOCKPIT_", "PYTHON", "VIRTUAL_ENV"))}
    env["OTELCOCKPIT_CONFIG"] = str(tmp_path / "config" / "config.yaml")
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    exe = bindir / ("otelcockpit.exe" if os.name == "nt" else "otelcockpit")
    assert exe.is_file(), "the console script was not installed"

    version = run([str(exe), "--version"], cwd=elsewhere, env=env)
    assert version.stdout.strip() == f"otelcockpit {otelcockpit.__version__}"

    where = run(
        [
            str(py),
            "-c",
            "import otelcockpit, otelcockpit.resources as r; print(otelcockpit.__file__); "
            "print(r.demo_dir()); print(r.themes_dir())",
        ],
        cwd=elsewhere,
        env=env,
    ).stdout.splitlines()
    assert all(Path(line).is_relative_to(venv) for line in where), where
    assert Path(where[1]) == purelib / "otelcockpit" / "_data" / "fixtures" / "demo"

    status = run([str(exe), "status", "--json", "--demo-collectors", "120"], cwd=elsewhere, env=env)
    data = json.loads(status.stdout)
    assert data["backend"] == "demo" and data["total"] == 120 and data["pipelines"] >= 1
    assert status.stderr == ""


def test_readme_starts_with_the_two_commands() -> None:
    text = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    assert first_block, "README has no code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make demo", "make test"], commands
    makefile = (CHECKOUT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo:", "test:", "bench:"):
        assert re.search(rf"^{target}", makefile, re.M), target
