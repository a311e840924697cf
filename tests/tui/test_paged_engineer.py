"""The paged engineer's path through the real app (demo backend, frozen clock): filters that compose,
the cursor on the first row, the incident view's filter and columns, the cockpit's places and
changes, the Changes view's command, resizing below the minimum at any time."""

from __future__ import annotations

from typing import Any

from keys import apply_filter, type_text
from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.fleet.model import Health
from otelcockpit.tui.cockpit_view import CockpitView
from otelcockpit.tui.detail import CollectorDetailScreen, PipelineDetailScreen
from otelcockpit.tui.fleet_view import FleetView, GroupPicker
from otelcockpit.tui.help import HelpScreen
from otelcockpit.tui.incident import IncidentApp, IncidentView
from otelcockpit.tui.rollout_views import ChangesView
from otelcockpit.tui.widgets import PromptBar, TooSmallScreen


def incident_app(frozen_clock: Any) -> IncidentApp:
    return IncidentApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)


async def wait_report(pilot: Any) -> None:
    await wait_until(lambda: pilot.app.report is not None, "the incident report", pilot=pilot)
    await pilot.pause()


async def test_composed_filter_drill_down_and_sort(make_app, wait_loaded) -> None:
    """/env="prod", g region, enter on us-east-1: the filter narrows (no staging row appears); the
    cursor is on the first row after the filter, the drill-down and the sort; health, config, type
    and version match like attributes."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        view = app.query_one(FleetView)
        table = view.table
        await apply_filter(pilot, 'env="prod"')
        await pilot.press("down", "down", "down")
        assert table.cursor == 3
        await pilot.press("g")
        assert isinstance(app.screen, GroupPicker)
        await pilot.press("down", "enter")  # region
        groups = view.query_one("#groups")
        assert view.group_key == "region"
        regions = [str(groups.coordinate_to_cell_key((r, 0)).row_key.value) for r in range(groups.row_count)]
        assert "us-east-1" in regions
        while str(groups.coordinate_to_cell_key(groups.cursor_coordinate).row_key.value) != "us-east-1":
            await pilot.press("j")
        await pilot.press("enter")
        assert view.filter_text == 'env="prod",region="us-east-1"'
        rows = table.visible_rows()
        assert rows and all(c.attr("env") == "prod" and c.attr("region") == "us-east-1" for c in rows)
        assert table.cursor == 0 and table.cursor_key == rows[0].id
        assert '/env="prod",region="us-east-1"' in str(view.query_one("#crumb").render())
        # Sort by health, worst first: the cursor goes to the first (worst) row; enter opens it.
        await pilot.press("s")
        await pilot.press("down", "enter")
        assert view.sort_key == "health"
        assert table.cursor == 0 and table.current.health == Health.UNHEALTHY
        await pilot.press("enter")
        assert isinstance(app.screen, CollectorDetailScreen)
        assert app.snapshot.collector(app.screen.collector_id).health == Health.UNHEALTHY
        await pilot.press("escape")
        # Columns match like attributes.
        for text, check in (
            ('health="unhealthy"', lambda c: c.health == Health.UNHEALTHY),
            ('config="failed"', lambda c: c.remote_config.status.value == "failed"),
            ('type="otel",version=~"v0\\\\.158.*"', lambda c: c.type.value == "otel" and c.version.startswith("v0.158")),
            ('problem!="",env="prod"', lambda c: c.attr("env") == "prod"),
        ):
            assert app.set_filter(text) is None, text
            rows = table.visible_rows()
            expected = [c for c in app.snapshot.collectors if check(c)]
            assert rows and all(check(c) for c in rows), text
            if "problem" not in text:
                assert len(rows) == len(expected), text


async def test_the_incident_view_filters_keeps_its_columns_and_copies_in_one_key(frozen_clock, plain) -> None:
    app = incident_app(frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_report(pilot)
        view = app.query_one(IncidentView)
        header = str(view.query("TableHeader").first().render_line(0).text)
        for column in ("COLLECTOR", "PROBLEM", "WHERE", "CHANGED BEFORE"):
            assert column in header, header
        names = {b.name: b for b in view.broken_table.rows}
        # The healthy collectors whose config failed to apply are listed, with their problem.
        assert names["alloy-prod-euw1-node-018"].problem.value == "config failed"
        assert "/ Filter" in _footer(app)
        await pilot.press("slash")
        assert app.query_one("#filter", PromptBar).is_open
        await type_text(pilot, 'env="prod",region="eu-west-1"')
        await pilot.press("enter")
        shown = view.broken_table.visible_rows()
        assert shown and {(b.env, b.region) for b in shown} == {("prod", "eu-west-1")}
        assert "alloy-prod-euw1-node-018" in {b.name for b in shown}
        assert "prod/eu-west-1" in plain(view.query_one("#i-where")) and "us-east-1" not in plain(view.query_one("#i-where"))
        # One key copies the rollback command of the change that reached the first of them.
        await pilot.press("y")
        assert app.clipboard == "otelcockpit rollback linux_host_metrics --to 1002"
        # The changes table counts the collectors of the filter.
        await pilot.press("tab")
        first = view.changes_table.current
        assert view.changes_table.reached[first.key] == sum(
            1 for b in shown if b.changed is not None and b.changed.key == first.key
        )
        await pilot.press("enter")
        assert isinstance(app.screen, PipelineDetailScreen) and app.screen.pipeline_name == first.pipeline


async def test_the_cockpit_answers_the_page(make_app, wait_loaded, plain) -> None:
    """j/k select a place or a change; enter on a place opens its collectors with a problem, on a
    change the pipeline; y copies a change's rollback command."""
    app = make_app(view="cockpit")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await wait_until(lambda: app.changes is not None, "the change timeline", pilot=pilot)
        await pilot.pause()
        view = app.query_one(CockpitView)
        assert app.focused is view
        kinds = [k for k, _v in view.items]
        assert kinds[0] == "place" and "change" in kinds
        first_change = kinds.index("change")
        # Walk to the prod/eu-west-1 place, open it.
        while view.selected != ("place", ("prod", "eu-west-1")):
            await pilot.press("j")
        await pilot.press("enter")
        assert app.view_name == "fleet"
        fleet = app.query_one(FleetView)
        assert fleet.filter_text == 'env="prod",region="eu-west-1",problem!=""'
        rows = fleet.table.visible_rows()
        assert rows and {c.name for c in rows} >= {"alloy-prod-euw1-node-018", "alloy-prod-euw1-node-033"}
        await pilot.press("0")
        # G: the last item, a change; k/j move; y copies; enter opens the pipeline.
        await pilot.press("G")
        assert view.selected[0] == "change"
        await pilot.press("g")
        assert view.selected == ("place", view.items[0][1])
        for _ in range(first_change):
            await pilot.press("j")
        assert view.selected == ("change", "linux_host_metrics")
        panel = view.query_one("#p-changes").content  # the selected line is shown in reverse
        assert any("reverse" in str(sp.style) and "linux_host_metrics" in panel.plain[sp.start:sp.end]
                   for sp in panel.spans)
        await pilot.press("y")
        assert app.clipboard == "otelcockpit rollback linux_host_metrics --to 1002"
        await pilot.press("enter")
        assert isinstance(app.screen, PipelineDetailScreen) and app.screen.pipeline_name == "linux_host_metrics"


async def test_the_changes_view_shows_and_copies_the_whole_command(make_app, wait_loaded, plain) -> None:
    app = make_app(view="changes")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await wait_until(lambda: app.changes is not None, "the change timeline", pilot=pilot)
        await pilot.pause()
        view = app.query_one(ChangesView)
        e = view.table.current
        command = f"otelcockpit rollback {e.pipeline} --to {e.rollback_target}"
        detail = plain(view.query_one("#change-detail"))
        assert command in detail and "…" not in detail  # whole, at 80 columns
        await pilot.press("y")
        assert app.clipboard == command
        await pilot.press("enter")
        assert isinstance(app.screen, PipelineDetailScreen) and app.screen.pipeline_name == e.pipeline
        # j/k and g/G move in the revision list too.
        revs = app.screen.query_one("#revs")
        last = revs.highlighted
        await pilot.press("k")
        assert revs.highlighted == last - 1
        await pilot.press("g")
        assert revs.highlighted == 0
        await pilot.press("G")
        assert revs.highlighted == last


async def test_tab_takes_the_completion_in_the_command_line(make_app, wait_loaded) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("colon")
        await type_text(pilot, "pip")
        bar = app.query_one("#command", PromptBar)
        await wait_until(lambda: bar.input._suggestion == "pipelines", "the suggestion", pilot=pilot)
        footer = _footer(app)
        assert "tab Complete" in footer and "/ Filter" not in footer and ": Command" not in footer
        await pilot.press("tab")
        assert bar.input.value == "pipelines" and app.focused is bar.input
        await pilot.press("enter")
        assert app.view_name == "pipelines"


async def test_resize_below_the_minimum_at_any_time_and_back(make_app, wait_loaded, frozen_clock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        table = app.query_one(FleetView).table
        await pilot.press("j", "j")
        for setup in ("main", "detail", "help"):
            if setup == "detail":
                await pilot.press("enter")
                assert isinstance(app.screen, CollectorDetailScreen)
            if setup == "help":
                await pilot.press("question_mark")
                assert isinstance(app.screen, HelpScreen)
            before: type = type(app.screen)
            await pilot.resize_terminal(70, 20)
            await wait_until(lambda: isinstance(app.screen, TooSmallScreen), "the too-small screen", pilot=pilot)
            assert "terminal too small: 70x20" in str(app.screen.query_one("#too-small").render())
            await pilot.resize_terminal(79, 30)  # still too narrow: the message follows the size
            await pilot.pause()
            assert isinstance(app.screen, TooSmallScreen)
            assert "79x30" in str(app.screen.query_one("#too-small").render())
            await pilot.resize_terminal(100, 30)
            await wait_until(lambda b=before: type(app.screen) is b, "the screen from before", pilot=pilot)
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
        assert table.cursor == 2  # nothing was lost
    incident = incident_app(frozen_clock)
    async with incident.run_test(size=(80, 24)) as pilot:
        await wait_report(pilot)
        await pilot.resize_terminal(60, 24)
        await wait_until(lambda: isinstance(incident.screen, TooSmallScreen), "the too-small screen", pilot=pilot)
        await pilot.resize_terminal(80, 24)
        await wait_until(lambda: not isinstance(incident.screen, TooSmallScreen), "the incident view", pilot=pilot)


def _footer(app: Any) -> str:
    """The footer's keys as a person reads them: key and description of every shown binding."""
    return "  ".join(
        f"{app.get_key_display(b.binding)} {b.binding.description}"
        for b in app.screen.active_bindings.values()
        if b.binding.show
    )
