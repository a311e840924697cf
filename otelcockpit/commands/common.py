"""Helpers shared by subcommands: run a backend call, print JSON or a plain table, flag value types."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def run_with_backend(args: Any, fn: Callable[[Any, Any], Awaitable[T]], **backend_kwargs: Any) -> T:
    """Resolve settings, open the backend, run ``fn(settings, backend)``, close the backend."""
    from otelcockpit.backends import make_backend
    from otelcockpit.cli import settings_from

    settings = settings_from(args)

    async def go() -> T:
        backend = make_backend(settings, **backend_kwargs)
        try:
            return await fn(settings, backend)
        finally:
            await backend.close()

    return asyncio.run(go())


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain, pipe-friendly table (no colour, no box drawing)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(yes_no(v)) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        line = "  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip()
        sys.stdout.write(line + "\n")


def yes_no(value: Any) -> Any:
    """Text output says yes and no, never True and False (JSON keeps its booleans)."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return value


def is_terminal() -> bool:
    """stdout is a terminal: only then may text be cut to fit a line."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def add_json(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


# ---- flag value types: a bad value is argparse's one line and exit 2 ----------------------------


def whole_number(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A flag's whole number from ``minimum`` (to ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}")
        if value < minimum:
            raise argparse.ArgumentTypeError("must be zero or more" if minimum == 0 else f"must be at least {minimum}")
        return value

    return parse


def positive_number(what: str = "a number") -> Callable[[str], float]:
    """A flag's number above zero (``what``: how the error names it, e.g. "seconds")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError("must be more than zero")
        return value

    return parse


def share(text: str) -> float:
    """A flag's share, from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value
