"""``otelcockpit incident``: what is broken, what changed before it broke, what to roll back to.

Always read-only (whatever the context or flags say). ``--json`` prints the report and exits;
without it the incident screen opens.
"""

from __future__ import annotations

import argparse
from typing import Any

from otelcockpit.commands.common import add_json, positive_number, print_json
from otelcockpit.errors import UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "incident",
        parents=parents,
        help="read-only incident view: what is broken, what changed before it broke, rollback commands",
    )
    p.add_argument(
        "--hours",
        type=positive_number("a number of hours"),
        default=24.0,
        metavar="N",
        help="show changes of the last N hours (default 24)",
    )
    p.add_argument(
        "--journal", metavar="FILE", help="the rollout journal (default: rollouts.sqlite3 in the data dir)"
    )
    add_json(p)
    p.set_defaults(handler=run)


def read_only_settings(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from otelcockpit.cli import settings_from

    return replace(settings_from(args), read_only=True)


def _journal_path(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from otelcockpit.rollout.journal import default_path

    if getattr(args, "journal", None):
        path = Path(args.journal).expanduser()
        if not path.exists():
            raise UsageError(f"--journal {args.journal}: no such file")
        return path
    path = default_path()
    return path if path.exists() else None


async def collect_report(
    settings: Any, backend: Any, *, hours: float, journal_path: Any, now: Any = None
) -> Any:
    """Read the backend and the rollout records (never writing) and build the incident report."""
    from otelcockpit.backends import all_revisions, rollouts_for
    from otelcockpit.fleet.model import utcnow
    from otelcockpit.rollout.incident import report_for

    snap = await backend.snapshot()
    revisions = await all_revisions(backend, snap)
    rollouts = rollouts_for(settings, backend, journal=str(journal_path) if journal_path else None)
    try:
        return await report_for(
            settings, snap, revisions, hours=hours, now=now or utcnow(), rollouts=rollouts, backend=backend
        )
    finally:
        await rollouts.close()


def run(args: argparse.Namespace) -> int:
    settings = read_only_settings(args)
    journal_path = _journal_path(args)
    if args.json:
        import asyncio

        from otelcockpit.backends import make_backend

        async def go() -> Any:
            backend = make_backend(settings)
            try:
                return await collect_report(settings, backend, hours=args.hours, journal_path=journal_path)
            finally:
                await backend.close()

        report = asyncio.run(go())
        print_json(report.as_json())
        return 0
    from otelcockpit.tui.incident import run_incident

    return run_incident(settings, hours=args.hours, journal_path=journal_path)
