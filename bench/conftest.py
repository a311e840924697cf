"""Benchmarks: slow, run by `make bench` (pytest -m slow bench). Figures go to BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark neither reads the developer's config nor writes their data dir (a session state
    saved by one run would change what the next one measures)."""
    home = tmp_path_factory.mktemp("bench-home")
    monkeypatch.setenv("OTELCOCKPIT_CONFIG", str(home / "config.yaml"))
    monkeypatch.setenv("OTELCOCKPIT_DATA_DIR", str(home / "data"))


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@pytest.fixture
def record(request: pytest.FixtureRequest):  # noqa: ANN201
    """record(name, **figures): print the figures and keep them in bench/results/<test>.json."""

    def _record(**figures: object) -> None:
        RESULTS.mkdir(exist_ok=True)
        data = {"test": request.node.nodeid, "machine": machine(), **figures}
        (RESULTS / f"{request.node.name}.json").write_text(json.dumps(data, indent=2, default=str))
        print("\n" + json.dumps(data, indent=2, default=str))

    return _record
