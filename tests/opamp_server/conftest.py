"""Fixtures for the OpAMP server tests (helpers live in opamp_server_support.py beside this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import both_stores
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opamp_server_support import ServeProcess, start_serve  # noqa: E402


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    sp = start_serve(tmp_path / "srv")
    try:
        yield sp
    finally:
        sp.stop()


@pytest.fixture(scope="module")
def shared_serve(tmp_path_factory: pytest.TempPathFactory, store_kind: str, request: pytest.FixtureRequest) -> Iterator[ServeProcess]:
    import opamp_server_support

    before = opamp_server_support.STORE
    if store_kind == "postgresql":
        opamp_server_support.STORE = request.getfixturevalue("pg_cluster").create_database()
    try:
        sp = start_serve(tmp_path_factory.mktemp("shared"))
    finally:
        opamp_server_support.STORE = before
    try:
        yield sp
    finally:
        sp.stop()


# Every test here runs on both stores (tests/both_stores.py).
store_kind = both_stores.store_kind
serve_store = both_stores.serve_store
