"""Rollout targets: the adapters between the backend-agnostic engine and each backend.

``make_target(backend)`` picks one for a backend made by ``otelcockpit.backends.make_backend``.
"""

from __future__ import annotations

from typing import Any

from otelcockpit.errors import UsageError
from otelcockpit.rollout.staging import AttributeStagingTarget


def make_target(backend: Any) -> AttributeStagingTarget:
    inner = getattr(backend, "inner", backend)  # a ReadOnlyBackend wraps the real one
    read_only = "read-only" in getattr(backend, "capabilities", frozenset())
    name = getattr(inner, "name", "")
    if name == "demo":
        from otelcockpit.rollout_targets.demo import DemoAdapter

        return AttributeStagingTarget(DemoAdapter(backend))
    if name == "fleet-management":
        from otelcockpit.rollout_targets.fleet_management import FleetManagementAdapter

        return AttributeStagingTarget(FleetManagementAdapter(inner, read_only=read_only))
    raise UsageError(
        f"staged rollouts on the {name or 'this'} backend run inside `otelcockpit serve` (not available yet); "
        "use the demo or fleet-management backend"
    )
