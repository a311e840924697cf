"""Run the OpAMP listener and the admin API listener in one process (``otelcockpit serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import ssl
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from otelcockpit.errors import CockpitError, ConfigError, UsageError
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.admin import build_admin_app, ensure_tokens_file, load_tokens
from otelcockpit.opamp_server.corked import CorkedH11Protocol
from otelcockpit.opamp_server.hub import Hub
from otelcockpit.opamp_server.store import SchemaError, open_store
from otelcockpit.opamp_server.transport import MAX_MESSAGE, OpAMPApp, load_agent_tokens


@dataclass
class Options:
    listen: str = "0.0.0.0:4320"
    admin_listen: str = "127.0.0.1:4321"
    db: Path = Path("opamp.db")
    tokens: Path = Path("tokens.yaml")
    agent_tokens: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    heartbeat_seconds: int = core.DEFAULT_HEARTBEAT_SECONDS
    offer_heartbeat: bool = True  # ConnectionSettingsOffers.opamp.heartbeat_interval_seconds
    stuck_applying_seconds: float = core.DEFAULT_SETTINGS.stuck_applying_after
    store: str | None = None  # postgresql://... (several nodes) or a SQLite path; None: ``db``
    node: str | None = None  # this node's name (default: host:port of the OpAMP listener)
    max_agents: int = 30_000  # new agents beyond this are told to come back later (overload)
    forget_offline_hours: float = core.DEFAULT_SETTINGS.forget_offline_after / 3600  # 0: never


def parse_address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{flag}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind(host: str, port: int, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise CockpitError(f"{flag} {host}:{port}: address already in use") from None
        raise CockpitError(f"{flag} {host}:{port}: cannot listen: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _redacted(target: str) -> str:
    if target.startswith(("postgresql://", "postgres://")):
        from otelcockpit.opamp_server.store_pg import redact

        return redact(target)
    return target


GC_FREEZE_SECONDS = 1.0
GC_FULL_SECONDS = 1800.0


async def gc_maintenance(
    freeze_every: float = GC_FREEZE_SECONDS, full_every: float = GC_FULL_SECONDS
) -> None:
    """Keep Python's cyclic GC from stalling the event loop with 10,000 live connections.

    Each WebSocket connection holds a few hundred GC-tracked objects (uvicorn and websockets protocol
    state, asyncio futures, the agent's state). An automatic full (generation 2) collection then scans
    millions of objects and stops the loop for about a second, which shows up directly as heartbeat
    round-trip spikes. Every ``freeze_every`` seconds the young generations are collected (cheap:
    only the last second's objects) and the survivors are moved to the permanent generation
    (``gc.freeze()``, constant time), so automatic collections only ever scan recent objects; every
    ``full_every`` seconds one full collection (after ``gc.unfreeze()``) reclaims any cycles that were
    frozen meanwhile (closed connections), so nothing leaks for longer than that.
    """
    gc.freeze()
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every)
        if time.monotonic() - last_full >= full_every:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        else:
            gc.collect(1)
        gc.freeze()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (``serve`` handles SIGINT/SIGTERM for both listeners)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _check_tls(options: Options) -> ssl.SSLContext | None:
    if (options.tls_cert is None) != (options.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if options.tls_cert is None or options.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(options.tls_cert, options.tls_key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: cannot load {options.tls_cert} / {options.tls_key}: {exc}") from None
    return ctx


async def serve(options: Options) -> int:
    if options.heartbeat_seconds < 1:
        raise UsageError("--heartbeat-seconds must be at least 1")
    opamp_host, opamp_port = parse_address(options.listen, "--listen")
    admin_host, admin_port = parse_address(options.admin_listen, "--admin-listen")
    _check_tls(options)
    agent_tokens = load_agent_tokens(options.agent_tokens) if options.agent_tokens else None
    created = ensure_tokens_file(options.tokens)
    tokens = load_tokens(options.tokens)
    opamp_sock = bind(opamp_host, opamp_port, "--listen")
    try:
        admin_sock = bind(admin_host, admin_port, "--admin-listen")
    except CockpitError:
        opamp_sock.close()
        raise
    target = options.store or str(options.db)
    try:
        store = open_store(target)
    except SchemaError as exc:
        opamp_sock.close()
        admin_sock.close()
        raise ConfigError(str(exc)) from None
    except Exception as exc:
        opamp_sock.close()
        admin_sock.close()
        what = "--store" if options.store else "--db"
        raise CockpitError(f"{what} {_redacted(target)}: cannot open: {_one_line(exc)}") from None
    node = options.node or f"{socket.gethostname()}:{opamp_sock.getsockname()[1]}"
    if hasattr(store, "node"):
        store.node = node  # type: ignore[attr-defined]
    await store.start()
    settings = core.Settings(
        heartbeat_seconds=options.heartbeat_seconds,
        offer_heartbeat=options.offer_heartbeat,
        stuck_applying_after=options.stuck_applying_seconds,
        max_agents=options.max_agents,
        forget_offline_after=options.forget_offline_hours * 3600.0,
    )
    try:
        hub = Hub(store, settings, node=node)
    except Exception as exc:
        await store.aclose()
        raise CockpitError(f"{store.where}: cannot load: {_one_line(exc)}") from None
    await hub.start()
    from otelcockpit.opamp_server.rollout_routes import CLUSTER_STALE_SECONDS, ServerRollouts
    from otelcockpit.rollout.journal import Journal

    try:
        journal = Journal(
            store.where,
            db=store.journal_db(),
            stale_after=CLUSTER_STALE_SECONDS if store.shared else 30.0,
            recover_interrupted=not store.shared,
            host=f"{socket.gethostname()}/{node}" if store.shared else None,
        )
        rollouts = ServerRollouts(hub, journal, cluster=store.shared)
    except CockpitError:
        await hub.stop()
        await store.aclose()
        raise
    await rollouts.start()
    cluster = None
    tls = {}
    if options.tls_cert and options.tls_key:
        tls = {"ssl_certfile": str(options.tls_cert), "ssl_keyfile": str(options.tls_key)}
    opamp_config = uvicorn.Config(
        OpAMPApp(hub, agent_tokens),
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_max_size=MAX_MESSAGE,
        ws="websockets-sansio",
        http=CorkedH11Protocol,
        h11_max_incomplete_event_size=1024 * 1024,
        timeout_keep_alive=120,
        backlog=2048,
        **tls,
    )
    admin_config = uvicorn.Config(
        build_admin_app(hub, tokens, rollouts=rollouts),
        lifespan="off",
        log_level="warning",
        access_log=False,
        # longer than clients' pool expiry (httpx: 5 s), so a client never reuses a connection the
        # server is closing at that very moment ("server disconnected without sending a response")
        timeout_keep_alive=30,
    )
    servers = [_Server(opamp_config), _Server(admin_config)]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    scheme = "https" if tls else "http"
    ws_scheme = "wss" if tls else "ws"
    op_port = opamp_sock.getsockname()[1]
    ad_port = admin_sock.getsockname()[1]
    if store.shared:
        from otelcockpit.opamp_server.cluster import Cluster

        cluster = Cluster(
            hub,
            store,
            opamp_url=f"{scheme}://{opamp_host}:{op_port}/v1/opamp",
            admin_url=f"http://{admin_host}:{ad_port}/api/v1",
            rollouts=rollouts,
        )
        await cluster.start()
    if created:
        print(f"otelcockpit serve: created {options.tokens} with a new write token", flush=True)
    print(
        f"otelcockpit serve: OpAMP on {scheme}://{opamp_host}:{op_port}/v1/opamp "
        f"and {ws_scheme}://{opamp_host}:{op_port}/v1/opamp; admin API on http://{admin_host}:{ad_port}/api/v1 "
        f"(tokens: {options.tokens}; store: {store.where}; node: {node})",
        flush=True,
    )
    gc_task = asyncio.create_task(gc_maintenance())
    try:
        await asyncio.gather(
            servers[0].serve(sockets=[opamp_sock]),
            servers[1].serve(sockets=[admin_sock]),
        )
    finally:
        gc_task.cancel()
        gc.unfreeze()
        if cluster is not None:
            await cluster.stop()
        await rollouts.stop()
        await hub.stop()
        await store.aclose()
        print("otelcockpit serve: stopped", file=sys.stderr, flush=True)
    return 0
