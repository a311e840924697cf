"""uvicorn's h11 protocol with one TCP write per response instead of two.

uvicorn writes the status line and headers as soon as ``http.response.start`` arrives and the body
separately, so every OpAMP reply (a few dozen bytes) costs two ``send()`` system calls and two loopback
segments. Under heartbeat load that doubles the kernel work per request. The wrapper below buffers
writes made in the same event-loop step and flushes them together on the next step (``call_soon``), so a
reply goes out as one segment. WebSocket upgrades get the real transport (frames are single writes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class _Cork:
    __slots__ = ("real", "_buf", "_loop", "_scheduled")

    def __init__(self, real: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.real = real
        self._buf: list[bytes] = []
        self._loop = loop
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._buf.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf.clear()
        if not self.real.is_closing():
            self.real.write(data)

    def close(self) -> None:
        self.flush()
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CorkedH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Cork(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def handle_websocket_upgrade(self, event: Any) -> None:
        cork = self.transport
        if isinstance(cork, _Cork):
            cork.flush()
            self.transport = cork.real
        super().handle_websocket_upgrade(event)
