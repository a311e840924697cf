"""What is wrong with a collector, for the people who answer a page: the one place that decides.

A collector has a problem when it is unhealthy, offline, failed to apply its remote config, or runs
a config other than the one assigned to it. That last one is not decided here: it is the config
state's (:mod:`otelcockpit.fleet.configstate`: drifted, on its fallback or on an older cached config,
while a config is assigned to it), so the problem and the state never disagree.
The incident report, the cockpit and the Fleet view's ``problem`` filter field all ask this module,
so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from otelcockpit.fleet.configstate import OFF_ASSIGNMENT, collector_state
from otelcockpit.fleet.model import Collector, ConfigStatus, Health


class Problem(StrEnum):
    UNHEALTHY = "unhealthy"
    CONFIG_FAILED = "config failed"
    OTHER_CONFIG = "other config"  # runs a config other than the one assigned
    OFFLINE = "offline"


# Worst first: what an incident responder looks at first.
PROBLEM_ORDER = (Problem.UNHEALTHY, Problem.CONFIG_FAILED, Problem.OTHER_CONFIG, Problem.OFFLINE)
PROBLEM_RANK = {p: i for i, p in enumerate(PROBLEM_ORDER)}


@dataclass(frozen=True, slots=True)
class ProblemLook:
    """How every face shows a problem: one record, so the cockpit, the incident view and the Fleet
    view never drift apart."""

    glyph: str  # so status never rests on colour alone
    short: str  # in a narrow cell (the incident view's PROBLEM column)
    colour: str  # the Rich colour of a count or a cell
    tone: str  # the table style it takes (``vtable--<tone>``)


PROBLEM_LOOK = {
    Problem.UNHEALTHY: ProblemLook("✖", "unhealthy", "red", "unhealthy"),
    Problem.CONFIG_FAILED: ProblemLook("!", "cfg failed", "red", "error"),
    Problem.OTHER_CONFIG: ProblemLook("≠", "other cfg", "yellow", "degraded"),
    Problem.OFFLINE: ProblemLook("○", "offline", "bright_black", "offline"),
}
PROBLEM_GLYPH = {p: look.glyph for p, look in PROBLEM_LOOK.items()}


def runs_other_config(c: Collector) -> bool:
    """A config is assigned to it and its config state says it runs another (drifted, on its
    fallback, on an older cached config). Nothing assigned, or a state that cannot be known: no."""
    return bool(c.remote_config.assigned) and collector_state(c).state in OFF_ASSIGNMENT


def problems(c: Collector) -> tuple[Problem, ...]:
    """Every problem of a collector, worst first (empty: nothing an incident needs to show)."""
    out: list[Problem] = []
    if c.health == Health.UNHEALTHY:
        out.append(Problem.UNHEALTHY)
    if c.remote_config.status == ConfigStatus.FAILED:
        out.append(Problem.CONFIG_FAILED)
    elif runs_other_config(c):
        out.append(Problem.OTHER_CONFIG)
    if c.health == Health.OFFLINE:
        out.append(Problem.OFFLINE)
    return tuple(out)


def problem(c: Collector) -> Problem | None:
    """The worst problem of a collector, or None."""
    found = problems(c)
    return found[0] if found else None


def problem_reason(c: Collector, p: Problem) -> str:
    """Why, in the collector's own words where it gave any."""
    rc = c.remote_config
    if p == Problem.CONFIG_FAILED:
        return rc.error or "its remote config failed to apply"
    if p == Problem.OTHER_CONFIG:
        return collector_state(c).text
    return c.health_reason or c.last_error or rc.error
