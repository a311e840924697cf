"""Snapshot tests at 80x24 and 120x40 on the demo backend (seeded, frozen clock, no blink, no animation).

Regenerate after an intended change with `make snapshots` (pytest --snapshot-update) and review the
SVG diffs before committing.
"""

from __future__ import annotations

import pytest
from waits import wait_until

SIZES = [(80, 24), (120, 40)]


def scenario(make_app, wait_loaded, *keys, read_only=False, text=None, adoption=False, after=(), view="fleet", setup=None):
    app = make_app(read_only=read_only, view=view)

    async def run_before(pilot):
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if adoption:
            await wait_until(lambda: pilot.app.adoption is not None, "the adoption analysis", pilot=pilot)
            await pilot.pause()
        if view in ("cockpit", "changes", "rollouts"):
            await wait_until(
                lambda: pilot.app.changes is not None and (view != "cockpit" or pilot.app.adoption is not None),
                "the change timeline (and the adoption analysis on the cockpit)",
                pilot=pilot,
            )
            await pilot.pause()
        if view == "cockpit":
            panel = pilot.app.query_one("#p-changes")

            def laid_out() -> bool:
                if panel.size.height == str(panel.render()).count("\n") + 1:
                    return True
                # Seen twice in a loaded full run: the panel kept its old height for 20 s after its
                # content grew. Ask for the layout again rather than wait on a lost one.
                panel.refresh(layout=True)  # its own cached height and visual too, not only the screen's layout
                return False

            await wait_until(laid_out,
                             lambda: f"the change panel laid out with every line (height {panel.size.height}, "
                             f"{str(panel.render()).count(chr(10)) + 1} lines)", pilot=pilot)
        if setup is not None:
            await setup(pilot)
        for key in after:
            await pilot.press(key)
            await pilot.pause()
        if text is not None:
            for ch in text:
                await pilot.press(ch)
            await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()

    return app, run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fleet_view(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_collector_detail(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "down", "enter")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_filter_by_matchers(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "slash", text='env="prod",region=~"us-.*"')
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_grouped_by_region(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "g", "down", "enter")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "question_mark")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pipelines(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "2")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pipeline_detail_diff(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "2", "enter")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_read_only(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_services(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "3", adoption=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_service_detail(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "3", adoption=True, after=("down", "enter"))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_phases(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "4", adoption=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cockpit(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, view="cockpit", adoption=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_changes(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, view="changes")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_push_editor(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, view="pipelines", after=("u",))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def _edit_and_review(pilot):
    import time

    await pilot.press("u")
    await pilot.pause()
    pilot.app.screen.query_one("TextArea").insert("// scrape every 15s\n", (0, 0))
    await pilot.press("ctrl+s")
    end = time.monotonic() + 10
    while getattr(pilot.app.screen, "plan", None) is None:  # the rollout service plans off the UI
        assert time.monotonic() < end, "the review showed no plan within 10 s"
        await pilot.pause(0.05)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_push_review(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, view="pipelines", setup=_edit_and_review)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def _planned_rollout(pilot):
    """A rollout created in the journal with a fixed id (not run: a frozen clock applies nothing)."""
    from otelcockpit.backends.base import staging_target as make_target
    from otelcockpit.rollout.engine import RolloutEngine
    from otelcockpit.rollout.journal import Journal, default_path
    from otelcockpit.rollout.model import CanarySpec
    from otelcockpit.rollout.planner import make_plan
    from otelcockpit.tui.rollout_views import RolloutScreen

    app = pilot.app
    live = app.snapshot.pipeline("linux_host_metrics")
    new = type(live)(**{**{f: getattr(live, f) for f in live.__dataclass_fields__}, "contents": live.contents + "\n// v2\n"})
    plan = make_plan(app.snapshot, new, canary=CanarySpec("count", 2), waves=(25.0, 100.0))
    journal = Journal(default_path())
    try:
        RolloutEngine(journal, make_target(app.backend)).create(plan, backend="demo", context="demo", author="ana", rollout_id="r0snap01")
    finally:
        journal.close()
    app.push_screen(RolloutScreen("r0snap01"))
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_rollout_progress(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, view="rollouts", setup=_planned_rollout)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_cockpit_monochrome_no_color(snap_compare, make_app, wait_loaded, monkeypatch):
    """NO_COLOR picks the monochrome theme; status stays readable through glyphs."""
    monkeypatch.setenv("NO_COLOR", "1")
    app, run_before = scenario(make_app, wait_loaded, view="cockpit", adoption=True)
    assert app.settings.theme == "monochrome"
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
