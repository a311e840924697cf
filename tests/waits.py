"""The one way a test waits: ``wait_until``. It returns the condition's first truthy value, or fails
with a message naming what never happened (and the last value seen) when the time is up. A wait
never falls through: a slow machine shows up as "X never happened", not as a confusing diff later.

    wait_until(lambda: proc.poll() is not None, "the process to exit", timeout=10)
    await wait_until(lambda: app.report, "the incident report", pilot=pilot)   # in a Textual pilot

With ``pilot`` the wait is a coroutine that lets the app run between checks (``pilot.pause``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, overload

DEFAULT_TIMEOUT = 20.0


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def _fail(what: str | Callable[[], str], timeout: float, last: Any) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {_describe(what)} (last value {last!r})")


@overload
def wait_until(
    condition: Callable[[], Any], what: str | Callable[[], str], *, timeout: float = ..., interval: float = ...,
    pilot: None = None,
) -> Any: ...


@overload
def wait_until(
    condition: Callable[[], Any], what: str | Callable[[], str], *, timeout: float = ..., interval: float = ...,
    pilot: Any,
) -> Awaitable[Any]: ...


def wait_until(
    condition: Callable[[], Any],
    what: str | Callable[[], str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float | None = None,
    pilot: Any = None,
) -> Any:
    """Wait until ``condition()`` is truthy and return that value; fail with ``what`` on timeout."""
    if pilot is not None:
        return _wait_pilot(condition, what, timeout, 0.02 if interval is None else interval, pilot)
    step = 0.05 if interval is None else interval
    end = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= end:
            raise _fail(what, timeout, last)
        time.sleep(step)


async def _wait_pilot(
    condition: Callable[[], Any], what: str | Callable[[], str], timeout: float, interval: float, pilot: Any
) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= end:
            raise _fail(what, timeout, last)
        await pilot.pause(interval)
