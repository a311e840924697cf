"""The fleet as data. No textual, no HTTP, no backend."""

from otelcockpit.fleet.matchers import Matcher, MatcherError, parse_matcher, parse_matchers
from otelcockpit.fleet.model import (
    BackendHealth,
    Collector,
    CollectorType,
    ComponentHealth,
    ConfigStatus,
    FleetSnapshot,
    Health,
    Operation,
    Pipeline,
    RemoteConfig,
    Revision,
    merge_attributes,
)

__all__ = [
    "BackendHealth",
    "Collector",
    "CollectorType",
    "ComponentHealth",
    "ConfigStatus",
    "FleetSnapshot",
    "Health",
    "Matcher",
    "MatcherError",
    "Operation",
    "Pipeline",
    "RemoteConfig",
    "Revision",
    "merge_attributes",
    "parse_matcher",
    "parse_matchers",
]
