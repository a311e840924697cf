"""Fixtures for staged rollouts on the OpAMP server (helpers in rollout_opamp_support.py beside this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import both_stores
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "opamp_server"))

from opamp_server_support import ServeProcess, start_serve  # noqa: E402


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    sp = start_serve(tmp_path / "srv", heartbeat=1)
    try:
        yield sp
    finally:
        sp.stop()


# Every test here runs on both stores (tests/both_stores.py).
store_kind = both_stores.store_kind
serve_store = both_stores.serve_store
