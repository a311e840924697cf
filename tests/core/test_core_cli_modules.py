"""Every subcommand module the CLI lists imports, registers, and takes the global options.

PENDING names the modules colleagues are still building. The test is honest both ways: a listed
module must import unless it is PENDING, and a PENDING module must really not exist yet (remove
it from PENDING the moment it lands).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

import pytest

from otelcockpit import cli

# Empty now: every listed module has landed. Add a name here when a new entry goes into
# COMMAND_MODULES before its module exists.
PENDING: set[str] = set()


def test_pending_is_a_subset_of_the_registry() -> None:
    assert PENDING <= set(cli.COMMAND_MODULES), PENDING - set(cli.COMMAND_MODULES)
    assert len(cli.COMMAND_MODULES) == len(set(cli.COMMAND_MODULES)), "a module is listed twice"


@pytest.mark.parametrize("name", sorted(PENDING))
def test_pending_modules_do_not_exist_yet(name: str) -> None:
    assert importlib.util.find_spec(name) is None, f"{name} exists now: remove it from PENDING in {__file__}"


@pytest.mark.parametrize("name", [m for m in cli.COMMAND_MODULES if m not in PENDING])
def test_listed_module_imports_and_registers(name: str) -> None:
    module = importlib.import_module(name)
    register = getattr(module, "register", None)
    assert callable(register), f"{name} has no register(sub, parents)"
    parser = cli.Parser(prog="otelcockpit")
    sub = parser.add_subparsers(dest="command", parser_class=cli.Parser)
    parent = cli.Parser(add_help=False)
    cli.global_options(parent, suppress=True)
    register(sub, [parent])
    assert sub.choices, f"{name} registered no subcommand"
    for command, subparser in sub.choices.items():
        for action in _leaf_parsers(subparser):
            # parents=parents on every add_parser: global options work after the subcommand.
            for flag in ("--context", "--source", "--url", "--read-only", "--demo-collectors"):
                assert flag in action._option_string_actions, f"{name}: '{command}' lacks {flag}"


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                out.extend(_leaf_parsers(child))
    return out


def test_the_real_parser_has_every_existing_command() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("status", "collectors", "pipelines", "pipeline", "attributes", "contexts", "tui"):
        assert name in sub.choices
    # Two modules must not claim the same subcommand name (argparse would silently keep the last).
    seen: dict[str, str] = {}
    for name in cli.COMMAND_MODULES:
        if name in PENDING:
            continue
        p = cli.Parser(prog="x")
        s = p.add_subparsers(parser_class=cli.Parser)
        importlib.import_module(name).register(s, [cli.Parser(add_help=False)])
        for command in s.choices:
            assert command not in seen, f"'{command}' registered by both {seen[command]} and {name}"
            seen[command] = name
