"""The cockpit screen: every panel, and one key from each panel to its full view."""

from __future__ import annotations

from waits import wait_until

from otelcockpit.tui.cockpit_view import CockpitView


async def test_cockpit_panels_and_drill_down(make_app, wait_loaded, plain):
    app = make_app(view="cockpit")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await wait_until(lambda: app.adoption is not None and app.changes is not None,
                         "the adoption analysis and the change timeline", pilot=pilot)
        await pilot.pause()
        view = app.query_one(CockpitView)
        assert view.has_class("-compact")  # 80x24: one line per panel
        fleet = plain(view.query_one("#p-fleet"))
        assert f"[1] Fleet {len(app.snapshot.collectors)}" in fleet and "age" in fleet
        services = plain(view.query_one("#p-services"))
        assert "zero-code" in services and "code change" in services
        phases = plain(view.query_one("#p-phases"))
        assert "1✔" in phases and "next:" in phases
        changes = plain(view.query_one("#p-changes"))
        # The demo changed linux_host_metrics 2 hours ago: it is listed with its rollback target.
        assert "linux_host_metrics" in changes and "↩ rev" in changes
        assert "none running" in plain(view.query_one("#p-rollout"))
        for key, name in (("1", "fleet"), ("2", "pipelines"), ("3", "services"), ("4", "phases"), ("0", "cockpit")):
            await pilot.press(key)
            assert app.view_name == name


async def test_cockpit_details_on_a_tall_terminal(make_app, wait_loaded, plain):
    app = make_app(view="cockpit")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.pause()
        view = app.query_one(CockpitView)
        assert not view.has_class("-compact")
        fleet = plain(view.query_one("#p-fleet"))
        for env in ("prod", "staging", "dev"):
            assert env in fleet
        assert "ap-southeast-2" in fleet


def test_compact_places_only_troubled_in_fixed_order_within_budget(frozen_clock):
    from collections import Counter

    from otelcockpit.backends.demo import DemoBackend
    from otelcockpit.fleet.model import Health
    from otelcockpit.fleet.problems import problems
    from otelcockpit.tui.cockpit_view import place_lines

    snap = DemoBackend(seed=3, clock=frozen_clock).snapshot_now()  # seed 3: two places with nothing wrong
    by: dict[tuple[str, str], Counter[str]] = {}
    for c in snap.collectors:
        by.setdefault((c.attr("env"), c.attr("region")), Counter())[c.health.value] += 1
        if problems(c):  # a healthy collector may have a problem: its config failed, or it runs another
            by[(c.attr("env"), c.attr("region"))]["problem"] += 1
    troubled = sorted(k for k, hc in by.items() if hc[Health.HEALTHY.value] != hc.total() or hc["problem"])
    assert 2 < len(troubled) < len(by)  # the demo has both kinds of places
    lines = [t.plain.split() for t in place_lines(snap, 20)]
    assert [(w[0], w[1]) for w in lines] == troubled  # every troubled place, none healthy, fixed order
    short = [t.plain for t in place_lines(snap, 3)]
    assert len(short) == 3 and short[-1].strip().startswith(f"+{len(troubled) - 2} more places")
    assert place_lines(snap, 0) == []
