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
    sp = start_serve(tmp_path / "srv", heartbeat=1)
    try:
        yield sp
    finally:
        sp.stop()


# Every test here runs on both stores: SQLite (the embedded default) and PostgreSQL (a fresh database on
# the session's server, tests/conftest.py). Servers the test starts use it (opamp_server_support.STORE).
@pytest.fixture(scope="module", params=["sqlite", "postgresql"], autouse=True)
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_cluster")  # skipped, with the reason, where PostgreSQL is missing
    return str(request.param)


@pytest.fixture(autouse=True)
def serve_store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    import opamp_server_support

    url = request.getfixturevalue("pg_cluster").create_database() if store_kind == "postgresql" else None
    opamp_server_support.STORE = url
    try:
        yield url
    finally:
        opamp_server_support.STORE = None
