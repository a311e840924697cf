"""Staged configuration pushes: ``rollout plan|start|status|pause|resume|abort``, ``rollback``, ``changes``.

The engine runs in the process that starts or resumes a rollout and journals every step in
SQLite (``rollouts.sqlite3`` in the data dir, or ``--journal FILE``). A rollout whose process
died shows as paused; ``rollout resume ID`` continues it. The demo fleet lives in memory, so a
demo rollout runs to completion (or to its pause) inside ``rollout start``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
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
    p.add_argument("--canary", metavar="SELECTOR|N|P%", help='first stage: matchers (region="eu-west-1"), N collectors or P%%')
    p.add_argument("--waves", metavar="P%,...", default="100%", help="cumulative waves after the canary (default 100%%)")
    p.add_argument("--max-failures", metavar="N", default="0", help="pause when more collectors fail (default 0)")
    p.add_argument("--soak", metavar="DURATION", default="0s", help="how long a collector must stay applied and healthy (30s, 5m)")
    p.add_argument("--apply-timeout", metavar="DURATION", default="5m", help="time to report APPLIED before it counts as failed")
    p.add_argument("--manual", action="store_true", help="pause after every stage until `rollout resume ID` (explicit continue)")
    p.add_argument("--no-health", action="store_true", help="do not fail collectors that turn unhealthy during the soak")
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
    q.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    q.add_argument("--watch", action="store_true", help="opamp: follow the rollout (it runs in the server) until it stops")
    add_json(q)
    q.set_defaults(handler=cmd_start)

    q = rsub.add_parser("status", parents=parents, help="rollouts in the journal, or one rollout's stages and failures")
    q.add_argument("id", nargs="?", help="a rollout id (default: list rollouts)")
    q.add_argument("--watch", action="store_true", help="refresh every 2 s until the rollout stops running")
    q.add_argument("--collectors", action="store_true", help="with --json: every collector's progress too")
    _journal_arg(q)
    add_json(q)
    q.set_defaults(handler=cmd_status)

    for name, helptext in (
        ("pause", "pause a rollout (the process running it stops at its next poll)"),
        ("resume", "resume a paused rollout and run it here until it completes or pauses"),
        ("abort", "abort: staged collectors go back to the live version, temporary parts are removed"),
    ):
        q = rsub.add_parser(name, parents=parents, help=helptext)
        q.add_argument("id", help="the rollout id")
        if name == "resume":
            q.add_argument("--poll", metavar="SECONDS", type=float, default=1.0, help="observation interval")
            add_json(q)
        _journal_arg(q)
        q.set_defaults(handler=cmd_control, action=name)

    p = sub.add_parser("rollback", parents=parents, help="make a pipeline's rollback target (or --to REVISION) live")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--to", metavar="REVISION", help="the revision to return to (default: the last known good)")
    p.add_argument("--now", action="store_true", help="do it without asking (scripts)")
    _journal_arg(p)
    add_json(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("changes", parents=parents, help="every change: rollouts, rollbacks and pipeline revisions")
    p.add_argument("--since", metavar="DURATION", default="24h", help="how far back (default 24h; 0 for everything)")
    _journal_arg(p)
    add_json(p)
    p.set_defaults(handler=cmd_changes)


# ---- helpers -------------------------------------------------------------------------------------
def _author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not an error
        return os.environ.get("USER", "")


def _open_journal(args: argparse.Namespace) -> Any:
    from otelcockpit.rollout.journal import Journal, default_path

    return Journal(args.journal or default_path())


def _refuse_read_only(settings: Any, what: str) -> None:
    if settings.read_only:
        raise ReadOnlyError(f"read-only: refused to {what} (context {settings.context.name})")


def _writable_settings(args: argparse.Namespace, what: str, *, confirmed: bool, flag: str, command: str) -> Any:
    """Settings for a mutating command: refused in read-only mode, and refused without a terminal to
    ask in unless ``flag`` (--yes, --now) says it is confirmed."""
    from otelcockpit.cli import settings_from

    settings = settings_from(args)
    _refuse_read_only(settings, what)
    if not confirmed and not sys.stdin.isatty():
        raise CockpitError(f"refused: {command} asks for confirmation; pass {flag} when not in a terminal")
    return settings


def _gates(args: argparse.Namespace) -> Any:
    from otelcockpit.rollout.model import Gates, parse_count, parse_duration

    return Gates(
        max_failures=parse_count(args.max_failures, "--max-failures"),
        soak_seconds=parse_duration(args.soak, "--soak"),
        health_required=not args.no_health,
        apply_timeout=parse_duration(args.apply_timeout, "--apply-timeout") or 1.0,
        manual=bool(args.manual),
    )


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UsageError(f"--file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--file {path}: cannot read it: {exc}") from None


async def _make_plan(args: argparse.Namespace, settings: Any, backend: Any) -> tuple[Any, Any]:
    from dataclasses import replace

    from otelcockpit.rollout.model import parse_canary, parse_waves
    from otelcockpit.rollout.planner import make_plan

    canary = parse_canary(args.canary)
    waves = parse_waves(args.waves)
    gates = _gates(args)
    if args.poll <= 0:
        raise UsageError("--poll must be more than zero seconds")
    contents = _read_file(args.file)
    snap = await backend.snapshot()
    if snap.stale:
        raise CockpitError(f"refused: the fleet data is stale ({snap.stale_reason})")
    live = snap.pipeline(args.pipeline)
    if live is None:
        names = ", ".join(p.name for p in snap.pipelines[:8])
        raise UsageError(f"no pipeline {args.pipeline!r} on {snap.backend} (known: {names}); create it first")
    revisions = snap.revisions.get(args.pipeline) or await backend.revisions(args.pipeline)
    base_revision = revisions[-1].id if revisions else ""
    new = replace(live, contents=contents, created_at=None, updated_at=None)
    plan = make_plan(
        snap,
        new,
        canary=canary,
        waves=waves,
        gates=gates,
        base_revision=base_revision,
        production=bool(settings.context.production),
    )
    return plan, revisions


def _counts_text(d: Any, limit: int = 6) -> str:
    items = list(d.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


def _print_plan(plan: Any, *, diff: bool = True) -> None:
    from otelcockpit.rollout.model import duration_text

    br = plan.blast_radius
    g = plan.gates
    print(f"pipeline {plan.pipeline}  live revision {plan.base_revision or '-'}  ({plan.new.config_type.value})")
    print(f"blast radius: {br.total} collector(s)" + (f"; {br.dropped} no longer matched" if br.dropped else ""))
    print(f"  by env:    {_counts_text(br.by_env) or '-'}")
    print(f"  by region: {_counts_text(br.by_region) or '-'}")
    rows = [
        (s.index + 1, s.name, len(s.collector_ids), _counts_text(s.by_env, 3), _counts_text(s.by_region, 3))
        for s in plan.stages
    ]
    print_table(("STAGE", "NAME", "COLLECTORS", "ENV", "REGION"), rows)
    print(
        f"gates: max failures {g.max_failures}, soak {duration_text(g.soak_seconds)}, apply timeout "
        f"{duration_text(g.apply_timeout)}, health {'required' if g.health_required else 'ignored'}"
        + (", explicit continue after every stage" if g.manual else "")
    )
    errors = sum(1 for f in plan.findings if f.severity == "error")
    warnings = sum(1 for f in plan.findings if f.severity == "warning")
    print(f"policy: {errors} error(s), {warnings} warning(s), {len(plan.findings) - errors - warnings} info")
    for f in plan.findings:
        print(f"  line {f.line or '-'}: {f.severity}: {f.message} [{f.rule}]")
    if diff:
        print("diff:" if plan.diff else "diff: no change in the contents")
        if plan.diff:
            sys.stdout.write(plan.diff)


def _progress_line(view: Any) -> str:
    stage = next((s for s in view.stages if s.index == view.current_stage), None)
    head = f"{time.strftime('%H:%M:%S')} {view.id} {view.state.value}"
    if stage is None:
        return head
    line = (
        f"{head} stage {stage.index + 1}/{len(view.stages)} {stage.name}: applied {stage.applied}/{stage.total}"
        f"  applying {stage.applying}  soaking {stage.soaking}  failed {stage.failed}"
    )
    if stage.held:
        line += f"  held {stage.held}"
    return line


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


def _finish(view: Any, json_mode: bool) -> int:
    from otelcockpit.rollout.model import RolloutState

    if json_mode:
        print_json(view.as_json())
    else:
        print(f"rollout {view.id} {view.state.value}: {view.reason}")
        for f in view.failures[:20]:
            print(f"  {f.status.value} {f.collector_id} (stage {f.stage + 1}): {f.error}")
        if len(view.failures) > 20:
            print(f"  ... and {len(view.failures) - 20} more (rollout status {view.id} --json)")
        if view.state == RolloutState.PAUSED and view.backend == "demo":
            print("the demo fleet lives in this process only: this rollout ends here (start a new one to try again)")
        elif view.state == RolloutState.PAUSED:
            print(f"resume: otelcockpit rollout resume {view.id}   abort: otelcockpit rollout abort {view.id}")
    return 0 if view.state == RolloutState.COMPLETED else 1


def _engine(journal: Any, target: Any, args: argparse.Namespace, json_mode: bool) -> Any:
    from otelcockpit.rollout.engine import RolloutEngine

    return RolloutEngine(journal, target, poll_interval=getattr(args, "poll", 1.0), on_progress=_printer(json_mode))


def _run(args: argparse.Namespace, fn: Any, **kwargs: Any) -> Any:
    from otelcockpit.commands.common import run_with_backend

    return run_with_backend(args, fn, **kwargs)


# ---- commands ------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    if _opamp(args):
        return opamp_plan(args)

    async def go(settings: Any, backend: Any) -> int:
        plan, _ = await _make_plan(args, settings, backend)
        if args.json:
            print_json(plan.as_json(ids=False) | ({} if not args.no_diff else {"diff": None}))
        else:
            _print_plan(plan, diff=not args.no_diff)
        return 0

    return _run(args, go)


def cmd_start(args: argparse.Namespace) -> int:
    settings = _writable_settings(
        args, f"start a rollout of {args.pipeline}", confirmed=args.yes, flag="--yes", command="rollout start"
    )
    if settings.backend == "opamp":
        return opamp_start(args, settings)

    async def go(settings: Any, backend: Any) -> int:
        from otelcockpit.rollout.history import pipeline_target
        from otelcockpit.rollout_targets import make_target

        target = make_target(backend)
        plan, revisions = await _make_plan(args, settings, backend)
        if not _go_ahead(args, settings, plan, "collector"):
            print("cancelled")
            return 1
        journal = _open_journal(args)
        try:
            if settings.backend == "demo":
                _forget_gone_demo_rollouts(journal, plan.pipeline)
            with_target = pipeline_target(journal, plan.pipeline, revisions)
            engine = _engine(journal, target, args, args.json)
            rid = engine.create(
                plan,
                backend=settings.backend,
                context=settings.context.name,
                author=_author(),
                rollback_revision=with_target.revision.id if with_target.revision else "",
            )
            if not args.json:
                print(f"rollout {rid} started (journal {journal.path})", flush=True)
            view = await engine.run(rid)
            return _finish(view, args.json)
        finally:
            journal.close()

    return _run(args, go)


def _forget_gone_demo_rollouts(journal: Any, pipeline: str) -> None:
    """Demo rollouts left paused by earlier processes can never resume (their fleet is gone)."""
    from otelcockpit.rollout.model import RolloutState

    for rec in journal.active_for(pipeline):
        if rec.backend == "demo" and not journal.runner_alive(rec):
            journal.set_state(rec.id, RolloutState.ABORTED, "aborted: the demo fleet it ran on is gone")


def _status_rows(records: list[Any], journal: Any) -> list[tuple[Any, ...]]:
    from otelcockpit.fleet.model import age_text, utcnow
    from otelcockpit.rollout.engine import build_view

    now = utcnow()
    rows = []
    for rec in records:
        v = build_view(journal, rec, failures=0)
        applied = sum(s.applied for s in v.stages)
        total = sum(s.total for s in v.stages)
        rows.append(
            (
                rec.id,
                rec.pipeline,
                rec.backend,
                rec.state.value,
                f"{rec.current_stage + 1}/{len(rec.plan.stages)}",
                f"{applied}/{total}",
                v.failed,
                age_text(rec.created, now),
                rec.author or "-",
                rec.reason[:60],
            )
        )
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    from otelcockpit.rollout.engine import build_view
    from otelcockpit.rollout.model import RolloutState

    if _opamp(args):
        return opamp_status(args)
    journal = _open_journal(args)
    try:
        if not args.id:
            records = journal.list()
            if args.json:
                print_json({"rollouts": [build_view(journal, r, failures=20).as_json() for r in records]})
            elif not records:
                print(f"no rollouts in {journal.path}")
            else:
                print_table(
                    ("ID", "PIPELINE", "BACKEND", "STATE", "STAGE", "APPLIED", "FAILED", "AGE", "AUTHOR", "REASON"),
                    _status_rows(records, journal),
                )
            return 0
        while True:
            rec = journal.require(args.id)
            view = build_view(journal, rec)
            if args.json:
                collectors = list(journal.load_progress(rec.id).values()) if args.collectors else None
                print_json(view.as_json(collectors=collectors))
            else:
                _print_view(view)
            if not args.watch or rec.state != RolloutState.RUNNING:
                return 0
            time.sleep(2.0)
            if not args.json:
                print()
    finally:
        journal.close()


def _print_view(view: Any) -> None:
    from otelcockpit.fleet.model import rfc3339

    print(f"rollout {view.id}  pipeline {view.pipeline}  backend {view.backend}  context {view.context or '-'}")
    print(f"state {view.state.value}" + (f": {view.reason}" if view.reason else ""))
    print(f"author {view.author or '-'}  created {rfc3339(view.created_at)}  updated {rfc3339(view.updated_at)}")
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
    from otelcockpit.cli import settings_from
    from otelcockpit.rollout.engine import RolloutEngine

    action = args.action
    settings = settings_from(args)
    _refuse_read_only(settings, f"{action} rollout {args.id}")
    if settings.backend == "opamp":
        return opamp_control(args, settings)
    journal = _open_journal(args)
    try:
        rec = journal.require(args.id)
        if action == "pause":
            print(RolloutEngine(journal, None).pause(args.id))  # type: ignore[arg-type]
            return 0
        alive = journal.runner_alive(rec)
        if action == "abort" and rec.state.value == "running" and alive:
            print(asyncio.run(RolloutEngine(journal, None).abort(args.id)))  # type: ignore[arg-type]
            return 0
        if rec.backend == "demo":
            if action == "abort":
                from otelcockpit.rollout.model import RolloutState

                if rec.state.value not in ("planned", "running", "paused"):
                    raise CockpitError(f"rollout {args.id} is {rec.state.value}: it cannot be aborted")
                journal.set_state(args.id, RolloutState.ABORTED, "aborted by operator (the demo fleet it ran on is gone)")
                print(f"aborted rollout {args.id}")
                return 0
            raise CockpitError(
                f"rollout {args.id} ran on the demo fleet, which lives in the memory of the process that started it; "
                "start a new one (rollout start --source demo --yes)"
            )
        if rec.backend != settings.backend:
            raise UsageError(
                f"rollout {args.id} runs on {rec.backend} (context {rec.context or '-'}); use that context "
                f"(--context {rec.context})" if rec.context else f"rollout {args.id} runs on {rec.backend}"
            )
    finally:
        journal.close()

    async def go(settings: Any, backend: Any) -> int:
        from otelcockpit.rollout_targets import make_target

        target = make_target(backend)
        journal = _open_journal(args)
        try:
            json_mode = bool(getattr(args, "json", False))
            engine = _engine(journal, target, args, json_mode)
            if action == "abort":
                print(await engine.abort(args.id))
                return 0
            view = await engine.run(args.id)
            return _finish(view, json_mode)
        finally:
            journal.close()

    return _run(args, go)


def cmd_rollback(args: argparse.Namespace) -> int:
    settings = _writable_settings(
        args, f"roll back {args.pipeline}", confirmed=args.now, flag="--now", command="rollback"
    )
    if settings.backend == "opamp":
        return opamp_rollback(args, settings)

    async def go(settings: Any, backend: Any) -> int:
        from otelcockpit.rollout.history import pipeline_target
        from otelcockpit.rollout_targets import make_target

        target = make_target(backend)
        revisions = await backend.revisions(args.pipeline)
        if not revisions:
            raise UsageError(f"no pipeline {args.pipeline!r} with revisions on {settings.backend}")
        journal = _open_journal(args)
        try:
            if args.to:
                rev = next((r for r in revisions if r.id == args.to), None)
                if rev is None:
                    known = ", ".join(r.id for r in revisions[-8:])
                    raise UsageError(f"--to {args.to}: not a revision of {args.pipeline} (recent: {known})")
                if rev.snapshot is None:
                    raise UsageError(f"--to {args.to}: that revision has no snapshot to return to")
                source = "chosen"
            else:
                t = pipeline_target(journal, args.pipeline, revisions)
                if t.revision is None:
                    raise CockpitError(f"{args.pipeline} has no earlier revision to roll back to")
                rev, source = t.revision, t.source
            live = revisions[-1].id
            what = {"journal": "last known good", "previous": "the revision before the live one", "chosen": "chosen"}[source]
            if not args.json:
                print(f"roll back {args.pipeline}: live revision {live} -> revision {rev.id} ({what})")
            if not args.now:
                ctx = settings.context
                expected = ctx.name if ctx.production else "y"
                prompt = (
                    f"context {ctx.name} is production: type its name to roll back (anything else cancels): "
                    if ctx.production
                    else "roll back now? [y/N] "
                )
                if not _confirm(prompt, expected):
                    print("cancelled")
                    return 1
            from otelcockpit.rollout.engine import RolloutEngine

            engine = RolloutEngine(journal, target)
            new_rev = await engine.rollback(args.pipeline, revision=rev.id, snapshot=rev.snapshot, author=_author())
            if args.json:
                print_json(
                    {"pipeline": args.pipeline, "from_revision": live, "to_revision": rev.id, "source": source, "new_revision": new_rev}
                )
            else:
                print(f"rolled back {args.pipeline} to revision {rev.id}; new revision {new_rev or '-'}")
            return 0
        finally:
            journal.close()

    return _run(args, go)


def cmd_changes(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from otelcockpit.backends import all_revisions
    from otelcockpit.fleet.model import rfc3339, utcnow
    from otelcockpit.rollout.history import timeline
    from otelcockpit.rollout.model import parse_duration

    window = parse_duration(args.since, "--since")
    if _opamp(args):
        return opamp_changes(args)

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        revisions = await all_revisions(backend, snap)
        since = utcnow() - timedelta(seconds=window) if window > 0 else None
        journal = _open_journal(args)
        try:
            entries = timeline(journal, revisions, since=since)
        finally:
            journal.close()
        if args.json:
            print_json({"since": rfc3339(since), "changes": [e.as_json() for e in entries]})
            return 0
        if not entries:
            print(f"no changes since {rfc3339(since) if since else 'ever'}")
            return 0
        rows = [
            (rfc3339(e.at), e.kind, e.pipeline or "-", e.author or "-", e.scope or "-", e.rollback_target or "-", e.message[:70])
            for e in entries
        ]
        print_table(("TIME", "KIND", "PIPELINE", "AUTHOR", "SCOPE", "ROLLBACK TO", "MESSAGE"), rows)
        return 0

    return _run(args, go)


# ---- the opamp backend: the engine runs inside `otelcockpit serve`; these call its admin API ------------
def _opamp(args: argparse.Namespace) -> bool:
    from otelcockpit.cli import settings_from

    return bool(settings_from(args).backend == "opamp")


def _opamp_run(args: argparse.Namespace, fn: Any) -> int:
    from otelcockpit.cli import settings_from
    from otelcockpit.rollout_targets.opamp import client_for

    settings = settings_from(args)

    async def go() -> int:
        client = client_for(settings)
        try:
            return int(await fn(settings, client))
        finally:
            await client.close()

    return asyncio.run(go())


def _opamp_body(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from otelcockpit.rollout.model import parse_canary, parse_count, parse_duration, parse_waves

    parse_canary(args.canary)  # usage errors here, before any request
    parse_waves(args.waves)
    parse_duration(args.soak, "--soak")
    parse_duration(args.apply_timeout, "--apply-timeout")
    return {
        "config": args.pipeline,
        "contents": _read_file(args.file),
        "canary": args.canary,
        "waves": args.waves,
        "max_failures": parse_count(args.max_failures, "--max-failures"),
        "soak": args.soak,
        "apply_timeout": args.apply_timeout,
        "manual": bool(args.manual),
        "health_required": not args.no_health,
        "production": bool(settings.context.production),
        "author": _author(),
    }


def opamp_plan(args: argparse.Namespace) -> int:
    async def go(settings: Any, client: Any) -> int:
        plan = await client.plan(_opamp_body(args, settings))
        if args.json:
            print_json(plan.as_json(ids=False) | ({} if not args.no_diff else {"diff": None}))
        else:
            _print_plan(plan, diff=not args.no_diff)
        return 0

    return _opamp_run(args, go)


async def _opamp_watch(client: Any, rollout_id: str, json_mode: bool, interval: float = 1.0) -> Any:
    from otelcockpit.rollout.model import RolloutState
    from otelcockpit.rollout_targets.opamp import view_from_json

    show = _printer(json_mode)
    while True:
        view = view_from_json(await client.get(rollout_id))
        show(view)
        if view.state != RolloutState.RUNNING:
            return view
        await asyncio.sleep(interval)


def _go_ahead(args: argparse.Namespace, settings: Any, plan: Any, noun: str) -> bool:
    """Show the plan (unless --json), refuse it when a policy error blocks it, and ask before
    starting (unless --yes): a production context asks for its name. False: the operator cancelled."""
    if not args.json:
        _print_plan(plan, diff=not args.yes)
    if plan.blocking:
        first = plan.blocking[0]
        raise CockpitError(
            f"refused: {len(plan.blocking)} policy error(s) block this push; first: line {first.line or '-'}: "
            f"{first.message} [{first.rule}]"
        )
    if args.yes:
        return True
    ctx = settings.context
    if ctx.production:
        return _confirm(f"context {ctx.name} is production: type its name to start (anything else cancels): ", ctx.name)
    return _confirm(f"start the rollout of {plan.pipeline} to {plan.collector_count} {noun}(s)? [y/N] ", "y")


def opamp_start(args: argparse.Namespace, settings: Any) -> int:
    async def go(settings: Any, client: Any) -> int:
        from otelcockpit.rollout_targets.opamp import view_from_json

        body = _opamp_body(args, settings)
        plan = await client.plan(body)
        if not _go_ahead(args, settings, plan, "agent"):
            print("cancelled")
            return 1
        data = await client.start(body)
        rid = data["id"]
        if not args.watch:
            if args.json:
                print_json(data)
            else:
                print(f"rollout {rid} started in the server at {settings.url} (version {data.get('new_version')})")
                print(f"follow: otelcockpit rollout status {rid} --watch   pause: otelcockpit rollout pause {rid}")
            return 0
        if not args.json:
            print(f"rollout {rid} started in the server at {settings.url}", flush=True)
        view = await _opamp_watch(client, rid, args.json)
        if args.json:
            print_json(view.as_json())
            return 0 if view.state.value == "completed" else 1
        return _finish(view_from_json(await client.get(rid)), False)

    return _opamp_run(args, go)


def opamp_status(args: argparse.Namespace) -> int:
    async def go(settings: Any, client: Any) -> int:
        from otelcockpit.fleet.model import age_text, utcnow
        from otelcockpit.rollout_targets.opamp import view_from_json

        if not args.id:
            items = await client.list()
            if args.json:
                print_json({"rollouts": items})
            elif not items:
                print(f"no rollouts in the server at {settings.url}")
            else:
                now = utcnow()
                rows = []
                for d in items:
                    v = view_from_json(d)
                    applied = sum(s.applied for s in v.stages)
                    total = sum(s.total for s in v.stages)
                    rows.append(
                        (v.id, v.pipeline, v.backend, v.state.value, f"{v.current_stage + 1}/{len(v.stages)}",
                         f"{applied}/{total}", v.failed, age_text(v.created_at, now), v.author or "-", v.reason[:60])
                    )  # fmt: skip
                print_table(("ID", "PIPELINE", "BACKEND", "STATE", "STAGE", "APPLIED", "FAILED", "AGE", "AUTHOR", "REASON"), rows)
            return 0
        while True:
            data = await client.get(args.id, collectors=bool(args.collectors and args.json))
            view = view_from_json(data)
            if args.json:
                print_json(data)
            else:
                _print_view(view)
            if not args.watch or view.state.value != "running":
                return 0
            await asyncio.sleep(2.0)
            if not args.json:
                print()

    return _opamp_run(args, go)


def opamp_control(args: argparse.Namespace, settings: Any) -> int:
    async def go(settings: Any, client: Any) -> int:
        data = await client.action(args.id, args.action)
        if getattr(args, "json", False):
            print_json(data)
        else:
            view = data.get("rollout") or {}
            print(f"{data.get('message', '')}; rollout {args.id} is {view.get('state', '?')}" + (f": {view['reason']}" if view.get("reason") else ""))
        return 0

    return _opamp_run(args, go)


def opamp_rollback(args: argparse.Namespace, settings: Any) -> int:
    async def go(settings: Any, client: Any) -> int:
        if not args.now:
            ctx = settings.context
            expected = ctx.name if ctx.production else "y"
            prompt = (
                f"context {ctx.name} is production: type its name to roll back {args.pipeline} (anything else cancels): "
                if ctx.production
                else f"roll back {args.pipeline} on {settings.url} now? [y/N] "
            )
            if not _confirm(prompt, expected):
                print("cancelled")
                return 1
        out = await client.rollback(args.pipeline, args.to)
        if args.json:
            print_json(out)
        else:
            what = {"journal": "last known good", "previous": "the version before the live one"}
            source = str(out.get("source"))
            print(
                f"rolled back {args.pipeline}: live version {out.get('from_revision')} -> version {out.get('to_revision')}"
                f" ({what.get(source, source)}); every agent of it is offered version {out.get('new_revision')}"
            )
        return 0

    return _opamp_run(args, go)


def opamp_changes(args: argparse.Namespace) -> int:
    async def go(settings: Any, client: Any) -> int:
        entries = await client.changes(args.since)
        if args.json:
            print_json({"since": args.since, "changes": entries})
            return 0
        if not entries:
            print(f"no changes in the last {args.since}")
            return 0
        rows = [
            (e["at"], e["kind"], e["pipeline"] or "-", e["author"] or "-", e["scope"] or "-", e["rollback_target"] or "-", e["message"][:70])
            for e in entries
        ]
        print_table(("TIME", "KIND", "PIPELINE", "AUTHOR", "SCOPE", "ROLLBACK TO", "MESSAGE"), rows)
        return 0

    return _opamp_run(args, go)
