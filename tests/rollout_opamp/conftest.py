"""Fixtures for staged rollouts on the OpAMP server (helpers in rollout_opamp_support.py beside this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "opamp_server"))

from opamp_server_support import ServeProcess, start_serve  # noqa: E402


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    sp = start_serve(tmp_path / "srv")
    try:
        yield sp
    finally:
        sp.stop()
