"""Fit for SSH: the too-small message, session state across exits, identity-preserving refreshes."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from otelcockpit.fleet.model import HEALTH_ORDER, stabilise
from otelcockpit.tui.fleet_view import FleetView
from otelcockpit.tui.widgets import TooSmallScreen


async def test_too_small_then_big_enough(make_app, wait_loaded, plain):
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await wait_loaded(pilot)
        assert isinstance(app.screen, TooSmallScreen)
        text = plain(app.screen.query_one("#too-small"))
        assert "terminal too small: 60x20" in text and "80x24" in text
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not isinstance(app.screen, TooSmallScreen)


async def test_min_size_is_configurable(make_app, wait_loaded, config_file):
    config_file.write_text("min_size: 80x23\n")
    app = make_app()
    async with app.run_test(size=(80, 23)) as pilot:
        await wait_loaded(pilot)
        assert not isinstance(app.screen, TooSmallScreen)


async def test_state_saved_on_exit_and_restored(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash", "g", "w", "enter")
        app.query_one(FleetView).set_sort("health")
        await pilot.press("2")
    path = Path(os.environ["OTELCOCKPIT_DATA_DIR"]) / "tui-state.json"
    state = json.loads(path.read_text())
    assert state["view"] == "pipelines" and state["filters"]["fleet"] == "gw"
    assert state["sorts"] == {"fleet": "health"}
    again = make_app()
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert again.view_name == "pipelines"
        fleet = again.query_one(FleetView)
        assert fleet.filter_text == "gw" and fleet.sort_key == "health"
        await pilot.press("1")
        rows = fleet.table.visible_rows()
        ranks = [HEALTH_ORDER.index(c.health) for c in rows]
        assert rows and ranks == sorted(ranks)
        assert "sorted by health" in str(fleet.query_one("#crumb").render())


async def test_hangup_saves_and_exits(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash", "o", "t", "e", "l", "enter")
        app.on_hangup()
        await pilot.pause()
    path = Path(os.environ["OTELCOCKPIT_DATA_DIR"]) / "tui-state.json"
    assert json.loads(path.read_text())["filters"]["fleet"] == "otel"
    assert app.return_code == 0


def test_stabilise_keeps_identity_of_equal_collectors(frozen_clock):
    from otelcockpit.backends.demo import DemoBackend

    a = DemoBackend(seed=1, clock=frozen_clock).snapshot_now()
    # A second backend with the same seed and clock builds the same fleet from new objects.
    b = DemoBackend(seed=1, clock=frozen_clock).snapshot_now()
    assert b.collectors[0] is not a.collectors[0] and b.collectors[0] == a.collectors[0]
    changed = list(b.collectors)
    changed[5] = changed[5].with_changes(last_error="boom")
    merged = stabilise(a, replace(b, collectors=tuple(changed)))
    same = sum(1 for x, y in zip(a.collectors, merged.collectors, strict=True) if x is y)
    assert same == len(a.collectors) - 1
    assert merged.collectors[5] is changed[5]
    assert all(p is q for p, q in zip(a.pipelines, merged.pipelines, strict=True))
