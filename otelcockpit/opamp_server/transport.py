"""OpAMP transports on ``/v1/opamp``: plain HTTP (POST) and WebSocket, as one raw ASGI app.

A raw ASGI app (no framework routing) keeps the heartbeat path short and gives full control over
what the spec asks for:

- HTTP: ``POST``, ``Content-Type: application/x-protobuf`` (anything else 415), ``Content-Encoding:
  gzip`` accepted, 64 MiB limit after decompression (413), undecodable body 400, malformed message
  ``error_response`` BAD_REQUEST, response gzipped when ``Accept-Encoding`` allows it.
- WebSocket: binary frames ``0x00 varint header || protobuf``; a text frame closes the connection
  with 1003; an oversized message is closed with 1009 by the WebSocket layer (``ws_max_size``); one
  writer per connection (a lock); offers are pushed at once.
- Agent authentication (``--agent-tokens``): bearer or basic, 401 before any WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from otelcockpit.errors import ConfigError
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import Hub, Overloaded
from otelcockpit.opamp_server.proto import opamp_pb2 as pb

OPAMP_PATH = "/v1/opamp"
RETRY_AFTER_SECONDS = b"30"  # the spec's minimum recommended retry interval
MAX_MESSAGE = 64 * 1024 * 1024
CONTENT_TYPE = b"application/x-protobuf"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class TooLarge(Exception):
    pass


def load_agent_tokens(path: Path) -> frozenset[bytes]:
    """Accepted ``Authorization`` header values from a YAML file.

    ``tokens:`` is a list; each entry has ``token:`` (bearer) or ``username:`` and ``password:``
    (basic), and an optional ``name:``.
    """
    from otelcockpit.yamlio import load_yaml, where

    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list) or not data["tokens"]:
        raise ConfigError(
            f"{path}: expected 'tokens:' with a list of {{token: ...}} or {{username, password}}"
        )
    accepted: set[bytes] = set()
    for entry in data["tokens"]:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where(path, data)}: each entry of 'tokens' must be a mapping")
        if "token" in entry:
            token = entry["token"]
            if not isinstance(token, str) or not token:
                raise ConfigError(f"{where(path, entry)}: 'token' must be a non-empty string")
            accepted.add(f"Bearer {token}".encode())
        elif "username" in entry and "password" in entry:
            user, password = str(entry["username"]), str(entry["password"])
            if not user or ":" in user:
                raise ConfigError(f"{where(path, entry)}: 'username' must be non-empty and contain no ':'")
            creds = base64.b64encode(f"{user}:{password}".encode()).decode()
            accepted.add(f"Basic {creds}".encode())
        else:
            raise ConfigError(f"{where(path, entry)}: an entry needs 'token' or 'username' and 'password'")
    return frozenset(accepted)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def accepts_gzip(value: bytes | None) -> bool:
    """True when Accept-Encoding allows gzip (honours q=0)."""
    if not value:
        return False
    star = False
    for part in value.decode("latin-1").lower().split(","):
        bits = part.strip().split(";")
        coding = bits[0].strip()
        q = 1.0
        for p in bits[1:]:
            p = p.strip()
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return star


def gunzip_limited(data: bytes, limit: int = MAX_MESSAGE) -> bytes:
    """Decompress gzip (possibly several members) refusing output over ``limit`` bytes."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(wbits=31)
        out += d.decompress(data, limit + 1 - len(out))
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge
        if not d.eof:
            raise zlib.error("truncated gzip stream")
        data = d.unused_data
    return bytes(out)


def gzip_bytes(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31, 8)
    return c.compress(data) + c.flush()


def decode_ws_frame(data: bytes) -> bytes:
    """Strip the varint header (must be 0) of a WebSocket OpAMP message."""
    header = 0
    shift = 0
    for i, b in enumerate(data):
        header |= (b & 0x7F) << shift
        if not b & 0x80:
            if header != 0:
                raise ValueError(f"unsupported OpAMP WebSocket header {header}")
            return data[i + 1 :]
        shift += 7
        if shift > 63:
            break
    raise ValueError("missing OpAMP WebSocket header")


class WsConnection:
    """One WebSocket: all writes go through ``send`` under one lock (one writer at a time)."""

    __slots__ = ("_send", "_lock", "uids", "closed")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self.uids: set[bytes] = set()
        self.closed = False

    async def send(self, reply: pb.ServerToAgent) -> bool:
        """Send one message; False (and the connection counts as closed) when it cannot go out any
        more, e.g. after the keepalive closed the socket while the message was being handled."""
        data = b"\x00" + reply.SerializeToString()
        async with self._lock:
            if self.closed:
                return False
            try:
                await self._send({"type": "websocket.send", "bytes": data})
            except (OSError, RuntimeError):  # uvicorn: ClientDisconnected, or "after sending close"
                self.closed = True
                return False
            return True

    async def close(self, code: int, reason: str = "") -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
            except (OSError, RuntimeError):
                pass


_PLAIN_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


class OpAMPApp:
    def __init__(self, hub: Hub, agent_tokens: frozenset[bytes] | None = None) -> None:
        self.hub = hub
        self.agent_tokens = agent_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _authorized(self, scope: Scope) -> bool:
        if self.agent_tokens is None:
            return True
        value = _header(scope, b"authorization")
        return value is not None and value in self.agent_tokens

    # ---- plain HTTP ----

    @staticmethod
    async def _respond(
        send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        hs = list(headers) if headers is not None else list(_PLAIN_HEADERS)
        hs.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": hs})
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != OPAMP_PATH:
            await self._respond(send, 404, b"not found\n")
            return
        if not self._authorized(scope):
            await self._respond(
                send,
                401,
                b"unauthorized\n",
                [*_PLAIN_HEADERS, (b"www-authenticate", b'Bearer realm="opamp"')],
            )
            return
        if scope["method"] != "POST":
            await self._respond(
                send,
                405,
                b"use POST (plain HTTP) or a WebSocket upgrade\n",
                [*_PLAIN_HEADERS, (b"allow", b"POST")],
            )
            return
        content_type = _header(scope, b"content-type")
        if content_type is None or content_type.split(b";")[0].strip().lower() != CONTENT_TYPE:
            await self._respond(send, 415, b"Content-Type must be application/x-protobuf\n")
            return
        encoding = (_header(scope, b"content-encoding") or b"identity").strip().lower()
        if encoding not in (b"gzip", b"x-gzip", b"identity"):
            await self._respond(send, 415, b"Content-Encoding must be gzip or identity\n")
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_MESSAGE:
            await self._respond(send, 413, b"message larger than 64 MiB\n")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_MESSAGE:
                await self._respond(send, 413, b"message larger than 64 MiB\n")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if encoding != b"identity":
            try:
                body = gunzip_limited(body)
            except TooLarge:
                await self._respond(send, 413, b"message larger than 64 MiB after decompression\n")
                return
            except (zlib.error, EOFError):
                await self._respond(send, 400, b"bad gzip body\n")
                return
        try:
            msg = pb.AgentToServer.FromString(body)
        except (DecodeError, RuntimeError, ValueError):
            await self._respond(send, 400, b"undecodable AgentToServer\n")
            return
        try:
            reply = await self.hub.handle(msg, "http")
        except Overloaded:
            await self._respond(
                send,
                503,
                b"the server is saturated; retry later\n",
                [*_PLAIN_HEADERS, (b"retry-after", RETRY_AFTER_SECONDS)],
            )
            return
        except Exception as exc:  # the store refused or failed: nothing was acknowledged, retry later
            self.hub.errors.error(f"http:{msg.instance_uid.hex()}", "OpAMP HTTP message not handled", exc=exc)
            await self._respond(
                send,
                503,
                b"the server cannot take this message now; retry later\n",
                [*_PLAIN_HEADERS, (b"retry-after", RETRY_AFTER_SECONDS)],
            )
            return
        data = reply.SerializeToString()
        headers = [(b"content-type", CONTENT_TYPE)]
        if accepts_gzip(_header(scope, b"accept-encoding")):
            data = gzip_bytes(data)
            headers.append((b"content-encoding", b"gzip"))
        await self._respond(send, 200, data, headers)

    # ---- WebSocket ----

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != OPAMP_PATH or not self._authorized(scope):
            status = 404 if scope["path"] != OPAMP_PATH else 401
            if "websocket.http.response" in scope.get("extensions", {}):
                body = b"not found\n" if status == 404 else b"unauthorized\n"
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": status,
                        "headers": [*_PLAIN_HEADERS, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        conn = WsConnection(send)
        try:
            while True:
                message = await receive()
                mtype = message["type"]
                if mtype == "websocket.disconnect":
                    conn.closed = True
                    break
                if mtype != "websocket.receive":
                    continue
                data = message.get("bytes")
                if data is None:
                    await conn.close(1003, "OpAMP uses binary frames only")
                    break
                try:
                    msg = pb.AgentToServer.FromString(decode_ws_frame(data))
                except (DecodeError, RuntimeError, ValueError) as exc:
                    await conn.send(core.bad_request(b"", f"undecodable AgentToServer: {exc}"[:200]))
                    continue
                try:
                    reply = await self.hub.handle(msg, "ws", conn)
                except Overloaded as exc:
                    reply = core.unavailable(msg.instance_uid, str(exc))
                except Exception as exc:  # nothing was acknowledged: tell the agent to come back later
                    self.hub.errors.error(f"ws:{id(conn)}", "OpAMP WebSocket message not handled", exc=exc)
                    reply = core.unavailable(msg.instance_uid, "the server cannot take this message now")
                if not await conn.send(reply):
                    break
        finally:
            conn.closed = True
            await self.hub.connection_closed(conn)
