"""Errors a user can cause end in one line and an exit code, never a traceback.

Exit codes: 0 success, 1 a runtime failure (backend unreachable, refused), 2 a usage or config error.
"""

from __future__ import annotations


class CockpitError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CockpitError):
    """A bad flag, a bad matcher, a broken YAML file, an unknown context or theme."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class BackendError(CockpitError):
    """The backend failed: unreachable, refused, rate limited, unavailable."""

    exit_code = 1
    kind = "unavailable"


class ReadOnlyError(CockpitError):
    """A write was attempted in read-only mode (the second guard behind the TUI's key gating)."""

    exit_code = 1


class PushRefused(CockpitError):
    """A push refused before it reached the backend (stale data, failed policy, ...)."""

    exit_code = 1
