"""``otelcockpit incident``: one read-only screen for the incident responder.

Top: the backend's health and data age, where the collectors with a problem are (env/region,
pipeline), rollouts running or paused. Then two tables: the collectors with a problem (unhealthy,
offline, config failed to apply, running a config other than the one assigned), each with the most
recent change that reached it ("changed before it broke"), and every change of the last N hours
with its rollback target. ``/`` filters the collectors as in the Fleet view (text, or matchers on
attributes and columns, e.g. ``env="prod",region="eu-west-1"``). ``y`` (or ``c``) copies the
selected row's rollback command to the clipboard with OSC 52, for whoever holds write access; this
app never writes anything itself. ``enter`` opens the collector, or the changed pipeline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Static

from otelcockpit.errors import CockpitError
from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, CONFIG_STATE_SHORT, ConfigState
from otelcockpit.fleet.filtering import parse_filter
from otelcockpit.fleet.matchers import MatcherError
from otelcockpit.fleet.model import Collector, FleetSnapshot, Health, age_text
from otelcockpit.fleet.problems import PROBLEM_GLYPH, PROBLEM_LOOK, PROBLEM_ORDER, Problem
from otelcockpit.settings import Settings
from otelcockpit.tui.app import CockpitApp, run_app
from otelcockpit.tui.cockpit_view import HEALTH_COLOUR
from otelcockpit.tui.render import HEALTH_GLYPH
from otelcockpit.tui.view import View
from otelcockpit.tui.vtable import Column, TableHeader, VirtualTable

REPORT_EVERY = 5.0  # seconds between two rebuilds of the report (revisions + journal)


def _short(author: str) -> str:
    return (author or "?").split("@")[0]


def changed_text(ch: Any, now: Any) -> str:
    """The change that reached a collector before it broke, in one cell."""
    if ch is None:
        return "no change known"
    what = f"rev {ch.revision}" if ch.revision else ("rollout" if ch.kind == "rollout.stage" else ch.kind)
    text = f"{ch.pipeline} {what} {age_text(ch.at, now)} ago"
    return text + (f" ↩{ch.rollback_target}" if ch.rollback_target else "")


def problem_cell(b: Any) -> tuple[str, str | None]:
    """A collector with a problem: the problem; one not on its assigned config: its config state."""
    if hasattr(b, "problem"):
        look = PROBLEM_LOOK[b.problem]
        return f"{look.glyph} {look.short}", f"vtable--{look.tone}"
    st = ConfigState(b.state)
    return f"{CONFIG_STATE_GLYPH[st]} {CONFIG_STATE_SHORT[st]}", "vtable--degraded"


def off_or_changed(b: Any, now: Any) -> str:
    """The change that reached a collector with a problem; why one not on its config runs what it runs."""
    return changed_text(b.changed, now) if hasattr(b, "changed") else b.reason


def problem_summary(counts: dict[Problem, int]) -> str:
    """``✖2 !1 ○4``: collectors per worst problem, the problems that occur only."""
    return " ".join(f"{PROBLEM_GLYPH[p]}{counts[p]}" for p in PROBLEM_ORDER if counts.get(p))


class BrokenTable(VirtualTable[Any]):
    """The collectors with a problem. At 80 columns it keeps PROBLEM and WHERE; names and the change
    are cut instead."""

    def __init__(self, now: Callable[[], Any], **kwargs: Any) -> None:
        self.now = now
        cols: list[Column[Any]] = [
            Column("name", "COLLECTOR", 16, lambda b: (b.name, None), flex=2, priority=3),
            Column("problem", "PROBLEM", 12, problem_cell, priority=2),
            Column("where", "WHERE", 14, lambda b: (f"{b.env}/{b.region}", None), flex=1, priority=1),
            Column("changed", "CHANGED BEFORE", 20,
                   lambda b: (off_or_changed(b, self.now()), None if hasattr(b, "changed") else "vtable--degraded"),
                   flex=3, priority=2),
        ]
        super().__init__(cols, key=lambda b: b.id, **kwargs)
        self.empty_text = "no collector with a problem"


class IncidentChangeTable(VirtualTable[Any]):
    def __init__(self, now: Callable[[], Any], **kwargs: Any) -> None:
        self.now = now
        cols: list[Column[Any]] = [
            Column("age", "AGE", 4, lambda ch: (age_text(ch.at, self.now()), None), align_right=True),
            Column("pipeline", "PIPELINE", 16, lambda ch: (ch.pipeline or "-", None), flex=2, priority=3),
            Column("change", "CHANGE", 9, lambda ch: (ch.revision and f"rev {ch.revision}" or ch.kind, None), flex=1,
                   priority=1),
            Column("by", "BY", 10, lambda ch: (_short(ch.author), None), flex=1),
            Column("target", "ROLLBACK TO", 11,
                   lambda ch: (ch.rollback_target or "-", "vtable--accent" if ch.rollback_target else "vtable--dim"),
                   priority=2),
            Column("broken", "BROKEN", 6, lambda ch: self._broken(ch), align_right=True, priority=2),
        ]
        super().__init__(cols, key=lambda ch: ch.key, **kwargs)
        self.empty_text = "no change in this window"
        self.reached: dict[str, int] = {}  # change key -> collectors with a problem (shown) it reached

    def _broken(self, ch: Any) -> tuple[str, str | None]:
        n = self.reached.get(ch.key, 0)
        return (str(n), "vtable--error") if n else ("-", "vtable--dim")


class IncidentView(View):
    SCOPE = "incident"
    TITLE = "Incident"
    HAS_FILTER = True

    DEFAULT_CSS = """
    IncidentView .i-line { height: auto; padding: 0 1; }
    IncidentView .i-title { height: 1; padding: 0 1; text-style: bold; background: $surface; }
    IncidentView VirtualTable { height: 1fr; }
    IncidentView #i-changes { height: auto; min-height: 3; max-height: 40%; }
    IncidentView.-compact .i-line { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self._filter: Callable[[Collector], bool] | None = None
        self._broken_sig: tuple[Any, ...] | None = None
        self._changes_sig: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        yield Static("", classes="i-line", id="i-backend")
        yield Static("", classes="i-line", id="i-where")
        yield Static("", classes="i-line", id="i-rollouts")
        yield Static(
            "Collectors with a problem or not on their assigned config · what changed before", classes="i-title", id="i-broken-title"
        )
        broken = BrokenTable(self.app.now, id="i-broken")  # type: ignore[attr-defined]
        yield TableHeader(broken, classes="table-header")
        yield broken
        yield Static("", classes="i-title", id="i-changes-title")
        changes = IncidentChangeTable(self.app.now, id="i-changes")  # type: ignore[attr-defined]
        yield TableHeader(changes, classes="table-header")
        yield changes

    @property
    def broken_table(self) -> BrokenTable:
        return self.query_one("#i-broken", BrokenTable)

    @property
    def changes_table(self) -> IncidentChangeTable:
        return self.query_one("#i-changes", IncidentChangeTable)

    def focus_main(self) -> None:
        self.broken_table.focus()

    @property
    def compact(self) -> bool:
        return self.app.size.height < 34

    def on_resize(self) -> None:
        self.set_class(self.compact, "-compact")
        self.render_report(force=True)

    # ---- filter --------------------------------------------------------------------------------
    def apply_filter(self, text: str) -> str | None:
        """The Fleet view's filter over the collectors with a problem (and what the lines above and
        the BROKEN counts say about them)."""
        try:
            flt = parse_filter(text)
        except MatcherError as exc:
            return str(exc)
        self.filter_text = flt.text
        self._filter = None if flt.empty else flt.predicate()
        self.render_report(force=True)
        self.broken_table.cursor_to_first()
        return None

    def shown_off(self, report: Any, exclude: frozenset[str] | set[str] = frozenset()) -> list[Any]:
        """The report's collectors not on their assigned config (drifted, on fallback, on a cached
        remote) that pass the filter and are not listed with a problem already."""
        if report is None:
            return []
        rows = [o for o in report.off_config if o.id not in exclude]
        test = self._filter
        if test is None:
            return rows
        snap = getattr(self.app, "snapshot", None)
        by_id = {c.id: c for c in snap.collectors} if snap is not None else {}
        return [o for o in rows if (c := by_id.get(o.id)) is not None and test(c)]

    def shown_broken(self, report: Any) -> list[Any]:
        """The report's collectors with a problem that pass the filter."""
        test = self._filter
        if test is None:
            return list(report.broken)
        snap = getattr(self.app, "snapshot", None)
        by_id = {c.id: c for c in snap.collectors} if snap is not None else {}
        return [b for b in report.broken if (c := by_id.get(b.id)) is not None and test(c)]

    # ---- data --------------------------------------------------------------------------------
    def update_snapshot(self, snap: FleetSnapshot) -> None:
        app: IncidentApp = self.app  # type: ignore[assignment]
        app.request_report()
        self.render_report()

    def refresh_ages(self) -> None:
        self.render_report(force=True)

    def render_report(self, *, force: bool = False) -> None:
        app: IncidentApp = self.app  # type: ignore[assignment]
        report = app.report
        hours = app.hours
        self.set_class(self.compact, "-compact")
        crumb = Text(" Incident ", style="bold", no_wrap=True, overflow="ellipsis")
        if self.filter_text:
            shown = len(self.shown_broken(report)) if report is not None else 0
            crumb.append(f"{shown}/{len(report.broken) if report is not None else 0} ", style="bold")
            crumb.append(f"· /{self.filter_text} ")
        crumb.append(f"· read-only · changes of the last {hours:g} h · y copies the rollback command", style="dim")
        self.set_crumb(crumb)
        title = Text(f"Changes in the last {hours:g} h · rollback targets", style="bold")
        self._put("#i-changes-title", title)
        if report is None:
            msg = app.report_error or "reading the fleet, the pipeline history and the rollout journal…"
            self._put("#i-backend", Text(msg, style="red" if app.report_error else "dim"))
            return
        now = app.now()
        broken = self.shown_broken(report)
        self._put("#i-backend", self._backend_line(report, now))
        self._put("#i-where", self._where_line(report, broken))
        self._put("#i-rollouts", self._rollouts_line(report))
        self._fill_broken(broken, now, force=force)
        self._fill_changes(report, broken, force=force)

    def _hs(self, h: Health) -> str:
        """A health's colour from the theme (so monochrome and NO_COLOR stay readable)."""
        return self.app.theme_variables.get(f"health-{h.value}", HEALTH_COLOUR[h])

    def _put(self, selector: str, text: Text) -> None:
        """Repaint a line only when it changed: every repaint is bytes on an SSH link."""
        widget = self.query_one(selector, Static)
        key = (text.plain, tuple(text.spans))
        if getattr(widget, "_line_key", None) != key:
            widget._line_key = key  # type: ignore[attr-defined]
            widget.update(text)

    def _backend_line(self, report: Any, now: Any) -> Text:
        t = Text()
        t.append("Backend ", style="bold")
        ok = report.backend_ok
        t.append(report.backend_status if not report.stale else "STALE", style="green" if ok else "bold red")
        if report.backend_message and not self.compact:
            t.append(f" ({report.backend_message})", style="dim")
        snap = getattr(self.app, "snapshot", None)  # the newest data, as in the status row
        t.append(f" · data age {age_text(snap.fetched_at if snap is not None else report.fetched_at, now)}")
        t.append(f" · {report.total} collectors")
        for h in (Health.UNHEALTHY, Health.OFFLINE, Health.DEGRADED):
            n = report.health_counts.get(h.value, 0)
            if n:
                t.append(f" {HEALTH_GLYPH[h]}{n} {h.value}", style=self._hs(h))
        for p, n in ((Problem.CONFIG_FAILED, report.config_failed), (Problem.OTHER_CONFIG, report.other_config)):
            if n:
                t.append(f" {PROBLEM_LOOK[p].glyph}{n} {p.value}", style=PROBLEM_LOOK[p].colour)
        off = [(ConfigState(k), n) for k, n in report.config_states.items() if n and ConfigState(k) != ConfigState.IN_SYNC]
        if off:
            t.append(" · runs ")
            t.append(" ".join(f"{CONFIG_STATE_GLYPH[st]}{n} {CONFIG_STATE_SHORT[st]}" for st, n in off), style="yellow")
        if report.stale and report.stale_reason:
            t.append(f"\n{report.stale_reason}", style="bold yellow")
        return t

    def _where_line(self, report: Any, broken: list[Any]) -> Text:
        from otelcockpit.rollout.incident import problem_counts

        t = Text()
        if not broken:
            if self.filter_text and report.broken:
                t.append(f"Nothing with a problem matches /{self.filter_text}.", style="dim")
            else:
                t.append("Nothing unhealthy, offline or failing to apply its config.", style="green")
            off = self.shown_off(report)
            if off:
                t.append(f" {len(off)} not on their assigned config (listed below).", style="yellow")
            return t
        t.append("Where ", style="bold")
        places: dict[tuple[str, str], list[Any]] = {}
        pipes: dict[str, list[Any]] = {}
        for b in broken:
            places.setdefault((b.env, b.region), []).append(b)
            for p in b.pipelines or ("-",):
                pipes.setdefault(p, []).append(b)
        loc = sorted(places.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        limit = 3 if self.compact else len(loc)
        t.append(" · ".join(f"{env}/{region} {problem_summary(problem_counts(bs))}" for (env, region), bs in loc[:limit]))
        if len(loc) > limit:
            t.append(f" +{len(loc) - limit} more", style="dim")
        t.append("\nPipelines ", style="bold")
        by_pipe = sorted(pipes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        limit = 3 if self.compact else 8
        t.append(" · ".join(f"{p} {problem_summary(problem_counts(bs))}" for p, bs in by_pipe[:limit]))
        if len(by_pipe) > limit:
            t.append(f" +{len(by_pipe) - limit} more", style="dim")
        return t

    def _rollouts_line(self, report: Any) -> Text:
        t = Text()
        t.append("Rollouts ", style="bold")
        if not report.rollouts:
            t.append("none running or paused", style="dim")
            return t
        for i, r in enumerate(report.rollouts):
            if i:
                t.append(" · ")
            t.append(f"{r.pipeline} {r.state.replace('_', ' ')}", style="yellow" if r.state == "paused" else "green")
            t.append(f" stage {r.stage}/{r.stages} {r.applied}/{r.total}")
            if r.failed:
                t.append(f" ✖{r.failed}", style="red")
            if r.rollback_target:
                t.append(f" ↩ {r.rollback_target}", style="cyan")
            if r.reason and r.state == "paused" and not self.compact:
                t.append(f" ({r.reason})", style="yellow")
        return t

    def _fill_broken(self, broken: list[Any], now: Any, *, force: bool) -> None:
        table = self.broken_table
        rows = broken + self.shown_off(self.app.report, exclude={b.id for b in broken})  # type: ignore[attr-defined]
        sig = tuple((b.id, getattr(b, "problem", None) or b.state, off_or_changed(b, now)) for b in rows)
        if sig == self._broken_sig and not force:
            return
        self._broken_sig = sig
        table.set_rows(rows)
        table.refresh()

    def _fill_changes(self, report: Any, broken: list[Any], *, force: bool) -> None:
        table = self.changes_table
        reached: Counter[str] = Counter(b.changed.key for b in broken if b.changed is not None)
        sig = (tuple(ch.key for ch in report.changes), tuple(sorted(reached.items())))
        if sig == self._changes_sig and not force:
            return
        self._changes_sig = sig
        table.reached = dict(reached)
        table.set_rows(list(report.changes))
        table.refresh()

    # ---- selection and actions -----------------------------------------------------------------
    def selected_change(self) -> Any:
        """The change under the cursor: in the changes table, or the one before the selected
        collector broke."""
        app: IncidentApp = self.app  # type: ignore[assignment]
        if app.report is None:
            return None
        if self.app.focused is self.changes_table:
            return self.changes_table.current
        b = self.broken_table.current
        return getattr(b, "changed", None)

    def action_copy_rollback(self) -> None:
        ch = self.selected_change()
        if ch is None:
            self.notify("select a change or a collector with a problem first", severity="warning")
            return
        self.app.copy_rollback(ch.pipeline, ch.rollback_target, ch.command)  # type: ignore[attr-defined]

    def action_open(self) -> None:
        """``enter``: the selected collector's detail, or the changed pipeline's history."""
        if self.app.focused is self.changes_table:
            ch = self.changes_table.current
            if ch is not None and ch.pipeline:
                self.app.open_pipeline(ch.pipeline)  # type: ignore[attr-defined]
            return
        b = self.broken_table.current
        if b is not None:
            self.app.open_collector(b.id)  # type: ignore[attr-defined]

    @on(VirtualTable.Selected)
    def _selected(self, event: VirtualTable.Selected) -> None:
        self.action_open()


class IncidentApp(CockpitApp):
    """The cockpit app with one view, always read-only."""

    TITLE = "otelcockpit incident"
    views: ClassVar[dict[str, tuple[type[View], tuple[str, ...]]]] = {
        "incident": (IncidentView, ("incident", "i"))
    }
    commands_help: ClassVar[list[tuple[str, str]]] = [
        (":incident", "the incident view (the only view of this app)"),
        (":ctx NAME", "switch context (stays read-only)"),
        (":theme NAME", "switch theme"),
        (":q", "quit"),
    ]
    state_name: ClassVar[str] = "incident-state.json"

    def __init__(
        self,
        settings: Settings,
        *,
        hours: float = 24.0,
        journal_path: Path | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("initial_view", "incident")
        resolve_kwargs = dict(kwargs.pop("resolve_kwargs", None) or {})
        resolve_kwargs["read_only"] = True  # a context switch stays read-only too
        super().__init__(replace(settings, read_only=True), resolve_kwargs=resolve_kwargs, **kwargs)
        self.hours = hours
        self.journal_path = journal_path
        self.report: Any = None
        self.report_error = ""
        self._report_at = -1e9

    def switch_context(self, name: str) -> str | None:
        error = super().switch_context(name)
        self.read_only = True
        self.report, self.report_error = None, ""
        return error

    def request_report(self, *, force: bool = False) -> None:
        if self.snapshot is None or self.backend is None:
            return
        started = self.due("incident", self._report_at if self.report is not None else -1e9, REPORT_EVERY, force=force)
        if started is not None:
            self._report_at = started
            self._load_report(self.snapshot)

    @work(exclusive=True, group="incident", exit_on_error=False)
    async def _load_report(self, snap: FleetSnapshot) -> None:
        from otelcockpit.rollout.incident import report_for

        if self.backend is None:
            return
        revisions = await self.load_all_revisions(snap)
        try:
            report = await report_for(
                self.settings,
                snap,
                revisions,
                hours=self.hours,
                now=self.now(),
                rollouts=self.rollout_service,
                backend=self.backend,
            )
        except (CockpitError, OSError) as exc:
            self.report_error = getattr(exc, "message", str(exc))
        else:
            self.report, self.report_error = report, ""
        if self.top_screen() is None:
            return
        view = self.current_view
        if isinstance(view, IncidentView):
            view.render_report()


def run_incident(settings: Settings, *, hours: float = 24.0, journal_path: Path | None = None) -> int:
    return run_app(
        replace(settings, read_only=True), app_cls=IncidentApp, hours=hours, journal_path=journal_path
    )
