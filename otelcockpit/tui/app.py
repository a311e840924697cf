"""The cockpit application: one status row, the view, one footer row (k9s conventions)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widgets import ContentSwitcher, Footer

from otelcockpit import settings as settings_mod
from otelcockpit.actions import ACTIONS
from otelcockpit.backends import make_backend
from otelcockpit.backends.base import (
    COLLECTOR_SET_ENABLED,
    COLLECTOR_SET_REMOTE_ATTRIBUTES,
    PIPELINE_SET_ENABLED,
    Change,
    FleetBackend,
)
from otelcockpit.errors import CockpitError, UsageError
from otelcockpit.fleet.model import Collector, FleetSnapshot, Pipeline, Revision, stabilise, utcnow
from otelcockpit.settings import Settings
from otelcockpit.tui.adoption_views import PhasesView, ServicesView
from otelcockpit.tui.cockpit_view import CockpitView
from otelcockpit.tui.detail import CollectorDetailScreen, DetailScreen, PipelineDetailScreen
from otelcockpit.tui.fleet_view import FleetView
from otelcockpit.tui.help import HelpScreen
from otelcockpit.tui.pipelines_view import PipelinesView
from otelcockpit.tui.rollout_views import (
    ChangesView,
    EditScreen,
    ReviewScreen,
    RolloutScreen,
    RolloutsView,
    edit_with_external_editor,
)
from otelcockpit.tui.themes import ThemeSet, check_theme, load_themes
from otelcockpit.tui.view import GroupingMixin, View, bindings_for
from otelcockpit.tui.widgets import (
    BarInput,
    ConfirmScreen,
    ListSuggester,
    PromptBar,
    PromptScreen,
    StatusRow,
    TooSmallScreen,
)

# `:` commands: name -> (aliases, description). Views register here as they are built.
VIEWS: dict[str, tuple[type[View], tuple[str, ...]]] = {
    "cockpit": (CockpitView, ("cockpit", "home", "0")),
    "fleet": (FleetView, ("collectors", "co", "fleet")),
    "pipelines": (PipelinesView, ("pipelines", "pi", "pipeline")),
    "services": (ServicesView, ("services", "svc", "se", "eligibility")),
    "phases": (PhasesView, ("phases", "ph", "journeys")),
    "rollouts": (RolloutsView, ("rollouts", "ro", "rollout")),
    "changes": (ChangesView, ("changes", "ch", "history")),
}
COMMANDS_HELP = [
    (":cockpit", "everything on one screen (the default)"),
    (":collectors", "the Fleet view (collectors)"),
    (":pipelines", "pipelines, matchers, revisions"),
    (":services", "eligibility for zero-code instrumentation"),
    (":phases", "the rollout checklist, sign-offs, journeys"),
    (":rollouts", "staged pushes: progress, pause, resume, abort, roll back"),
    (":changes", "every change with its rollback target"),
    (":ctx NAME", "switch context"),
    (":theme NAME", "switch theme"),
    (":q", "quit"),
]


class CockpitCommands(Provider):
    """Command palette entries: views, contexts, themes and the registry's actions (minus
    mutating ones in read-only mode)."""

    def _entries(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: CockpitApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, Callable[[], Any], str]] = []
        for name, (cls, _aliases) in app.views.items():
            if name != app.view_name:  # not the view shown
                out.append((f"View: {cls.TITLE}", partial(app.switch_view, name), f":{name}"))
        for ctx in sorted(app.settings.contexts):
            out.append((f"Context: {ctx}", partial(app.switch_context, ctx), f":ctx {ctx}"))
        for theme in sorted(app.theme_set.themes):
            if theme != app.theme:
                out.append((f"Theme: {theme}", partial(app.apply_theme, theme), f":theme {theme}"))
        for spec in ACTIONS:
            if spec.scope != "app" or (app.read_only and spec.dangerous):
                continue
            name, _, args = spec.action.partition("(")
            if app.check_action(name, (args.rstrip(")").strip("'\""),) if args else ()) is False:
                continue  # a key that does not apply here (the view shown, a view this app lacks)
            out.append((f"{spec.description}", partial(app.run_action, spec.action), spec.key_display or spec.key))
        return out

    async def discover(self) -> Hits:
        for title, fn, help_text in self._entries():
            yield DiscoveryHit(title, fn, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, fn, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), fn, help=help_text)


class CockpitApp(App[int]):
    CSS_PATH = "cockpit.tcss"
    TITLE = "otelcockpit"
    BINDINGS: ClassVar[list[BindingType]] = bindings_for("app")
    COMMANDS = {CockpitCommands}
    ENABLE_COMMAND_PALETTE = True
    # The views this app offers (`:` commands, keys, palette); a subclass may offer others.
    views: ClassVar[dict[str, tuple[type[View], tuple[str, ...]]]] = VIEWS
    commands_help: ClassVar[list[tuple[str, str]]] = COMMANDS_HELP
    state_name: ClassVar[str] = "tui-state.json"  # session state file in the data dir

    def __init__(
        self,
        settings: Settings,
        *,
        backend: FleetBackend | None = None,
        clock: Callable[[], datetime] = utcnow,
        live: bool = True,
        cursor_blink: bool = True,
        resolve_kwargs: dict[str, Any] | None = None,
        initial_view: str = "cockpit",
        explicit_view: bool = False,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.read_only = settings.read_only
        self.backend: FleetBackend | None = backend
        self.clock = clock
        self.live = live
        self.cursor_blink = cursor_blink
        self.snapshot: FleetSnapshot | None = None
        self.paused = False
        self.theme_set: ThemeSet = load_themes(settings_mod.user_themes_dir())
        self.view_name = initial_view if initial_view in self.views else next(iter(self.views))
        self.explicit_view = explicit_view  # --view wins over the view saved by the last session
        self.history: list[str] = []
        self._resolve_kwargs = resolve_kwargs or {}
        self._poll_timer: Any = None
        self._failures = 0
        self.error_message = ""
        self._ticks = 0
        self.filters: dict[str, str] = {}  # view name -> its filter text (kept for the session state)
        self.sorts: dict[str, str] = {}  # view name -> its row order (kept for the session state)
        self.adoption: Any = None  # AdoptionData, computed off the UI thread
        self.adoption_error = ""
        self._adoption_for: FleetSnapshot | None = None
        self._adoption_at = 0.0
        self._adoption_sources: Any = None
        self.rollout_service: Any = None  # the backend's rollout service (otelcockpit.rollout.service)
        self._views: dict[str, Any] = {}  # rollout id -> its newest RolloutView
        self._events: list[Any] = []  # agent events waiting for the next flush
        self._event_timer: Any = None
        self.rollouts: tuple[Any, ...] = ()  # RolloutView, newest first (from the rollout journal)
        self.changes: list[Any] | None = None  # ChangeEntry timeline (journal + pipeline revisions)
        self.collector_targets: dict[str, Any] = {}  # collector id -> CollectorTarget (its rollback target)
        self.pipeline_targets: dict[str, Any] = {}  # pipeline -> PipelineTarget (from the rollout service)
        self._changes_at = -1e9
        # The fleet API's last outage as this cockpit saw it: since when (the last good data), and the
        # texts of the configs the collectors that came up meanwhile run, to compare (outage_report).
        self.outage_since: Any = None
        self.outage_texts: dict[str, str] = {}
        self._outage_asked: set[str] = set()  # config hashes asked for once (what is not found stays uncompared)
        self._in_outage = False
        # Every pipeline's history, for backends whose snapshot does not carry it (OpAMP, Fleet
        # Management): the Pipelines view counts revisions from it, as the detail lists them.
        self.revisions: dict[str, tuple[Revision, ...]] | None = None
        self._revisions_at = -1e9

    # ---- time ----------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    # ---- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusRow(id="status")
        with ContentSwitcher(initial=self.view_name, id="views"):
            for name, (cls, _aliases) in self.views.items():
                yield cls(id=name)
        yield PromptBar(":", suggester=ListSuggester(self.command_words), id="command")
        yield PromptBar("/", id="filter")
        yield Footer(show_command_palette=False)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # The cockpit's own slots, for Textual's built-in themes (ours all define them).
        return {
            "health-healthy": "green",
            "health-degraded": "yellow",
            "health-unhealthy": "red",
            "health-offline": "grey",
            "health-unknown": "grey",
            "badge-read-only": "red",
        }

    def on_mount(self) -> None:
        for theme in self.theme_set.themes.values():
            self.register_theme(theme)
        self.theme = self.settings.theme
        if self.theme_set.failures:
            self.notify("\n".join(self.theme_set.failures), title="Some user themes did not load", severity="warning")
        self.set_interval(1.0, self._tick, name="clock")
        self.restore_state()
        self.current_view.focus_main()
        self.check_size()
        self.start_backend()

    def status_state(self) -> dict[str, Any]:
        ctx = self.settings.context
        return {
            "context": ctx.name,
            "production": ctx.production,
            "backend": self.settings.backend,
            "read_only": self.read_only,
            "snapshot": self.snapshot,
            "now": self.now(),
            "paused": self.paused,
        }

    def refresh_status(self) -> None:
        screen = self.top_screen()
        if screen is None:
            return
        for row in screen.query(StatusRow):
            row.refresh()

    @property
    def current_view(self) -> View:
        return self.query_one(f"#{self.view_name}", View)

    def _tick(self) -> None:
        if self.top_screen() is None:
            return
        self.refresh_status()
        self._ticks += 1
        if self._ticks % 30 == 0:
            # Ages ("3m") move even when nothing else does: repaint the visible rows twice a minute.
            self.current_view.refresh_ages()

    def on_resize(self, event: events.Resize) -> None:
        # This handler runs before Textual's own records the new size: use the event's.
        self.check_size(event.size)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that do not apply here are neither run nor shown (footer, help): a view this app
        does not have, `/` where the view has no filter, and the one-key commands while a `:` or `/`
        bar takes the typing."""
        if action == "view":
            # Only the views this app has, not the one shown, and not from the editor or the review.
            return (bool(parameters) and parameters[0] in self.views and parameters[0] != self.view_name
                    and self._bars_reachable())
        if action == "back":
            return self._can_go_back()
        if self._typing() and action in ("filter", "command_line", "help", "toggle_pause", "quit"):
            return False
        if action in ("filter", "command_line") and not self._bars_reachable():
            return False  # the editor and the review cover the bars: `:` and `/` would open them unseen
        if action == "filter":
            try:
                return bool(getattr(self.current_view, "HAS_FILTER", False))
            except Exception:  # noqa: BLE001 - no view yet (starting, shutting down)
                return False
        return True

    def _can_go_back(self) -> bool:
        """esc has something to do: close a bar, leave grouping, clear the filter or go back a view."""
        try:
            if any(bar.is_open for bar in self.query(PromptBar)):
                return True
            view = self.current_view
        except Exception:  # noqa: BLE001 - no main screen (starting, shutting down, a modal on top)
            return True
        return bool(getattr(view, "group_key", None) or getattr(view, "filter_text", "") or self.history)

    def _typing(self) -> bool:
        """A `:` or `/` bar, or any other text input or editor, has the keyboard."""
        from textual.widgets import Input, TextArea

        return isinstance(self.focused, Input | TextArea)

    def _bars_reachable(self) -> bool:
        """The `:` and `/` bars live on the main screen: reachable from it and from the detail
        screens above it (they close to show them), not from the push editor or its review."""
        from textual.command import CommandPalette

        stack = [s for s in self.screen_stack if not isinstance(s, CommandPalette)]  # what it was opened on
        if self._exit or not stack:
            return True
        screen = stack[-1]
        return screen is stack[0] or isinstance(screen, DetailScreen)

    def check_size(self, size: Any = None) -> None:
        """Below the minimum size, at any time, the "terminal too small" screen covers everything;
        back above it, the screen goes and the view is as it was."""
        size = size or self.size
        need_w, need_h = self.settings.min_size
        too_small = size.width < need_w or size.height < need_h
        screen = self.top_screen()
        if screen is None:
            return
        showing = isinstance(screen, TooSmallScreen)
        if too_small and not showing:
            self.push_screen(TooSmallScreen((need_w, need_h)))
        elif too_small and showing:
            screen.update_size(size)
        elif not too_small and showing:
            self.pop_screen()

    # ---- data ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="backend", exit_on_error=False)
    def start_backend(self) -> None:
        """Open the backend off the UI thread (the demo builds its fleet here)."""
        try:
            backend = self.backend or make_backend(self.settings, clock=self.clock)
        except CockpitError as exc:
            self.call_from_thread(self.fail, exc.message)
            return
        self.call_from_thread(self._backend_ready, backend)

    def _backend_ready(self, backend: FleetBackend) -> None:
        self.backend = backend
        self.rollout_service = None
        try:
            from otelcockpit.backends import rollouts_for

            journal = getattr(self, "journal_path", None)
            self.rollout_service = rollouts_for(
                self.settings,
                backend,
                journal=str(journal) if journal else None,
                spawn=self._spawn_rollout,
                poll_interval=0.5,
            )
        except CockpitError as exc:
            self.notify(exc.message, title="Rollouts unavailable", severity="warning")
        self.poll()
        if "events" in backend.capabilities and hasattr(backend, "events"):
            self._follow_events(backend)

    @work(group="events", exit_on_error=False)
    async def _follow_events(self, backend: Any) -> None:
        """Live updates from the backend's event stream (OpAMP): agent events are folded into the
        snapshot and shown at most every 0.25 s; config and assignment events trigger a fresh read."""
        try:
            async for event in backend.events():
                if self.backend is not backend:
                    return
                if self.paused or self.snapshot is None:
                    continue
                if backend.needs_snapshot(event):
                    self.poll()
                    continue
                self._events.append(event)
                if self._event_timer is None:
                    self._event_timer = self.set_timer(0.25, self._flush_events)
        except CockpitError as exc:
            self.notify(exc.message, title="Live updates stopped", severity="warning")

    def _flush_events(self) -> None:
        self._event_timer = None
        events, self._events = self._events, []
        backend = self.backend
        if not events or self.paused or backend is None:
            return
        snap = backend.apply_events(events)  # one rebuild of the list for all of them
        if snap is None:
            return
        self.snapshot = stabilise(self.snapshot, snap)
        self._show(self.snapshot)

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll(self) -> None:
        backend = self.backend
        if backend is None:
            return
        try:
            snap = await backend.snapshot()
            # Unchanged collectors keep their identity, so only real changes are repainted.
            snap = await asyncio.to_thread(stabilise, self.snapshot, snap)
        except CockpitError as exc:
            self._failures += 1
            if self.snapshot is None:
                # Nothing to show at all: say why in one line and stop (exit code 1).
                self.fail(exc.message)
                return
            self.snapshot = self.snapshot.as_stale(exc.message, replace(self.snapshot.health, ok=False, status="down"))
            self._show(self.snapshot)
            self._schedule(min(60.0, self.settings.refresh_seconds * 2**self._failures))
            return
        self._failures = 0
        self.snapshot = snap
        self._show(snap)
        self._schedule(self.settings.refresh_seconds)

    def _schedule(self, delay: float) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if self.live and not self.paused and delay > 0:
            self._poll_timer = self.set_timer(delay, self.poll, name="poll")

    def top_screen(self) -> Any:
        """The screen on top, or None while the app is shutting down (a worker finishing after
        the last screen is gone must not fail on it)."""
        if self._exit:
            return None
        try:
            return self.screen
        except ScreenStackError:
            return None

    def _show(self, snap: FleetSnapshot) -> None:
        screen = self.top_screen()
        if screen is None:
            # A timer or worker finishing while the app shuts down: nothing left to paint.
            return
        self.track_outage(snap)
        self.refresh_status()
        self.current_view.update_snapshot(snap)
        if isinstance(screen, DetailScreen):
            screen.refresh_from(snap)  # type: ignore[attr-defined]

    # ---- the fleet API's outage (the cockpit's fleet panel: adoption/outage.py) ---------------------
    def track_outage(self, snap: FleetSnapshot) -> None:
        """Remember when the API went away (the last good data); once it answers again, fetch the texts
        of the configs the collectors that came up since then run, and of theirs assigned."""
        from otelcockpit.adoption.outage import hashes_to_compare

        if snap.stale:
            if self.outage_since is None or not self._in_outage:
                self.outage_since, self.outage_texts, self._outage_asked = snap.fetched_at, {}, set()
            self._in_outage = True
            return
        self._in_outage = False
        if self.outage_since is None or self.backend is None or not hasattr(self.backend, "config_texts"):
            return
        wanted = {h: cid for h, cid in hashes_to_compare(snap.collectors, self.outage_since).items() if h not in self._outage_asked}
        if wanted:
            self._outage_asked.update(wanted)  # asked once: what the backend cannot find stays "not compared"
            self._load_outage_texts(wanted)


    @work(exclusive=True, group="outage", exit_on_error=False)
    async def _load_outage_texts(self, wanted: dict[str, str]) -> None:
        try:
            texts = await self.backend.config_texts(wanted)  # type: ignore[union-attr]
        except CockpitError:
            return  # the panel says "not compared" for what it lacks
        self.outage_texts.update(texts)
        if self.top_screen() is not None and self.snapshot is not None and hasattr(self.current_view, "update_changes"):
            self.current_view.update_changes()

    # ---- background work on the latest snapshot, throttled -------------------------------------
    def due(self, group: str, last: float, every: float, *, force: bool = False) -> float | None:
        """The loop time to record when work of ``group`` should start now, else None: not before
        ``every`` seconds since ``last`` (unless forced), and never twice at once."""
        now = asyncio.get_running_loop().time()
        if not force and now - last < every:
            return None
        if any(w.group == group and w.is_running for w in self.workers):
            return None
        return now

    async def load_all_revisions(self, snap: FleetSnapshot) -> dict[str, tuple[Revision, ...]]:
        """Every pipeline's history; on a backend error, what the snapshot carries, and a warning."""
        from otelcockpit.backends import all_revisions

        if self.backend is None:
            return dict(snap.revisions)
        try:
            return await all_revisions(self.backend, snap)
        except CockpitError as exc:
            self.notify(exc.message, title="Could not load pipeline history", severity="warning")
            return dict(snap.revisions)

    def request_revisions(self, *, force: bool = False) -> None:
        """Load every pipeline's revisions (at most every 15 s) when the snapshot has none."""
        snap = self.snapshot
        if snap is None or self.backend is None or snap.revisions:
            return
        started = self.due("revisions", self._revisions_at, 15, force=force)
        if started is not None:
            self._revisions_at = started
            self._load_revisions(snap)

    @work(exclusive=True, group="revisions", exit_on_error=False)
    async def _load_revisions(self, snap: FleetSnapshot) -> None:
        self.revisions = await self.load_all_revisions(snap)
        if self.top_screen() is None or self.snapshot is None:
            return
        view = self.current_view
        if hasattr(view, "update_revisions"):
            view.update_revisions()

    # ---- adoption (eligibility, phases, journeys): analysed in a thread, at most every 10 s -----
    def request_adoption(self, *, force: bool = False) -> None:
        snap = self.snapshot
        if snap is None or (self.adoption_error and not force) or (self._adoption_for is snap and not force):
            return
        started = self.due("adoption", self._adoption_at if self.adoption is not None else -1e9, 10, force=force)
        if started is None:
            return
        self._adoption_for = snap
        self._adoption_at = started
        self._analyse(snap)

    @work(thread=True, exclusive=True, group="adoption", exit_on_error=False)
    def _analyse(self, snap: FleetSnapshot) -> None:
        from otelcockpit.adoption.cockpit import analyse_for, load_sources, resolve_sources

        try:
            if self._adoption_sources is None:
                self._adoption_sources = load_sources(resolve_sources(self.settings))
            data = analyse_for(self.settings, snap, self._adoption_sources)
        except CockpitError as exc:
            self.call_from_thread(self._adoption_failed, exc.message)
            return
        self.call_from_thread(self._adoption_ready, data)

    def _adoption_failed(self, message: str) -> None:
        self.adoption_error = message
        self._refresh_adoption_views()

    def _adoption_ready(self, data: Any) -> None:
        self.adoption = data
        self.adoption_error = ""
        self._refresh_adoption_views()

    def _refresh_adoption_views(self) -> None:
        if self.top_screen() is None:
            return
        view = self.current_view
        if hasattr(view, "update_adoption"):
            view.update_adoption(self.adoption)
        screen = self.top_screen()
        if isinstance(screen, DetailScreen) and self.snapshot is not None:
            screen.refresh_from(self.snapshot)

    # ---- rollouts and the change timeline: at most every 15 s, off the UI thread -----------------
    def request_changes(self, *, force: bool = False) -> None:
        if self.snapshot is None or self.backend is None:
            return
        started = self.due("changes", self._changes_at, 15, force=force)
        if started is not None:
            self._changes_at = started
            self._load_changes(self.snapshot)

    @work(exclusive=True, group="changes", exit_on_error=False)
    async def _load_changes(self, snap: FleetSnapshot) -> None:
        from datetime import timedelta

        svc = self.rollout_service
        if svc is None:
            return
        now = self.now()
        try:
            rec = await svc.records(snap.collectors, since=now - timedelta(days=7), now=now)
        except CockpitError as exc:
            self.notify(exc.message, title="Could not load rollouts", severity="warning")
            return
        self.rollouts = rec.rollouts
        self.changes = sorted(rec.events, key=lambda c: c.at)
        self.collector_targets = dict(rec.collector_targets)
        self.pipeline_targets = dict(rec.pipeline_targets)
        for v in rec.rollouts:
            self._views[v.id] = v
        if self.top_screen() is None:
            return
        view = self.current_view
        if hasattr(view, "update_changes"):
            view.update_changes()
        screen = self.screen
        if isinstance(screen, CollectorDetailScreen | PipelineDetailScreen | RolloutScreen):
            screen.refresh_from(self.snapshot)

    def collector_target(self, c: Collector) -> Any:
        """A collector's own rollback target (a CollectorTarget or None): from the rollout records,
        else from the backend when it knows it itself (the demo), asked for this one collector."""
        target = self.collector_targets.get(c.id)
        own = getattr(self.backend, "collector_targets", None)
        if target is None and callable(own):
            target = own([c]).get(c.id)
        return target

    # ---- staged pushes: every operation goes through the backend's rollout service ---------------
    def _spawn_rollout(self, coro: Any) -> None:
        """The service runs rollouts in the background as workers of this app (on the OpAMP backend
        the server runs them, and nothing is spawned here)."""
        self.run_worker(coro, group="rollout-run", exit_on_error=False)

    def _service(self) -> Any:
        if self.rollout_service is None:
            self.notify("rollouts are not available on this backend", severity="error")
        return self.rollout_service

    def rollout_view(self, rollout_id: str) -> Any:
        """The newest known view of a rollout (the screen shows it; a fresh one is fetched each time)."""
        self._fetch_view(rollout_id)
        return self._views.get(rollout_id)

    @work(group="rollout-fetch", exclusive=True, exit_on_error=False)
    async def _fetch_view(self, rollout_id: str) -> None:
        svc = self.rollout_service
        if svc is None:
            return
        try:
            self._views[rollout_id] = await svc.view(rollout_id)
        except CockpitError:
            return
        screen = self.top_screen()
        if isinstance(screen, RolloutScreen) and screen.rollout_id == rollout_id:
            screen.refresh_from(None)

    def start_push(self, name: str) -> None:
        """Edit -> review (diff, findings, blast radius, plan) -> confirm -> run, for one pipeline."""
        snap = self.snapshot
        pipeline = snap.pipeline(name) if snap else None
        if snap is None or pipeline is None:
            self.notify(f"no pipeline {name!r} in the current data", severity="error")
            return
        if snap.stale:
            self.notify(f"refused: the data is stale ({snap.stale_reason})", title="Refused", severity="error")
            return
        if self._service() is None:
            return
        suffix = ".yaml" if pipeline.config_type.value == "otel" else ".alloy"
        if os.environ.get("VISUAL") or os.environ.get("EDITOR"):
            text = edit_with_external_editor(self, pipeline.contents, suffix)
            if text is None:
                self.notify("the editor failed; nothing changed", severity="warning")
                return
            self._review(pipeline, text)
            return
        self.push_screen(EditScreen(pipeline), lambda text: self._review(pipeline, text) if text is not None else None)

    def _review(self, pipeline: Pipeline, text: str) -> None:
        from otelcockpit.rollout.options import PlanOptions
        from otelcockpit.rollout.service import PushRequest

        if text == pipeline.contents:
            self.notify("no change to push", severity="warning")
            return
        svc = self._service()
        if svc is None:
            return
        production = self.settings.context.production
        requests: dict[int, tuple[Any, Any]] = {}

        async def plan(canary: str, waves: str, max_failures: str, soak: str) -> Any:
            """The plan for the review's fields, from the rollout service (a bad field: one line)."""
            options = PlanOptions(
                canary=canary.strip() or "none", waves=waves.strip() or None,
                max_failures=max_failures.strip() or None, soak=soak.strip() or None,
            )  # fmt: skip
            req = PushRequest(pipeline.name, text, options, self.settings.identity, production)
            planned = await svc.plan(req)
            requests[id(planned)] = (planned, req)  # Start launches the request of the plan on screen
            return planned

        # A later phase's work pushed while an earlier phase is below its threshold: say so.
        warnings: list[str] = []
        if self.adoption is not None:
            from otelcockpit.adoption.phases import warnings_for_pipeline

            warnings = warnings_for_pipeline(self.adoption.phases, replace(pipeline, contents=text))
        d = svc.defaults
        fields = (d.canary or "", d.waves or "", str(d.max_failures or "0"), d.soak or "")
        name = self.settings.context.name if production else None
        self.push_screen(
            ReviewScreen(replace(pipeline, contents=text), plan, production_name=name, warnings=warnings, fields=fields),
            lambda p: self._launch(requests[id(p)][1], p) if p is not None and id(p) in requests else None,
        )

    @work(group="rollout-launch", exit_on_error=False)
    async def _launch(self, req: Any, reviewed: Any) -> None:
        svc = self._service()
        if svc is None:
            return
        try:
            view = await svc.start(req, reviewed=reviewed)
        except CockpitError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self._views[view.id] = view
        self.notify(f"rollout {view.id} of {view.pipeline} started by {req.author}", title="Rollout")
        self.push_screen(RolloutScreen(view.id))
        self.request_changes(force=True)

    def rollout_command(self, rollout_id: str, what: str) -> None:
        """P r A B on a rollout: pause and resume at once; abort and roll back after a confirmation
        that says what they will change."""
        if self.read_only:  # not bound in read-only; a second guard all the same
            self.notify("read-only: refused", severity="error")
            return
        if what in ("pause", "resume"):
            self._rollout_action(rollout_id, what)
        elif what == "abort":
            v = self._views.get(rollout_id)
            base = f" (revision {v.plan.base_revision})" if v is not None and v.plan.base_revision else ""
            self._confirm(
                "Abort rollout",
                f"Abort rollout {rollout_id}? Every collector it staged goes back to the live version{base}; "
                "the stages not reached are never offered the new one.",
                "Abort",
                lambda: self._rollout_action(rollout_id, "abort"),
            )
        else:
            self._plan_rollback(rollout_id=rollout_id)

    @work(group="rollout-op", exit_on_error=False)
    async def _rollout_action(self, rollout_id: str, what: str) -> None:
        svc = self._service()
        if svc is None:
            return
        fn = {"pause": svc.pause, "resume": svc.resume, "abort": svc.abort}[what]
        try:
            result = await fn(rollout_id, self.settings.identity)
        except CockpitError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self._views[rollout_id] = result.view
        self.notify(result.message, title="Rollout")
        self.request_changes(force=True)
        self.poll()

    @work(group="rollout-op", exit_on_error=False)
    async def _plan_rollback(self, *, rollout_id: str = "", pipeline: str = "", to: str | None = None) -> None:
        """Plan a rollback (its target, what it aborts, its blast radius) and ask before doing it."""
        svc = self._service()
        if svc is None:
            return
        try:
            plan = await (svc.rollback_plan_for(rollout_id) if rollout_id else svc.rollback_plan(pipeline, to))
        except CockpitError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self._confirm("Roll back", plan.describe(), "Roll back", lambda: self._rollback(plan))

    @work(group="rollout-op", exit_on_error=False)
    async def _rollback(self, plan: Any) -> None:
        svc = self._service()
        if svc is None:
            return
        try:
            result = await svc.rollback(plan, self.settings.identity)
        except CockpitError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self.notify(result.message(), title="Rolled back")
        self.revisions_changed(plan.pipeline)
        self.request_changes(force=True)
        self.poll()

    def pipeline_target(self, name: str, revisions: Any) -> Revision | None:
        """A pipeline's rollback target as the rollout service says it (the same everywhere: the
        detail, the list, the cockpit, ``rollback``); until its records arrive, what the history alone
        tells (the revision before the live one that is a version of its own)."""
        from otelcockpit.rollout.history import pipeline_target

        known = self.pipeline_targets.get(name)
        if known is not None and known.live_revision == (revisions[-1].id if revisions else known.live_revision):
            return known.revision
        return pipeline_target(None, name, tuple(revisions)).revision

    def revisions_changed(self, pipeline: str) -> None:
        """A pipeline's history changed (a rollback, a push): open screens read it again."""
        screen = self.top_screen()
        if isinstance(screen, PipelineDetailScreen) and screen.pipeline_name == pipeline:
            screen.reload_revisions()

    def sign_off(self, item: Any) -> None:
        """A note, then a confirmation that says who signs off what (Cancel focused)."""
        from otelcockpit.adoption import signoff

        who_ = self.settings.identity
        state = "passes" if item.passed else "does NOT pass its automatic check"

        def sign(note: str) -> None:
            try:
                signoff.sign_off(
                    item.id, who_, note=note, at=self.now(), context=self.settings.context.name, read_only=self.read_only
                )
            except CockpitError as exc:
                self.notify(exc.message, title="Refused", severity="error")
                return
            self.notify(f"{item.id} signed off by {who_}", title="Signed off")
            self.request_adoption(force=True)

        def got(note: str | None) -> None:
            if note is None:
                return
            self._confirm(
                "Sign off",
                f"Sign off {item.id} ({state}) as {who_}, with the note:\n  {note or '(none)'}\n"
                "The phase checklist counts it as done from now on.",
                "Sign off",
                lambda: sign(note),
            )

        self.push_screen(PromptScreen(f"Sign off {item.id} ({state}) as {who_}: a note", "why it is done", None), got)

    async def load_revisions(self, pipeline: str) -> tuple[Revision, ...]:
        if self.backend is None:
            return ()
        try:
            return tuple(await self.backend.revisions(pipeline))
        except CockpitError as exc:
            self.notify(exc.message, title="Could not load revisions", severity="error")
            return ()

    # ---- views ---------------------------------------------------------------------------------
    def switch_view(self, name: str, *, remember: bool = True) -> None:
        if name not in self.views:
            return
        while isinstance(self.screen, DetailScreen):
            self.pop_screen()
        if name != self.view_name and remember:
            self.history.append(self.view_name)
        self.view_name = name
        self.query_one(ContentSwitcher).current = name
        if self.snapshot is not None:
            self.current_view.update_snapshot(self.snapshot)
        view = self.current_view
        view.focus_main()
        self.call_after_refresh(lambda: view.focus_main() if self.current_view is view else None)

    def copy_rollback(self, pipeline: str, target: str, command: str = "") -> None:
        """Copy a change's rollback command to the clipboard (OSC 52) and say so: the incident view,
        the cockpit's change panel and the Changes view all copy through here. The command comes
        from the one builder (otelcockpit.rollout.incident.rollback_command)."""
        from otelcockpit.rollout.incident import context_for_commands, rollback_command

        if not target:
            self.notify(f"{pipeline or 'this change'} has no earlier revision to roll back to", severity="warning")
            return
        command = command or rollback_command(pipeline, target, context=context_for_commands(self.settings))
        self.copy_to_clipboard(command)
        self.notify(command, title="Copied the rollback command (OSC 52)")

    def open_collector(self, collector_id: str) -> None:
        self.push_screen(CollectorDetailScreen(collector_id))

    def open_pipeline(self, name: str) -> None:
        self.push_screen(PipelineDetailScreen(name))

    def command_words(self, value: str) -> list[str]:
        words = [alias for _cls, aliases in self.views.values() for alias in aliases]
        words += [f"ctx {c}" for c in sorted(self.settings.contexts)]
        words += [f"theme {t}" for t in sorted(self.theme_set.themes)]
        words += ["quit", "help"]
        return words

    def run_command(self, text: str) -> str | None:
        """Run a `:` command; return an error message to show, or None."""
        parts = text.strip().split()
        if not parts:
            return None
        head, args = parts[0].lower(), parts[1:]
        for name, (_cls, aliases) in self.views.items():
            if head in aliases:
                self.switch_view(name)
                return None
        if head in ("q", "quit", "q!"):
            self.exit(0)
            return None
        if head == "help":
            self.action_help()
            return None
        if head in ("ctx", "context"):
            if not args:
                return f"contexts: {', '.join(sorted(self.settings.contexts))}"
            return self.switch_context(args[0])
        if head == "theme":
            if not args:
                return f"themes: {', '.join(sorted(self.theme_set.themes))}"
            return self.apply_theme(args[0])
        return f"unknown command {head!r} (try :help)"

    def apply_theme(self, name: str) -> str | None:
        try:
            check_theme(name, self.theme_set)
        except CockpitError as exc:
            return exc.message
        self.theme = name
        return None

    def switch_context(self, name: str) -> str | None:
        if name not in self.settings.contexts:
            return f"unknown context {name!r}"
        kwargs = dict(self._resolve_kwargs)
        kwargs.update(context=name, source=None, url=None)
        try:
            new = settings_mod.resolve(**kwargs)
        except CockpitError as exc:
            return exc.message
        old_backend, old_rollouts = self.backend, self.rollout_service
        self.settings = new
        self.read_only = new.read_only
        self.backend = None
        self.rollout_service = None
        self.snapshot = None
        self.rollouts, self.changes, self.collector_targets, self.pipeline_targets = (), None, {}, {}
        self._views.clear()
        self.adoption, self.adoption_error, self._adoption_sources, self._adoption_for = None, "", None, None
        self.revisions = None
        if old_rollouts is not None:
            self.run_worker(old_rollouts.close(), exit_on_error=False)
        if old_backend is not None:
            self.run_worker(old_backend.close(), exit_on_error=False)
        self.refresh_status()
        if new.context.theme:
            self.apply_theme(new.context.theme)
        self.refresh_bindings()
        self.start_backend()
        return None

    # ---- app actions ---------------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen.active_bindings, self.commands_help, self.read_only))

    def _to_main_screen(self) -> None:
        while isinstance(self.screen, DetailScreen):
            self.pop_screen()

    def action_command_line(self) -> None:
        self._to_main_screen()
        self.query_one("#filter", PromptBar).close()
        self.query_one("#command", PromptBar).open()

    def action_filter(self) -> None:
        self._to_main_screen()
        view = self.current_view
        self.query_one("#command", PromptBar).close()
        self.query_one("#filter", PromptBar).open(getattr(view, "filter_text", ""))

    def set_filter(self, text: str) -> str | None:
        error = self.current_view.apply_filter(text)
        if error is None:
            self.filters[self.view_name] = text.strip()
        return error

    def action_back(self) -> None:
        for bar in self.query(PromptBar):
            if bar.is_open:
                bar.close()
                self.current_view.focus_main()
                return
        view = self.current_view
        if isinstance(view, GroupingMixin) and view.group_key:  # every grouped view, not one of them
            view.action_group()
            return
        if getattr(view, "filter_text", ""):
            self.set_filter("")
            return
        if self.history:
            self.switch_view(self.history.pop(), remember=False)

    def action_refresh(self) -> None:
        """ctrl+r: the fleet, the rollout records and an open pipeline's history, all read again."""
        self.poll()
        self.request_changes(force=True)
        screen = self.top_screen()
        if isinstance(screen, PipelineDetailScreen):
            screen.reload_revisions()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_status()
        if self.paused:
            self._schedule(0)
        else:
            self.poll()

    def action_view(self, name: str) -> None:
        self.switch_view(name)

    @on(BarInput.Submitted)
    def prompt_submitted(self, event: BarInput.Submitted) -> None:
        bar = event.input.parent
        if not isinstance(event.input, BarInput) or not isinstance(bar, PromptBar):
            return  # an Input of a modal (PromptScreen) handles its own submit
        if bar.id == "command":
            error = self.run_command(event.value)
        else:
            error = self.set_filter(event.value)
        if error:
            bar.set_error(error)
            return
        bar.close()
        if not isinstance(self.screen, HelpScreen):
            self.current_view.focus_main()

    @on(BarInput.Changed)
    def prompt_changed(self, event: BarInput.Changed) -> None:
        bar = event.input.parent
        if isinstance(event.input, BarInput) and isinstance(bar, PromptBar) and bar.id == "filter" and not isinstance(event, BarInput.Cancelled):
            # Live filtering: every keystroke repaints (matcher syntax errors wait for completion).
            error = self.set_filter(event.value)
            bar.set_error("" if error is None else error.split(": ", 1)[-1])

    @on(BarInput.Cancelled)
    def prompt_cancelled(self, event: BarInput.Cancelled) -> None:
        bar = event.input.parent
        if isinstance(bar, PromptBar):
            bar.close()
        self.current_view.focus_main()

    # ---- mutating actions (dangerous: gated by read-only, confirmed, refused by the backend) ----
    def _confirm(self, title: str, body: str, label: str, then: Callable[[], Any]) -> None:
        ctx = self.settings.context

        def done(ok: bool | None) -> None:
            if ok:
                then()

        self.push_screen(
            ConfirmScreen(title, body, confirm_label=label, type_to_confirm=ctx.name if ctx.production else None), done
        )

    def push_change(self, change: Change) -> None:
        self._push(change)

    @work(exclusive=False, group="push", exit_on_error=False)
    async def _push(self, change: Change) -> None:
        if self.backend is None:
            return
        try:
            result = await self.backend.push(change)
        except CockpitError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self.notify(result.message, title="Applied" if result.ok else "Failed", severity="information" if result.ok else "error")
        self.poll()

    def _author(self) -> str:
        return self.settings.identity

    def toggle_collector(self, c: Collector) -> None:
        verb = "Disable" if c.enabled else "Enable"
        change = Change(COLLECTOR_SET_ENABLED, {"ids": [c.id], "enabled": not c.enabled}, author=self._author())
        self._confirm(f"{verb} collector", change.explain(self.snapshot), verb, lambda: self.push_change(change))

    def set_remote_attribute(self, c: Collector) -> None:
        def validate(text: str) -> str | None:
            key, sep, _value = text.partition("=")
            if not sep or not key.strip():
                return "write key=value (an empty value removes the attribute)"
            if key.strip().startswith("collector."):
                return "the collector. prefix is reserved"
            return None

        def got(text: str | None) -> None:
            if not text:
                return
            key, _, value = text.partition("=")
            key, value = key.strip(), value.strip()
            payload = {"ids": [c.id], "set": {key: value}} if value else {"ids": [c.id], "remove": [key]}
            change = Change(COLLECTOR_SET_REMOTE_ATTRIBUTES, payload, author=self._author())
            self._confirm("Set remote attribute", change.explain(self.snapshot), "Apply", lambda: self.push_change(change))

        self.push_screen(PromptScreen(f"Remote attribute for {c.name} (key=value)", "rollout=canary", validate), got)

    def toggle_pipeline(self, p: Pipeline) -> None:
        verb = "Disable" if p.enabled else "Enable"
        change = Change(PIPELINE_SET_ENABLED, {"name": p.name, "enabled": not p.enabled}, author=self._author())
        self._confirm(f"{verb} pipeline", change.explain(self.snapshot), verb, lambda: self.push_change(change))

    def rollback_pipeline(self, name: str, rev: Revision) -> None:
        """``R`` on a revision: through the rollout service (it aborts a rollout in flight, refuses
        the live revision, and the confirmation names the target and the blast radius)."""
        if self.read_only:
            self.notify("read-only: refused", severity="error")
            return
        self._plan_rollback(pipeline=name, to=rev.id)

    # ---- exit ----------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        """End the app with one line on stderr and exit code 1 (printed by run_app)."""
        self.error_message = message
        self.exit(1, return_code=1)

    # ---- session state (saved on exit and on SIGHUP, restored on the next start) ---------------
    def state_file(self) -> Path:
        return settings_mod.data_dir() / self.state_name

    def save_state(self) -> None:
        state = {
            "context": self.settings.context.name,
            "view": self.view_name,
            "filters": dict(self.filters),
            "sorts": dict(self.sorts),
            "theme": self.theme,
        }
        try:
            path = self.state_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(path)
        except OSError:
            pass  # a read-only home must not turn an exit into a crash

    def restore_state(self) -> None:
        """Come back where you left off (same context only): the view and its filters."""
        try:
            state = json.loads(self.state_file().read_text())
        except (OSError, ValueError):
            return
        if not isinstance(state, dict) or state.get("context") != self.settings.context.name:
            return
        view = state.get("view")
        if view in self.views and view != self.view_name and not self.explicit_view:
            self.view_name = view
            self.query_one(ContentSwitcher).current = view
        for name, key in (state.get("sorts") or {}).items():
            if name in self.views and isinstance(key, str):
                self.query_one(f"#{name}", View).set_sort(key)
        for name, text in (state.get("filters") or {}).items():
            if name in self.views and isinstance(text, str) and text:
                if self.query_one(f"#{name}", View).apply_filter(text) is None:
                    self.filters[name] = text

    def on_hangup(self) -> None:
        """The terminal went away (SSH dropped): save and leave."""
        self.save_state()
        self.exit(0)

    async def on_unmount(self) -> None:
        self.save_state()
        if self.rollout_service is not None:
            await self.rollout_service.close()
        if self.backend is not None:
            await self.backend.close()


def run_app(settings: Settings, *, app_cls: type[CockpitApp] | None = None, **kwargs: Any) -> int:
    themes = load_themes(settings_mod.user_themes_dir())
    check_theme(settings.theme, themes)
    cls = app_cls or CockpitApp
    if kwargs.get("backend") is None:
        # Open the backend before the app starts: the demo builds its fleet here, without competing
        # with the app's start for the interpreter (faster to the first table than a worker thread),
        # and a backend that cannot start says why in one line before the screen is taken over.
        kwargs["backend"] = make_backend(settings, clock=kwargs.get("clock", utcnow))
    view = kwargs.get("initial_view")
    if view is not None and view not in cls.views:
        raise UsageError(f"unknown view {view!r} (one of {', '.join(cls.views)})")
    app = cls(settings, **kwargs)

    def hangup(_signum: int, _frame: object) -> None:
        # Shutting down may try to restore a terminal that no longer exists and block on it: the
        # process ends within 2 s regardless (the saved state and the rollout journal are on disk).
        guard = threading.Timer(2.0, os._exit, args=(0,))
        guard.daemon = True
        guard.start()
        app.call_from_thread(app.on_hangup) if app._thread_id != threading.get_ident() else app.on_hangup()

    previous = signal.signal(signal.SIGHUP, hangup) if hasattr(signal, "SIGHUP") else None
    try:
        result = app.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)
    if app.error_message:
        raise CockpitError(app.error_message)
    if app.return_code:
        return app.return_code
    return int(result or 0)

