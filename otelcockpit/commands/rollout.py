"""Staged configuration pushes: ``rollout plan|start|status|pause|resume|abort|rollback``,
``rollback``, ``changes``.

Every command calls the backend's rollout service (``otelcockpit.rollout.service``); none of them
knows where the engine runs. On the demo and Fleet Management it runs in this process and journals
every step (``rollouts.sqlite3`` in the data dir, or ``--journal FILE``): ``rollout start`` runs the
rollout until it completes or pauses, ``rollout resume ID`` continues it. On the OpAMP backend it
runs inside ``otelcockpit serve``: ``start`` and ``resume`` return at once (``--watch`` follows).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from otelcockpit.commands.common import add_json, print_json, print_table
from otelcockpit.errors import CockpitError, ReadOnlyError, UsageError


def _journal_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--journal", metavar="FILE", help="the rollout journal (default: rollouts.sqlite3 in the data dir)")


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", required=True, metavar="NAME", help="the pipeline to change")
    p.add_argument("--file", required=True, metavar="FILE", help="the new contents of the pipeline")
    p.add_argument(
        "--canary",
        metavar="SELECTOR|N|P%",
        help='first stage: matchers (region="eu-west-1"), N collectors or P%% (default: the context\'s, else 5%%)',
    )
    p.add_argument("--waves", metavar="P%,...", help="cumulative waves after the canary (default 25%%,100%%)")
    p.add_argument("--max-failures", metavar="N", help="pause when more collectors fail (default 0)")
    p.add_argument("--soak", metavar="DURATION", help="how long a collector must stay applied and healthy (default 1m)")
    p.add_argument("--apply-timeout", metavar="DURATION", help="time to report APPLIED before it counts as failed (5m)")
    p.add_argument("--manual", action="store_true", default=None, help="pause after every stage until `rollout resume ID`")
    p.add_argument("--no-health", action="store_true", help="do not fail collectors that turn unhealthy during the soak")
    p.add_argument(
        "--all-at-once",
        action="store_true",
        help="every collector in one stage, no canary (never the default; the plan says so)",
    )
    p.add_argument(
        "--missing-components",
        choices=("exclude", "block"),
        help="collectors in the blast radius that lack a component the new version uses (OpAMP AvailableComponents): "
        "leave them out of the plan, or refuse the push (default: the context's rollout_defaults, else block)",
    )
    p.add_argument("--poll", metavar="SECONDS", type=float, default=1.0, help="how often to observe the collectors (default 1)")
    _journal_arg(p)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rollout", parents=parents, help="staged configuration pushes (plan, start, status, ...)")
    rsub = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)

    q = rsub.add_parser("plan", parents=parents, help="the plan, blast radius, policy findings and diff (changes nothing)")
    _plan_args(q)
    q.add_argument("--no-diff", action="store_true", help="leave the diff out")
    add_json(q)
    q.set_defaults(handler=cmd_plan)

    q = rsub.add_parser("start", parents=parents, help="plan and run a staged rollout (refused in read-only)")
    _plan_args(q)
    q.add_argument("--yes", "--now", dest="yes", action="store_true", help="do not ask for confirmation (scripts)")
    q.add_argument("--watch", action="store_true", help="follow a rollout that runs in a server until it stops")
    add_json(q)
    q.set_defaults(handler=cmd_start)

    q = rsub.add_parser("status", parents=parents, help="rollouts, or one rollout's stages and failures")
    q.add_argument("id", nargs="?", help="a rollout id (default: list rollouts)")
    q.add_argument("--watch", action="store_true", help="refresh every 2 s until the rollout stops running")
    q.add_argument("--collectors", action="store_true", help="with --json: every collector's progress too")
    _journal_arg(q)
    add_json(q)
    q.set_defaults(handler=cmd_status)

    for name, helptext in (
        ("pause", "pause a rollout (whatever runs it stops at its next poll)"),
        ("resume", "resume a paused rollout (here until it completes or pauses, or in its server)"),
        ("abort", "abort: staged collectors go back to the live version, temporary parts are removed"),
    ):
        q = rsub.add_parser(name, parents=parents, help=helptext)
        q.add_argument("id", help="the rollout id")
        if name == "resume":
            q.add_argument("--poll", metavar="SECONDS", type=float, default=1.0, help="observation interval")
            q.add_argument("--watch", action="store_true", help="follow a rollout that runs in a server")
        _journal_arg(q)
        add_json(q)
        q.set_defaults(handler=cmd_control, action=name)

    q = rsub.add_parser("rollback", parents=parents, help="undo a rollout: its collectors go back to what ran before it")
    q.add_argument("id", help="the rollout id")
    q.add_argument("--now", "--yes", dest="now", action="store_true", help="do it without asking (scripts)")
    _journal_arg(q)
    add_json(q)
    q.set_defaults(handler=cmd_rollback_rollout)

    p = sub.add_parser("rollback", parents=parents, help="make a pipeline's rollback target (or --to REVISION) live")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--to", metavar="REVISION", help="the revision to return to (default: the last known good)")
    p.add_argument("--now", "--yes", dest="now", action="store_true", help="do it without asking (scripts)")
    _journal_arg(p)
    add_json(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("changes", parents=parents, help="every change: rollouts, rollbacks and pipeline revisions")
    p.add_argument("--since", metavar="DURATION", default="24h", help="how far back (default 24h; 0 for everything)")
    _journal_arg(p)
    add_json(p)
    p.set_defaults(handler=cmd_changes)


# ---- helpers -------------------------------------------------------------------------------------
def _with_rollouts(args: argparse.Namespace, fn: Any, *, write: str = "", confirmed: bool = True, flag: str = "") -> int:
    """Resolve settings (refusing a write in read-only mode, and a write without a terminal to ask in
    unless ``flag`` says it is confirmed), open the backend and its rollout service, run
    ``fn(settings, backend, rollouts)``, close everything."""
    from otelcockpit.backends import make_backend, rollouts_for
    from otelcockpit.cli import settings_from

    settings = settings_from(args)
    if write and settings.read_only:
        raise ReadOnlyError(f"read-only: refused to {write} (context {settings.context.name})")
    if write and not confirmed and not sys.stdin.isatty():
        raise CockpitError(f"refused: this asks for confirmation; pass {flag} when not in a terminal")
    poll = getattr(args, "poll", 1.0)
    if poll <= 0:
        raise UsageError("--poll must be more than zero seconds")

    async def go() -> int:
        backend = make_backend(settings)
        rollouts = None
        try:
            rollouts = rollouts_for(settings, backend, journal=getattr(args, "journal", None), poll_interval=poll)
            return int(await fn(settings, backend, rollouts))
        finally:
            if rollouts is not None:
                await rollouts.close()
            await backend.close()

    return asyncio.run(go())


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UsageError(f"--file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--file {path}: cannot read it: {exc}") from None


def _request(args: argparse.Namespace, settings: Any) -> Any:
    from otelcockpit.rollout.options import PlanOptions
    from otelcockpit.rollout.service import PushRequest

    options = PlanOptions(
        canary=args.canary,
        waves=args.waves,
        max_failures=args.max_failures,
        soak=args.soak,
        apply_timeout=args.apply_timeout,
        manual=args.manual,
        health_required=False if args.no_health else None,
        all_at_once=bool(args.all_at_once),
        missing_components=args.missing_components,
    )
    return PushRequest(
        args.pipeline,
        _read_file(args.file),
        options,
        author=settings.identity,
        production=bool(settings.context.production),
    )


def _refuse_unreadable(plan: Any, path: str) -> None:
    """A file that does not parse is a usage error naming file:line (exit 2), never a plan."""
    for f in plan.findings:
        if f.rule == "syntax":
            raise UsageError(f"{path}:{f.line or 1}: {f.message}")


def _counts_text(d: Any, limit: int = 6) -> str:
    items = list(d.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


def _print_plan(plan: Any, *, diff: bool = True) -> None:
    from otelcockpit.rollout.options import gates_text, plan_words

    br = plan.blast_radius
    print(f"pipeline {plan.pipeline}  live revision {plan.base_revision or '-'}  ({plan.new.config_type.value})")
    for line in plan_words(plan):
        print(f"plan: {line}")
    print(f"blast radius: {br.total} collector(s)" + (f"; {br.dropped} no longer matched" if br.dropped else ""))
    print(f"  by env:    {_counts_text(br.by_env) or '-'}")
    print(f"  by region: {_counts_text(br.by_region) or '-'}")
    rows = [
        (s.index + 1, s.name, len(s.collector_ids), _counts_text(s.by_env, 3), _counts_text(s.by_region, 3))
        for s in plan.stages
    ]
    print_table(("STAGE", "NAME", "COLLECTORS", "ENV", "REGION"), rows)
    print(f"gates: {gates_text(plan.gates)}")
    for i in plan.preflight.incompatible[:20]:
        verb = "left out" if plan.preflight.applied == "exclude" else "blocks"
        print(f"  {verb}: {i.name} ({i.id}) lacks {', '.join(i.missing)}")
    if len(plan.preflight.incompatible) > 20:
        print(f"  ... and {len(plan.preflight.incompatible) - 20} more (--json lists them all)")
    policy = [f for f in plan.findings if f.rule != "missing-component"]
    errors = sum(1 for f in policy if f.severity == "error")
    warnings = sum(1 for f in policy if f.severity == "warning")
    print(f"policy: {errors} error(s), {warnings} warning(s), {len(policy) - errors - warnings} info")
    for f in plan.findings:
        print(f"  line {f.line or '-'}: {f.severity}: {f.message} [{f.rule}]")
    if diff:
        print("diff:" if plan.diff else "diff: no change in the contents")
        if plan.diff:
            sys.stdout.write(plan.diff)


def _progress_line(view: Any) -> str:
    stage = next((s for s in view.stages if s.index == view.current_stage), None)
    head = f"{time.strftime('%H:%M:%S')} {view.id} {state_words(view.state.value)}"
    if stage is None:
        return head
    line = (
        f"{head} stage {stage.index + 1}/{len(view.stages)} {stage.name}: applied {stage.applied}/{stage.total}"
        f"  applying {stage.applying}  soaking {stage.soaking}  failed {stage.failed}"
    )
    if stage.held:
        line += f"  held {stage.held}"
    return line


def state_words(state: str) -> str:
    return state.replace("_", " ")


def _printer(json_mode: bool) -> Any:
    last = [""]

    def show(view: Any) -> None:
        if json_mode:
            return
        line = _progress_line(view)
        key = line.split(" ", 1)[1]
        if key != last[0]:
            last[0] = key
            print(line, flush=True)

    return show


def _confirm(prompt: str, expected: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip() == expected


def _ask(settings: Any, question: str) -> bool:
    """``question? [y/N]``; a production context asks for its name instead."""
    ctx = settings.context
    if ctx.production:
        return _confirm(f"context {ctx.name} is production: {question}: type its name (anything else cancels): ", ctx.name)
    return _confirm(f"{question}? [y/N] ", "y")


def _finish(settings: Any, backend: Any, view: Any, json_mode: bool) -> int:
    from otelcockpit.rollout.model import RolloutState

    if json_mode:
        print_json(view.as_json())
    else:
        print(f"rollout {view.id} {state_words(view.state.value)}" + (f": {view.reason}" if view.reason else ""))
        for f in view.failures[:20]:
            print(f"  {f.status.value} {f.collector_id} (stage {f.stage + 1}): {f.error}")
        if len(view.failures) > 20:
            print(f"  ... and {len(view.failures) - 20} more ({settings.command('rollout', 'status', view.id, '--json')})")
        if view.state == RolloutState.PAUSED and "ephemeral" in backend.capabilities:
            print("the demo fleet lives in this process only: this rollout ends here (start a new one to try again)")
        elif view.state == RolloutState.PAUSED:
            print(f"resume: {settings.command('rollout', 'resume', view.id)}")
            print(f"abort:  {settings.command('rollout', 'abort', view.id)}")
            print(f"undo:   {settings.command('rollout', 'rollback', view.id)}")
    return 0 if view.state in (RolloutState.COMPLETED, RolloutState.RUNNING, RolloutState.PLANNED) else 1


# ---- commands ------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        plan = await rollouts.plan(_request(args, settings))
        _refuse_unreadable(plan, args.file)
        if args.json:
            print_json(plan.as_json(ids=False) | ({} if not args.no_diff else {"diff": None}))
        else:
            _print_plan(plan, diff=not args.no_diff)
        return 0

    return _with_rollouts(args, go)


def cmd_start(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        req = _request(args, settings)
        plan = await rollouts.plan(req)
        _refuse_unreadable(plan, args.file)
        if not args.json:
            _print_plan(plan, diff=not args.yes)
        plan.check_startable()
        if not args.yes and not _ask(settings, f"start the rollout of {plan.pipeline} to {plan.collector_count} collector(s)"):
            print("cancelled")
            return 1
        view = await rollouts.start(req, reviewed=plan)
        if not args.json:
            where = "in the server at " + settings.url if rollouts.runs_in_background else "here"
            print(f"rollout {view.id} started {where} by {settings.identity}", flush=True)
        if rollouts.runs_in_background and not args.watch:
            if args.json:
                print_json(view.as_json())
            else:
                print(f"follow: {settings.command('rollout', 'status', view.id, '--watch')}")
                print(f"pause:  {settings.command('rollout', 'pause', view.id)}")
            return 0
        view = await rollouts.follow(view.id, _printer(args.json))
        return _finish(settings, backend, view, args.json)

    return _with_rollouts(
        args, go, write=f"start a rollout of {args.pipeline}", confirmed=args.yes, flag="--yes"
    )


def _status_rows(views: list[Any]) -> list[tuple[Any, ...]]:
    from otelcockpit.fleet.model import age_text, utcnow

    now = utcnow()
    return [
        (
            v.id,
            v.pipeline,
            v.backend,
            state_words(v.state.value),
            f"{min(v.current_stage + 1, len(v.stages))}/{len(v.stages)}",
            f"{sum(s.applied for s in v.stages)}/{sum(s.total for s in v.stages)}",
            v.failed,
            age_text(v.created_at, now),
            v.author or "-",
            v.reason,
        )
        for v in views
    ]


def cmd_status(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        from otelcockpit.rollout.model import RolloutState

        if not args.id:
            views = await rollouts.list(every_context=True)
            if args.json:
                print_json({"rollouts": [v.as_json() for v in views]})
            elif not views:
                print("no rollouts yet")
            else:
                print_table(
                    ("ID", "PIPELINE", "BACKEND", "STATE", "STAGE", "APPLIED", "FAILED", "AGE", "BY", "REASON"),
                    _status_rows(views),
                )
            return 0
        while True:
            view = await rollouts.view(args.id)
            if args.json:
                collectors = await rollouts.progress(args.id) if args.collectors else None
                print_json(view.as_json(collectors=collectors))
            else:
                _print_view(view)
            if not args.watch or view.state != RolloutState.RUNNING:
                return 0
            await asyncio.sleep(2.0)
            if not args.json:
                print()

    return _with_rollouts(args, go)


def _print_view(view: Any) -> None:
    from otelcockpit.fleet.model import rfc3339

    print(f"rollout {view.id}  pipeline {view.pipeline}  backend {view.backend}  context {view.context or '-'}")
    print(f"state {state_words(view.state.value)}" + (f": {view.reason}" if view.reason else ""))
    print(f"by {view.author or '-'}  created {rfc3339(view.created_at)}  updated {rfc3339(view.updated_at)}")
    print(
        f"base revision {view.plan.base_revision or '-'}  result revision {view.result_revision or '-'}  "
        f"rollback target {view.rollback_revision or '-'}"
    )
    rows = []
    for s in view.stages:
        width = 20
        filled = int(width * s.finished / s.total) if s.total else width
        bar = "#" * filled + "." * (width - filled)
        rows.append((s.index + 1, s.name, s.state, f"[{bar}]", s.total, s.pending, s.applying, s.soaking, s.applied, s.failed, s.held))
    print_table(("STAGE", "NAME", "STATE", "PROGRESS", "TOTAL", "PENDING", "APPLYING", "SOAKING", "APPLIED", "FAILED", "HELD"), rows)
    if view.failures:
        print("failures:")
        for f in view.failures[:50]:
            print(f"  {f.status.value} {f.collector_id} (stage {f.stage + 1}): {f.error}")


def cmd_control(args: argparse.Namespace) -> int:
    action = args.action

    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        fn = {"pause": rollouts.pause, "resume": rollouts.resume, "abort": rollouts.abort}[action]
        result = await fn(args.id, settings.identity)
        view = result.view
        if action == "resume" and (not rollouts.runs_in_background or getattr(args, "watch", False)):
            if not args.json:
                print(result.message, flush=True)
            view = await rollouts.follow(args.id, _printer(args.json))
            return _finish(settings, backend, view, args.json)
        if args.json:
            print_json({"message": result.message, "rollout": view.as_json()})
        else:
            print(result.message)
            print(f"rollout {args.id} is {state_words(view.state.value)}" + (f": {view.reason}" if view.reason else ""))
        return 0

    return _with_rollouts(args, go, write=f"{action} rollout {args.id}")


def _rollback(args: argparse.Namespace, make_plan: Any, what: str) -> int:
    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        plan = await make_plan(rollouts)
        if not args.json:
            print(plan.describe())
        if not args.now and not _ask(settings, f"roll {plan.pipeline} back to revision {plan.target_revision}"):
            print("cancelled")
            return 1
        result = await rollouts.rollback(plan, settings.identity)
        if args.json:
            print_json(result.as_json())
        else:
            print(result.message())
        return 0

    return _with_rollouts(args, go, write=what, confirmed=args.now, flag="--now")


def cmd_rollback(args: argparse.Namespace) -> int:
    return _rollback(args, lambda r: r.rollback_plan(args.pipeline, args.to), f"roll back {args.pipeline}")


def cmd_rollback_rollout(args: argparse.Namespace) -> int:
    return _rollback(args, lambda r: r.rollback_plan_for(args.id), f"roll back rollout {args.id}")


def cmd_changes(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from otelcockpit.fleet.model import rfc3339, utcnow
    from otelcockpit.rollout.model import parse_duration

    window = parse_duration(args.since, "--since")

    async def go(settings: Any, backend: Any, rollouts: Any) -> int:
        since = utcnow() - timedelta(seconds=window) if window > 0 else None
        entries = await rollouts.changes(since)
        if args.json:
            print_json({"since": rfc3339(since), "changes": [e.as_json() for e in entries]})
            return 0
        if not entries:
            print(f"no changes since {rfc3339(since) if since else 'ever'}")
            return 0
        rows = [
            (rfc3339(e.at), e.kind, e.pipeline or "-", e.author or "-", e.scope or "-", e.rollback_target or "-", e.message)
            for e in entries
        ]
        print_table(("TIME", "KIND", "PIPELINE", "BY", "SCOPE", "ROLLBACK TO", "MESSAGE"), rows)
        return 0

    return _with_rollouts(args, go)
