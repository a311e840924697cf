"""``otelcockpit drill outage``: rehearse a fleet-API outage during a scale-out.

On the demo fleet by default (in this process, on a simulated clock: instant), or with ``--serve``
against a scratch ``otelcockpit serve`` and ``simulate-agents`` processes it starts, stops and starts
again on loopback (real time: ``--outage`` is how long the server stays down). Every step prints what
the cockpit sees (:func:`otelcockpit.adoption.outage.outage_report`) and whether its counts match what
the drill caused. The record is written for the walkthrough's drill slide.

Exit codes: 0 the counts were exact at every step and everything converged; 1 they were not (or the
lab failed); 2 a usage error (bad flag, a backend the drill cannot stop).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelcockpit.commands.common import add_json, print_json, share, whole_number
from otelcockpit.errors import CockpitError, UsageError

_COUNT = whole_number(1, 5000)






def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drill", parents=parents, help="rehearse a failure before it happens (drill outage)")
    dsub = p.add_subparsers(dest="drill_command", metavar="DRILL", required=True)
    q = dsub.add_parser(
        "outage",
        parents=parents,
        help="the fleet API goes away while the fleet scales out: what do the new collectors run, and what do they send?",
    )
    q.add_argument(
        "--serve",
        action="store_true",
        help="run it against a scratch `otelcockpit serve` and simulated agents (real processes, real time) "
        "instead of the demo fleet",
    )
    q.add_argument("--scale-out", type=_COUNT, default=10, metavar="N", help="collectors that start during the outage (default 10)")
    q.add_argument(
        "--without-cache",
        type=share,
        default=0.4,
        metavar="R",
        help="share of them without a cached remote config: they start on their bootstrap config (default 0.4)",
    )
    q.add_argument("--outage", default="3m", metavar="DURATION", help="how long the fleet API is away (default 3m)")
    q.add_argument("--collectors", type=_COUNT, default=20, metavar="N", help="with --serve: agents running before (default 20)")
    q.add_argument("--transport", choices=("ws", "http"), default="ws", help="with --serve: how the agents connect (default ws)")
    q.add_argument("--workdir", metavar="DIR", help="with --serve: keep the lab here (database, agents' caches, logs)")
    q.add_argument("--group", default="alloy-prod-euw1-node", metavar="PREFIX", help="on the demo: the group that scales out")
    q.add_argument("--record", metavar="FILE", help="write the drill's record here (default: drills/outage-latest.json in the data dir)")
    add_json(q)
    q.set_defaults(handler=cmd_outage)


def _print_step(s: Any) -> None:
    mark = "ok" if s.exact else "MISMATCH"
    print(f"[{s.name}] +{s.at_seconds:.1f}s {s.what}", flush=True)
    for line in s.report.get("lines") or ():
        print(f"    {line}")
    if s.refused:
        print(f"    push refused: {s.refused}")
    shown = ", ".join(f"{k} {s.observed.get(k)}/{v}" for k, v in s.expected.items())
    print(f"    counts (seen/caused): {shown}: {mark}", flush=True)


def cmd_outage(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile
    from pathlib import Path

    from otelcockpit.adoption.outage import save_record
    from otelcockpit.cli import settings_from
    from otelcockpit.drill import DrillOptions
    from otelcockpit.rollout.model import parse_duration

    outage = parse_duration(args.outage, "--outage")
    if outage <= 0:
        raise UsageError("--outage must be more than zero")
    settings = settings_from(args)
    if not args.serve and settings.backend != "demo":
        raise UsageError(
            f"the drill stops the fleet API: it runs on the demo fleet or, with --serve, on a scratch server it starts "
            f"itself; it will not stop the {settings.backend} backend of context {settings.context.name}"
        )
    for flag, given in (("--workdir", args.workdir), ("--transport", args.transport != "ws"), ("--collectors", args.collectors != 20)):
        if given and not args.serve:
            raise UsageError(f"{flag} goes with --serve (on the demo, --demo-collectors sets the fleet's size)")
    options = DrillOptions(
        scale_out=args.scale_out, without_cache=args.without_cache, outage_seconds=outage, seed=settings.demo_seed
    )
    show = None if args.json else _print_step

    async def go() -> Any:
        if not args.serve:
            from otelcockpit.drill.demo import run_demo_drill

            return await run_demo_drill(options, collectors=settings.demo_collectors, prefix=args.group, on_step=show)
        from otelcockpit.drill.serve import run_serve_drill

        def ready(lab: Any) -> None:
            if not args.json:
                print(
                    f"lab: OpAMP on {lab.opamp_url}, admin API on {lab.admin_url} (token in {lab.workdir / 'tokens.yaml'});\n"
                    f"     watch it: OTELCOCKPIT_OPAMP_TOKEN=<that token> otelcockpit --source opamp --url {lab.admin_url}",
                    flush=True,
                )

        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
            return await run_serve_drill(
                options, work, collectors=args.collectors, transport=args.transport, on_ready=ready, on_step=show
            )
        with tempfile.TemporaryDirectory(prefix="otelcockpit-drill-") as tmp:
            return await run_serve_drill(
                options, Path(tmp), collectors=args.collectors, transport=args.transport, on_ready=ready, on_step=show
            )

    try:
        record = asyncio.run(go())
    except KeyboardInterrupt:
        print("drill interrupted", file=sys.stderr)
        return 1
    path = save_record(record, args.record)
    ok = record.exact and record.converged_after_seconds is not None
    if args.json:
        print_json({**record.as_json(), "record": str(path), "passed": ok})
    else:
        print()
        for line in record.summary():
            print(line)
        print(f"record: {path}")
    if not ok:
        raise CockpitError("drill failed: " + ("the cockpit's counts did not match at every step" if not record.exact else "the collectors did not converge"))
    return 0
