"""`otelcockpit web`: the same cockpit in a browser, through textual-serve. Read-only unless --write."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from otelcockpit.errors import UsageError

PASS_THROUGH = ("context", "source", "url", "demo_collectors", "demo_seed", "theme", "inventory")
APPS = ("cockpit", "incident", "walkthrough")


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("web", parents=parents, help="serve the cockpit to a browser (read-only unless --write)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--write", action="store_true", help="allow mutating actions (off by default in the browser)")
    p.add_argument("--public-url", help="the URL browsers use, when behind a proxy")
    p.add_argument(
        "--app",
        choices=APPS,
        default="cockpit",
        help="what each browser tab runs: the cockpit (default), the incident view (always read-only) "
        "or the walkthrough",
    )
    p.set_defaults(handler=run)


def app_command(args: argparse.Namespace) -> str:
    """The command each browser session runs: this cockpit, with the same global options."""
    parts = [sys.executable, "-m", "otelcockpit"]
    for dest in PASS_THROUGH:
        value = getattr(args, dest, None)
        if value is not None:
            parts += [f"--{dest.replace('_', '-')}", str(value)]
    if not args.write or getattr(args, "read_only", False):
        parts.append("--read-only")
    app = getattr(args, "app", "cockpit")
    if app != "cockpit":
        parts.append(app)
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, not {args.port}")
    # Resolve settings now so a bad context or config fails here, in one line, not in every browser tab.
    from otelcockpit.cli import settings_from

    settings_from(args)
    from otelcockpit.tui.web import serve

    command = app_command(args)
    writable = args.write and not getattr(args, "read_only", False) and args.app == "cockpit"
    mode = "read-write" if writable else "read-only"
    print(f"otelcockpit web ({mode}) on http://{args.host}:{args.port}  (each browser tab runs: {command})", flush=True)
    serve(command, host=args.host, port=args.port, public_url=args.public_url)
    return 0
