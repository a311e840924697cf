"""Totals over a snapshot: by health, type, config status, and grouping by an attribute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from otelcockpit.fleet.configstate import CONFIG_STATE_ORDER, collector_state
from otelcockpit.fleet.model import HEALTH_ORDER, Collector, CollectorType, ConfigStatus, Health


@dataclass
class Totals:
    total: int = 0
    by_health: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_config_status: Counter[str] = field(default_factory=Counter)
    by_config_state: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "by_health": {h.value: self.by_health.get(h.value, 0) for h in HEALTH_ORDER},
            "by_type": {t.value: self.by_type.get(t.value, 0) for t in CollectorType},
            "by_config_status": {s.value: self.by_config_status.get(s.value, 0) for s in ConfigStatus},
            "by_config_state": {s.value: self.by_config_state.get(s.value, 0) for s in CONFIG_STATE_ORDER},
        }


def totals(collectors: Iterable[Collector]) -> Totals:
    t = Totals()
    for c in collectors:
        t.total += 1
        t.by_health[c.health.value] += 1
        t.by_type[c.type.value] += 1
        t.by_config_status[c.remote_config.status.value] += 1
        t.by_config_state[collector_state(c).state.value] += 1
    return t


@dataclass
class Group:
    value: str
    count: int = 0
    health: Counter[str] = field(default_factory=Counter)

    @property
    def worst(self) -> Health:
        for h in HEALTH_ORDER:
            if self.health.get(h.value):
                return h
        return Health.UNKNOWN


def group_by(collectors: Iterable[Collector], key: str) -> list[Group]:
    groups: dict[str, Group] = {}
    for c in collectors:
        value = c.attr(key)
        g = groups.get(value)
        if g is None:
            g = groups[value] = Group(value)
        g.count += 1
        g.health[c.health.value] += 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.value))
