"""Snapshot tests at 80x24 and 120x40 on the demo backend (seeded, frozen clock, no blink, no animation).

Regenerate after an intended change with `make snapshots` (pytest --snapshot-update) and review the
SVG diffs before committing.
"""

from __future__ import annotations

import pytest

SIZES = [(80, 24), (120, 40)]


def scenario(make_app, wait_loaded, *keys, read_only=False, text=None, adoption=False):
    app = make_app(read_only=read_only)

    async def run_before(pilot):
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if adoption:
            for _ in range(500):
                if pilot.app.adoption is not None:
                    break
                await pilot.pause(0.02)
            assert pilot.app.adoption is not None
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
    app, run_before = scenario(make_app, wait_loaded, "3", "down", "enter", adoption=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_phases(snap_compare, make_app, wait_loaded, size):
    app, run_before = scenario(make_app, wait_loaded, "4", adoption=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
