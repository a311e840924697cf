"""What the config state costs (issue 14). ``make bench``.

(a) The admin API's agent list (``GET /api/v1/agents``' body, built in the server process) for 10,000
    agents that reported a full state (simulated agents' real messages through the protocol core):
    with each agent's config facts (effective-config hash, the versions its hashes are, what it came
    up on, what it lacks) against the same list without them, measured in the same run.
(b) ``status`` totals over the demo fleet at 100,000 collectors (health, type, config status and the
    config state of every collector) against the same totals without the config state, same run.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.configstate import collector_state
from otelcockpit.fleet.summary import totals
from otelcockpit.opamp_server import core
from otelcockpit.opamp_server.hub import ConfigVersion, Hub
from otelcockpit.opamp_server.store import SqliteStore
from otelcockpit.opamp_server.views import agent_text
from otelcockpit.simulate.agents import build_agents

pytestmark = pytest.mark.slow
AGENTS = 10_000
EPOCH = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def best_of(n: int, fn: Any) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def test_agent_list_with_config_facts(tmp_path, record) -> None:  # noqa: ANN001
    hub = Hub(SqliteStore(tmp_path / "opamp.db"))
    cv = ConfigVersion.make("edge", 1, {"edge.yaml": ("receivers: {otlp: {}}\n", "text/yaml")}, "b", "", "2026-11-20T09:00:00Z")
    hub.configs["edge"] = [cv]
    hub.versions_by_hash[cv.hash] = cv
    now = time.time()
    for a in build_agents(AGENTS, 5):
        out = core.process(None, a.stamp(a.full_state()), now, resolve=lambda attrs: cv.desired)
        assert out.state is not None
        hub.agents[out.state.uid] = out.state
    states = list(hub.agents.values())

    def without() -> None:  # the same list (the hub's connection and heartbeat look-ups), no config facts
        for s in states:
            agent_text(s, connected=hub.is_connected(s), heartbeat_seconds=hub.heartbeat_of(s), config_text="{}")

    def with_facts() -> None:
        for s in states:
            hub.agent_view_text(s)

    base = best_of(5, without)
    facts = best_of(5, with_facts)
    record(agents=AGENTS, list_without_config_facts_s=round(base, 3), list_with_config_facts_s=round(facts, 3),
           ratio=round(facts / base, 2))  # fmt: skip
    hub.store.close()


def test_status_totals_with_config_state_at_100k(record) -> None:  # noqa: ANN001
    snap = DemoBackend(clock=lambda: EPOCH, collectors=100_000).snapshot_now()
    collectors = snap.collectors

    def baseline() -> None:  # the totals as they were before the config state (health, type, status)
        by_health: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        for c in collectors:
            by_health[c.health.value] += 1
            by_type[c.type.value] += 1
            by_status[c.remote_config.status.value] += 1

    def full() -> None:
        totals(collectors)

    def states_only() -> None:
        for c in collectors:
            collector_state(c)

    base = best_of(3, baseline)
    t = best_of(3, full)
    s = best_of(3, states_only)
    record(collectors=len(collectors), totals_without_config_state_s=round(base, 3), totals_with_config_state_s=round(t, 3),
           config_state_only_s=round(s, 3))  # fmt: skip
