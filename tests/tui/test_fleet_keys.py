"""Every key of the Fleet view, driven through the real app on the demo backend."""

from __future__ import annotations

from keys import apply_filter, type_text

from otelcockpit.fleet.model import HEALTH_ORDER, Health
from otelcockpit.tui.detail import CollectorDetailScreen, PipelineDetailScreen
from otelcockpit.tui.fleet_view import FleetView, GroupPicker
from otelcockpit.tui.help import HelpScreen
from otelcockpit.tui.widgets import ConfirmScreen, PromptBar, PromptScreen


def crumb(app) -> str:
    return str(app.query_one("#fleet #crumb").render())



async def test_loads_demo_fleet(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        view = app.query_one(FleetView)
        assert view.table.shown == len(app.snapshot.collectors) >= 400
        assert "Collectors 4" in crumb(app)
        assert app.focused is view.table


async def test_text_filter_and_escape_clears(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash")
        assert app.query_one("#filter", PromptBar).is_open
        await type_text(pilot, "gw")
        table = app.query_one(FleetView).table
        names = [c.name for c in table.visible_rows()]
        assert names and all("gw" in n for n in names)
        await pilot.press("enter")
        assert not app.query_one("#filter", PromptBar).is_open
        assert f"{len(names)}/" in crumb(app)
        await pilot.press("escape")  # esc clears the filter
        assert table.shown == len(app.snapshot.collectors)


async def test_matcher_filter_and_bad_matcher(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await apply_filter(pilot, 'env="prod",region=~"eu-.*"')
        rows = app.query_one(FleetView).table.visible_rows()
        assert rows
        assert all(c.attr("env") == "prod" and c.attr("region").startswith("eu-") for c in rows)
        expected = [c for c in app.snapshot.collectors if c.attr("env") == "prod" and c.attr("region").startswith("eu-")]
        assert len(rows) == len(expected)
        # An unterminated matcher: an inline error, the app stays up, the bar stays open.
        await pilot.press("slash")
        bar = app.query_one("#filter", PromptBar)
        bar.input.value = 'env="prod'
        await pilot.press("enter")
        assert bar.is_open
        assert "column" in str(bar.query_one("#error").render())


async def test_group_by_then_drill_into_group(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("g")
        assert isinstance(app.screen, GroupPicker)
        await pilot.press("enter")  # first key: env
        view = app.query_one(FleetView)
        assert view.group_key == "env"
        groups = view.query_one("#groups")
        assert groups.row_count == 3  # prod, staging, dev
        await pilot.press("enter")  # the largest group
        assert view.group_key is None
        assert view.filter_text.startswith('env="')
        value = view.filter_text.split('"')[1]
        assert all(c.attr("env") == value for c in view.table.visible_rows())


async def test_detail_and_back(make_app, wait_loaded, plain):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("down", "down")
        key = app.query_one(FleetView).table.cursor_key
        await pilot.press("enter")
        assert isinstance(app.screen, CollectorDetailScreen)
        assert app.screen.collector_id == key
        text = plain(app.screen.query_one("#content"))
        c = app.snapshot.collector(key)
        assert c.name in text and "↩ rev" in text
        for name in c.pipelines:
            assert name in text
        await pilot.press("escape")
        assert not isinstance(app.screen, CollectorDetailScreen)


async def test_command_line_views_and_errors(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("colon")
        await type_text(pilot, "pipelines")
        await pilot.press("enter")
        assert app.view_name == "pipelines"
        await pilot.press("escape")  # back to the previous view
        assert app.view_name == "fleet"
        await pilot.press("colon")
        await type_text(pilot, "nonsense")
        await pilot.press("enter")
        bar = app.query_one("#command", PromptBar)
        assert bar.is_open and "unknown command" in str(bar.query_one("#error").render())
        await pilot.press("escape")
        assert not bar.is_open
        await pilot.press("colon")
        await type_text(pilot, "theme cockpit-light")
        await pilot.press("enter")
        assert app.theme == "cockpit-light"
        await pilot.press("colon")
        await type_text(pilot, "theme nope")
        await pilot.press("enter")
        assert "unknown theme" in str(bar.query_one("#error").render())


async def test_command_line_completion(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("colon")
        await type_text(pilot, "pip")
        await pilot.pause()
        bar = app.query_one("#command", PromptBar)
        assert bar.input._suggestion == "pipelines"
        await pilot.press("right")  # accept the suggestion
        assert bar.input.value == "pipelines"


async def test_ctx_switch(make_app, wait_loaded, config_file):
    config_file.write_text(
        "contexts:\n  demo: {backend: demo}\n  big:\n    backend: demo\n    read_only: true\n    theme: high-contrast\n"
    )
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert not app.read_only
        await pilot.press("colon")
        await type_text(pilot, "ctx big")
        await pilot.press("enter")
        await wait_loaded(pilot)
        assert app.settings.context.name == "big"
        assert app.read_only
        assert app.theme == "high-contrast"


async def test_help_lists_live_bindings(make_app, wait_loaded, plain):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help"))
        for word in ("Group", "Filter", "Command", "On/off", ":pipelines"):
            assert word in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_refresh_and_pause(make_app, wait_loaded, monkeypatch):
    app = make_app(live=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        calls = []
        original = app.backend.snapshot

        async def counting():
            calls.append(1)
            return await original()

        monkeypatch.setattr(app.backend, "snapshot", counting)
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        assert calls
        await pilot.press("p")
        assert app.paused
        assert "PAUSED" in str(app.query_one("#status").render())
        assert app._poll_timer is None
        await pilot.press("p")
        assert not app.paused


async def test_sort_keeps_filter_and_puts_the_cursor_on_the_first_row(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        view = app.query_one(FleetView)
        table = view.table
        await apply_filter(pilot, 'env="prod"')
        prod = {c.id for c in table.visible_rows()}
        await pilot.press("down", "down")
        key = table.cursor_key
        await pilot.press("s")
        picker = app.screen
        assert isinstance(picker, GroupPicker)
        await pilot.press("down", "enter")  # the second order: health, worst first
        assert view.sort_key == "health"
        assert "sorted by health, worst first" in crumb(app)
        rows = table.visible_rows()
        assert {c.id for c in rows} == prod  # the filter still holds
        ranks = [HEALTH_ORDER.index(c.health) for c in rows]
        assert ranks == sorted(ranks) and rows[0].health == Health.UNHEALTHY
        assert key != rows[0].id and table.cursor_key == rows[0].id and table.cursor == 0  # the worst one
        # Longest silent first: offline collectors (oldest last_seen) at the top.
        view.set_sort("seen")
        rows = table.visible_rows()
        seen = [c.last_seen for c in rows]
        assert seen == sorted(seen) and rows[0].health == Health.OFFLINE
        # A refresh where a collector turns unhealthy moves it up; the filter holds.
        sim = app.backend.sim
        i = next(n for n, c in enumerate(sim.collectors) if c.id in prod and c.health == Health.HEALTHY)
        sim.collectors[i] = sim.collectors[i].with_changes(health=Health.UNHEALTHY)
        moved = sim.collectors[i].id
        view.set_sort("health")
        app._show(sim.snapshot())
        await pilot.pause()
        rows = table.visible_rows()
        assert {c.id for c in rows} == prod
        assert moved in {c.id for c in rows if c.health == Health.UNHEALTHY}
        assert [HEALTH_ORDER.index(c.health) for c in rows] == sorted(HEALTH_ORDER.index(c.health) for c in rows)
        view.set_sort("name")
        assert view.sort_key is None and "sorted" not in crumb(app)


async def test_matcher_filter_follows_refreshes(make_app, wait_loaded):
    """A collector whose attributes change so that it now matches the filter appears at the next refresh."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        table = app.query_one(FleetView).table
        assert app.set_filter('owner="night-shift"') is None
        assert table.shown == 0
        sim = app.backend.sim
        sim.collectors[3] = sim.collectors[3].with_changes(
            remote_attributes={**sim.collectors[3].remote_attributes, "owner": "night-shift"}
        )
        app._show(sim.snapshot())
        await pilot.pause()
        assert [c.id for c in table.visible_rows()] == [sim.collectors[3].id]


async def test_cursor_stays_on_collector_across_refresh(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        table = app.query_one(FleetView).table
        await pilot.press("down", "down", "down")
        # A filter puts the cursor on its first row.
        target = app.snapshot.collector(table.cursor_key)
        await apply_filter(pilot, target.name[-3:])
        assert table.cursor == 0 and table.cursor_key == table.visible_rows()[0].id
        await pilot.press("down")
        key = table.cursor_key
        # A refresh where collectors changed state keeps the cursor on the same id.
        sim = app.backend.sim
        for i in range(0, len(sim.collectors), 7):
            sim.collectors[i] = sim.collectors[i].with_changes(health=Health.OFFLINE)
        app._show(sim.snapshot())
        await pilot.pause()
        assert table.cursor_key == key


async def test_toggle_collector_confirms_with_cancel_focused(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        table = app.query_one(FleetView).table
        cid = table.cursor_key
        await pilot.press("e")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.focused.id == "cancel"
        await pilot.press("enter")  # Cancel
        assert app.backend.sim.collectors[0].enabled
        await pilot.press("e")
        await pilot.press("tab", "enter")  # to Apply
        await app.workers.wait_for_complete()
        c = next(c for c in app.backend.sim.collectors if c.id == cid)
        assert not c.enabled


async def test_set_remote_attribute(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        cid = app.query_one(FleetView).table.cursor_key
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "collector.x=1")
        await pilot.press("enter")
        assert isinstance(app.screen, PromptScreen)  # refused: reserved prefix
        app.screen.query_one("Input").value = "rollout=canary"
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("tab", "enter")
        await app.workers.wait_for_complete()
        c = next(c for c in app.backend.sim.collectors if c.id == cid)
        assert c.remote_attributes["rollout"] == "canary"


async def test_pipelines_view_and_revision_diff(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2")
        assert app.view_name == "pipelines"
        view = app.query_one("#pipelines")
        assert view.table.shown == len(app.snapshot.pipelines) >= 2
        name = view.table.current.pipeline.name
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PipelineDetailScreen)
        assert screen.pipeline_name == name
        assert len(screen.revisions) >= 3
        mode = str(screen.query_one("#mode").render())
        assert mode.startswith("diff rev")
        await pilot.press("up")  # an older revision: diff against its predecessor
        await pilot.press("m")  # mark it as the base
        await pilot.press("down")
        assert f"diff rev {screen.mark}" in str(screen.query_one("#mode").render())
        await pilot.press("d")
        assert "contents of rev" in str(screen.query_one("#mode").render())


async def test_pipeline_rollback_upserts_old_revision(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "enter")
        await pilot.pause()
        screen = app.screen
        name = screen.pipeline_name
        before = len(app.backend.sim.revisions[name])
        await pilot.press("up")
        target = screen.current()
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("tab", "enter")
        await app.workers.wait_for_complete()
        revs = app.backend.sim.revisions[name]
        assert len(revs) == before + 1
        assert revs[-1].snapshot.contents == target.snapshot.contents
