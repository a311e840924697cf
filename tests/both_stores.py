"""Run every test of a directory on both stores: SQLite (the embedded default) and PostgreSQL (a fresh
database on the session's server, tests/conftest.py). A directory's conftest imports these two fixtures;
servers its tests start use the store (``opamp_server_support.STORE``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


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
