"""Every key that a footer, the help or the command palette shows works where it is shown.

The walk visits every view and screen of the cockpit, the incident view and the walkthrough, reads
the keys they advertise (the footer's and the help's, both built from the live bindings), presses
each one from the same starting point and checks that something happened: a screen opened or closed,
the view, the focus, the cursor, the selection, the filter, the clipboard, a notification, a refresh,
a setting. A key that may do nothing where it is shown must be listed in NO_OPS with the reason. It
also checks that keys that do not apply are not shown.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from waits import wait_until

from otelcockpit import settings as settings_mod
from otelcockpit.tui.app import CockpitApp, CockpitCommands
from otelcockpit.tui.detail import CollectorDetailScreen, DetailScreen, PipelineDetailScreen
from otelcockpit.tui.help import HIDDEN_ACTIONS
from otelcockpit.tui.incident import IncidentApp
from otelcockpit.tui.view import View
from otelcockpit.tui.walkthrough import WalkthroughApp, WalkthroughView
from otelcockpit.tui.widgets import PromptBar

# (place, key) -> why that key may leave everything as it was there. Keep it short and honest.
NO_OPS: dict[tuple[str, str], str] = {}

Setup = Callable[[Any], Awaitable[None]]


def advertised(app: Any) -> dict[str, str]:
    """key -> description of what the footer shows on the screen on top, and what the help would
    list when `?` opens it there (the help skips the movement keys; the lists' tests press those)."""
    active = app.screen.active_bindings
    out = {k: a.binding.description or a.binding.action for k, a in active.items() if a.binding.show}
    if any(a.binding.action == "help" and a.node is app for a in active.values()):
        for key, a in active.items():
            if a.binding.action.split("(")[0] not in HIDDEN_ACTIONS:
                out[key] = a.binding.description or a.binding.action
    return out


def footer(app: Any) -> dict[str, str]:
    return {k: a.binding.description for k, a in app.screen.active_bindings.items() if a.binding.show}


def fingerprint(app: Any) -> tuple[Any, ...]:
    """Everything a key could visibly change."""
    screen = app.screen
    parts: list[Any] = [
        tuple(id(s) for s in app.screen_stack),
        app.view_name,
        id(app.focused),
        app.paused,
        app.theme,
        app.clipboard,
        len(app._notifications),
        getattr(app, "polls", 0),
        app._exit,
        len(app.workers),
        id(app.snapshot),
    ]
    for bar in app.screen_stack[0].query(PromptBar):
        parts += [bar.is_open, bar.input.value, str(bar.query_one("#error").render())]
    try:
        view = app.current_view
    except Exception:  # noqa: BLE001 - shutting down
        view = None
    if isinstance(view, View):
        parts += [getattr(view, "filter_text", None), getattr(view, "group_key", None),
                  getattr(view, "sort_key", None), getattr(view, "selected", None), getattr(view, "index", None)]
        for table in view.query("VirtualTable"):
            parts += [table.cursor, table.cursor_key]
        for dt in view.query("DataTable"):
            parts.append(dt.cursor_coordinate)
    for widget in screen.query("OptionList"):
        parts.append(widget.highlighted)
    for widget in screen.query("VirtualTable"):
        parts.append(widget.cursor)
    if isinstance(screen, PipelineDetailScreen):
        parts += [screen.mark, screen.show_diff]
    for widget in screen.query("Input"):
        parts.append(widget.value)
    return tuple(parts)


async def settle(pilot: Any) -> None:
    await pilot.pause()


# App-wide keys whose effect depends on the view they are pressed in: always walked.
VIEW_DEPENDENT = {"slash", "escape"}


async def walk(pilot: Any, place: str, setup: Setup, *, app_keys: bool = True) -> list[str]:
    """Press every key advertised at ``place`` (from a fresh ``setup`` each time); return the keys
    that did nothing (and are not documented as no-ops). ``app_keys=False``: the place's own keys and
    the app-wide keys that depend on it (``/``, ``esc``); the other app-wide keys run the same code
    wherever they are pressed and are walked in full in the cockpit, on one detail screen and on the
    editor and the review."""
    app = pilot.app
    await setup(pilot)
    keys = advertised(app)
    assert keys, f"{place}: no key is advertised"
    own = {k for k, a in app.screen.active_bindings.items() if a.node is not app}
    silent = []
    for key in keys:
        if keys[key] == "Quit" or (not app_keys and key not in own and key not in VIEW_DEPENDENT):
            continue
        await setup(pilot)
        before = fingerprint(app)
        await pilot.press(key)
        await settle(pilot)
        if fingerprint(app) == before and (place, key) not in NO_OPS:
            silent.append(f"{place}: {key} ({keys[key]})")
    return silent


async def reset(pilot: Any) -> None:
    """Back to the main screen, bars closed, nothing filtered, grouped or paused."""
    app = pilot.app
    popped = len(app.screen_stack) > 1
    while len(app.screen_stack) > 1:
        app.pop_screen()
    if popped:
        await pilot.pause()
    for bar in app.query(PromptBar):
        if bar.is_open:
            bar.close()
            app.current_view.focus_main()
    app.paused = False
    for name in app.views:
        view = app.query_one(f"#{name}", View)
        if getattr(view, "group_key", None):
            view.action_group()
        if getattr(view, "filter_text", ""):
            view.apply_filter("")
        if getattr(view, "sort_key", None):
            view.set_sort(None)


def counting(app: Any) -> None:
    """Count the backend's reads (ctrl+r must cause one)."""
    backend = app.backend
    original = backend.snapshot

    async def snapshot() -> Any:
        app.polls = getattr(app, "polls", 0) + 1
        return await original()

    backend.snapshot = snapshot


async def ready(pilot: Any) -> None:
    app = pilot.app
    await wait_until(lambda: app.snapshot is not None, "the demo fleet", pilot=pilot)
    await wait_until(lambda: app.adoption is not None and app.changes is not None,
                     "the adoption analysis and the change timeline", pilot=pilot)
    counting(app)


def in_view(name: str, *then: str) -> Setup:
    async def setup(pilot: Any) -> None:
        app = pilot.app
        await reset(pilot)
        if app.view_name != name:
            app.switch_view(name, remember=False)
        app.history[:] = ["fleet" if name != "fleet" else "pipelines"]  # so esc has a view to go back to
        view = app.current_view
        if app.focused is not view and not view.has_focus_within:
            view.focus_main()
        await pilot.pause()
        for key in then:
            await pilot.press(key)
            await pilot.pause()

    return setup


async def planned_rollout(app: Any) -> None:
    """A rollout in the journal (planned, not run: the clock is frozen) for the Rollouts view."""
    from dataclasses import replace

    from otelcockpit.backends.base import staging_target as make_target
    from otelcockpit.rollout.engine import RolloutEngine
    from otelcockpit.rollout.journal import Journal, default_path
    from otelcockpit.rollout.model import CanarySpec
    from otelcockpit.rollout.planner import make_plan

    live = app.snapshot.pipeline("linux_host_metrics")
    plan = make_plan(app.snapshot, replace(live, contents=live.contents + "\n// v2\n"), canary=CanarySpec("count", 2),
                     waves=(25.0, 100.0))
    journal = Journal(default_path())
    try:
        RolloutEngine(journal, make_target(app.backend)).create(plan, backend="demo", context="demo", author="ana",
                                                               rollout_id="r0walk01")
    finally:
        journal.close()
    app.request_changes(force=True)


@pytest.fixture
def cockpit(frozen_clock):  # noqa: ANN001, ANN201
    return CockpitApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False,
                      initial_view="cockpit")


async def test_every_view_of_the_cockpit(cockpit) -> None:
    app = cockpit
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await planned_rollout(app)
        await wait_until(lambda: any(v.id == "r0walk01" for v in app.rollouts), "the planned rollout", pilot=pilot)
        silent: list[str] = []
        for name in app.views:
            silent += await walk(pilot, name, in_view(name), app_keys=name == "cockpit")
        assert not silent, "advertised keys that did nothing:\n" + "\n".join(silent)
        # Keys that do not apply are not shown: the cockpit has no filter; a `:` bar takes the typing.
        await in_view("cockpit")(pilot)
        assert "slash" not in advertised(app)
        await in_view("fleet")(pilot)
        assert {"slash", "colon", "question_mark", "g", "s", "e", "enter"} <= set(advertised(app))
        await pilot.press("colon")
        shown = footer(app)
        assert "slash" not in shown and "colon" not in shown and {"tab", "enter", "escape"} <= set(shown)
        # q quits.
        await reset(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app._exit


# Each group is one test (one app): the groups keep the slowest walk near the others' length.
SCREEN_GROUPS = {
    "collector and pipeline details": ("collector detail", "pipeline detail"),
    "service detail and rollout": ("service detail", "rollout"),
    "editing": ("editor", "review", "confirm", "prompt"),
    "pickers and bars": ("help", "group picker", "sort picker", "command bar", "filter bar"),
}


@pytest.mark.parametrize("group", list(SCREEN_GROUPS))
async def test_every_screen_of_the_cockpit(cockpit, group: str) -> None:
    app = cockpit
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await planned_rollout(app)
        await wait_until(lambda: any(v.id == "r0walk01" for v in app.rollouts), "the planned rollout", pilot=pilot)

        async def rollout_screen(pilot: Any) -> None:
            await in_view("rollouts")(pilot)
            app.query_one("#rollouts").table.move_to_key("r0walk01")
            await pilot.press("enter")
            await pilot.pause()

        async def command_bar(pilot: Any) -> None:
            await in_view("fleet")(pilot)
            await pilot.press("colon")
            await pilot.pause()
            for ch in "pip":
                await pilot.press(ch)
            bar = app.query_one("#command", PromptBar)
            await wait_until(lambda: bar.input._suggestion, "the suggestion", pilot=pilot)

        async def review(pilot: Any) -> None:
            await in_view("pipelines", "u")(pilot)
            app.screen.query_one("TextArea").insert("// walk\n", (0, 0))
            await pilot.press("ctrl+s")
            await pilot.pause()

        places: dict[str, Setup] = {
            "collector detail": in_view("fleet", "enter"),
            "pipeline detail": in_view("pipelines", "enter", "up"),
            "service detail": in_view("services", "enter"),
            "rollout": rollout_screen,
            "editor": in_view("pipelines", "u"),
            "review": review,
            "help": in_view("fleet", "question_mark"),
            "group picker": in_view("fleet", "g", "down"),
            "sort picker": in_view("fleet", "s", "down"),
            "confirm": in_view("fleet", "e"),
            "prompt": in_view("fleet", "a"),
            "command bar": command_bar,
            "filter bar": in_view("fleet", "slash", "g", "w"),
        }
        assert set(places) == {p for g in SCREEN_GROUPS.values() for p in g}
        silent: list[str] = []
        for place in SCREEN_GROUPS[group]:
            silent += await walk(pilot, place, places[place], app_keys=place in ("service detail", "editor", "review"))
        assert not silent, "advertised keys that did nothing:\n" + "\n".join(silent)
        if group == "editing":
            # The editor and the review cover the bars: `:` and `/` are not offered there.
            for setup in (in_view("pipelines", "u"), review):
                await setup(pilot)
                assert not {"colon", "slash"} & set(advertised(app))
        await reset(pilot)


async def test_every_entry_of_the_command_palette(cockpit) -> None:
    app = cockpit
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        silent = []
        await in_view("changes")(pilot)
        for title, fn, _help in CockpitCommands(app.screen)._entries():
            if "Quit" in title:
                continue
            await in_view("changes")(pilot)
            app.theme = "cockpit-dark"
            before = fingerprint(app)
            result = fn()
            if inspect.isawaitable(result):  # the palette awaits what it runs
                await result
            await settle(pilot)
            if fingerprint(app) == before:
                silent.append(title)
        assert not silent, f"palette entries that did nothing: {silent}"


async def test_every_key_of_the_incident_view(frozen_clock) -> None:
    app = IncidentApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.report is not None, "the incident report", pilot=pilot)
        counting(app)

        def focused(table: str, *then: str) -> Setup:
            async def setup(pilot: Any) -> None:
                await reset(pilot)
                app.query_one(f"#{table}").focus()
                await pilot.pause()
                for key in then:
                    await pilot.press(key)
                    await pilot.pause()

            return setup

        silent = await walk(pilot, "incident", focused("i-broken"))
        silent += await walk(pilot, "incident changes", focused("i-changes"))
        silent += await walk(pilot, "incident collector", focused("i-broken", "enter"))
        assert not silent, "advertised keys that did nothing:\n" + "\n".join(silent)
        await focused("i-broken")(pilot)
        keys = advertised(app)
        # Only the incident view: no key for the cockpit's other views, nothing that writes.
        assert not {"0", "1", "2", "3", "4", "5", "e", "a", "u", "R"} & set(keys)
        assert isinstance(app.screen, type(app.screen_stack[0])) and not isinstance(app.screen, DetailScreen)
        await focused("i-broken", "enter")(pilot)
        assert isinstance(app.screen, CollectorDetailScreen)


async def test_every_key_of_the_walkthrough(frozen_clock, plain) -> None:
    from otelcockpit.tui.help import HelpScreen

    app = WalkthroughApp(settings_mod.resolve(), clock=frozen_clock, live=False, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(WalkthroughView)
        await wait_until(lambda: view.slides, "the slides", pilot=pilot)
        counting(app)

        async def middle(pilot: Any) -> None:  # slide 6 ("why the order matters"): every key moves
            await reset(pilot)
            view.go(5)
            view.focus_main()
            await pilot.pause()

        silent = await walk(pilot, "walkthrough", middle)
        assert not silent, "advertised keys that did nothing:\n" + "\n".join(silent)
        await middle(pilot)
        keys = advertised(app)
        assert not {"0", "5"} & set(keys)  # the cockpit's views are not in this app
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help"))
        assert "1-4" not in text and "Cockpit" not in text and "Rollouts" not in text
        for n in "1234":
            assert f"Phase {n}" in text
