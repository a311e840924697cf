"""Adoption commands: eligibility, phases, journeys, conventions, lint, signoff.

Exit codes: 0 success; 1 a runtime failure, a refused sign-off (read-only), or ``lint`` found at
least one error-severity finding; 2 a usage or config error, including a lint target that cannot
be read (broken YAML or Alloy syntax: one line ``FILE:LINE: ...``).
"""

from __future__ import annotations

import argparse
from typing import Any

from otelcockpit.commands.common import add_json, print_json, print_table, run_with_backend
from otelcockpit.errors import ConfigError, UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eligibility", parents=parents, help="zero-code instrumentation path per service (--inventory FILE)"
    )
    p.add_argument("--service", metavar="NAME", help="one service, with its reasons, rules and sources")
    p.add_argument(
        "--explain",
        metavar="SERVICE",
        help="the walk through the rules for one service: each rule, the facts it read and where they came "
        "from, the assumption made, the source, and what would change the answer",
    )
    p.add_argument(
        "--group", choices=("team", "path", "platform", "language", "status"), help="group the services"
    )
    p.add_argument(
        "--match", metavar="FILTER", help='matchers on service fields, e.g. team="identity",path=~"obi|sdk"'
    )
    add_json(p)
    p.set_defaults(handler=cmd_eligibility)

    p = sub.add_parser(
        "phases", parents=parents, help="the four rollout phases: checklist with evidence and sign-offs"
    )
    add_json(p)
    p.set_defaults(handler=cmd_phases)

    p = sub.add_parser(
        "journeys", parents=parents, help="coverage of each critical user journey, with its first gap"
    )
    add_json(p)
    p.set_defaults(handler=cmd_journeys)

    p = sub.add_parser(
        "conventions", parents=parents, help="check the fleet and the inventory against the conventions"
    )
    p.add_argument(
        "--file", metavar="FILE", help="conventions file (default: the context's, or beside the inventory)"
    )
    add_json(p)
    p.set_defaults(handler=cmd_conventions)

    p = sub.add_parser(
        "lint",
        parents=parents,
        help="policy checks on a pipeline file (Alloy or OTel YAML), or on a collector's bootstrap config (--bootstrap)",
    )
    p.add_argument("file", metavar="FILE", nargs="?")
    p.add_argument(
        "--bootstrap",
        metavar="FILE",
        help="check a collector's local start-up config (or an OpAMP supervisor's config) for a fleet-API outage: "
        "remote-config client, cache on persistent storage, no heavier than the managed config",
    )
    p.add_argument("--managed", metavar="FILE", help="with --bootstrap: the managed config to compare intervals with")
    p.add_argument(
        "--storage-path",
        metavar="PATH",
        help="with --bootstrap: where the collector keeps its data (Alloy's --storage.path, which holds the remotecfg cache)",
    )
    p.add_argument("--type", choices=("alloy", "otel"), help="config type (default: from the file extension)")
    p.add_argument(
        "--production", action="store_true", help="check as a production pipeline (default: the context's)"
    )
    p.add_argument(
        "--feeds-spanmetrics",
        choices=("yes", "no"),
        help="its spans feed span metrics computed elsewhere (default: not known)",
    )
    add_json(p)
    p.set_defaults(handler=cmd_lint)

    p = sub.add_parser(
        "signoff", parents=parents, help="sign off a phase item (who, when, note), or list sign-offs"
    )
    p.add_argument("item", nargs="?", metavar="PHASE_ITEM", help="e.g. p1.host-metrics")
    p.add_argument("--by", metavar="NAME", help="who signs off")
    p.add_argument("--note", default="", metavar="TEXT")
    p.add_argument("--list", action="store_true", help="list sign-offs")
    add_json(p)
    p.set_defaults(handler=cmd_signoff)


async def _data(settings: Any, backend: Any, *, conventions: str | None = None) -> Any:
    """Read the files first (a bad inventory fails before any backend call), then the fleet."""
    from otelcockpit.adoption.cockpit import analyse_for, load_sources, resolve_sources

    sources = resolve_sources(settings, conventions=conventions)
    loaded = load_sources(sources)
    snap = await backend.snapshot()
    return analyse_for(settings, snap, loaded), sources


def _short(text: str, width: int = 70) -> str:
    """Cut to ``width`` on a terminal only: piped or redirected output keeps every character."""
    from otelcockpit.commands.common import is_terminal

    if len(text) <= width or not is_terminal():
        return text
    return text[: width - 1] + "…"


def _note(e: Any) -> str:
    """The last column of the table: why unknown, what to fill, or the first blocker."""
    if e.status == "unknown":
        return e.unknowns[0] if e.unknowns else ""
    if e.status == "conditional":
        return "fill " + ", ".join(f.field for f in e.fill) + ": " + e.condition
    n = len(e.blockers)
    return (f"{n}: " if n else "") + (e.blockers[0] if e.blockers else "")


def _counts_line(counts: Any) -> str:
    fill = f" (fill: {counts.fill_text()})" if counts.fill else ""
    return (
        f"{counts.services} services: {counts.decided} decided ({counts.zero_code} zero-code, "
        f"{counts.code_change} code change), {counts.conditional} conditional{fill}, {counts.unknown} unknown"
    )


def cmd_eligibility(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any) -> int:
        from otelcockpit.adoption.cockpit import counts_by_team, decision_counts

        data, _ = await _data(settings, backend)
        items = list(data.eligibility)
        if args.match:
            from otelcockpit.adoption.cockpit import filter_services

            items = filter_services(items, args.match)
        if args.explain:
            from otelcockpit.adoption.explain import explain, render_text

            e = data.service(args.explain)
            if e is None:
                raise UsageError(f"no service {args.explain!r} in the inventory")
            x = explain(e)
            if args.json:
                print_json(x.as_json())
            else:
                print("\n".join(render_text(x)))
            return 0
        if args.service:
            e = data.service(args.service)
            if e is None:
                raise UsageError(f"no service {args.service!r} in the inventory")
            if args.json:
                out = e.as_json()
                out["sources"] = dict(e.sources)
                out["paths"] = [a.as_json() for a in e.paths]
                out["conflicts"] = [c.text() for c in e.service.conflicts]
                print_json(out)
                return 0
            j = e.as_json()
            for key in ("name", "team", "language", "platform", "path", "status", "code_change"):
                print(f"{key:<13}{j[key]}")
            if e.condition:
                print(f"{'condition':<13}{e.condition}")
            print(f"{'alternatives':<13}{', '.join(j['alternatives']) or '-'}")
            for a in e.assumptions:
                print(f"{'assumption':<13}{a}")
            if e.fill:
                print("fill in:")
                for f in e.fill:
                    print(f"  - {f.text()}")
            for title, key in (("reasons", "reasons"), ("blockers", "blockers")):
                print(f"{title}:")
                for r in j[key] or ["-"]:
                    print(f"  - {r}")
            if e.service.conflicts:
                print("conflicts (inventory vs discovered):")
                for c in e.service.conflicts:
                    print(f"  - {c.text()}")
            print("rules:")
            for rid in e.rules:
                print(f"  - {rid}: {e.sources.get(rid, '')}")
            print(f"(otelcockpit eligibility --explain {e.name} walks through every rule)")
            return 0
        if args.json:
            print_json(
                {
                    "services": [e.as_json() for e in items],
                    "counts": {
                        "total": decision_counts(items).as_json(),
                        "teams": {t: c.as_json() for t, c in counts_by_team(items).items()},
                    },
                }
            )
            return 0
        headers = ("NAME", "TEAM", "LANGUAGE", "PLATFORM", "PATH", "STATUS", "NOTE")

        def row(e: Any) -> tuple[Any, ...]:
            return (
                e.name,
                e.service.team or "-",
                e.service.language or "-",
                e.service.platform or "-",
                e.path,
                e.status,
                _short(_note(e), 60),
            )

        if args.group:
            from otelcockpit.adoption.cockpit import group_by

            for value, group in group_by(items, args.group).items():
                print(f"== {args.group} {value} ({len(group)})")
                print_table(headers, [row(e) for e in group])
            print(_counts_line(decision_counts(items)))
            return 0
        print_table(headers, [row(e) for e in items])
        print(_counts_line(decision_counts(items)))
        conflicted = [e for e in items if e.service.conflicts]
        if conflicted:
            print(
                f"{len(conflicted)} service(s) where the inventory and what the fleet reports disagree "
                f"(see --explain NAME): {', '.join(e.name for e in conflicted[:10])}"
            )
        return 0

    return run_with_backend(args, go)


def cmd_phases(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any) -> int:
        data, _ = await _data(settings, backend)
        report = data.phases
        if args.json:
            print_json(report.as_json())
            return 0
        for ph in report.phases:
            passed = sum(1 for i in ph.items if i.passed)
            state = "ok" if ph.at_threshold else "below threshold"
            print(f"Phase {ph.number}: {ph.name} ({ph.goal})  {passed}/{len(ph.items)} items  {state}")
            for i in ph.items:
                mark = "PASS" if i.passed else "FAIL"
                print(f"  [{mark}] {i.id:<24} {i.title}")
                print(f"         {i.evidence}")
                for f in i.failing:
                    print(f"         - {_short(f, 110)}")
                if i.signoff:
                    note = f": {i.signoff.note}" if i.signoff.note else ""
                    print(f"         signed off by {i.signoff.by} at {i.signoff.at}{note}")
        for w in report.warnings:
            print(f"warning: {w}")
        return 0

    return run_with_backend(args, go)


def cmd_journeys(args: argparse.Namespace) -> int:
    from otelcockpit.adoption.journeys import coverage_bar

    async def go(settings: Any, backend: Any) -> int:
        data, sources = await _data(settings, backend)
        if args.json:
            print_json({"journeys": [j.as_json() for j in data.journeys]})
            return 0
        if not data.journeys:
            print(f"no journeys defined (looked for journeys.yaml beside {sources.inventory})")
            return 0
        for j in data.journeys:
            print(
                f"{j.journey.name:<24} {coverage_bar(j.coverage)} {j.coverage:>4.0%}  {len(j.journey.services)} services"
            )
            print(f"  first gap: {j.first_gap or 'none: covered end to end'}")
        return 0

    return run_with_backend(args, go)


def cmd_conventions(args: argparse.Namespace) -> int:
    async def go(settings: Any, backend: Any) -> int:
        data, sources = await _data(settings, backend, conventions=args.file)
        if sources.conventions is None:
            raise UsageError(
                "no conventions file: pass --file FILE, or put conventions.yaml beside the inventory"
            )
        v = data.violations
        if args.json:
            print_json({"file": str(sources.conventions), "violations": [x.as_json() for x in v]})
            return 0
        if not v:
            print("no violations")
            return 0
        print_table(
            ("KIND", "SUBJECT", "ATTRIBUTE", "RULE", "MESSAGE"),
            [(x.kind, x.subject, x.attribute, x.rule, x.message) for x in v],
        )
        return 0

    return run_with_backend(args, go)


def _lint_source(raw: str, given_type: str | None) -> tuple[Any, str, str]:
    """(path, text, config type) of a file to lint; a file that cannot be read is a ConfigError (2)."""
    from pathlib import Path

    path = Path(raw)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    ctype = given_type
    if ctype is None:
        if path.suffix in (".alloy", ".river"):
            ctype = "alloy"
        elif path.suffix in (".yaml", ".yml"):
            ctype = "otel"
        else:
            raise UsageError(
                f"{path}: cannot tell the config type from the extension; pass --type alloy|otel"
            )
    return path, text, ctype


def cmd_lint(args: argparse.Namespace) -> int:
    from otelcockpit.cli import settings_from
    from otelcockpit.policy.lint import ERROR, lint

    if bool(args.file) == bool(args.bootstrap):
        raise UsageError("lint: give one FILE, or --bootstrap FILE")
    if not args.bootstrap and (args.managed or args.storage_path):
        raise UsageError("lint: --managed and --storage-path go with --bootstrap FILE")
    path, text, ctype = _lint_source(args.bootstrap or args.file, args.type)
    production = bool(args.production)
    if not production:
        production = bool(settings_from(args).context.production)
    if args.bootstrap:
        from otelcockpit.policy.bootstrap import lint_bootstrap, managed_exports

        managed = None
        if args.managed:
            mpath, mtext, mtype = _lint_source(args.managed, args.type if args.type else None)
            managed, err = managed_exports(mtext, mtype)
            if err is not None:
                raise ConfigError(f"{mpath}:{err.line}: {err.message}" if err.line else f"{mpath}: {err.message}")
        report = lint_bootstrap(
            text, ctype, storage_path=args.storage_path, managed=managed, managed_origin=str(args.managed or "")
        )
    else:
        feeds = None if args.feeds_spanmetrics is None else args.feeds_spanmetrics == "yes"
        report = lint(text, ctype, production=production, feeds_central_spanmetrics=feeds)
    if not report.syntax_ok:
        f = report.findings[0]
        raise ConfigError(f"{path}:{f.line}: {f.message}" if f.line else f"{path}: {f.message}")
    if args.json:
        extra = {"bootstrap": True} if args.bootstrap else {}
        print_json({"file": str(path), "production": production, **extra, **report.as_json()})
    else:
        for f in report.findings:
            print(f.text(str(path)))
            print(f"    why: {f.reason}")
        n = len(report.errors)
        print(f"{len(report.findings)} finding(s), {n} error(s)")
    return 1 if any(f.severity == ERROR for f in report.findings) else 0


def cmd_signoff(args: argparse.Namespace) -> int:
    from otelcockpit.adoption import signoff
    from otelcockpit.adoption.phases import ITEM_IDS
    from otelcockpit.cli import settings_from
    from otelcockpit.fleet.model import utcnow

    settings = settings_from(args)
    if args.list or not args.item:
        rows = signoff.history()
        if args.json:
            print_json(
                {
                    "signoffs": [
                        {"item": s.item, "by": s.by, "at": s.at, "note": s.note, "context": ctx}
                        for s, ctx in rows
                    ]
                }
            )
        elif not rows:
            print("no sign-offs yet")
        else:
            print_table(
                ("ITEM", "BY", "AT", "CONTEXT", "NOTE"),
                [(s.item, s.by, s.at, ctx, s.note) for s, ctx in rows],
            )
        return 0
    if args.item not in ITEM_IDS:
        raise UsageError(f"unknown phase item {args.item!r} (one of {', '.join(ITEM_IDS)})")
    if not args.by:
        raise UsageError("signoff needs --by NAME")
    s = signoff.sign_off(
        args.item,
        args.by,
        note=args.note,
        at=utcnow(),
        context=settings.context.name,
        read_only=settings.read_only,
    )
    if args.json:
        print_json({"item": s.item, "by": s.by, "at": s.at, "note": s.note, "context": settings.context.name})
    else:
        print(f"signed off {s.item} by {s.by} at {s.at}")
    return 0
