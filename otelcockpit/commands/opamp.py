"""``otelcockpit opamp ...``: configs, assignments, agents and restarts on an ``otelcockpit serve``.

A minimal CLI until staged rollout lands. It talks to the server's admin API (``--url
http://HOST:4321`` or an opamp context); the token comes from the context's ``token_env``
(default ``OTELCOCKPIT_OPAMP_TOKEN``). Mutating commands are refused in read-only mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from otelcockpit.commands.common import add_json, print_json, print_table
from otelcockpit.errors import ReadOnlyError, UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "opamp",
        parents=parents,
        help="configs, assignments, agents and restarts on an OpAMP server (otelcockpit serve)",
    )
    osub = p.add_subparsers(dest="opamp_command", metavar="ACTION", required=True)

    cfg = osub.add_parser("config", parents=parents, help="config versions (create, list, show)")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    c = csub.add_parser("create", parents=parents, help="create a new version of a config from files")
    c.add_argument("name")
    c.add_argument(
        "--file",
        dest="files",
        action="append",
        required=True,
        metavar="[KEY=]FILE",
        help='a config file; one file goes under the key "" unless KEY= is given, several under their '
        "base names (repeatable)",
    )
    c.add_argument(
        "--content-type",
        metavar="TYPE",
        help="MIME type (default from the extension: text/yaml, application/json)",
    )
    c.add_argument("--note", default="", help="why this version exists")
    c.add_argument("--author", help="author recorded with the version (default: the login name)")
    add_json(c)
    c.set_defaults(handler=cmd_config_create)

    c = csub.add_parser("list", parents=parents, help="configs with their latest version")
    add_json(c)
    c.set_defaults(handler=cmd_config_list)

    c = csub.add_parser("show", parents=parents, help="one config version with its files (latest by default)")
    c.add_argument("name")
    c.add_argument("--version", type=int, metavar="V", help="a version number (default: the latest)")
    add_json(c)
    c.set_defaults(handler=cmd_config_show)

    a = osub.add_parser(
        "assign", parents=parents, help="assign NAME[@VERSION] to the agents matching --match"
    )
    a.add_argument("target", metavar="NAME[@VERSION]")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--match",
        metavar="MATCHERS",
        help='agent attribute matchers, e.g. env="prod",os.type="linux"',
    )
    who.add_argument("--all", action="store_true", help="every agent (an empty selector)")
    a.add_argument(
        "--priority", type=int, default=0, help="higher wins when several assignments match (default 0)"
    )
    a.add_argument("--author", help="author recorded with the assignment (default: the login name)")
    add_json(a)
    a.set_defaults(handler=cmd_assign)

    a = osub.add_parser("assignments", parents=parents, help="list assignments")
    add_json(a)
    a.set_defaults(handler=cmd_assignments)

    a = osub.add_parser("agents", parents=parents, help="agents connected to the server")
    a.add_argument(
        "--match", metavar="MATCHERS", help="filter by agent attribute matchers (evaluated by the server)"
    )
    a.add_argument(
        "--id", metavar="UID", help="one agent in detail (effective config, health tree, config history)"
    )
    add_json(a)
    a.set_defaults(handler=cmd_agents)

    a = osub.add_parser("restart", parents=parents, help="queue a restart command for one agent")
    a.add_argument("uid", metavar="UID")
    add_json(a)
    a.set_defaults(handler=cmd_restart)

    a = osub.add_parser("audit", parents=parents, help="the server's audit log")
    a.add_argument("--limit", type=int, default=50)
    add_json(a)
    a.set_defaults(handler=cmd_audit)


# --------------------------------------------------------------------------------------------


def _run_api(
    args: argparse.Namespace, fn: Callable[[Any, Any], Awaitable[int]], *, mutating: str = ""
) -> int:
    from otelcockpit.backends.opamp import DEFAULT_TOKEN_ENV, OpAmpApi
    from otelcockpit.cli import settings_from

    if getattr(args, "source", None) is None and getattr(args, "context", None) is None:
        args.source = "opamp"
    settings = settings_from(args)
    if settings.backend != "opamp":
        raise UsageError(
            f"'otelcockpit opamp' needs the opamp backend (context {settings.context.name!r} uses "
            f"{settings.backend}): --source opamp --url http://HOST:4321 or an opamp context"
        )
    if mutating and settings.read_only:
        raise ReadOnlyError(f"read-only: refused to {mutating}")
    token_env = settings.context.token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(token_env) or None

    async def go() -> int:
        api = OpAmpApi(settings.url, token, token_env=token_env)
        try:
            return await fn(settings, api)
        finally:
            await api.close()

    return asyncio.run(go())


def _author(args: argparse.Namespace, settings: Any) -> str:
    """Who the server records this write for (with the admin token's name): ``--author``, else the
    operator's identity (the context's ``identity``, ``OTELCOCKPIT_USER``, the OS user)."""
    if getattr(args, "author", None):
        return str(args.author)
    return str(settings.identity)


def _read_files(specs: list[str], content_type: str | None) -> dict[str, dict[str, str]]:
    from otelcockpit.fleet.configfiles import content_type_for

    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        key: str | None = None
        path_text = spec
        if "=" in spec and not Path(spec).exists():
            key, _, path_text = spec.partition("=")
        path = Path(path_text)
        try:
            body = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"no such file: {path_text}") from None
        except IsADirectoryError:
            raise UsageError(f"{path_text} is a directory, not a config file") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path_text} is not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path_text}: {exc.strerror}") from None
        if key is None:
            key = "" if len(specs) == 1 else path.name
        if key in out:
            raise UsageError(f"two files under the key {key!r}; name them with KEY=FILE")
        out[key] = {"body": body, "content_type": content_type or content_type_for(path.name)}
    return out


def _parse_target(text: str) -> tuple[str, int | None]:
    name, sep, version = text.rpartition("@")
    if not sep:
        return text, None
    if not name:
        raise UsageError(f"bad target {text!r}: expected NAME or NAME@VERSION")
    try:
        number = int(version)
    except ValueError:
        raise UsageError(f"bad version in {text!r}: expected a whole number after '@'") from None
    if number < 1:
        raise UsageError(f"bad version in {text!r}: versions start at 1")
    return name, number


def _check_matchers(text: str) -> str:
    from otelcockpit.fleet.matchers import MatcherError, parse_matchers

    try:
        return ",".join(str(m) for m in parse_matchers(text))
    except MatcherError as exc:
        raise UsageError(str(exc)) from None


def _short(h: Any) -> str:
    return str(h or "")[:12] or "-"


# --------------------------------------------------------------------------------------------


def cmd_config_create(args: argparse.Namespace) -> int:
    files = _read_files(args.files, args.content_type)

    async def go(settings: Any, api: Any) -> int:
        created = await api.create_config(args.name, files, author=_author(args, settings), note=args.note)
        if args.json:
            print_json(created)
        else:
            print(
                f"created {created.get('name', args.name)} version {created.get('version')} "
                f"(hash {_short(created.get('hash'))}, {len(files)} file(s))"
            )
        return 0

    return _run_api(args, go, mutating=f"create a version of config {args.name}")


def cmd_config_list(args: argparse.Namespace) -> int:
    async def go(settings: Any, api: Any) -> int:
        doc = await api.configs()
        configs = doc.get("configs") or []
        if args.json:
            print_json({"configs": configs})
            return 0
        rows = [
            (
                c.get("name"),
                c.get("latest_version"),
                c.get("versions"),
                _short(c.get("hash")),
                c.get("updated_at") or "-",
            )
            for c in configs
        ]
        print_table(("NAME", "LATEST", "VERSIONS", "HASH", "UPDATED"), rows)
        return 0

    return _run_api(args, go)


def cmd_config_show(args: argparse.Namespace) -> int:
    async def go(settings: Any, api: Any) -> int:
        from otelcockpit.fleet.configfiles import render_files

        version = args.version
        if version is None:
            doc = await api.config(args.name)
            numbers = [int(v.get("version") or 0) for v in doc.get("versions") or []]
            if not numbers:
                raise UsageError(f"config {args.name!r} has no versions")
            version = max(numbers)
        v = await api.config_version(args.name, version)
        if args.json:
            print_json(v)
            return 0
        print(f"config {v.get('name')} version {v.get('version')}  hash {v.get('hash')}")
        print(f"created {v.get('created_at')} by {v.get('author') or '-'}  note {v.get('note') or '-'}")
        files = v.get("files") or {}
        for name in sorted(files):
            print(f"  {name or chr(34) * 2}  {files[name].get('content_type', '')}")
        print("---")
        print(render_files(files).rstrip())
        return 0

    return _run_api(args, go)


def cmd_assign(args: argparse.Namespace) -> int:
    name, version = _parse_target(args.target)
    if args.all:
        selector = ""
    elif not args.match.strip():
        raise UsageError("--match: no matcher given (use --all to assign to every agent)")
    else:
        selector = _check_matchers(args.match)

    async def go(settings: Any, api: Any) -> int:
        a = await api.assign(name, version, selector, priority=args.priority, author=_author(args, settings))
        if args.json:
            print_json(a)
        else:
            print(
                f"assigned {a.get('config', name)}@{a.get('version')} to {a.get('selector', selector) or 'every agent'} "
                f"(priority {a.get('priority', args.priority)}, {a.get('agents', 0)} agent(s) match now; id {a.get('id')})"
            )
        return 0

    return _run_api(args, go, mutating=f"assign {args.target}")


def cmd_assignments(args: argparse.Namespace) -> int:
    async def go(settings: Any, api: Any) -> int:
        items = (await api.assignments()).get("assignments") or []
        if args.json:
            print_json({"assignments": items})
            return 0
        rows = [
            (
                a.get("id"),
                f"{a.get('config')}@{a.get('version')}",
                a.get("selector"),
                a.get("priority"),
                a.get("agents"),
                a.get("author") or "-",
                a.get("created_at") or "-",
            )
            for a in items
        ]
        print_table(("ID", "CONFIG", "SELECTOR", "PRIORITY", "AGENTS", "AUTHOR", "CREATED"), rows)
        return 0

    return _run_api(args, go)


def cmd_agents(args: argparse.Namespace) -> int:
    match = _check_matchers(args.match) if args.match else None

    async def go(settings: Any, api: Any) -> int:
        from otelcockpit.backends.opamp import agent_to_collector
        from otelcockpit.fleet.model import age_text, parse_time, utcnow

        if args.id:
            detail = await api.agent(args.id)
            if args.json:
                print_json(detail)
                return 0
            c = agent_to_collector(detail)
            print(f"{'instance_uid':<14}{c.id}")
            print(f"{'name':<14}{c.name}")
            print(f"{'transport':<14}{detail.get('transport')}  {detail.get('status')}")
            print(f"{'health':<14}{c.health.value}  {c.health_reason}".rstrip())
            print(
                f"{'config':<14}{c.remote_config.status.value} {_short(c.remote_config.hash)} {c.remote_config.error}".rstrip()
            )
            print(f"{'capabilities':<14}{', '.join(detail.get('capabilities_decoded') or [])}")
            for k, v in sorted(c.local_attributes.items()):
                print(f"  {k} = {v}")
            if c.component_health is not None:
                print("component health:")

                def walk(node: Any, depth: int) -> None:
                    mark = "ok " if node.healthy else "ERR"
                    print(f"  {'  ' * depth}{mark} {node.name} {node.status} {node.last_error}".rstrip())
                    for ch in node.children:
                        walk(ch, depth + 1)

                walk(c.component_health, 0)
            for h in detail.get("remote_config_history") or []:
                print(
                    f"  config {h.get('at')} {h.get('status')} {_short(h.get('hash'))} {h.get('error') or ''}".rstrip()
                )
            for name, body in c.effective_config.items():
                print(f"--- effective config {name or chr(34) * 2}")
                print(body.rstrip())
            return 0
        doc = await api.agents(match)
        agents = doc.get("agents") or []
        if args.json:
            print_json(doc)
            return 0
        now = utcnow()
        rows = []
        for a in agents:
            c = agent_to_collector(a)
            desired = a.get("desired") or {}
            rows.append(
                (
                    c.id,
                    c.name,
                    c.version or "-",
                    a.get("transport") or "-",
                    c.health.value,
                    f"{desired.get('config')}@{desired.get('version')}" if desired else "-",
                    c.remote_config.status.value,
                    age_text(parse_time(a.get("last_seen")), now),
                )
            )
        print_table(("UID", "NAME", "VERSION", "TRANSPORT", "HEALTH", "DESIRED", "CONFIG", "SEEN"), rows)
        return 0

    return _run_api(args, go)


def cmd_restart(args: argparse.Namespace) -> int:
    async def go(settings: Any, api: Any) -> int:
        out = await api.restart(args.uid, requested_by=settings.identity)
        if args.json:
            print_json(out or {"queued": True})
        else:
            print(f"restart queued for {args.uid}")
        return 0

    return _run_api(args, go, mutating=f"restart agent {args.uid}")


def cmd_audit(args: argparse.Namespace) -> int:
    async def go(settings: Any, api: Any) -> int:
        entries = (await api.audit(limit=args.limit)).get("entries") or []
        if args.json:
            print_json({"entries": entries})
            return 0
        rows = [(e.get("at"), e.get("actor"), e.get("action"), e.get("target")) for e in entries]
        print_table(("AT", "ACTOR", "ACTION", "TARGET"), rows)
        return 0

    return _run_api(args, go)
