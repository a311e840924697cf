"""The rollout service's scenario against a real ``otelcockpit serve`` with simulated agents, through
the same interface the CLI and the TUI use (the remote one, over the admin API): start, pause at the
gate with every failure recorded, progress still true while paused, rollback that aborts the rollout in
flight, every agent back on the previous config; and rollback targets for a config that went out by
assignment, not by a rollout."""

from __future__ import annotations

import asyncio
import time

from opamp_server_support import WRITE_TOKEN, ServeProcess, wait_for
from rollout_opamp_support import (
    V2,
    agents,
    all_applied,
    fails,
    salted_v1,
    setup_v1,
    simulate,
    stop_all,
    wait_agents,
)

from otelcockpit.backends.opamp_rollouts import RemoteRollouts
from otelcockpit.rollout.model import RolloutState
from otelcockpit.rollout.options import PlanOptions
from otelcockpit.rollout.service import PushRequest


def test_pause_at_the_gate_keeps_observing_then_rollback_returns_every_agent(serve: ServeProcess) -> None:
    count, seed, rate = 12, 2, 0.4  # 3 of the 6 canary agents fail version 2
    procs = [simulate(serve, count, transport="ws", seed=seed, fail_rate=rate, apply_delay=1.0)]
    try:
        wait_agents(serve, count)
        assert fails(V2, count, seed, rate) >= 3
        v1 = setup_v1(serve, count, body=salted_v1(count, seed, rate))

        async def go() -> None:
            async with RemoteRollouts(serve.admin_url, WRITE_TOKEN) as svc:
                req = PushRequest(
                    "gateway",
                    V2,
                    PlanOptions(canary="50%", waves="100%", soak="0s", apply_timeout="30s"),
                    author="alice",
                )
                plan = await svc.plan(req)
                assert plan.collector_count == count
                view = await svc.start(req, reviewed=plan)
                assert view.author == "tester (alice)"
                view = await svc.follow(view.id)
                assert view.state == RolloutState.PAUSED and "above the gate" in view.reason
                canary = set(plan.stages[0].collector_ids)
                expected = len(canary & failing_ids())
                # the rollout paused at its first failure; the other canary agents were still applying,
                # and the server keeps observing them: every failure ends up recorded
                end = time.monotonic() + 30
                while time.monotonic() < end:
                    v = await svc.view(view.id)
                    s = v.stages[0]
                    if s.applying == 0 and s.soaking == 0:
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"the paused canary was not observed to the end: {v.stages[0]}")
                assert (s.applied, s.failed) == (len(canary) - expected, expected), s
                failures = [f for f in v.failures if f.stage == 0]
                assert len(failures) == expected and all(f.error for f in failures)
                assert s.state == "partly failed" and v.stages[1].state == "pending"

                rb = await svc.rollback_plan("gateway")
                assert rb.aborts == (view.id,) and rb.target.id == "1" and rb.collectors == count
                result = await svc.rollback(rb, "bob")
                assert result.aborted == (view.id,) and "aborted rollout" in result.message()
                after = await svc.view(view.id)
                assert after.state == RolloutState.ROLLED_BACK and "bob" in after.reason

        def failing_ids() -> set[str]:
            from otelcockpit.opamp_server.core import config_hash
            from otelcockpit.opamp_server.views import uid_text
            from otelcockpit.simulate.agents import build_agents

            digest = config_hash({"collector.yaml": (V2.encode(), "text/yaml")})
            return {uid_text(a.uid) for a in build_agents(count, seed, fail_rate=rate) if a.will_fail(digest)}

        asyncio.run(go())
        wait_for(lambda: all_applied(serve, v1, count), 30)
        assert {a["desired"]["version"] for a in agents(serve)} == {1}
    finally:
        stop_all(procs)


def test_rollback_targets_for_a_config_that_went_out_by_assignment(serve: ServeProcess) -> None:
    """v1 and then v2 assigned (no rollout): every agent reported both APPLIED, so the target of the
    config is v1 because the agents applied it, and a rollback returns them to it."""
    procs = [simulate(serve, 4, transport="ws", seed=61)]
    try:
        wait_agents(serve, 4)
        v1 = setup_v1(serve, 4)
        status, cv2 = serve.api("POST", "/configs", {"name": "gateway", "files": {"collector.yaml": {"body": V2}}})
        assert status == 201
        status, _ = serve.api("POST", "/assignments", {"config": "gateway", "version": 2, "selector": "", "priority": 5})
        assert status == 201
        wait_for(lambda: all_applied(serve, cv2["hash"], 4), 20)
        targets = serve.api("GET", "/rollback-targets")[1]
        assert targets["pipelines"]["gateway"]["revision"] == "1"
        assert targets["pipelines"]["gateway"]["source"] == "applied"
        assert {t["hash"] for t in targets["collectors"].values()} == {v1}

        async def go() -> str:
            async with RemoteRollouts(serve.admin_url, WRITE_TOKEN) as svc:
                plan = await svc.rollback_plan("gateway")
                assert (plan.live_revision, plan.target.id, plan.collectors) == ("2", "1", 4)
                assert plan.by_env and "every collector it reached reported it APPLIED" in plan.describe()
                with_live = None
                try:
                    await svc.rollback_plan("gateway", "2")
                except Exception as exc:  # noqa: BLE001 - the one-line refusal is the point
                    with_live = str(exc)
                assert with_live and "nothing to roll back" in with_live
                return (await svc.rollback(plan, "carol")).message()

        message = asyncio.run(go())
        assert message.startswith("rolled back gateway from revision 2 to revision 1")
        wait_for(lambda: all_applied(serve, v1, 4), 20)
        # v1 is live again and nothing came before it; v2, which it was rolled back from, is no target
        target = serve.api("GET", "/rollback-targets")[1]["pipelines"]["gateway"]
        assert (target["live_revision"], target["revision"], target["source"]) == ("1", None, "none")
    finally:
        stop_all(procs)
