"""Shared test set-up: isolation from the user's config and data, determinism for snapshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
# are missing). Each test session starts its own cluster in a temporary directory, as the `postgres`
# user (PostgreSQL refuses to run as root), on a free loopback port; each test gets a fresh database.


def _pg_bindir() -> str | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return os.path.dirname(found[0])
    exe = shutil.which("pg_ctl")
    return os.path.dirname(os.path.realpath(exe)) if exe else None


class PgCluster:
    def __init__(self) -> None:
        import shutil
        import socket
        import subprocess
        import tempfile

        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server binaries (pg_ctl, initdb) are not installed")
        self.bindir = bindir
        self.base = tempfile.mkdtemp(prefix="otelcockpit-pg-")
        as_root = os.geteuid() == 0
        user = "postgres" if as_root else None
        if as_root:
            shutil.chown(self.base, "postgres", "postgres")
        self.user = user
        data = os.path.join(self.base, "data")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = data
        run = dict(check=True, capture_output=True, text=True, timeout=120)
        subprocess.run(
            [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            user=user, **run,
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        import subprocess

        subprocess.run(
            [f"{self.bindir}/pg_ctl", "-D", self.data, "-w", "-t", "60", "-l", os.path.join(self.base, "log"), "-o",
             f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
             "-c max_connections=300", "start"],
            user=self.user, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        import subprocess

        subprocess.run(
            [f"{self.bindir}/pg_ctl", "-D", self.data, "-w", "-m", mode, "stop"],
            user=self.user, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        import uuid

        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        import shutil

        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


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
