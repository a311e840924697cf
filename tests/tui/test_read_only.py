"""Read-only: mutating actions are not bound, not in help, not in the palette; the backend refuses."""

from __future__ import annotations

import pytest

from otelcockpit.actions import ACTIONS
from otelcockpit.backends.base import PIPELINE_SET_ENABLED, Change, ReadOnlyBackend
from otelcockpit.errors import ReadOnlyError
from otelcockpit.tui.app import CockpitCommands
from otelcockpit.tui.help import HelpScreen
from otelcockpit.tui.widgets import ConfirmScreen, PromptScreen

DANGEROUS = [a for a in ACTIONS if a.dangerous]


def test_registry_marks_every_mutating_action():
    assert {a.id for a in DANGEROUS} >= {"toggle-collector", "set-attribute", "toggle-pipeline", "rollback-pipeline"}


async def test_read_only_hides_and_refuses(make_app, wait_loaded, plain):
    app = make_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        assert isinstance(app.backend, ReadOnlyBackend)
        assert " RO " in str(app.query_one("#status").render())
        # Not in the live bindings (so not in the footer either).
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        for spec in DANGEROUS:
            if spec.scope == "fleet":
                assert spec.action not in actions
        # The keys do nothing.
        for key in ("e", "a"):
            await pilot.press(key)
            assert not isinstance(app.screen, (ConfirmScreen, PromptScreen))
        # Not in help.
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help"))
        for spec in DANGEROUS:
            assert spec.description not in text
        assert "read-only" in text
        await pilot.press("escape")
        # Pipelines view and the pipeline detail: no toggle, no rollback.
        await pilot.press("2")
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert "toggle_enabled" not in actions
        await pilot.press("e")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await pilot.pause()
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert "rollback" not in actions
        await pilot.press("R")
        assert not isinstance(app.screen, ConfirmScreen)
        # Not in the command palette.
        provider = CockpitCommands(app.screen)
        titles = [t for t, _fn, _h in provider._entries()]
        for spec in DANGEROUS:
            assert spec.description not in titles
        # The second guard: the backend wrapper refuses writes.
        with pytest.raises(ReadOnlyError):
            await app.backend.push(Change(PIPELINE_SET_ENABLED, {"name": "x", "enabled": False}))


async def test_writable_mode_shows_mutating_keys(make_app, wait_loaded):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert {"toggle_enabled", "set_attribute"} <= actions
