"""``otelcockpit serve``: the OpAMP server (agents on :4320) and its admin API (127.0.0.1:4321)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from otelcockpit.commands.common import whole_number


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        parents=parents,
        help="run the OpAMP server that collectors and SDK agents connect to",
        description=(
            "OpAMP over plain HTTP (POST /v1/opamp) and WebSocket (same path), with a JSON admin API "
            "under /api/v1 on its own listener. State is kept in SQLite, or in PostgreSQL shared by several nodes (--store)."
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
        "--store",
        metavar="URL",
        help="postgresql://USER:PASSWORD@HOST/DB: several nodes share it (default: the SQLite file of --db)",
    )
    p.add_argument("--node", metavar="NAME", help="this node's name (default: HOST:PORT of --listen)")
    p.add_argument(
        "--max-agents",
        type=whole_number(1),
        metavar="N",
        help="agents this node takes; more are told to come back later (default 30000)",
    )
    p.add_argument(
        "--forget-offline-hours",
        type=whole_number(0),
        metavar="H",
        help="forget an agent offline this long, with its history (default 168: a week; 0: never)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML with any of these settings (listen, admin_listen, db, store, tokens, agent_tokens, "
        "tls_cert, tls_key, heartbeat_seconds, offer_heartbeat, stuck_applying_seconds, node, max_agents, "
        "forget_offline_hours); "
        "flags win",
    )
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
        type=whole_number(1),
        metavar="N",
        help="the heartbeat/poll interval offered to agents that report heartbeats (ConnectionSettings); "
        "an agent silent for 3 of its own intervals is offline (default 30)",
    )
    p.add_argument(
        "--no-heartbeat-offer",
        dest="offer_heartbeat",
        action="store_false",
        default=None,
        help="do not offer the heartbeat interval to agents (each is still judged by its own measured one)",
    )
    p.add_argument(
        "--stuck-applying-seconds",
        type=whole_number(1),
        metavar="N",
        help="an agent that reconnects still APPLYING a config offered N seconds ago or more is offered it "
        "once more (default 60)",
    )
    p.set_defaults(handler=cmd_serve)


CONFIG_KEYS = {
    "listen": str,
    "admin_listen": str,
    "db": Path,
    "store": str,
    "tokens": Path,
    "agent_tokens": Path,
    "tls_cert": Path,
    "tls_key": Path,
    "heartbeat_seconds": int,
    "offer_heartbeat": bool,
    "stuck_applying_seconds": int,
    "node": str,
    "max_agents": int,
    "forget_offline_hours": int,
}
ZERO_ALLOWED = frozenset({"forget_offline_hours"})  # 0 means never


def load_serve_config(path: Path) -> dict[str, Any]:
    """The serve config file: the flags' settings as YAML keys (a bad one is one line, exit 2)."""
    from otelcockpit.errors import ConfigError
    from otelcockpit.yamlio import load_yaml, where

    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the serve config must be a mapping ({', '.join(CONFIG_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = CONFIG_KEYS.get(str(key))
        if kind is None:
            raise ConfigError(f"{where(path, data)}: unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})")
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where(path, data)}: {key} must be true or false")
            out[str(key)] = value
        elif kind is int:
            least = 0 if key in ZERO_ALLOWED else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{where(path, data)}: {key} must be a whole number of at least {least}")
            out[str(key)] = value
        elif isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            out[str(key)] = kind(str(value))
        else:
            raise ConfigError(f"{where(path, data)}: {key} must be text")
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from otelcockpit import settings
    from otelcockpit.opamp_server.server import Options, serve

    conf = load_serve_config(args.config) if args.config else {}

    def pick(flag: str, default: Any = None) -> Any:
        value = getattr(args, flag, None)
        if value is not None and value != PARSER_DEFAULTS.get(flag):
            return value
        return conf.get(flag, value if value is not None else default)

    data = settings.data_dir()
    options = Options(
        listen=pick("listen", "0.0.0.0:4320"),
        admin_listen=pick("admin_listen", "127.0.0.1:4321"),
        db=pick("db") or data / "opamp.db",
        tokens=pick("tokens") or data / "tokens.yaml",
        agent_tokens=pick("agent_tokens"),
        tls_cert=pick("tls_cert"),
        tls_key=pick("tls_key"),
        heartbeat_seconds=pick("heartbeat_seconds", 30),
        offer_heartbeat=bool(pick("offer_heartbeat", True)),
        stuck_applying_seconds=float(pick("stuck_applying_seconds", 60)),
        store=pick("store"),
        node=pick("node"),
        max_agents=pick("max_agents", 30_000),
        forget_offline_hours=pick("forget_offline_hours", 168),
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


PARSER_DEFAULTS = {"listen": "0.0.0.0:4320", "admin_listen": "127.0.0.1:4321"}
