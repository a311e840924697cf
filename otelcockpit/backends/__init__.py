"""Backends: where a fleet lives. Each one is a FleetBackend; ``make_backend`` picks one from settings."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otelcockpit.backends.base import Change, FleetBackend, PushResult, ReadOnlyBackend
from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.fleet.model import FleetSnapshot, Revision

if TYPE_CHECKING:
    from otelcockpit.settings import Settings

# backend name -> "module:factory"; factories take Settings and return a FleetBackend.
FACTORIES = {
    "demo": "otelcockpit.backends.demo:from_settings",
    "fleet-management": "otelcockpit.backends.fleet_management:from_settings",
    "opamp": "otelcockpit.backends.opamp:from_settings",
}


def make_backend(settings: Settings, *, wrap_read_only: bool = True, **kwargs: object) -> FleetBackend:
    target = FACTORIES.get(settings.backend)
    if target is None:
        raise UsageError(f"unknown backend {settings.backend!r}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UsageError(f"the {settings.backend} backend is not available in this build") from None
        raise
    backend: FleetBackend = getattr(module, attr)(settings, **kwargs)
    if wrap_read_only and settings.read_only:
        return ReadOnlyBackend(backend)  # type: ignore[return-value]
    return backend


def rollouts_for(
    settings: Settings,
    backend: FleetBackend,
    *,
    journal: str | None = None,
    spawn: object = None,
    poll_interval: float = 1.0,
) -> Any:
    """The rollout service of ``backend`` for these settings (every face gets its rollouts here):
    the journal (``--journal`` or the data dir's), the context's default plan, read-only."""
    from pathlib import Path

    from otelcockpit.backends.base import RolloutSettings
    from otelcockpit.rollout.journal import default_path
    from otelcockpit.rollout.options import SAFE_DEFAULTS

    rollouts = getattr(backend, "rollouts", None)
    if rollouts is None:
        raise UsageError(f"staged rollouts are not available on the {backend.name} backend")
    return rollouts(
        RolloutSettings(
            journal_path=Path(journal) if journal else default_path(),
            context=settings.context.name,
            defaults=settings.context.rollout_defaults or SAFE_DEFAULTS,
            read_only=settings.read_only,
            poll_interval=poll_interval,
            spawn=spawn,
        )
    )


async def all_revisions(backend: FleetBackend, snap: FleetSnapshot) -> dict[str, tuple[Revision, ...]]:
    """Every pipeline's revisions: from the snapshot when the backend ships them (demo), from one
    bulk call when it has one (Fleet Management's ListPipelinesRevisions), else pipeline by pipeline."""
    if snap.revisions:
        return dict(snap.revisions)
    bulk = getattr(backend, "all_revisions", None)
    if bulk is not None:
        return dict(await bulk())
    out: dict[str, tuple[Revision, ...]] = {}
    for p in snap.pipelines:
        try:
            out[p.name] = tuple(await backend.revisions(p.name))
        except CockpitError:
            continue
    return out


__all__ = [
    "Change",
    "FleetBackend",
    "PushResult",
    "ReadOnlyBackend",
    "all_revisions",
    "make_backend",
    "rollouts_for",
]
