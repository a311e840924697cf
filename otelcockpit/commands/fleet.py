"""Fleet commands: status, collectors, pipelines, pipeline show|enable|disable, collector
enable|disable|attributes set, attributes, contexts."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from otelcockpit.commands.common import add_json, print_json, print_table, run_with_backend, yes_no
from otelcockpit.errors import UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", parents=parents, help="fleet totals by health, type and config status")
    add_json(p)
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("collectors", parents=parents, help="list collectors (optionally filtered by matchers)")
    p.add_argument(
        "--match",
        metavar="MATCHERS",
        help='matchers on attributes or on the columns name, id, type, version, health, config, problem, where, '
        'enabled (e.g. env="prod",health="unhealthy")',
    )
    p.add_argument("--id", metavar="ID", help="one collector, with its effective config and health tree")
    add_json(p)
    p.set_defaults(handler=cmd_collectors)

    p = sub.add_parser("pipelines", parents=parents, help="list pipelines with how many collectors each matches")
    add_json(p)
    p.set_defaults(handler=cmd_pipelines)

    p = sub.add_parser("pipeline", parents=parents, help="one pipeline")
    psub = p.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)
    show = psub.add_parser("show", parents=parents, help="a pipeline's contents, matchers and matching collectors")
    show.add_argument("name")
    show.add_argument("--revisions", action="store_true", help="list its revisions too")
    add_json(show)
    show.set_defaults(handler=cmd_pipeline_show)

    for verb in ("enable", "disable"):
        q = psub.add_parser(verb, parents=parents, help=f"{verb} a pipeline (refused in read-only)")
        q.add_argument("name")
        q.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
        add_json(q)
        q.set_defaults(handler=cmd_pipeline_switch, enabled=verb == "enable")

    p = sub.add_parser("collector", parents=parents, help="change collectors: enable, disable, remote attributes")
    csub = p.add_subparsers(dest="collector_command", metavar="ACTION", required=True)
    for verb in ("enable", "disable"):
        q = csub.add_parser(verb, parents=parents, help=f"{verb} remote configuration for collectors (refused in read-only)")
        q.add_argument("ids", nargs="+", metavar="ID")
        q.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
        add_json(q)
        q.set_defaults(handler=cmd_collector_switch, enabled=verb == "enable")
    q = csub.add_parser("attributes", parents=parents, help="a collector's remote attributes")
    asub = q.add_subparsers(dest="attributes_command", metavar="ACTION", required=True)
    a = asub.add_parser("set", parents=parents, help="set remote attributes (KEY=VALUE; an empty value removes KEY)")
    a.add_argument("id", metavar="ID")
    a.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    a.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    add_json(a)
    a.set_defaults(handler=cmd_collector_attributes)

    p = sub.add_parser("attributes", parents=parents, help="attribute keys and their values across the fleet")
    add_json(p)
    p.set_defaults(handler=cmd_attributes)

    p = sub.add_parser("contexts", parents=parents, help="the contexts in the config file")
    add_json(p)
    p.set_defaults(handler=cmd_contexts)


def _parse_match(text: str | None):  # noqa: ANN202
    """``--match``: matchers on attributes or on the columns the Fleet view's filter knows (health,
    config, type, version, ...), or None for every collector."""
    from otelcockpit.fleet.filtering import CollectorFilter
    from otelcockpit.fleet.matchers import MatcherError, parse_matchers

    if not text:
        return None
    try:
        return CollectorFilter(text, parse_matchers(text))
    except MatcherError as exc:
        raise UsageError(str(exc)) from None


def cmd_status(args: argparse.Namespace) -> int:
    from otelcockpit.fleet.model import age_text, utcnow
    from otelcockpit.fleet.serialize import snapshot_header
    from otelcockpit.fleet.summary import totals

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        t = totals(snap.collectors)
        if args.json:
            print_json(
                {
                    **snapshot_header(snap),
                    "context": settings.context.name,
                    "read_only": settings.read_only,
                    "health": {"ok": snap.health.ok, "status": snap.health.status, "message": snap.health.message},
                    "pipelines": len(snap.pipelines),
                    **t.as_dict(),
                }
            )
            return 0
        d = t.as_dict()
        print(f"context {settings.context.name}  backend {snap.backend}  {'read-only  ' if settings.read_only else ''}"
              f"data age {age_text(snap.fetched_at, utcnow())}{'  STALE: ' + snap.stale_reason if snap.stale else ''}")
        print(f"collectors {t.total}  pipelines {len(snap.pipelines)}")
        for title, key in (
            ("health", "by_health"),
            ("type", "by_type"),
            ("config", "by_config_status"),
            ("runs", "by_config_state"),
        ):
            parts = "  ".join(f"{k} {v}" for k, v in d[key].items())  # type: ignore[union-attr]
            print(f"{title:<8}{parts}")
        return 0

    return run_with_backend(args, go)


def cmd_collectors(args: argparse.Namespace) -> int:
    from otelcockpit.fleet.configstate import CONFIG_STATE_SHORT, collector_state
    from otelcockpit.fleet.model import age_text, utcnow
    from otelcockpit.fleet.serialize import collector_json, snapshot_header

    flt = _parse_match(args.match)

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        if args.id:
            c = snap.collector(args.id)
            if c is None:
                raise UsageError(f"no collector with id {args.id!r}")
            if args.json:
                print_json({**snapshot_header(snap), "collector": collector_json(c, detail=True)})
            else:
                data = collector_json(c, detail=True)
                for key in ("id", "name", "type", "version", "health", "last_error", "last_seen", "enabled"):
                    print(f"{key:<14}{yes_no(data[key])}")
                rc = data["remote_config"]
                print(f"{'config':<14}{rc['status']} {rc['hash']} {rc['error']}".rstrip())
                state = data["config_state"]
                print(f"{'runs':<14}{state['state']}: {state['reason']}")
                if "came_up" in data:
                    up = data["came_up"]
                    print(f"{'came up':<14}{up.get('at') or '-'} {up.get('state', '')}: {up.get('reason', '')}".rstrip())
                print(f"{'pipelines':<14}{', '.join(data['pipelines']) or '-'}")
                for k, v in data["attributes"].items():
                    print(f"  {k} = {v}")
            return 0
        test = flt.predicate() if flt is not None else None
        chosen = [c for c in snap.collectors if test(c)] if test is not None else list(snap.collectors)
        if args.json:
            print_json({**snapshot_header(snap), "collectors": [collector_json(c) for c in chosen]})
            return 0
        now = utcnow()
        rows = [
            (
                c.name,
                c.type.value,
                c.version,
                c.health.value,
                c.attr("env") or "-",
                c.attr("region") or "-",
                c.remote_config.status.value,
                CONFIG_STATE_SHORT[collector_state(c).state],
                age_text(c.last_seen, now),
            )
            for c in chosen
        ]
        print_table(("NAME", "TYPE", "VERSION", "HEALTH", "ENV", "REGION", "CONFIG", "RUNS", "SEEN"), rows)
        return 0

    return run_with_backend(args, go)


def _match_counts(snap: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for c in snap.collectors:
        counts.update(c.pipelines)
    return counts


def cmd_pipelines(args: argparse.Namespace) -> int:
    from otelcockpit.fleet.model import rfc3339
    from otelcockpit.fleet.serialize import pipeline_json, snapshot_header

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        counts = _match_counts(snap)
        if args.json:
            print_json(
                {
                    **snapshot_header(snap),
                    "pipelines": [
                        {**pipeline_json(p, contents=False), "collectors": counts.get(p.name, 0)} for p in snap.pipelines
                    ],
                }
            )
            return 0
        rows = [
            (
                p.name,
                p.config_type.value,
                "yes" if p.enabled else "no",
                counts.get(p.name, 0),
                ",".join(p.matchers) or "-",
                rfc3339(p.updated_at) or "-",
            )
            for p in snap.pipelines
        ]
        print_table(("NAME", "TYPE", "ENABLED", "COLLECTORS", "MATCHERS", "UPDATED"), rows)
        return 0

    return run_with_backend(args, go)


def cmd_pipeline_show(args: argparse.Namespace) -> int:
    from otelcockpit.fleet.matching import PipelineMatcher
    from otelcockpit.fleet.serialize import pipeline_json, revision_json, snapshot_header

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        p = snap.pipeline(args.name)
        if p is None:
            raise UsageError(f"no pipeline named {args.name!r}")
        from otelcockpit.policy import lint_pipeline

        matched = PipelineMatcher([p]).collectors_for(p, snap.collectors)
        revisions = await backend.revisions(p.name) if args.revisions else ()
        findings = lint_pipeline(p, snap, production=settings.context.production).findings
        if args.json:
            out = {
                **snapshot_header(snap),
                "pipeline": pipeline_json(p),
                "collectors": [c.id for c in matched],
                "findings": [f.as_json() for f in findings],
            }
            if args.revisions:
                out["revisions"] = [revision_json(r) for r in revisions]
            print_json(out)
            return 0
        print(f"pipeline {p.name} (id {p.id or '-'}, {p.config_type.value}, {'enabled' if p.enabled else 'disabled'})")
        print(f"matchers  {', '.join(p.matchers) or '(none)'}")
        print(f"matches   {len(matched)} collector(s)")
        print(f"policy    {len(findings)} finding(s)" if findings else "policy    no findings")
        for f in findings:
            print(f"  {f.severity:<7} line {f.line or '-'}: {f.message} [{f.rule}]")
        if args.revisions:
            print("revisions:")
            for r in revisions:
                print(f"  {r.id}  {r.operation.value:<6}  {r.created_at:%Y-%m-%d %H:%M}  {r.author}")
        print("---")
        print(p.contents.rstrip())
        return 0

    return run_with_backend(args, go)


def cmd_attributes(args: argparse.Namespace) -> int:
    from otelcockpit.fleet.serialize import snapshot_header

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        local: dict[str, Counter[str]] = {}
        remote: dict[str, Counter[str]] = {}
        for c in snap.collectors:
            for k, v in c.local_attributes.items():
                local.setdefault(k, Counter())[v] += 1
            for k, v in c.remote_attributes.items():
                remote.setdefault(k, Counter())[v] += 1
        if args.json:
            def shape(d: dict[str, Counter[str]]) -> dict[str, Any]:
                return {k: [{"value": v, "collectors": n} for v, n in sorted(d[k].items())] for k in sorted(d)}

            print_json({**snapshot_header(snap), "local_attributes": shape(local), "remote_attributes": shape(remote)})
            return 0
        rows = []
        for kind, d in (("local", local), ("remote", remote)):
            for k in sorted(d):
                values = d[k]
                shown = ", ".join(f"{v} ({n})" for v, n in values.most_common(4))
                more = f" +{len(values) - 4} more" if len(values) > 4 else ""
                rows.append((kind, k, len(values), shown + more))
        print_table(("KIND", "KEY", "VALUES", "TOP VALUES"), rows)
        return 0

    return run_with_backend(args, go)


def cmd_contexts(args: argparse.Namespace) -> int:
    from otelcockpit.cli import settings_from

    settings = settings_from(args)
    items = []
    for name, c in sorted(settings.contexts.items()):
        items.append(
            {
                "name": name,
                "current": name == settings.context.name,
                "backend": c.backend,
                "url": c.url,
                "read_only": bool(c.read_only),
                "production": c.production,
                "theme": c.theme,
                "credentials_env": [v for v in (c.username_env, c.password_env, c.token_env) if v],
            }
        )
    if args.json:
        print_json({"config_file": str(settings.config_file), "exists": settings.config_exists, "contexts": items})
        return 0
    rows = [
        (
            ("*" if i["current"] else " ") + i["name"],
            i["backend"],
            i["url"] or "-",
            "yes" if i["read_only"] else "no",
            "yes" if i["production"] else "no",
            i["theme"] or "-",
            ",".join(i["credentials_env"]) or "-",
        )
        for i in items
    ]
    print_table(("NAME", "BACKEND", "URL", "READ-ONLY", "PRODUCTION", "THEME", "CREDENTIALS FROM"), rows)
    if not settings.config_exists:
        print(f"(no config file yet at {settings.config_file}; only the built-in demo context exists)")
    return 0


# ---- writes: the same Change objects the TUI pushes, through the backend's push ------------------
def _push(args: argparse.Namespace, make_change: Any, what: str) -> int:
    """Push one change: refused in read-only (exit 1), asks first in a terminal (``--yes`` skips),
    refused without a terminal unless ``--yes``; prints the backend's answer (or JSON)."""
    import sys

    from otelcockpit.cli import settings_from
    from otelcockpit.errors import CockpitError, ReadOnlyError

    settings = settings_from(args)
    if settings.read_only:
        raise ReadOnlyError(f"read-only: refused to {what} (context {settings.context.name})")
    if not args.yes and not sys.stdin.isatty():
        raise CockpitError("refused: this asks for confirmation; pass --yes when not in a terminal")

    async def go(settings: Any, backend: Any) -> int:
        snap = await backend.snapshot()
        change = make_change(snap, settings.identity)
        if not args.yes:
            print(change.explain(snap))
            try:
                answer = input(
                    f"context {settings.context.name} is production: type its name to go on: "
                    if settings.context.production
                    else "go on? [y/N] "
                )
            except EOFError:
                answer = ""
            if answer.strip() != (settings.context.name if settings.context.production else "y"):
                print("cancelled")
                return 1
        result = await backend.push(change)
        if args.json:
            print_json(
                {"ok": result.ok, "message": result.message, "revision": result.revision_id, "by": change.author}
            )
        else:
            if result.ok:
                print(result.message)
        if not result.ok and not args.json:
            raise CockpitError(result.message)
        return 0 if result.ok else 1

    return run_with_backend(args, go)


def _known_collectors(snap: Any, ids: list[str]) -> list[str]:
    have = {c.id for c in snap.collectors}
    missing = [i for i in ids if i not in have]
    if missing:
        raise UsageError(f"no collector {missing[0]!r} on {snap.backend} (see: otelcockpit collectors)")
    return ids


def cmd_collector_switch(args: argparse.Namespace) -> int:
    from otelcockpit.backends.base import COLLECTOR_SET_ENABLED, Change

    verb = "enable" if args.enabled else "disable"

    def change(snap: Any, who: str) -> Any:
        ids = _known_collectors(snap, list(args.ids))
        return Change(COLLECTOR_SET_ENABLED, {"ids": ids, "enabled": bool(args.enabled)}, author=who)

    return _push(args, change, f"{verb} {len(args.ids)} collector(s)")


def cmd_collector_attributes(args: argparse.Namespace) -> int:
    from otelcockpit.backends.base import COLLECTOR_SET_REMOTE_ATTRIBUTES, Change

    set_: dict[str, str] = {}
    remove: list[str] = []
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{pair!r}: write KEY=VALUE (an empty VALUE removes KEY)")
        if key.startswith("collector."):
            raise UsageError(f"{key}: the collector. prefix is reserved for the collector's own attributes")
        if value.strip():
            set_[key] = value.strip()
        else:
            remove.append(key)

    def change(snap: Any, who: str) -> Any:
        ids = _known_collectors(snap, [args.id])
        return Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, {"ids": ids, "set": set_, "remove": remove}, author=who)

    return _push(args, change, f"set remote attributes on {args.id}")


def cmd_pipeline_switch(args: argparse.Namespace) -> int:
    from otelcockpit.backends.base import PIPELINE_SET_ENABLED, Change

    verb = "enable" if args.enabled else "disable"

    def change(snap: Any, who: str) -> Any:
        if snap.pipeline(args.name) is None:
            raise UsageError(f"no pipeline named {args.name!r}")
        return Change(PIPELINE_SET_ENABLED, {"name": args.name, "enabled": bool(args.enabled)}, author=who)

    return _push(args, change, f"{verb} pipeline {args.name}")
