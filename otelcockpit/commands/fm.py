"""``otelcockpit fake-fleet-management``: a local Grafana Fleet Management for demos and tests."""

from __future__ import annotations

import argparse
from typing import Any

from otelcockpit.commands.common import positive_number, whole_number
from otelcockpit.errors import UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fake-fleet-management",
        parents=parents,
        help="run a local Grafana Fleet Management (Connect JSON API) for demos and tests",
        description=(
            "A real HTTP server speaking Fleet Management's Connect JSON API: pipelines with revisions, "
            "collectors, GetConfig, tenant limits, Basic auth with a read and a write credential."
        ),
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8480",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:8480; port 0 picks one)",
    )
    p.add_argument(
        "--fixtures",
        metavar="DIR",
        help="fleet.yaml + pipelines.yaml to start from (default: the demo organisation)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed for the fleet's details and the simulated collectors (default 7)",
    )
    p.add_argument(
        "--simulate-collectors",
        type=whole_number(0),
        default=0,
        metavar="N",
        help="N collectors polling GetConfig over HTTP",
    )
    p.add_argument(
        "--poll-interval",
        type=positive_number(),
        default=10.0,
        metavar="SECONDS",
        help="simulated collectors' poll interval (default 10)",
    )
    p.add_argument(
        "--rate-limit",
        type=positive_number(),
        metavar="RPS",
        help="answer 429 resource_exhausted above RPS management requests/s",
    )
    p.add_argument("--credentials", metavar="FILE", help="YAML with instance_id, read_token, write_token")
    p.add_argument(
        "--empty-matchers",
        choices=("all", "none"),
        default="all",
        help="what a pipeline without matchers reaches (undocumented by Grafana; default all)",
    )
    p.set_defaults(handler=cmd_fake)


def load_credentials(path: str | None) -> Any:
    from otelcockpit.fm_fake.app import Credentials

    if not path:
        return Credentials()
    from pathlib import Path

    from otelcockpit.yamlio import load_yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--credentials {path}: no such file")
    data = load_yaml(file)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with instance_id, read_token and write_token")
    unknown = set(data) - {"instance_id", "read_token", "write_token"}
    if unknown:
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))} (instance_id, read_token, write_token)"
        )
    values = {k: str(v) for k, v in data.items() if v not in (None, "")}
    creds = Credentials(**values)
    if creds.read_token == creds.write_token:
        raise UsageError(f"{path}: read_token and write_token must differ")
    return creds


def cmd_fake(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    from pathlib import Path

    from otelcockpit.fm_fake.app import FakeServerApp
    from otelcockpit.fm_fake.fixtures import load_state
    from otelcockpit.fm_fake.server import parse_listen, serve
    from otelcockpit.fm_fake.simulate import CollectorSimulation, identities_from_state

    host, port = parse_listen(args.listen)
    creds = load_credentials(args.credentials)
    fixtures = Path(args.fixtures) if args.fixtures else None
    if fixtures is not None and not (fixtures / "fleet.yaml").is_file():
        raise UsageError(
            f"--fixtures {args.fixtures}: expected a directory with fleet.yaml and pipelines.yaml"
        )
    state = load_state(fixtures, seed=args.seed, empty_matchers_match=args.empty_matchers == "all")
    server_app = FakeServerApp(state, creds, rate_limit=args.rate_limit)
    sims: list[CollectorSimulation] = []

    async def started(url: str) -> None:
        print(f"Fleet Management fake listening on {url}")
        print(
            f"  {len(state.collectors)} collectors, {len(state.pipelines)} pipelines, {len(state.revisions)} revisions (seed {args.seed})"
        )
        print(f"  read credential:  {creds.instance_id}:{creds.read_token}   (fleet-management:read)")
        print(f"  write credential: {creds.instance_id}:{creds.write_token}   (fleet-management:write)")
        if args.rate_limit:
            print(f"  rate limit: {args.rate_limit:g} requests/s, then 429 resource_exhausted")
        print("Try:")
        print(
            f"  export FLEET_MANAGEMENT_INSTANCE_ID={creds.instance_id} FLEET_MANAGEMENT_TOKEN={creds.write_token}"
        )
        print(f"  otelcockpit collectors --source fleet-management --url {url}")
        sys.stdout.flush()
        if args.simulate_collectors:
            # Simulated collectors talk to this server only, over loopback when it listens on all addresses.
            target_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else None)
            target = url if target_host is None else f"http://{target_host}:{url.rsplit(':', 1)[1]}"
            sim = CollectorSimulation(
                target,
                (creds.instance_id, creds.read_token),
                identities_from_state(state.collectors, args.simulate_collectors),
                seed=args.seed,
                poll_seconds=args.poll_interval,
            )
            sims.append(sim)
            asyncio.get_running_loop().create_task(sim.run())
            print(
                f"  {args.simulate_collectors} simulated collectors polling GetConfig every {args.poll_interval:g}s"
            )
            sys.stdout.flush()

    async def main() -> None:
        try:
            await serve(server_app, host, port, started)
        finally:
            for sim in sims:
                sim.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0
