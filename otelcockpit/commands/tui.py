"""The TUI entry point (``otelcockpit`` with no subcommand)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tui", parents=parents, help="open the cockpit (the default)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from otelcockpit.cli import settings_from

    settings = settings_from(args)
    from otelcockpit.tui.app import run_app

    view = getattr(args, "view", None)
    if view is None:
        return run_app(settings)
    return run_app(settings, initial_view=view, explicit_view=True)
