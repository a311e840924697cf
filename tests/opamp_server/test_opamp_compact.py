"""The compact agent list the cockpit reads (GET /api/v1/agents?view=compact): the same fleet as the
full list, at a fraction of the bytes; what it leaves out comes with the agent's detail."""

from __future__ import annotations

import httpx
from opamp_server_support import WRITE_TOKEN, ServeProcess

from otelcockpit.backends.opamp import agent_to_collector, agents_of
from otelcockpit.simulate.agents import SimAgent, make_profiles

PB = {"Content-Type": "application/x-protobuf"}


def walk(node, path=()):  # noqa: ANN001, ANN201
    yield node
    for c in node.children:
        yield from walk(c, (*path, c.name))


def faulty(node, path=()) -> set:  # noqa: ANN001
    """(path, error) of every unhealthy component."""
    out = set() if node.healthy else {(path, node.last_error)}
    for c in node.children:
        out |= faulty(c, (*path, c.name))
    return out


def test_compact_list_maps_to_the_same_collectors_as_the_full_one(serve: ServeProcess) -> None:
    profiles = make_profiles(40, 5)
    assert {p.health_kind for p in profiles} == {"healthy", "degraded", "unhealthy"}
    for p in profiles:
        a = SimAgent(p)
        r = httpx.post(serve.opamp_url, content=a.stamp(a.full_state()).SerializeToString(), headers=PB)
        assert r.status_code == 200
    status, full = serve.api("GET", "/agents")
    assert status == 200
    status, compact = serve.api("GET", "/agents?view=compact")
    assert status == 200 and compact["view"] == "compact" and compact["fields"][0] == "instance_uid"
    assert len(compact["agents"]) == len(full["agents"]) == 40
    # fields the table needs are the same collectors; the tree stays only where something is wrong
    for f, c in zip(full["agents"], agents_of(compact), strict=True):
        want, got = agent_to_collector(f), agent_to_collector(c)
        assert got.with_changes(component_health=None) == want.with_changes(component_health=None), want.id
        assert got.component_health is not None and want.component_health is not None
        assert faulty(got.component_health) == faulty(want.component_health)  # every unhealthy one is there
        assert all(not n.healthy or n.children for n in walk(got.component_health) if n.name != "agent")
        if want.health.value == "healthy":
            assert not got.component_health.children
    # a fraction of the bytes
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    full_bytes = len(httpx.get(serve.admin_url + "/agents", headers=auth).content)
    compact_bytes = len(httpx.get(serve.admin_url + "/agents?view=compact", headers=auth).content)
    assert compact_bytes * 3 < full_bytes, (compact_bytes, full_bytes)
    # with a selector, and a bad view is a 400 in one line
    name = profiles[0].attr("service.name")
    status, some = serve.api("GET", f'/agents?view=compact&match=service.name="{name}"')
    assert status == 200 and 1 <= len(some["agents"]) < 40
    status, err = serve.api("GET", "/agents?view=tiny")
    assert status == 400 and "view must be full or compact" in err["error"]


def test_compact_list_tells_an_agent_that_runs_another_config(serve: ServeProcess) -> None:
    """The assigned hash travels in the compact list only when an agent reports another one, and the
    cockpit reads the same problem from both lists: one agent runs its assigned config, the other says
    APPLIED for another hash (its supervisor went back), and that is a problem ("other config")."""
    from otelcockpit.fleet.problems import Problem, problems
    from otelcockpit.opamp_server.proto import opamp_pb2 as pb

    sims = [SimAgent(p) for p in make_profiles(2, 9)]
    for a in sims:
        assert httpx.post(serve.opamp_url, content=a.stamp(a.full_state()).SerializeToString(), headers=PB).status_code == 200
    status, cv = serve.api("POST", "/configs", {"name": "gw", "files": {"c.yaml": {"body": "receivers: {}\n"}}})
    assert status == 201, cv
    status, body = serve.api("POST", "/assignments", {"config": "gw", "version": 1, "selector": ""})
    assert status == 201, body
    for a, digest in zip(sims, (bytes.fromhex(cv["hash"]), b"\x07" * 32), strict=True):
        msg = pb.AgentToServer(remote_config_status=pb.RemoteConfigStatus(
            last_remote_config_hash=digest, status=pb.RemoteConfigStatuses_APPLIED))
        if digest == bytes.fromhex(cv["hash"]):  # it runs what it applied: its effective config is gw v1
            msg.effective_config.config_map.config_map["c.yaml"].body = b"receivers: {}\n"
            msg.effective_config.config_map.config_map["c.yaml"].content_type = "text/yaml"
        assert httpx.post(serve.opamp_url, content=a.stamp(msg).SerializeToString(), headers=PB).status_code == 200
    status, full = serve.api("GET", "/agents")
    status, compact = serve.api("GET", "/agents?view=compact")
    lengths = sorted(len(row[compact["fields"].index("desired")]) for row in compact["agents"])
    assert lengths == [2, 3]  # the hash only for the agent that runs something else
    for rows in (full["agents"], agents_of(compact)):
        found = sorted(problems(agent_to_collector(r)) for r in rows)
        assert found == [(), (Problem.OTHER_CONFIG,)], found
    # what each runs reads the same from both lists (the compact one says "=" for the reported hash)
    from otelcockpit.fleet.configstate import collector_state

    states = [sorted(collector_state(agent_to_collector(r)).state.value for r in rows)
              for rows in (full["agents"], agents_of(compact))]  # fmt: skip
    assert states[0] == states[1] and "in sync" in states[0], states
    facts = [row[compact["fields"].index("config")] for row in compact["agents"]]
    assert any(f.get("effective_hash") == "=" for f in facts), facts
    assert all("assigned_version" not in f for f in facts)
