"""The one entry point. Thin: parse, call the core, print.

``otelcockpit`` alone opens the TUI. Every data command takes ``--json``. Global options
(``--context``, ``--source``, ``--url``, ``--read-only``, ``--demo-collectors``, ...) may stand
before or after the subcommand. Exit codes: 0 success, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from otelcockpit import __version__
from otelcockpit.errors import CockpitError, UsageError

# Subcommand modules, each with register(subparsers, parents). Issues add theirs here.
COMMAND_MODULES = [
    "otelcockpit.commands.fleet",
    "otelcockpit.commands.tui",
    "otelcockpit.commands.serve",  # otelcockpit serve (OpAMP server)
    "otelcockpit.commands.opamp",  # otelcockpit opamp config|assign ...
    "otelcockpit.commands.simulate",  # otelcockpit simulate-agents
    "otelcockpit.commands.fm",  # otelcockpit fake-fleet-management
    "otelcockpit.commands.adoption",  # eligibility, phases, journeys, conventions, lint, signoff
    "otelcockpit.commands.rollout",  # rollout plan|start|status|pause|resume|abort, rollback, changes
    "otelcockpit.commands.web",  # otelcockpit web (textual-serve)
    "otelcockpit.commands.incident",  # otelcockpit incident (always read-only)
    "otelcockpit.commands.walkthrough",  # otelcockpit walkthrough [--journey NAME] [--export FILE]
    "otelcockpit.commands.drill",  # otelcockpit drill outage [--serve]
]

GLOBAL_DESTS = ("context", "source", "url", "read_only", "demo_collectors", "demo_seed", "theme", "inventory")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    d = {"default": argparse.SUPPRESS} if suppress else {}
    g = parser.add_argument_group("global options")
    g.add_argument("--context", help="context from the config file", **d)
    g.add_argument("--source", choices=("demo", "fleet-management", "opamp"), help="backend to use", **d)
    g.add_argument("--url", help="backend URL (Fleet Management base URL, or the OpAMP admin API)", **d)
    g.add_argument("--read-only", action="store_true", help="refuse every mutating action", **d)
    g.add_argument("--demo-collectors", type=_nonnegative, metavar="N", help="scale the demo fleet to N collectors", **d)
    g.add_argument("--demo-seed", type=int, metavar="SEED", help="seed of the demo simulator (default 7)", **d)
    g.add_argument("--theme", help="theme name (built-in or from the config dir)", **d)
    g.add_argument("--inventory", metavar="FILE", help="service inventory (services.yaml)", **d)
    g.add_argument(
        "--view",
        metavar="NAME",
        help="open the TUI on a view: cockpit (default), fleet, pipelines, services, phases, rollouts, changes",
        **d,
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="otelcockpit",
        description="A terminal cockpit for rolling OpenTelemetry out across a fleet.",
    )
    parser.add_argument("--version", action="version", version=f"otelcockpit {__version__}")
    global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parent = Parser(add_help=False)
    global_options(parent, suppress=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not built yet; tests/core/test_cli_modules.py keeps this list honest
                continue
            raise
        module.register(sub, [parent])
    return parser


def settings_from(args: argparse.Namespace):  # noqa: ANN201 - avoids importing settings at module load
    from otelcockpit import settings

    return settings.resolve(
        context=getattr(args, "context", None),
        source=getattr(args, "source", None),
        url=getattr(args, "url", None),
        read_only=bool(getattr(args, "read_only", False)),
        theme=getattr(args, "theme", None),
        demo_collectors=getattr(args, "demo_collectors", None),
        demo_seed=getattr(args, "demo_seed", None),
        inventory=getattr(args, "inventory", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then stop: a return code for callers
            return exc.code if isinstance(exc.code, int) else 0
        handler = getattr(args, "handler", None)
        if handler is None:
            handler = importlib.import_module("otelcockpit.commands.tui").run
        return int(handler(args) or 0)
    except CockpitError as exc:
        print(f"otelcockpit: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("otelcockpit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `otelcockpit collectors | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
