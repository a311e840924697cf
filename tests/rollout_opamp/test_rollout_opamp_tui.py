"""The TUI's staged push on the OpAMP backend: the review is planned by the server, the rollout runs in
the server, and the cockpit follows it, pauses it and rolls it back through the admin API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opamp_server_support import WRITE_TOKEN, ServeProcess
from rollout_opamp_support import all_applied, setup_v1, simulate, stop_all, wait_agents
from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.tui.app import CockpitApp
from otelcockpit.tui.detail import CollectorDetailScreen
from otelcockpit.tui.rollout_views import EditScreen, ReviewScreen, RolloutScreen


@pytest.fixture
def fleet(serve: ServeProcess):
    procs = [simulate(serve, 6, transport="ws", seed=41)]
    try:
        wait_agents(serve, 6)
        yield serve, setup_v1(serve, 6)
    finally:
        stop_all(procs)


async def test_push_from_the_tui_runs_in_the_server(fleet, monkeypatch, tmp_path: Path):
    serve, v1 = fleet
    monkeypatch.setenv("OTELCOCKPIT_OPAMP_TOKEN", WRITE_TOKEN)
    app = CockpitApp(
        settings_mod.resolve(source="opamp", url=serve.admin_url), live=True, cursor_blink=False, initial_view="pipelines"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.snapshot is not None and app.snapshot.pipeline("gateway") is not None,
                         "the gateway config in the cockpit", pilot=pilot)
        app.query_one("#pipelines").table.move_to_key("gateway")
        await pilot.press("u")
        assert isinstance(app.screen, EditScreen)
        area = app.screen.query_one("TextArea")
        area.text = area.text.replace("debug: {}", "debug:\n    verbosity: basic")
        await pilot.press("ctrl+s")
        await pilot.pause()
        review = app.screen
        assert isinstance(review, ReviewScreen)
        review.query_one("#canary").value = "1"
        review.query_one("#waves").value = "100%"
        review.query_one("#soak").value = "0s"
        # The plan of these fields (not the one of the defaults, which may arrive first).
        await wait_until(lambda: review.plan is not None and review.plan.gates.soak_seconds == 0,
                         "the server's plan for the fields set", pilot=pilot)
        assert review.plan.collector_count == 6
        review.query_one("#start").press()
        await wait_until(lambda: isinstance(app.screen, RolloutScreen), "the rollout screen", pilot=pilot)
        rid = app.screen.rollout_id
        def state() -> str:
            view = app.rollout_view(rid)
            return view.state.value if view else ""

        await wait_until(lambda: state() in ("completed", "paused"), lambda: f"rollout {rid} to finish (now {state()!r})",
                         timeout=40, interval=0.5, pilot=pilot)
        assert state() == "completed"
        # Every agent's own rollback target (read from the server) is version 1, in its detail.
        cid = app.snapshot.collectors[0].id
        app.open_collector(cid)
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, CollectorDetailScreen)
        end = time.monotonic() + 20
        while time.monotonic() < end and getattr(app.collector_targets.get(cid), "label", "") != "gateway@v1":
            app.request_changes(force=True)
            await pilot.pause(0.5)
        assert app.collector_targets[cid].hash == v1
        c = app.snapshot.collector(cid)
        assert detail.target_text(c, app.snapshot, app.now()).startswith(f"gateway@v1 · config {v1[:12]} · APPLIED ")
    assert not all_applied(serve, v1, 6)  # every agent moved off v1: the rollout ran in the server


async def test_views_agree_on_the_opamp_backend(fleet, monkeypatch):
    """Without a service inventory the cockpit's phase panel says what the Phases view says (not
    "analysing…" for ever), and the Pipelines list counts the revisions its detail lists."""
    from otelcockpit.tui.cockpit_view import CockpitView
    from otelcockpit.tui.detail import PipelineDetailScreen

    serve, _v1 = fleet
    status, cv = serve.api("POST", "/configs", {"name": "gateway", "files": {"collector.yaml": {"body": "# v2\n"}}})
    assert status == 201, cv
    status, a = serve.api("POST", "/assignments", {"config": "gateway", "version": 2, "selector": ""})
    assert status == 201, a
    monkeypatch.setenv("OTELCOCKPIT_OPAMP_TOKEN", WRITE_TOKEN)
    app = CockpitApp(settings_mod.resolve(source="opamp", url=serve.admin_url), live=True, cursor_blink=False,
                     initial_view="cockpit")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.adoption_error, "the adoption analysis to fail without an inventory", pilot=pilot)
        await pilot.pause()
        cockpit = app.query_one(CockpitView)
        panel = str(cockpit.query_one("#p-phases").render())
        assert f"unavailable: {app.adoption_error}" in panel and "analysing" not in panel
        await pilot.press("4")
        await pilot.pause()
        assert f"unavailable: {app.adoption_error}" in str(app.query_one("#phases #crumb").render())
        await pilot.press("2")
        view = app.query_one("#pipelines")
        row = await wait_until(lambda: next((r for r in view.table.rows if r.pipeline.name == "gateway"
                                             and r.revisions >= 0), None),
                               "the gateway row with its revision count", pilot=pilot)
        view.table.move_to_key("gateway")
        await pilot.press("enter")
        screen = await wait_until(lambda: isinstance(app.screen, PipelineDetailScreen) and app.screen.revisions
                                  and app.screen, "the pipeline detail with its revisions", pilot=pilot)
        assert row.revisions == len(screen.revisions) == 2
