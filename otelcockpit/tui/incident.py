"""``otelcockpit incident``: one read-only screen for the incident responder.

Top: the backend's health and data age, where the broken collectors are (env/region, pipeline),
rollouts running or paused. Then two tables: the unhealthy and offline collectors, each with the
most recent change that reached it ("changed before it broke"), and every change of the last N
hours with its rollback target. ``y`` (or ``c``) copies the selected row's rollback command to the
clipboard with OSC 52, for whoever holds write access; this app never writes anything itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from otelcockpit.errors import CockpitError
from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, CONFIG_STATE_SHORT, ConfigState
from otelcockpit.fleet.model import FleetSnapshot, Health, age_text
from otelcockpit.settings import Settings
from otelcockpit.tui.app import CockpitApp, run_app
from otelcockpit.tui.cockpit_view import HEALTH_COLOUR
from otelcockpit.tui.render import HEALTH_GLYPH
from otelcockpit.tui.view import View

REPORT_EVERY = 5.0  # seconds between two rebuilds of the report (revisions + journal)


def _short(author: str) -> str:
    return (author or "?").split("@")[0]


class IncidentView(View):
    SCOPE = "incident"
    TITLE = "Incident"

    DEFAULT_CSS = """
    IncidentView .i-line { height: auto; padding: 0 1; }
    IncidentView .i-title { height: 1; padding: 0 1; text-style: bold; background: $surface; }
    IncidentView DataTable { height: 1fr; }
    IncidentView.-compact .i-line { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._broken_sig: tuple[Any, ...] | None = None
        self._changes_sig: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        yield Static("", classes="i-line", id="i-backend")
        yield Static("", classes="i-line", id="i-where")
        yield Static("", classes="i-line", id="i-rollouts")
        yield Static(
            "Unhealthy, offline, not on their assigned config · what changed before", classes="i-title", id="i-broken-title"
        )
        broken: DataTable[Any] = DataTable(id="i-broken", cursor_type="row", zebra_stripes=False)
        yield broken
        yield Static("", classes="i-title", id="i-changes-title")
        changes: DataTable[Any] = DataTable(id="i-changes", cursor_type="row", zebra_stripes=False)
        yield changes

    def on_mount(self) -> None:
        self.query_one("#i-changes", DataTable).add_columns(
            "AGE", "PIPELINE", "CHANGE", "BY", "ROLLBACK TO", "BROKEN"
        )

    @property
    def narrow(self) -> bool:
        return self.app.size.width < 110

    def focus_main(self) -> None:
        self.query_one("#i-broken", DataTable).focus()

    @property
    def compact(self) -> bool:
        return self.app.size.height < 34

    def on_resize(self) -> None:
        self.set_class(self.compact, "-compact")
        self.render_report()

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
        crumb = Text(" Incident ", style="bold")
        crumb.append(
            f"· read-only · changes of the last {hours:g} h · y copies the rollback command", style="dim"
        )
        self.set_crumb(crumb)
        title = Text(f"Changes in the last {hours:g} h · rollback targets", style="bold")
        self._put("#i-changes-title", title)
        if report is None:
            msg = app.report_error or "reading the fleet, the pipeline history and the rollout journal…"
            self._put("#i-backend", Text(msg, style="red" if app.report_error else "dim"))
            return
        now = app.now()
        self._put("#i-backend", self._backend_line(report, now))
        self._put("#i-where", self._where_line(report))
        self._put("#i-rollouts", self._rollouts_line(report))
        self._fill_broken(report, now, force=force)
        self._fill_changes(report, now, force=force)

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
        off = [(ConfigState(k), n) for k, n in report.config_states.items() if n and ConfigState(k) != ConfigState.IN_SYNC]
        if off:
            t.append(" · runs ")
            t.append(" ".join(f"{CONFIG_STATE_GLYPH[st]}{n} {CONFIG_STATE_SHORT[st]}" for st, n in off), style="yellow")
        if report.stale and report.stale_reason:
            t.append(f"\n{report.stale_reason}", style="bold yellow")
        return t

    def _where_line(self, report: Any) -> Text:
        t = Text()
        if not report.broken:
            t.append("Nothing unhealthy or offline.", style="green")
            if report.off_config:
                t.append(f" {len(report.off_config)} not on their assigned config (listed below).", style="yellow")
            return t
        t.append("Where ", style="bold")
        loc = report.by_location()
        limit = 3 if self.compact else len(loc)
        parts = []
        for env, region, u, o in loc[:limit]:
            parts.append(f"{env}/{region} ✖{u} ○{o}")
        t.append(" · ".join(parts))
        if len(loc) > limit:
            t.append(f" +{len(loc) - limit} more", style="dim")
        t.append("\nPipelines ", style="bold")
        pipes = report.by_pipeline()
        limit = 3 if self.compact else 8
        t.append(" · ".join(f"{p} ✖{u} ○{o}" for p, u, o in pipes[:limit]))
        if len(pipes) > limit:
            t.append(f" +{len(pipes) - limit} more", style="dim")
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
            t.append(f"{r.pipeline} {r.state}", style="yellow" if r.state == "paused" else "green")
            t.append(f" stage {r.stage}/{r.stages} {r.applied}/{r.total}")
            if r.failed:
                t.append(f" ✖{r.failed}", style="red")
            if r.rollback_target:
                t.append(f" ↩ {r.rollback_target}", style="cyan")
            if r.reason and r.state == "paused" and not self.compact:
                t.append(f" ({r.reason})", style="yellow")
        return t

    def _fill_broken(self, report: Any, now: Any, *, force: bool) -> None:
        table = self.query_one("#i-broken", DataTable)
        rows = []
        for b in report.broken:
            ch = b.changed
            if ch is None:
                what = Text("no change known", style="dim")
            else:
                what = Text()
                what.append(f"{ch.pipeline} ", style="bold")
                what.append(f"rev {ch.revision} " if ch.revision else f"{ch.kind} ")
                what.append(f"{age_text(ch.at, now)} ago", style="dim")
                if ch.rollback_target:
                    what.append(f" ↩{ch.rollback_target}", style="cyan")
            if self.narrow:
                health = Text(HEALTH_GLYPH[b.health], style=self._hs(b.health))
                rows.append((b.id, (b.name, health, what)))
            else:
                health = Text(f"{HEALTH_GLYPH[b.health]} {b.health.value}", style=self._hs(b.health))
                rows.append((b.id, (b.name, health, f"{b.env}/{b.region}", what)))
        listed = {b.id for b in report.broken}
        for o in report.off_config:  # not on their assigned config: what they run, and why
            if o.id in listed:
                continue
            st = ConfigState(o.state)
            runs = Text(CONFIG_STATE_GLYPH[st] if self.narrow else f"{CONFIG_STATE_GLYPH[st]} {CONFIG_STATE_SHORT[st]}", style="yellow")
            why = Text(o.reason, style="yellow")
            rows.append((o.id, (o.name, runs, why) if self.narrow else (o.name, runs, f"{o.env}/{o.region}", why)))
        sig = (tuple((k, r[0], r[-1].plain) for k, r in rows), self.narrow)
        if sig == self._broken_sig and not force:
            return
        narrow_changed = self._broken_sig is None or self._broken_sig[-1] != self.narrow
        self._broken_sig = sig
        key = self._cursor_key(table)
        if narrow_changed:
            table.clear(columns=True)
            if self.narrow:
                table.add_columns("COLLECTOR", "", "CHANGED BEFORE IT BROKE")
            else:
                table.add_columns("COLLECTOR", "HEALTH", "WHERE", "CHANGED BEFORE IT BROKE")
        else:
            table.clear()
        for k, r in rows:
            table.add_row(*r, key=k)
        self._restore_cursor(table, key)

    def _fill_changes(self, report: Any, now: Any, *, force: bool) -> None:
        table = self.query_one("#i-changes", DataTable)
        rows = []
        for ch in report.changes:
            change = ch.revision and f"rev {ch.revision}" or ch.kind
            target = Text(ch.rollback_target or "-", style="cyan" if ch.rollback_target else "dim")
            broken = Text(str(ch.broken) if ch.broken else "-", style="bold red" if ch.broken else "dim")
            rows.append(
                (
                    ch.key,
                    (age_text(ch.at, now), ch.pipeline or "-", change, _short(ch.author), target, broken),
                )
            )
        sig = (tuple((k, r[0], r[1], r[2]) for k, r in rows),)
        if sig == self._changes_sig and not force:
            return
        self._changes_sig = sig
        key = self._cursor_key(table)
        table.clear()
        for k, r in rows:
            table.add_row(*r, key=k)
        self._restore_cursor(table, key)

    @staticmethod
    def _cursor_key(table: DataTable[Any]) -> str | None:
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - a stale cursor is not an error
            return None

    @staticmethod
    def _restore_cursor(table: DataTable[Any], key: str | None) -> None:
        if key is None:
            return
        try:
            table.move_cursor(row=table.get_row_index(key), animate=False)
        except Exception:  # noqa: BLE001 - the row went away
            pass

    # ---- selection and actions -----------------------------------------------------------------
    def selected_change(self) -> Any:
        """The change under the cursor: in the changes table, or the one before the selected
        collector broke."""
        app: IncidentApp = self.app  # type: ignore[assignment]
        report = app.report
        if report is None:
            return None
        focused = self.app.focused
        table_id = focused.id if isinstance(focused, DataTable) else "i-broken"
        table = self.query_one(f"#{table_id}", DataTable)
        key = self._cursor_key(table)
        if key is None:
            return None
        if table_id == "i-changes":
            return next((c for c in report.changes if c.key == key), None)
        b = next((b for b in report.broken if b.id == key), None)
        return b.changed if b is not None else None

    def action_copy_rollback(self) -> None:
        ch = self.selected_change()
        if ch is None:
            self.notify("select a change or a broken collector first", severity="warning")
            return
        if not ch.command:
            self.notify(
                f"{ch.pipeline or 'this change'} has no earlier revision to roll back to", severity="warning"
            )
            return
        self.app.copy_to_clipboard(ch.command)
        self.notify(ch.command, title="Copied the rollback command (OSC 52)")

    @on(DataTable.RowSelected, "#i-broken")
    def _open_collector(self, event: DataTable.RowSelected) -> None:
        self.app.open_collector(str(event.row_key.value))  # type: ignore[attr-defined]


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
