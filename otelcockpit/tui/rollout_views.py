"""Staged pushes in the TUI: edit a pipeline, review the plan (diff, policy findings, blast radius,
stages and gates), confirm, watch the rollout per stage, pause, resume, abort, roll back; plus the
Rollouts and Changes views.

The engine (otelcockpit.rollout) does the work; these screens only render its plan and progress.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static, TextArea

from otelcockpit.errors import CockpitError
from otelcockpit.fleet.model import Pipeline, age_text
from otelcockpit.rollout.model import RolloutPlan, RolloutView
from otelcockpit.rollout.options import gates_text, plan_words
from otelcockpit.tui.detail import DetailScreen, who
from otelcockpit.tui.render import unified_text, words
from otelcockpit.tui.view import TableView, bindings_for
from otelcockpit.tui.vtable import Column, TableHeader, VirtualTable
from otelcockpit.tui.widgets import StatusRow

STATE_STYLE = {
    "planned": "cyan",
    "running": "green",
    "paused": "yellow",
    "aborted": "red",
    "completed": "green",
    "rolled_back": "magenta",
}


def bar(done: int, failed: int, total: int, width: int = 20) -> Text:
    t = Text()
    if total <= 0:
        return t.append("·" * width, style="dim")
    ok = round(width * done / total)
    bad = min(width - ok, round(width * failed / total))
    if failed and bad == 0:
        bad = 1
        ok = max(0, min(ok, width - 1))
    t.append("█" * ok, style="green")
    t.append("█" * bad, style="red")
    t.append("░" * (width - ok - bad), style="dim")
    return t


# ---- edit -------------------------------------------------------------------------------------
def drafts(app: Any) -> dict[tuple[str, str], str]:
    """Edits not pushed yet, per (context, pipeline), for the app's session: a review cancelled or a
    push refused (policy, stale data, a failed start) keeps the edit, and the next `u` opens the
    editor on it. An edit is dropped when it is discarded (esc, confirmed) or once the pipeline holds it."""
    found = getattr(app, "push_drafts", None)
    if found is None:
        found = app.push_drafts = {}
    return found


def _draft_key(app: Any, pipeline: Pipeline) -> tuple[str, str]:
    return (app.settings.context.name, pipeline.name)


class EditScreen(Screen[str | None]):
    """The built-in editor (YAML highlighting); ctrl+s continues to the review; esc asks before it
    throws an edit away. An earlier edit that was not pushed comes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "done", "Review the push", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]
    DEFAULT_CSS = """
    EditScreen TextArea { height: 1fr; }
    """

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.from_draft = False

    def compose(self) -> ComposeResult:
        draft = drafts(self.app).get(_draft_key(self.app, self.pipeline))
        if draft is not None and draft == self.pipeline.contents:
            drafts(self.app).pop(_draft_key(self.app, self.pipeline), None)  # it is live now: nothing kept
            draft = None
        self.from_draft = draft is not None
        note = "  your edit from before, not pushed yet · " if self.from_draft else "  "
        yield StatusRow()
        yield Static(
            Text.assemble((" Edit ", "bold"), (self.pipeline.name, "bold"),
                          (f"{note}ctrl+s: review the push · esc: cancel", "dim")),
            classes="crumb",
        )
        language = "yaml" if self.pipeline.config_type.value == "otel" else None
        area = TextArea.code_editor(draft if draft is not None else self.pipeline.contents, language=language, id="editor")
        area.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]
        yield area
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    @property
    def text(self) -> str:
        return self.query_one(TextArea).text

    def action_done(self) -> None:
        text = self.text
        if text != self.pipeline.contents:
            drafts(self.app)[_draft_key(self.app, self.pipeline)] = text  # kept until it is pushed or discarded
        self.dismiss(text)

    def action_cancel(self) -> None:
        """Leave; with an edit, ask first (Cancel focused keeps editing)."""
        if self.text == self.pipeline.contents:
            drafts(self.app).pop(_draft_key(self.app, self.pipeline), None)
            self.dismiss(None)
            return
        from otelcockpit.tui.widgets import ConfirmScreen

        def answered(discard: bool | None) -> None:
            if discard:
                drafts(self.app).pop(_draft_key(self.app, self.pipeline), None)
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen(
                "Discard your edit?",
                f"Your changes to {self.pipeline.name} have not been pushed. Discard them?",
                confirm_label="Discard",
            ),
            answered,
        )


def edit_with_external_editor(app: Any, contents: str, suffix: str) -> str | None:
    """$EDITOR on a temporary file while the app is suspended; None when the editor failed."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as f:
        f.write(contents)
        path = f.name
    try:
        with app.suspend():
            result = subprocess.run([*shlex.split(editor), path], check=False)
        if result.returncode != 0:
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)


# ---- review -----------------------------------------------------------------------------------
def plan_summary(plan: RolloutPlan) -> RichGroup:
    parts: list[Any] = []
    for line in plan_words(plan):
        style = "bold red" if line.startswith("ALL AT ONCE") else ""
        parts.append(Text(("⚠ " if style else "· ") + line, style=style))
    radius = plan.blast_radius
    head = Text()
    head.append("Blast radius ", style="bold")
    head.append(f"{radius.total} collector(s)")
    if radius.dropped:
        head.append(f", {radius.dropped} stop receiving it", style="yellow")
    parts.append(head)
    parts.append(Text("  env: " + ", ".join(f"{k} {v}" for k, v in sorted(radius.by_env.items()))))
    parts.append(Text("  region: " + ", ".join(f"{k} {v}" for k, v in sorted(radius.by_region.items()))))
    stages = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    stages.add_column("STAGE")
    stages.add_column("COLLECTORS", justify="right")
    for s in plan.stages:
        stages.add_row(s.name, str(len(s.collector_ids)))
    parts.append(Text("\nStages", style="bold"))
    parts.append(stages)
    parts.append(Text("Gates: " + gates_text(plan.gates)))
    pf = plan.preflight
    if pf.incompatible:
        verb = "left out of the plan" if pf.applied == "exclude" else "they block the push"
        parts.append(Text(f"\nLacking a component the new version uses ({verb})", style="bold yellow" if pf.applied == "exclude" else "bold red"))
        for i in pf.incompatible[:8]:
            parts.append(Text(f"  {i.name}  lacks {', '.join(i.missing)}"))
        if len(pf.incompatible) > 8:
            parts.append(Text(f"  … and {len(pf.incompatible) - 8} more (otelcockpit rollout plan --json lists them all)", style="dim"))
    if plan.findings:
        parts.append(Text("\nPolicy findings", style="bold"))
        for f in plan.findings:
            style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "dim")
            parts.append(Text(f"  {f.severity.upper():<7} line {f.line or '-'}: {f.message} [{f.rule}]", style=style))
    else:
        parts.append(Text("\nPolicy findings: none", style="green"))
    parts.append(Text("\nDiff against the live version", style="bold"))
    parts.append(unified_text(plan.diff.splitlines()))
    return RichGroup(*parts)


class ReviewScreen(Screen[RolloutPlan | None]):
    """Diff, findings, blast radius, plan and gates; the plan follows the fields as you edit them.
    Cancel is focused; a production context asks for its name; policy errors disable Start."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ReviewScreen #form { height: auto; padding: 0 1; }
    ReviewScreen #form Horizontal { height: 1; }
    ReviewScreen #form Label { width: 10; color: $text-muted; }
    ReviewScreen #form Input { width: 1fr; height: 1; border: none; padding: 0 1; background: $surface; margin-right: 1; }
    ReviewScreen #form Input:focus { background: $primary 30%; }
    ReviewScreen #buttons Input { width: 30; }
    ReviewScreen #plan { height: 1fr; padding: 0 1; }
    ReviewScreen #buttons { height: auto; align: right middle; padding: 0 1; }
    ReviewScreen #buttons Button { margin-left: 2; }
    ReviewScreen #error { color: $error; height: auto; padding: 0 1; }
    ReviewScreen #why { color: $warning; height: auto; padding: 0 1; }
    """

    def __init__(
        self,
        new: Pipeline,
        make_plan: Any,
        *,
        production_name: str | None,
        warnings: list[str] | None = None,
        fields: tuple[str, str, str, str] = ("5%", "25%,100%", "0", "1m"),
    ) -> None:
        super().__init__()
        self.new = new
        self.warnings = warnings or []
        self.make_plan = make_plan  # (canary, waves, max_failures, soak) -> RolloutPlan
        self.production_name = production_name
        self.fields = fields  # the context's default plan, as the fields start
        self.plan: RolloutPlan | None = None
        self.error = ""  # why the fields give no plan

    def compose(self) -> ComposeResult:
        yield StatusRow()
        yield Static(Text.assemble((" Review push of ", "bold"), (self.new.name, "bold")), classes="crumb")
        with Vertical(id="form"):
            with Horizontal():
                yield Label("canary")
                yield Input(self.fields[0], id="canary", placeholder='N, P%, matchers like env="dev", or none')
                yield Label("waves")
                yield Input(self.fields[1], id="waves")
            with Horizontal():
                yield Label("failures")
                yield Input(self.fields[2], id="max-failures")
                yield Label("soak")
                yield Input(self.fields[3], id="soak")
        yield Static("", id="error")
        with VerticalScroll(id="plan"):
            yield Static("", id="plan-text")
        yield Static("", id="why")
        with Horizontal(id="buttons"):
            if self.production_name:
                yield Input(placeholder=f"type {self.production_name} to enable Start", id="typed")
            yield Button("Cancel", id="cancel", variant="primary")
            yield Button("Start rollout", id="start", variant="error", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]
        self.replan()
        self.query_one("#cancel", Button).focus()

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        if event.input.id == "typed":
            self.update_start()
        else:
            self.plan = None  # Start stays off until the plan for these fields is on screen
            self.update_start()
            self.replan()

    def replan(self) -> None:
        fields = [self.query_one(f"#{name}", Input).value for name in ("canary", "waves", "max-failures", "soak")]
        if inspect.iscoroutinefunction(self.make_plan):
            self._replan_remote(fields)
            return
        try:
            self.show_plan(self.make_plan(*fields))
        except CockpitError as exc:
            self.show_error(exc.message)

    @work(exclusive=True, group="replan", exit_on_error=False)
    async def _replan_remote(self, fields: list[str]) -> None:
        await asyncio.sleep(0.3)  # typing: plan once the fields settle, not on every keystroke
        try:
            self.show_plan(await self.make_plan(*fields))
        except CockpitError as exc:
            self.show_error(exc.message)

    def show_error(self, message: str) -> None:
        """A field that does not parse: say so, and show no plan (the one shown was for other fields)."""
        self.query_one("#error", Static).update(message)
        self.plan = None
        self.error = message
        self.query_one("#plan-text", Static).update(Text(f"No plan: {message}", style="dim"))
        self.update_start()

    def show_plan(self, plan: RolloutPlan) -> None:
        self.plan = plan
        self.error = ""
        self.query_one("#error", Static).update("")
        summary = plan_summary(plan)
        if self.warnings:
            summary = RichGroup(*[Text(f"⚠ {w}", style="yellow") for w in self.warnings], summary)
        self.query_one("#plan-text", Static).update(summary)
        self.update_start()

    def why_not(self) -> str:
        """Why Start is disabled, in words ('' when it is enabled)."""
        plan = self.plan
        if plan is None:
            error = getattr(self, "error", "")
            return f"Start is disabled: fix the fields ({error})" if error else "Start is disabled: planning…"
        if plan.blocking:
            n = len(plan.blocking)
            return f"Start is disabled: {n} policy error{'s' if n != 1 else ''} (see Policy findings below)"
        if not plan.stages or not plan.collector_count:
            return "Start is disabled: the plan reaches no collector"
        if self.production_name and self.query_one("#typed", Input).value != self.production_name:
            return f"Start is disabled: type {self.production_name} to confirm (a production context)"
        return ""

    def update_start(self) -> None:
        why = self.why_not()
        self.query_one("#why", Static).update(why)
        self.query_one("#start", Button).disabled = bool(why)

    @on(Button.Pressed, "#start")
    def start(self) -> None:
        self.dismiss(self.plan)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# ---- progress ---------------------------------------------------------------------------------
def rollout_text(
    v: RolloutView, now: Any, targets: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None
) -> RichGroup:
    """``targets``: collector id -> its CollectorTarget (each failure names the config to return it to);
    ``names``: collector id -> its name (failures are listed by name, the id only when it is unknown)."""
    parts: list[Any] = []
    head = Text()
    head.append(f"{v.id} ", style="bold")
    head.append(f"{v.pipeline} ", style="bold")
    head.append(words(v.state.value), style=STATE_STYLE.get(v.state.value, ""))
    if v.reason:
        head.append(f"  {v.reason}", style="yellow" if v.state.value == "paused" else "dim")
    parts.append(head)
    before = v.plan.base_revision or v.rollback_revision
    parts.append(Text(f"by {who(v.author)} · started {age_text(v.created_at, now)} ago · stage "
                      f"{min(v.current_stage + 1, len(v.stages))}/{len(v.stages)} · rollback target "
                      f"{('rev ' + before) if before else 'none'}", style="dim"))
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", expand=False)
    table.add_column("STAGE", no_wrap=True)
    table.add_column("PROGRESS", no_wrap=True)
    table.add_column("DONE", justify="right")
    table.add_column("PEND", justify="right")
    table.add_column("APPLY", justify="right")
    table.add_column("OK", justify="right")
    table.add_column("FAIL", justify="right")
    for s in v.stages:
        table.add_row(
            s.name,
            bar(s.applied, s.failed, s.total, 16),
            f"{s.finished}/{s.total}",
            str(s.pending),
            str(s.applying + s.soaking),
            Text(str(s.applied), style="green" if s.applied else ""),
            Text(str(s.failed), style="red" if s.failed else ""),
        )
    parts.append(table)
    if v.failures:
        parts.append(Text(f"\nFailures ({len(v.failures)})", style="bold red"))
        for f in v.failures[:20]:
            name = (names or {}).get(f.collector_id) or f.collector_id
            line = Text(f"  {name}  {f.error or words(f.status.value)}", style="red")
            t = (targets or {}).get(f.collector_id)
            back = (t.label or t.hash[:12]) if t is not None else f.previous_hash[:12]
            if back:
                line.append(f"  ↩ {back}", style="cyan")
            parts.append(line)
    return RichGroup(*parts)


class RolloutScreen(DetailScreen):
    """One rollout, live: stages with bars, failures with their errors; pause, resume, abort, roll back."""

    SCOPE = "rollout"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "back", "Back"), *bindings_for("rollout")]
    DEFAULT_CSS = """
    RolloutScreen #body { height: 1fr; padding: 0 1; }
    """

    def __init__(self, rollout_id: str) -> None:
        super().__init__()
        self.rollout_id = rollout_id

    def compose(self) -> ComposeResult:
        yield StatusRow()
        yield Static(Text.assemble((" Rollouts › ", "dim"), (self.rollout_id, "bold")), classes="crumb")
        with VerticalScroll(id="body"):
            yield Static("", id="content")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_from(None)
        self.set_interval(1.0, lambda: self.refresh_from(None))

    def refresh_from(self, snap: Any) -> None:
        view = self.app.rollout_view(self.rollout_id)  # type: ignore[attr-defined]
        content = self.query_one("#content", Static)
        if view is None:
            content.update(Text("no such rollout in the journal", style="red"))
            return
        app: Any = self.app
        snap = app.snapshot
        names = {c.id: c.name for c in snap.collectors} if snap is not None and view.failures else {}
        content.update(rollout_text(view, app.now(), app.collector_targets, names))

    def action_pause_rollout(self) -> None:
        self.app.rollout_command(self.rollout_id, "pause")  # type: ignore[attr-defined]

    def action_resume_rollout(self) -> None:
        self.app.rollout_command(self.rollout_id, "resume")  # type: ignore[attr-defined]

    def action_abort_rollout(self) -> None:
        self.app.rollout_command(self.rollout_id, "abort")  # type: ignore[attr-defined]

    def action_rollback_rollout(self) -> None:
        self.app.rollout_command(self.rollout_id, "rollback")  # type: ignore[attr-defined]


# ---- views ------------------------------------------------------------------------------------
class RolloutTable(VirtualTable[RolloutView]):
    def __init__(self, app_now: Any, **kwargs: Any) -> None:
        self.now = app_now
        cols: list[Column[RolloutView]] = [
            Column("id", "ID", 9, lambda v: (v.id, None)),
            Column("pipeline", "PIPELINE", 16, lambda v: (v.pipeline, None), flex=2, priority=1),
            Column("state", "STATE", 11, lambda v: (words(v.state.value), {"paused": "vtable--degraded", "aborted": "vtable--error",
                                                                     "running": "vtable--healthy"}.get(v.state.value))),
            Column("stage", "STAGE", 5, lambda v: (f"{min(v.current_stage + 1, len(v.stages))}/{len(v.stages)}", None)),
            Column("done", "APPLIED", 11, lambda v: (f"{sum(s.applied for s in v.stages)}/{sum(s.total for s in v.stages)}", None),
                   align_right=True),
            Column("failed", "FAIL", 4, lambda v: (str(v.failed), "vtable--error" if v.failed else None), align_right=True),
            Column("age", "AGE", 4, lambda v: (age_text(v.created_at, self.now()), None), align_right=True),
            Column("by", "BY", 10, lambda v: (who(v.author), None), min_table_width=100),
        ]
        super().__init__(cols, key=lambda v: v.id, search=lambda v: f"{v.id} {v.pipeline} {v.state.value}".lower(), **kwargs)
        self.empty_text = "no rollouts yet: open a pipeline and press u to stage a push"


class RolloutsView(TableView):
    SCOPE = "rollouts"
    TITLE = "Rollouts"

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        table = RolloutTable(self.app.now, id="rollout-table")  # type: ignore[attr-defined]
        yield TableHeader(table, classes="table-header")
        yield table

    def update_snapshot(self, snap: Any) -> None:
        self.app.request_changes()  # type: ignore[attr-defined]
        self.update_changes()

    def update_changes(self) -> None:
        views = list(self.app.rollouts)  # type: ignore[attr-defined]
        self.table.set_rows(views)
        active = sum(1 for v in views if v.state.value in ("planned", "running", "paused"))
        self.set_crumb(Text.assemble((" Rollouts ", "bold"), (f"{len(views)}", "bold"), f" · active {active}"))

    def action_open(self) -> None:
        v = self.table.current
        if v is not None:
            self.app.push_screen(RolloutScreen(v.id))

    @on(VirtualTable.Selected)
    def selected(self, event: VirtualTable.Selected) -> None:
        self.app.push_screen(RolloutScreen(event.key))


class ChangeTable(VirtualTable[Any]):
    def __init__(self, app_now: Any, **kwargs: Any) -> None:
        self.now = app_now
        cols: list[Column[Any]] = [
            Column("age", "AGE", 4, lambda e: (age_text(e.at, self.now()), None), align_right=True),
            Column("kind", "KIND", 16, lambda e: (e.kind, None)),
            Column("pipeline", "PIPELINE", 16, lambda e: (e.pipeline, None), flex=1, priority=1),
            Column("by", "BY", 10, lambda e: (who(e.author), None)),
            Column("target", "ROLLBACK", 8, lambda e: (f"↩ {e.rollback_target}" if e.rollback_target else "-", None)),
            Column("message", "WHAT", 12, lambda e: (e.message, None), flex=2, min_table_width=100),
        ]
        super().__init__(
            cols,
            key=lambda e: f"{e.at.timestamp()}:{e.source}:{e.kind}:{e.pipeline}:{e.rollout_id}:{e.message}",
            search=lambda e: f"{e.kind} {e.pipeline} {e.author} {e.scope} {e.message}".lower(),
            **kwargs,
        )
        self.empty_text = "no changes in the last 7 days"


class ChangesView(TableView):
    """The change timeline; the selected change's detail below the table, with its whole rollback
    command (wrapped, never cut); ``y`` copies it, ``enter`` opens the pipeline."""

    SCOPE = "changes"
    TITLE = "Changes"
    DEFAULT_CSS = """
    ChangesView #change-detail { height: auto; max-height: 5; padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        table = ChangeTable(self.app.now, id="change-table")  # type: ignore[attr-defined]
        yield TableHeader(table, classes="table-header")
        yield table
        yield Static("", id="change-detail")

    def update_snapshot(self, snap: Any) -> None:
        self.app.request_changes()  # type: ignore[attr-defined]
        self.update_changes()

    def update_changes(self) -> None:
        entries = self.app.changes  # type: ignore[attr-defined]
        if entries is None:
            self.set_crumb(Text(" Changes: loading…", style="dim"))
            return
        self.table.set_rows(list(reversed(entries)))
        self.set_crumb(Text.assemble((" Changes ", "bold"), (str(len(entries)), "bold"), " in the last 7 days, newest first"))
        self.show_change()

    def rollback_command(self, e: Any) -> str:
        from otelcockpit.rollout.incident import context_for_commands, rollback_command

        if not (e.pipeline and e.rollback_target):
            return ""
        return rollback_command(e.pipeline, e.rollback_target, context=context_for_commands(self.app.settings))  # type: ignore[attr-defined]

    @on(VirtualTable.Highlighted)
    def show_change(self) -> None:
        e = self.table.current
        detail = self.query_one("#change-detail", Static)
        if e is None:
            detail.update("")
            return
        t = Text()
        t.append(f"{e.scope} · " if e.scope else "", style="dim")
        t.append(e.message)
        command = self.rollback_command(e)
        t.append("\nrollback: ", style="bold")
        if command:
            t.append(command, style="cyan")
            t.append("  (y copies it)", style="dim")
        else:
            t.append("no earlier revision to roll back to", style="dim")
        detail.update(t)

    def action_copy_rollback(self) -> None:
        e = self.table.current
        if e is None:
            self.notify("no change selected", severity="warning")
            return
        self.app.copy_rollback(e.pipeline, e.rollback_target, self.rollback_command(e))  # type: ignore[attr-defined]

    def action_open(self) -> None:
        e = self.table.current
        if e is not None and e.pipeline:
            self.app.open_pipeline(e.pipeline)  # type: ignore[attr-defined]

    @on(VirtualTable.Selected)
    def selected(self, event: VirtualTable.Selected) -> None:
        self.action_open()

