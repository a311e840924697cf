"""Staged configuration pushes: plan, stages, gates, journal (SQLite), rollback targets.

No backend, server, HTTP library or textual here: the engine drives a small
:class:`~otelcockpit.rollout.engine.Target` that adapters outside this package implement
(``otelcockpit/rollout_targets/``).
"""

from otelcockpit.rollout.engine import Observation, RolloutEngine, Target, build_view, new_rollout_id
from otelcockpit.rollout.journal import Journal, RolloutRecord, default_path
from otelcockpit.rollout.model import (
    CanarySpec,
    CollectorProgress,
    CollectorStatus,
    Gates,
    RolloutPlan,
    RolloutState,
    RolloutView,
    Stage,
    StageProgress,
    parse_canary,
    parse_duration,
    parse_waves,
)
from otelcockpit.rollout.planner import make_plan

__all__ = [
    "CanarySpec",
    "CollectorProgress",
    "CollectorStatus",
    "Gates",
    "Journal",
    "Observation",
    "RolloutEngine",
    "RolloutPlan",
    "RolloutRecord",
    "RolloutState",
    "RolloutView",
    "Stage",
    "StageProgress",
    "Target",
    "build_view",
    "default_path",
    "make_plan",
    "new_rollout_id",
    "parse_canary",
    "parse_duration",
    "parse_waves",
]
