"""A real PostgreSQL server in a temporary directory, for the tests and the benchmarks.

It runs as the ``postgres`` user when started as root (PostgreSQL refuses to run as root), on a free
loopback port. The tests run it without fsync (their data is thrown away); the benchmarks ask for a
``durable`` one (fsync and full page writes on, PostgreSQL's defaults), so its figures compare with a
SQLite file that syncs.
"""

from __future__ import annotations

import os


def _pg_bindir() -> str | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return os.path.dirname(found[0])
    exe = shutil.which("pg_ctl")
    return os.path.dirname(os.path.realpath(exe)) if exe else None


class PgCluster:
    def __init__(self, *, durable: bool = False) -> None:
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
        self.durable = durable
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
             f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
             + ("" if self.durable else " -c fsync=off -c full_page_writes=off"), "start"],
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


