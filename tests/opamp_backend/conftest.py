"""Fixtures for the opamp backend tests: a real server with simulated agents (helpers beside this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opamp_backend_support import Server, start_server  # noqa: E402


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with 3 WS agents (seed 11), 3 HTTP agents (seed 12) and 2 WS agents that fail every
    config (seed 13, fail rate 1), heartbeating every second."""
    srv = start_server(tmp_path_factory.mktemp("opamp-backend"))
    try:
        srv.simulate(
            "--count", "3", "--transport", "ws", "--seed", "11", "--heartbeat", "1", "--apply-delay", "0.1"
        )
        srv.simulate(
            "--count", "3", "--transport", "http", "--seed", "12", "--heartbeat", "1", "--apply-delay", "0.1"
        )
        srv.simulate(
            "--count", "2", "--transport", "ws", "--seed", "13", "--heartbeat", "1", "--fail-rate", "1"
        )
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "srv")
    try:
        yield srv
    finally:
        srv.stop()
