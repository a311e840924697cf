"""Fixtures for driving the real cockpit app with Textual's pilot (demo backend, frozen clock)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.tui.app import CockpitApp


@pytest.fixture
def make_app(frozen_clock: Callable[[], Any]) -> Callable[..., CockpitApp]:
    def make(*, live: bool = False, view: str = "fleet", **resolve_kwargs: Any) -> CockpitApp:
        """The app on the demo backend. Tests of one view open on it (the real default is the cockpit)."""
        s = settings_mod.resolve(**resolve_kwargs)
        return CockpitApp(
            s, clock=frozen_clock, live=live, cursor_blink=False, resolve_kwargs=resolve_kwargs, initial_view=view
        )

    return make


async def _wait_loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_until(lambda: app.snapshot is not None, "the demo fleet to load", pilot=pilot)
    await pilot.pause()


@pytest.fixture
def wait_loaded() -> Callable[[Any], Any]:
    return _wait_loaded


def _plain(widget: Any) -> str:
    """The text of a Static (or any widget with a Rich renderable), without styles."""
    from rich.console import Console

    renderable = getattr(widget, "content", None)
    if renderable is None or isinstance(renderable, str):
        return str(widget.render()) if renderable is None else renderable
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.fixture
def plain() -> Callable[[Any], str]:
    return _plain
