"""The incident and walkthrough apps driven with Textual's pilot (demo backend, frozen clock)."""

from __future__ import annotations

from typing import Any

from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.actions import ACTIONS
from otelcockpit.backends.base import ReadOnlyBackend
from otelcockpit.tui.help import HelpScreen
from otelcockpit.tui.incident import IncidentApp, IncidentView
from otelcockpit.tui.walkthrough import WalkthroughApp, WalkthroughView


def incident_app(frozen_clock: Any, **resolve_kwargs: Any) -> IncidentApp:
    s = settings_mod.resolve(**resolve_kwargs)
    return IncidentApp(s, clock=frozen_clock, live=False, cursor_blink=False, resolve_kwargs=resolve_kwargs)


def walkthrough_app(frozen_clock: Any, journey: str | None = None) -> WalkthroughApp:
    return WalkthroughApp(
        settings_mod.resolve(), journey=journey, clock=frozen_clock, live=False, cursor_blink=False
    )


async def wait_report(pilot: Any) -> None:
    await wait_until(lambda: pilot.app.report is not None, "the incident report", pilot=pilot)
    await pilot.pause()


async def wait_slides(pilot: Any) -> WalkthroughView:
    view = pilot.app.query_one(WalkthroughView)
    await wait_until(lambda: view.slides, "the walkthrough's slides", pilot=pilot)
    await pilot.pause()
    return view


async def test_incident_is_read_only_whatever_the_settings(frozen_clock) -> None:
    app = incident_app(frozen_clock)
    assert settings_mod.resolve().read_only is False
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_report(pilot)
        assert app.read_only and app.settings.read_only
        assert isinstance(app.backend, ReadOnlyBackend)
        assert " RO " in str(app.query_one("#status").render())
        bound = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not {a.action for a in ACTIONS if a.dangerous} & bound
        assert "copy_rollback" in bound
        # The help screen offers nothing that writes.
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


async def test_copy_rollback_command_with_osc52(frozen_clock) -> None:
    app = incident_app(frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_report(pilot)
        view = app.query_one(IncidentView)
        # The broken-collectors table has focus: its first row is an unhealthy collector that
        # linux_host_metrics revision 1003 reached 2 h ago.
        first = app.report.broken[0]
        assert first.changed is not None and first.changed.revision == "1003"
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == "otelcockpit rollback linux_host_metrics --to 1002"
        assert any("Copied the rollback command" in (n.title or "") for n in app._notifications)
        # Tab to the changes table; the second change is custom_business_metrics revision 1036.
        await pilot.press("tab")
        await pilot.press("down")
        await pilot.press("c")
        await pilot.pause()
        assert app.report.changes[1].pipeline == "custom_business_metrics"
        assert (
            app.clipboard
            == f"otelcockpit rollback custom_business_metrics --to {app.report.changes[1].rollback_target}"
        )
        assert view.selected_change() is app.report.changes[1]


async def test_incident_context_switch_stays_read_only(frozen_clock, config_file) -> None:
    config_file.write_text("contexts:\n  lab:\n    backend: demo\n    read_only: false\n")
    app = incident_app(frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_report(pilot)
        assert app.switch_context("lab") is None
        assert app.read_only and app.settings.read_only
        await wait_report(pilot)
        assert isinstance(app.backend, ReadOnlyBackend)


async def test_enter_opens_the_broken_collector(frozen_clock) -> None:
    from otelcockpit.tui.detail import CollectorDetailScreen

    app = incident_app(frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_report(pilot)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, CollectorDetailScreen)


async def test_walkthrough_presenter_keys(frozen_clock) -> None:
    app = walkthrough_app(frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await wait_slides(pilot)
        assert view.current.id == "intro"
        await pilot.press("n")
        assert view.current.id == "phase-1"
        await pilot.press("n")
        assert view.current.id == "phase-2"
        await pilot.press("p")  # previous, not pause
        assert view.current.id == "phase-1" and app.paused is False
        await pilot.press("4")
        assert view.current.id == "phase-4"
        await pilot.press("2")
        assert view.current.id == "phase-2"
        for _ in range(20):
            await pilot.press("n")
        assert view.current.id == "next"  # stops at the last slide
        await pilot.press("home")
        assert view.current.id == "intro"
        await pilot.press("right", "space")
        assert view.current.id == "phase-2"
        await pilot.press("left", "left")
        assert view.current.id == "intro"
        await pilot.press("p")
        assert view.current.id == "intro"  # and at the first
        await pilot.press("P")  # pause moved to shift+p in this app
        assert app.paused is True
        crumb = str(view.query_one("#crumb").render())
        assert "1/10" in crumb  # the drill slide follows the order's


async def test_walkthrough_slide_text_and_journey(frozen_clock, plain) -> None:
    app = walkthrough_app(frozen_clock, journey="login")
    async with app.run_test(size=(120, 40)) as pilot:
        view = await wait_slides(pilot)
        await pilot.press("3")
        text = plain(view.query_one("#w-slide"))
        assert "Phase 3: Transactions" in text and "Why here" in text
        view.go(8)  # intro, 4 phases, order, drill, teams, journey
        await pilot.pause()
        assert "Journey: Login" in plain(view.query_one("#w-slide"))
