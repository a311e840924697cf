"""Running the fake: a uvicorn server in the foreground (the CLI) or in a thread (tests, demos)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.fm_fake.app import FakeServerApp


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8480")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--listen {text!r}: the port must be a number") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be between 0 and 65535")
    return host.strip("[]"), number


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a busy port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CockpitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(server_app: FakeServerApp, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        server_app.app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
    )


def bound_port(server: uvicorn.Server) -> int:
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no socket")


async def serve(
    server_app: FakeServerApp,
    host: str,
    port: int,
    on_start: Callable[[str], Awaitable[Any] | None] | None = None,
) -> None:
    """Serve until interrupted; ``on_start(base_url)`` runs once the socket is listening."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(server_app, host, port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            raise CockpitError(f"cannot listen on {host}:{port}: the server stopped while starting")
        await asyncio.sleep(0.02)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port(server)}"
    if on_start is not None:
        result = on_start(url)
        if asyncio.iscoroutine(result):
            await result
    await task


class ThreadedFakeServer:
    """The fake on 127.0.0.1 with an ephemeral port, in a background thread. A context manager."""

    def __init__(self, server_app: FakeServerApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server_app = server_app
        self.server = uvicorn.Server(_config(server_app, host, port))
        self.thread = threading.Thread(target=self.server.run, name="fm-fake", daemon=True)
        self.host = host
        self.url = ""

    @property
    def state(self):  # noqa: ANN201
        return self.server_app.state

    def start(self) -> ThreadedFakeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Fleet Management server did not start")
            time.sleep(0.01)
        self.url = f"http://{self.host}:{bound_port(self.server)}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ThreadedFakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
