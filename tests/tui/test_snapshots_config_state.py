"""Snapshots at 80x24 and 120x40 of what every collector runs: the Fleet view filtered on ``config_state``,
and the cockpit just after the demo's fleet API came back from an outage during which 6 collectors
started (seeded demo, frozen clock)."""

from __future__ import annotations

import pytest
from waits import wait_until

SIZES = [(80, 24), (120, 40)]


async def loaded(pilot) -> None:  # noqa: ANN001
    app = pilot.app
    await wait_until(lambda: app.snapshot is not None and (app.view_name != "cockpit" or app.adoption is not None),
                     "the first snapshot (and, on the cockpit, the adoption analysis)", pilot=pilot)  # fmt: skip
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fleet_filtered_on_config_state(snap_compare, make_app, size) -> None:  # noqa: ANN001
    app = make_app(view="fleet")

    async def run_before(pilot) -> None:  # noqa: ANN001
        await loaded(pilot)
        assert pilot.app.set_filter('config_state!="in sync"') is None
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cockpit_after_a_fleet_api_outage(snap_compare, make_app, size) -> None:  # noqa: ANN001
    app = make_app(view="cockpit")

    async def run_before(pilot) -> None:  # noqa: ANN001
        await loaded(pilot)
        backend = pilot.app.backend
        app = pilot.app
        before = len(app.snapshot.collectors)
        backend.fleet_api_down()
        app.poll()
        await wait_until(lambda: app.snapshot.stale and app.outage_since is not None, "the cockpit to see the API down",
                         pilot=pilot)  # fmt: skip
        backend.scale_out(6, without_cache=0.5)
        backend.fleet_api_up()
        app.poll()
        await wait_until(lambda: not app.snapshot.stale and len(app.snapshot.collectors) == before + 6,
                         "the cockpit to see the API back with 6 more collectors", pilot=pilot)  # fmt: skip
        await wait_until(lambda: app.outage_texts, "the texts of the configs to compare", pilot=pilot)
        # the outage report: the first place line when compact, in the fleet panel when tall
        where = app.query_one("#p-place-0" if app.size.height < 34 else "#p-fleet")
        changes = app.query_one("#p-changes")

        def painted() -> bool:
            # the cockpit shows the outage report, and every panel has the height of what it says (a
            # loaded run once captured the screen with the change list laid out at its old height)
            if "came up" not in getattr(where, "_panel_key", ("",))[0]:  # what the panel was last given
                return False
            if changes.size.height != str(changes.render()).count("\n") + 1:
                changes.refresh(layout=True)  # its own cached height and visual too
                return False
            return True

        await wait_until(painted, "the cockpit painted with the outage report and the whole change list", pilot=pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
