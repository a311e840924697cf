"""Shared test set-up: isolation from the user's config and data, determinism for snapshots."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

# tests/waits.py (wait_until) and tests/pgcluster.py are importable from every test module.
sys.path.insert(0, str(Path(__file__).parent))
from pgcluster import PgCluster  # noqa: E402

FROZEN = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's config file or writes into their data dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("OTELCOCKPIT_CONFIG", str(home / "config.yaml"))
    monkeypatch.setenv("OTELCOCKPIT_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for var in ("FLEET_MANAGEMENT_INSTANCE_ID", "FLEET_MANAGEMENT_TOKEN", "OTELCOCKPIT_OPAMP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def frozen_clock():  # noqa: ANN201
    return lambda: FROZEN


@pytest.fixture
def config_file() -> Path:
    return Path(os.environ["OTELCOCKPIT_CONFIG"])


# ---- a real PostgreSQL server for the store tests ------------------------------------------------
# The machine image has PostgreSQL's server binaries (`make test` installs Debian's postgresql where they
# are missing). Each test session starts its own cluster (tests/pgcluster.py); each test gets a fresh
# database.


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster()
    except Exception as exc:  # noqa: BLE001 - say why, once, and skip what needs it
        pytest.skip(f"no PostgreSQL server for the store tests: {exc}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return pg_cluster.create_database()
