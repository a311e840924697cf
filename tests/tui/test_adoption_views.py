"""The Services and Phases views on the demo organisation."""

from __future__ import annotations

from waits import wait_until

from otelcockpit.adoption import signoff
from otelcockpit.tui.adoption_views import PhasesView, ServiceDetailScreen, ServicesView
from otelcockpit.tui.fleet_view import GroupPicker
from otelcockpit.tui.widgets import ConfirmScreen, PromptScreen


async def wait_adoption(pilot) -> None:
    app = pilot.app
    await wait_until(lambda: app.adoption is not None, lambda: f"the adoption analysis ({app.adoption_error or 'no error'})",
                     pilot=pilot)
    await pilot.pause()


async def test_services_view_filter_group_and_detail(make_app, wait_loaded, plain):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("3")
        await wait_adoption(pilot)
        view = app.query_one(ServicesView)
        assert view.table.shown == len(app.adoption.eligibility) >= 60
        crumb = plain(view.query_one("#crumb"))
        assert "zero-code" in crumb and "code change" in crumb
        # Matcher filter over inventory fields and the path.
        assert app.set_filter('team="identity"') is None
        rows = view.table.visible_rows()
        assert rows and all(e.service.team == "identity" for e in rows)
        # Group by path, then drill into the first group.
        app.set_filter("")
        await pilot.press("g")
        assert isinstance(app.screen, GroupPicker)
        await pilot.press("down", "enter")  # path
        groups = view.query_one("#svc-groups")
        assert view.group_key == "path" and groups.row_count >= 4
        await pilot.press("enter")
        assert view.filter_text.startswith('path="')
        chosen = view.filter_text.split('"')[1]
        assert all(e.path == chosen for e in view.table.visible_rows())
        # The detail: path, reasons, every path assessed, the deciding rules with sources.
        await pilot.press("enter")
        assert isinstance(app.screen, ServiceDetailScreen)
        text = plain(app.screen.query_one("#content"))
        e = app.adoption.service(app.screen.service_name)
        assert e.path in text and "Every path" in text and "The walk through the rules" in text
        for rule in e.rules:
            assert rule in text


async def test_service_detail_shows_what_to_fill_the_origins_and_the_walk(make_app, wait_loaded, plain):
    """The demo leaves podcast-feed's runtime version out: the detail says the path is conditional,
    which field to fill and what each value gives, where every fact came from, and walks through
    the rules exactly as ``eligibility --explain`` does."""
    from otelcockpit.adoption.explain import explain

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("3")
        await wait_adoption(pilot)
        view = app.query_one(ServicesView)
        crumb = plain(view.query_one("#crumb"))
        assert "conditional (path?) 2" in crumb and "unknown 0" in crumb
        # group by status: the conditional ones are one enter away
        await pilot.press("g")
        assert isinstance(app.screen, GroupPicker)
        for _ in range(4):
            await pilot.press("down")
        await pilot.press("enter")
        assert view.group_key == "status"
        # esc leaves the grouping (as in the Fleet view), g groups again
        await pilot.press("escape")
        await pilot.pause()
        assert view.group_key is None and app.view_name == "services" and view.table.has_focus
        await pilot.press("g")
        for _ in range(4):
            await pilot.press("down")
        await pilot.press("enter")
        assert view.group_key == "status"
        groups = view.query_one("#svc-groups")
        values = [str(groups.get_row_at(i)[0]) for i in range(groups.row_count)]
        assert set(values) == {"decided", "conditional"}
        for _ in range(values.index("conditional")):
            await pilot.press("down")
        await pilot.press("enter")  # drill into the group: status="conditional"
        assert view.filter_text == 'status="conditional"'
        rows = [e.name for e in view.table.visible_rows()]
        assert sorted(rows) == ["crossword-engine", "podcast-feed"]
        shown = "\n".join(view.table.render_line(y).text for y in range(view.table.size.height))
        assert "operator?" in shown and "obi?" in shown  # the path, marked conditional
        view.table.move_to_key("podcast-feed")
        await pilot.press("enter")
        assert isinstance(app.screen, ServiceDetailScreen)
        text = plain(app.screen.query_one("#content"))
        assert "operator  conditional" in text
        assert "operator if runtime version ≥ 3.10" in text
        assert "Fill in" in text and "runtime version (runtime_version): < 3.10 → sdk; ≥ 3.10 → operator" in text
        assert "inventory (services.yaml:" in text and "assumed (default: image rebuildable)" in text
        e = app.adoption.service("podcast-feed")
        for n, step in enumerate(explain(e).steps, 1):
            assert f"{n}. {step.rule}" in text
        assert "would change: if operator installed were false: agent-in-image" in text
        await pilot.press("escape")
        # a value the fleet filled shows where it came from
        app.set_filter("breaking-news-push")
        await pilot.pause()
        await pilot.press("enter")
        text = plain(app.screen.query_one("#content"))
        assert "obi  decided" in text
        flat = " ".join(text.split())
        assert "kernel 6.1.112-124.190.amzn2023 discovered (the 64 node agents of cluster prod-us-1" in flat


async def test_phases_view_items_journeys_and_signoff(make_app, wait_loaded, plain):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        await wait_adoption(pilot)
        view = app.query_one(PhasesView)
        items = view.table.visible_rows()
        assert {i.phase for i in items} == {1, 2, 3, 4}
        journeys = plain(view.query_one("#journeys"))
        for j in app.adoption.journeys:
            assert j.journey.name[:22] in journeys
        assert "gap:" in journeys
        failing = next(i for i in items if not i.passed)
        view.table.move_to_key(failing.id)
        await pilot.pause()
        assert failing.id in plain(view.query_one("#item-detail"))
        await pilot.press("s")
        assert isinstance(app.screen, PromptScreen)
        for ch in "ok for now":
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        # A confirmation says who signs off what, with the note; Cancel is focused: enter cancels.
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        body = plain(app.screen.query_one("#body"))
        assert failing.id in body and "ok for now" in body and app.settings.identity in body
        assert app.screen.query_one("#cancel").has_focus
        await pilot.press("enter")
        await pilot.pause()
        assert failing.id not in signoff.latest(context="demo")
        await pilot.press("s")
        for ch in "ok for now":
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("tab", "enter")  # Sign off
        stored = signoff.latest(context="demo")
        assert stored[failing.id].note == "ok for now"
        await wait_until(lambda: app.adoption.phases.item(failing.id).signoff is not None,
                         "the sign-off to reach the phase analysis", pilot=pilot)
        assert app.adoption.phases.item(failing.id).signoff.note == "ok for now"


async def test_signoff_not_bound_in_read_only(make_app, wait_loaded):
    app = make_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        await wait_adoption(pilot)
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert "signoff" not in actions
        await pilot.press("s")
        assert not isinstance(app.screen, PromptScreen)
        assert signoff.latest() == {}


async def test_cockpit_services_panel_counts_what_a_rollout_lead_plans_with(make_app, wait_loaded, plain):
    """Decided, conditional (with the fields to fill) and unknown: one line at 80x24, the teams that
    must fill something on a tall terminal."""
    from otelcockpit.adoption.cockpit import counts_by_team, decision_counts
    from otelcockpit.tui.cockpit_view import CockpitView

    for size, tall in (((80, 24), False), ((120, 40), True)):
        app = make_app(view="cockpit")
        async with app.run_test(size=size) as pilot:
            await wait_loaded(pilot)
            await wait_adoption(pilot)
            panel = plain(app.query_one(CockpitView).query_one("#p-services"))
            counts = decision_counts(app.adoption.eligibility)
            assert f"conditional {counts.conditional}  unknown {counts.unknown}" in panel
            if not tall:  # one line: no team lines
                assert "other teams" not in panel and "services:" not in panel
                continue
            assert f"fill {counts.fill_text()}" in panel
            teams = counts_by_team(app.adoption.eligibility)
            for team, c in teams.items():
                if c.conditional or c.unknown:
                    line = next(x for x in panel.splitlines() if x.strip().startswith(team))
                    assert f"{c.decided} decided, {c.conditional} conditional, {c.unknown} unknown" in line
                    assert f"fill {c.fill_text()}" in line
            settled = sum(1 for c in teams.values() if not (c.conditional or c.unknown))
            assert f"{settled} other teams: every service decided" in panel
