"""Error logging that hostile or broken traffic cannot turn into a flood.

Every unexpected error on the agent path goes through one :class:`ErrorLog`. Per window (a minute by
default) it writes at most ``per_key`` lines for one connection or agent and ``total`` lines in all;
only the first ``tracebacks`` of them carry a traceback. Whatever it drops is counted, and the next
line after a window with drops says how many were dropped, so nothing is hidden and nothing grows
without bound. The counters are served by the admin API's health endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


@dataclass
class ErrorLog:
    logger: logging.Logger
    per_key: int = 5
    total: int = 50
    tracebacks: int = 5
    window: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    logged: int = 0
    dropped: int = 0
    _window_start: float = field(default=-1.0, repr=False)
    _in_window: int = field(default=0, repr=False)
    _traces_in_window: int = field(default=0, repr=False)
    _by_key: dict[str, int] = field(default_factory=dict, repr=False)
    _dropped_in_window: int = field(default=0, repr=False)

    def _roll(self, now: float) -> None:
        if self._window_start >= 0 and now - self._window_start < self.window:
            return
        if self._dropped_in_window:
            self.logger.warning(
                "%d more errors were not logged in the last %.0f s (rate limit)",
                self._dropped_in_window,
                self.window,
            )
        self._window_start = now
        self._in_window = 0
        self._traces_in_window = 0
        self._by_key.clear()
        self._dropped_in_window = 0

    def error(self, key: str, message: str, *, exc: BaseException | None = None) -> bool:
        """Log one error unless a limit is reached; True if it was written."""
        self._roll(self.clock())
        seen = self._by_key.get(key, 0)
        if self._in_window >= self.total or seen >= self.per_key:
            self.dropped += 1
            self._dropped_in_window += 1
            return False
        if len(self._by_key) < 10 * self.total:  # bounded: keys beyond this only count in the total
            self._by_key[key] = seen + 1
        self._in_window += 1
        self.logged += 1
        trace = exc is not None and self._traces_in_window < self.tracebacks
        if trace:
            self._traces_in_window += 1
            self.logger.error("%s", message, exc_info=exc)
        elif exc is not None:
            self.logger.error("%s: %s: %s", message, type(exc).__name__, str(exc)[:300])
        else:
            self.logger.error("%s", message)
        return True

    def as_json(self) -> dict[str, int]:
        return {"logged": self.logged, "dropped": self.dropped}
