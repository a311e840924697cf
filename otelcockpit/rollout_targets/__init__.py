"""Rollout targets: the adapters between the backend-agnostic engine and each backend.

``make_target(backend)`` picks one for a backend made by ``otelcockpit.backends.make_backend``.
On the opamp backend the engine runs inside ``otelcockpit serve`` (see ``opamp_server/rollouts.py``);
``rollout_targets/opamp.py`` is the thin admin-API client the CLI uses instead of a local target.
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
    if name == "opamp":
        # No local engine: the rollout runs inside `otelcockpit serve`; drive it through its admin API
        # (otelcockpit.rollout_targets.opamp.OpAmpRollouts, as `otelcockpit rollout --source opamp` does).
        raise UsageError(
            "staged rollouts on the opamp backend run inside `otelcockpit serve`: use `otelcockpit rollout` "
            "with --source opamp (the server's admin API), not a local engine"
        )
    raise UsageError(
        f"staged rollouts are not available on the {name or 'this'} backend; use demo, fleet-management or opamp"
    )
