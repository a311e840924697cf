"""What every collector runs, in the TUI: the Fleet view's RUNS column and ``config_state`` filter field, the
collector detail, the incident view, and the cockpit's fleet panel through a fleet-API outage on the demo
(the API away, pushes refused, the collectors that came up on their fallback or a cached config counted and
compared with the managed config, then converging)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.errors import PushRefused
from otelcockpit.fleet.configstate import ConfigState, collector_state
from otelcockpit.tui.app import CockpitApp
from otelcockpit.tui.detail import CollectorDetailScreen


async def test_fleet_view_column_filter_group_and_detail(make_app, wait_loaded, plain) -> None:  # noqa: ANN001
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        view = app.query_one("#fleet")
        drifted = [c for c in app.snapshot.collectors if collector_state(c).state == ConfigState.DRIFTED]
        assert len(drifted) == 1
        # the filter field, as a user types it
        await pilot.press("/")
        await pilot.press(*'config_state="drifted"', "enter")
        await pilot.pause()
        assert view.table.shown == 1 and view.table.current.id == drifted[0].id
        from otelcockpit.tui.vtable import visible_columns

        keys = [c.key for c in visible_columns(view.table.columns, view.table.size.width)]
        assert "runs" in keys and "runs-glyph" not in keys  # the word at 120 columns
        assert "runs-glyph" in [c.key for c in visible_columns(view.table.columns, 78)]  # the glyph at 80
        # the detail says what differs
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, CollectorDetailScreen)
        body = plain(app.screen.query_one("#content"))
        assert "runs" in body and "≠ drifted: it reports" in body and "its effective config differs" in body
        await pilot.press("escape")
        await pilot.pause()
        # text filter words and grouping by the field
        assert app.set_filter("cached") is None
        assert view.table.shown == 2
        assert app.set_filter("") is None
        view.group_key = "config_state"
        view.add_class("-grouped")
        view._fill_groups()
        groups = view.query_one("#groups")
        assert groups.row_count == 3  # in sync, on cached remote, drifted


async def test_the_incident_view_lists_collectors_not_on_their_config(frozen_clock) -> None:  # noqa: ANN001
    from otelcockpit.tui.incident import IncidentApp

    app = IncidentApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        report = await wait_until(lambda: app.report, "the incident report", pilot=pilot)
        assert report is not None
        assert report.config_states["drifted"] == 1 and report.config_states["on cached remote"] == 2
        assert [o.state for o in report.off_config] == ["drifted", "on cached remote", "on cached remote"]
        table = app.query_one("#i-broken")
        keys = [r.id for r in table.rows]
        assert all(o.id in keys for o in report.off_config)


def outage_app(now: list[Any]) -> CockpitApp:
    s = settings_mod.resolve()
    return CockpitApp(s, clock=lambda: now[0], live=False, cursor_blink=False, initial_view="cockpit")


async def test_the_cockpit_through_a_fleet_api_outage(frozen_clock, plain) -> None:  # noqa: ANN001
    now = [frozen_clock()]
    app = outage_app(now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.snapshot, "the first snapshot", pilot=pilot)
        backend: Any = app.backend
        panel = app.query_one("#p-fleet")
        assert "runs =417 ≠1 ↺2" in plain(panel)
        backend.fleet_api_down()
        now[0] += timedelta(minutes=2)
        ids = backend.scale_out(10, without_cache=0.5)
        app.poll()
        await pilot.pause(0.3)
        text = plain(panel)
        assert "STALE, pushes refused: unreachable: the fleet API has not answered since" in text and "(data 2m old)" in text
        assert "fleet API away since 2m ago; nothing has reported since" in text
        try:
            await backend.push(__import__("otelcockpit.backends.base", fromlist=["Change"]).Change("pipeline.set_enabled", {"name": "app_logs", "enabled": False}))
        except PushRefused as exc:
            assert "stale" in exc.message
        else:
            raise AssertionError("a push went through while the fleet API was down")
        status = plain(app.query_one("StatusRow"))
        assert "STALE" in status
        backend.fleet_api_up()
        app.poll()
        started = [backend.sim.started_on[i] for i in ids]
        fallback, cached = started.count("bootstrap"), started.count("cache")
        for _ in range(100):  # the worker fetches the texts of the configs to compare
            await pilot.pause(0.05)
            if "adds a debug exporter" in plain(panel):
                break
        text = " ".join(plain(panel).split())
        assert "10 collector(s) came up between" in text
        assert f"{fallback} on their fallback (bootstrap) config, {cached} on a cached remote config" in text
        assert "came up on their bootstrap config" in text and "adds a debug exporter (otelcol.exporter.debug.local)" in text
        for _ in range(15):  # the demo applies their assigned config after a few ticks
            now[0] += timedelta(seconds=2)
            app.poll()
            await pilot.pause(0.05)
            if "have converged on their assigned config" in plain(panel):
                break
        assert "all 10 of them have converged on their assigned config" in plain(panel)
