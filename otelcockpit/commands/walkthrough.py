"""``otelcockpit walkthrough``: step through the four phases with the organisation's live numbers.

``--journey NAME`` picks the journey shown end to end (default: the least covered one);
``--export FILE`` writes the session as Markdown and exits without opening the TUI.
"""

from __future__ import annotations

import argparse
from typing import Any

from otelcockpit.errors import CockpitError, UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "walkthrough",
        parents=parents,
        help="a guided session: the four phases with live numbers, per-team eligibility, next actions",
    )
    p.add_argument(
        "--journey",
        metavar="NAME",
        help="the journey to show end to end (id or name; default: the least covered)",
    )
    p.add_argument(
        "--export", metavar="FILE", help="write the session as Markdown to FILE ('-' for stdout) and exit"
    )
    p.set_defaults(handler=run)


def _check_journey(settings: Any, name: str | None) -> None:
    """A bad --journey is a usage error before anything opens."""
    if not name:
        return
    from otelcockpit.adoption.cockpit import load_sources, resolve_sources

    _inventory, journeys, _conventions = load_sources(resolve_sources(settings))
    want = name.strip().lower()
    if not journeys:
        raise UsageError(f"--journey {name}: no journeys are defined (journeys.yaml)")
    if not any(want in (j.id.lower(), j.name.lower()) for j in journeys):
        raise UsageError(f"--journey {name}: no such journey (known: {', '.join(j.id for j in journeys)})")


async def build_markdown(settings: Any, backend: Any, *, journey: str | None) -> str:
    import asyncio

    from otelcockpit.adoption.cockpit import analyse_for, load_sources, resolve_sources
    from otelcockpit.adoption.walkthrough import build_slides, to_markdown

    snap = await backend.snapshot()

    def build() -> str:
        from otelcockpit.adoption.outage import load_record

        data = analyse_for(settings, snap, load_sources(resolve_sources(settings)))
        slides = build_slides(snap, data, journey=journey, drill=load_record(), full=True)
        return to_markdown(slides, title=f"OpenTelemetry rollout walkthrough · {settings.context.name}")

    return await asyncio.to_thread(build)


def run(args: argparse.Namespace) -> int:
    from otelcockpit.cli import settings_from

    settings = settings_from(args)
    _check_journey(settings, args.journey)
    if args.export:
        from otelcockpit.commands.common import run_with_backend

        async def go(settings: Any, backend: Any) -> str:
            return await build_markdown(settings, backend, journey=args.journey)

        text = run_with_backend(args, go)
        if args.export == "-":
            import sys

            sys.stdout.write(text)
            return 0
        try:
            with open(args.export, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise CockpitError(f"--export {args.export}: cannot write it: {exc.strerror or exc}") from None
        print(f"wrote the walkthrough ({text.count(chr(10) + '## ')} slides) to {args.export}")
        return 0
    from otelcockpit.tui.walkthrough import run_walkthrough

    return run_walkthrough(settings, journey=args.journey)
