"""Snapshot tests of the incident view and the walkthrough at 80x24 and 120x40 (demo backend,
frozen clock, no cursor blink, no animation).

Regenerate after an intended change with
`pytest tests/tui/test_snapshots_incident_walkthrough.py --snapshot-update -p no:xdist` and review the SVGs.
"""

from __future__ import annotations

import pytest
from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.tui.incident import IncidentApp
from otelcockpit.tui.walkthrough import WalkthroughApp, WalkthroughView

SIZES = [(80, 24), (120, 40)]


def incident(frozen_clock, *keys):  # noqa: ANN001, ANN201
    app = IncidentApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)

    async def run_before(pilot):  # noqa: ANN001, ANN202
        await wait_until(lambda: pilot.app.report is not None, "the incident report", pilot=pilot)
        # The report is in; let both tables lay out before the picture (a loaded machine is slow).
        tables = [pilot.app.query_one(f"#{t}") for t in ("i-broken", "i-changes")]
        await wait_until(lambda: all(t.rows for t in tables), "rows in both incident tables", pilot=pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.1)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return app, run_before


def walkthrough(frozen_clock, *keys):  # noqa: ANN001, ANN201
    app = WalkthroughApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)

    async def run_before(pilot):  # noqa: ANN001, ANN202
        view = pilot.app.query_one(WalkthroughView)
        await wait_until(lambda: view.slides, "the walkthrough's slides", pilot=pilot)
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return app, run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_incident(snap_compare, frozen_clock, size):
    app, run_before = incident(frozen_clock)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_incident_changes_selected(snap_compare, frozen_clock, size):
    app, run_before = incident(frozen_clock, "tab", "down")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_walkthrough_intro(snap_compare, frozen_clock, size):
    app, run_before = walkthrough(frozen_clock)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_walkthrough_phase_3(snap_compare, frozen_clock, size):
    app, run_before = walkthrough(frozen_clock, "3")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_walkthrough_teams(snap_compare, frozen_clock, size):
    # 4: phase 4 (slide 5), then the order, the outage drill and the teams (slide 8)
    app, run_before = walkthrough(frozen_clock, "4", "n", "n", "n")
    assert snap_compare(app, terminal_size=size, run_before=run_before)
