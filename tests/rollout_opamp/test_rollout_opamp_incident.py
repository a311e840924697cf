"""``otelcockpit incident`` on the OpAMP backend: the rollouts running inside ``otelcockpit serve``,
what each broken agent was offered, and the config each one last reported APPLIED, all read through
the admin API with a read token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from opamp_server_support import READ_TOKEN, ServeProcess, wait_for
from rollout_opamp_support import V2, agents, cli, setup_v1, simulate, stop_all, wait_agents, wait_state


def test_incident_reads_the_servers_rollouts_and_rollback_targets(serve: ServeProcess, tmp_path: Path) -> None:
    procs = [simulate(serve, 4, transport="ws", seed=51), simulate(serve, 2, transport="http", seed=52)]
    try:
        wait_agents(serve, 6)
        v1 = setup_v1(serve, 6)
        body = {"config": "gateway", "files": {"collector.yaml": V2}, "canary": "2", "waves": "100%",
                "manual": True, "apply_timeout": "20s", "soak": "0s", "author": "alice"}  # fmt: skip
        status, view = serve.api("POST", "/rollouts", body)
        assert status == 201, view
        paused = wait_state(serve, view["id"], "paused")
        canary = set(serve.api("GET", f"/rollouts/{view['id']}")[1]["plan"]["stages"][0]["collector_ids"])
        assert len(canary) == 2 and paused["stages"][0]["applied"] == 2, paused
    finally:
        stop_all(procs)
    wait_for(lambda: all(a["status"] == "offline" for a in agents(serve)), 20)

    env = {
        "OTELCOCKPIT_OPAMP_TOKEN": READ_TOKEN,
        "OTELCOCKPIT_CONFIG": str(tmp_path / "no-config.yaml"),
        "OTELCOCKPIT_DATA_DIR": str(tmp_path / "data"),
    }
    r = cli("incident", "--source", "opamp", "--url", serve.admin_url, "--hours", "1", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["notes"] == []
    # the rollout paused in the server, with the version to return to
    [line] = report["rollouts"]
    assert (line["id"], line["state"], line["rollback_target"]) == (view["id"], "paused", "1")
    assert line["rollback_command"].endswith("rollback gateway --to 1")
    # every agent is offline; the canary ones were reached by the rollout and go back to version 1
    broken = {b["id"]: b for b in report["broken"]}
    assert set(broken) == {a["instance_uid"] for a in agents(serve)} and len(broken) == 6
    for uid, b in broken.items():
        if uid in canary:
            assert b["changed_before"]["rollout_id"] == view["id"], b
            assert b["rollback_config"] == {"hash": v1, "label": "gateway@v1", "at": b["rollback_config"]["at"]}
        else:
            assert b["rollback_config"] is None, b  # never ran anything but version 1
            # what reached it last is the live version 1 (the paused rollout's version 2 is not live)
            assert b["changed_before"]["revision"] == "1" and b["changed_before"]["rollback_command"] == "", b
    # the server's own events are in the timeline
    kinds = {c["kind"] for c in report["changes"]}
    assert "rollout.started" in kinds, kinds

    # The incident screen reads again every few seconds: a rollout's per-collector progress (a row
    # per agent) is fetched again only when the rollout changed.
    async def twice() -> tuple[Any, Any, int]:
        from datetime import timedelta

        from otelcockpit.backends.opamp_rollouts import RemoteRollouts
        from otelcockpit.fleet.model import utcnow

        gets = 0

        class Counting(RemoteRollouts):
            async def progress(self, rollout_id: str) -> Any:
                nonlocal gets
                gets += 1
                return await super().progress(rollout_id)

        async with Counting(serve.admin_url, READ_TOKEN) as client:
            now = utcnow()
            since = now - timedelta(hours=1)
            first = await client.records((), since=since, now=now, with_progress=True)
            again = await client.records((), since=since, now=now, with_progress=True)
        return first, again, gets

    first, again, gets = asyncio.run(twice())
    assert gets == 1
    assert set(first.progress[view["id"]]) == set(again.progress[view["id"]]) >= canary
