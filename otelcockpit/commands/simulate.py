"""``otelcockpit simulate-agents``: N simulated OpAMP agents against a loopback OpAMP server.

For demos, walkthroughs and load tests. Real OpAMP protobuf over HTTP (httpx) or WebSocket
(websockets, binary frames with the 0x00 header). Only loopback URLs; bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
from typing import Any

from otelcockpit.commands.common import add_json, positive_number, print_json, share, whole_number
from otelcockpit.errors import BackendError, UsageError


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate-agents",
        parents=parents,
        help="run N simulated OpAMP agents against a loopback OpAMP server (demos, load tests)",
    )
    p.add_argument(
        "--server",
        required=True,
        metavar="URL",
        help="OpAMP endpoint, e.g. http://127.0.0.1:4320/v1/opamp (loopback only)",
    )
    p.add_argument(
        "--count", type=whole_number(1), default=10, metavar="N", help="number of agents (default 10)"
    )
    p.add_argument(
        "--transport",
        choices=("http", "ws"),
        default="ws",
        help="plain HTTP polling or WebSocket (default ws)",
    )
    p.add_argument(
        "--fail-rate",
        type=share,
        default=0.0,
        metavar="R",
        help="share of remote configs reported FAILED (0..1, default 0)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="S",
        help="seed for attributes, health and failures (default 1)",
    )
    p.add_argument(
        "--duration",
        type=positive_number("seconds"),
        default=600.0,
        metavar="SECONDS",
        help="stop after this long (default 600)",
    )
    p.add_argument(
        "--heartbeat",
        type=positive_number("seconds"),
        default=30.0,
        metavar="SECONDS",
        help="heartbeat / poll interval (default 30)",
    )
    p.add_argument(
        "--apply-delay",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="time between APPLYING and APPLIED (default 0.5)",
    )
    p.add_argument(
        "--token",
        metavar="T",
        help="agent token sent as 'Authorization: Bearer T' (if the server requires one)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where each agent persists the last remote config it applied and starts from it, as the OpAMP "
        "supervisor does (default: simulate-agents/ in the data dir; 'none' for no persistence)",
    )
    p.add_argument(
        "--without-cache",
        type=share,
        default=0.0,
        metavar="R",
        help="share of agents without a persisted cache (pods without a volume): they start on their "
        "bootstrap config (0..1, default 0)",
    )
    p.add_argument(
        "--bootstrap",
        metavar="FILE",
        help="the bootstrap config agents run until a remote config arrives (default: a generous built-in "
        "one: every span, host metrics every 10 s, every log line, a debug exporter)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_json(p)
    p.set_defaults(handler=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import signal
    import sys

    from otelcockpit.simulate.agents import Simulation, build_agents, check_server_url

    url = check_server_url(args.server, args.transport)
    if args.apply_delay < 0:
        raise UsageError("--apply-delay must be zero or more")
    if args.count > 20000:
        raise UsageError("--count is limited to 20000 agents per process")
    _raise_fd_limit(args.count + 256)
    state_dir = _state_dir(args.state_dir)
    bootstrap = None
    if args.bootstrap:
        from pathlib import Path

        try:
            bootstrap = Path(args.bootstrap).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--bootstrap {args.bootstrap}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    agents = build_agents(
        args.count,
        args.seed,
        fail_rate=args.fail_rate,
        heartbeat=args.heartbeat,
        apply_delay=args.apply_delay,
        state_dir=state_dir,
        no_cache_share=args.without_cache,
        bootstrap=bootstrap,
    )
    cached = sum(1 for a in agents if a.started_on == "cache")
    sim = Simulation(url, agents, transport=args.transport, token=args.token, duration=args.duration)

    async def progress() -> None:
        while True:
            await asyncio.sleep(5.0)
            s = sim.stats
            applied = sum(len(a.applied) for a in agents)
            failed = sum(len(a.failed) for a in agents)
            print(
                f"simulate-agents: {args.count} {args.transport} agents, sent {s.sent}, replies {s.received}, "
                f"applied {applied}, failed {failed}, connect errors {s.connect_errors}"
                + (f", last error: {s.last_error}" if s.last_error else ""),
                file=sys.stderr,
                flush=True,
            )

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, sim.stop)
        if not args.quiet:
            print(
                f"simulate-agents: {args.count} {args.transport} agents -> {url} for {args.duration:g}s "
                f"(seed {args.seed}, fail rate {args.fail_rate:g}); {cached} start on their cached remote config, "
                f"{args.count - cached} on their bootstrap config",
                file=sys.stderr,
                flush=True,
            )
        ticker = None if args.quiet else asyncio.create_task(progress())
        try:
            return await sim.run()
        finally:
            if ticker is not None:
                ticker.cancel()

    stats = asyncio.run(go())
    if stats.received == 0:
        raise BackendError(
            f"no OpAMP server answered at {url} in {args.duration:g}s"
            + (f" (last error: {stats.last_error})" if stats.last_error else "")
        )
    if args.json:
        print_json({**stats.as_dict(), "started_on_cache": cached, "started_on_bootstrap": args.count - cached})
    else:
        print(
            f"simulate-agents: done: {stats.agents} agents, sent {stats.sent}, replies {stats.received}, "
            f"applied {stats.applied}, failed {stats.failed}, restarts {stats.restarts}, "
            f"connect errors {stats.connect_errors}"
        )
    return 0


def _state_dir(raw: str | None) -> Any:
    """``--state-dir``: a directory (created), the data dir's ``simulate-agents/`` by default, or None."""
    from pathlib import Path

    from otelcockpit.settings import data_dir

    if raw is not None and raw.strip().lower() == "none":
        return None
    path = Path(raw) if raw else data_dir() / "simulate-agents"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--state-dir {path}: cannot create it: {exc.strerror}") from None
    if not path.is_dir():
        raise UsageError(f"--state-dir {path}: not a directory")
    return path


def _raise_fd_limit(wanted: int) -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass
