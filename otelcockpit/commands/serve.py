"""``otelcockpit serve``: the OpAMP server (agents on :4320) and its admin API (127.0.0.1:4321)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        parents=parents,
        help="run the OpAMP server that collectors and SDK agents connect to",
        description=(
            "OpAMP over plain HTTP (POST /v1/opamp) and WebSocket (same path), with a JSON admin API "
            "under /api/v1 on its own listener. State is kept in SQLite."
        ),
    )
    p.add_argument(
        "--listen", default="0.0.0.0:4320", metavar="HOST:PORT", help="OpAMP listener (default 0.0.0.0:4320)"
    )
    p.add_argument(
        "--admin-listen",
        default="127.0.0.1:4321",
        metavar="HOST:PORT",
        help="admin API listener (default 127.0.0.1:4321)",
    )
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite file (default: opamp.db in the data dir)")
    p.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help="admin API tokens YAML (default: tokens.yaml in the data dir; created on first start)",
    )
    p.add_argument(
        "--agent-tokens",
        type=Path,
        metavar="FILE",
        help="YAML of accepted agent credentials (bearer or basic)",
    )
    p.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="TLS certificate (PEM) for the OpAMP listener"
    )
    p.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="TLS private key (PEM) for the OpAMP listener"
    )
    p.add_argument(
        "--heartbeat-seconds",
        type=_positive,
        default=30,
        metavar="N",
        help="expected agent heartbeat/poll interval; silent for 3 intervals means offline (default 30)",
    )
    p.add_argument(
        "--stuck-applying-seconds",
        type=_positive,
        default=60,
        metavar="N",
        help="an agent that reconnects still APPLYING a config offered N seconds ago or more is offered it "
        "once more (default 60)",
    )
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from otelcockpit import settings
    from otelcockpit.opamp_server.server import Options, serve

    data = settings.data_dir()
    options = Options(
        listen=args.listen,
        admin_listen=args.admin_listen,
        db=args.db or data / "opamp.db",
        tokens=args.tokens or data / "tokens.yaml",
        agent_tokens=args.agent_tokens,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        heartbeat_seconds=args.heartbeat_seconds,
        stuck_applying_seconds=float(args.stuck_applying_seconds),
    )
    try:
        import uvloop  # optional: a faster event loop for 10,000 connections
    except ImportError:
        uvloop = None
    try:
        if uvloop is not None:
            return uvloop.run(serve(options))
        return asyncio.run(serve(options))
    except KeyboardInterrupt:
        return 0
