"""Detail screens: one collector, one pipeline (with its revisions and diffs)."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from rich.console import Group as RichGroup
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from otelcockpit.actions import dangerous_actions
from otelcockpit.errors import CockpitError
from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, came_up_state, collector_state
from otelcockpit.fleet.history import previous_of
from otelcockpit.fleet.model import (
    Collector,
    ComponentHealth,
    FleetSnapshot,
    Revision,
    age_text,
    parse_time,
    rfc3339,
)
from otelcockpit.tui.render import HEALTH_GLYPH, diff_text, kv_lines
from otelcockpit.tui.view import bindings_for
from otelcockpit.tui.widgets import NavOptionList, StatusRow


def component_tree_text(node: ComponentHealth, depth: int = 0) -> Text:
    out = Text()
    glyph = "●" if node.healthy else "✖"
    out.append("  " * depth + f"{glyph} ", style="green" if node.healthy else "red")
    out.append(node.name or "(agent)", style="bold" if depth == 0 else "")
    if node.status:
        out.append(f"  {node.status}", style="dim")
    if node.last_error:
        out.append(f"  {node.last_error}", style="red")
    out.append("\n")
    for child in node.children:
        out.append_text(component_tree_text(child, depth + 1))
    return out


def config_state_text(c: Collector) -> str:
    """What it runs against what it is assigned: ``≠ drifted: it reports gw@v2 APPLIED, but ...``."""
    view = collector_state(c)
    return f"{CONFIG_STATE_GLYPH[view.state]} {view.text}"


def came_up_text(c: Collector) -> str:
    up = came_up_state(c)
    at = rfc3339(c.came_up.at) if c.came_up is not None else None
    return f"{at or '-'}: {up.text}" if up is not None else "-"


def components_text(c: Collector) -> str:
    comps = c.available_components or frozenset()
    kinds: dict[str, int] = {}
    for name in comps:
        kinds[name.split(":", 1)[0]] = kinds.get(name.split(":", 1)[0], 0) + 1
    return f"{len(comps)} available (" + ", ".join(f"{n} {k}s" for k, n in sorted(kinds.items())) + ")"


def who(author: str) -> str:
    return (author or "?").split("@")[0]


def syntax_for(body: str, name: str = "") -> Syntax:
    lexer = "yaml" if (name.endswith((".yaml", ".yml")) or body.lstrip().startswith(("receivers:", "#", "exporters:"))) else "hcl"
    return Syntax(body, lexer, theme="ansi_dark", word_wrap=False, line_numbers=False, background_color="default")


class DetailScreen(Screen[None]):
    """Shared behaviour: escape goes back, the status row stays in view, bindings from the registry."""

    SCOPE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "back", "Back")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.app.read_only and action in dangerous_actions(self.SCOPE):  # type: ignore[attr-defined]
            return False
        return True

    def action_back(self) -> None:
        self.app.pop_screen()


class CollectorDetailScreen(DetailScreen):
    DEFAULT_CSS = """
    CollectorDetailScreen #body { height: 1fr; padding: 0 1; }
    CollectorDetailScreen .section { margin-top: 1; }
    CollectorDetailScreen .section-title { text-style: bold; color: $accent; }
    """

    def __init__(self, collector_id: str) -> None:
        super().__init__()
        self.collector_id = collector_id

    def compose(self) -> ComposeResult:
        yield StatusRow()
        yield Static("", classes="crumb", id="crumb")
        with VerticalScroll(id="body"):
            yield Static("", id="content")
        yield Footer()

    def on_mount(self) -> None:
        self.full: Collector | None = None  # the backend's full record, when it has one (OpAMP)
        self.refresh_from(self.app.snapshot)  # type: ignore[attr-defined]
        self.query_one("#body").focus()
        self.load_full()
        self.app.request_changes()  # type: ignore[attr-defined]  # rollback targets (throttled)

    @work(exclusive=True, exit_on_error=False)
    async def load_full(self) -> None:
        """Backends that list collectors without every detail (OpAMP: effective configs of large
        fleets) can fetch one collector in full; show that when it arrives."""
        backend = getattr(self.app, "backend", None)
        fetch = getattr(backend, "collector_detail", None)
        if fetch is None:
            return
        try:
            self.full, _raw = await fetch(self.collector_id)
        except CockpitError:
            return
        self.refresh_from(self.app.snapshot)  # type: ignore[attr-defined]

    def refresh_from(self, snap: FleetSnapshot | None) -> None:
        if snap is None:
            return
        c = snap.collector(self.collector_id)
        full = getattr(self, "full", None)
        if c is not None and full is not None:
            # the list carries neither effective configs nor the trees of healthy agents: the detail does
            c = c.with_changes(
                effective_config=c.effective_config or full.effective_config,
                component_health=full.component_health or c.component_health,
            )
        crumb = Text(no_wrap=True, overflow="ellipsis")
        crumb.append(" Collectors › ", style="dim")
        crumb.append(c.name if c else self.collector_id, style="bold")
        self.query_one("#crumb", Static).update(crumb)
        if c is None:
            self.query_one("#content", Static).update(Text("this collector is no longer in the fleet", style="bold red"))
            return
        self.query_one("#content", Static).update(self.render_collector(c, snap))

    def target_text(self, c: Collector, snap: FleetSnapshot, now: Any) -> str:
        """The collector's own rollback target: the config it last reported APPLIED before what it
        runs now (pipelines have theirs below)."""
        target = self.app.collector_target(c)  # type: ignore[attr-defined]
        if target is not None:
            parts = [target.label] if target.label else []
            parts.append(f"config {target.hash[:12]}")
            when = parse_time(target.at) if target.at else None
            if when is not None:
                parts.append(f"APPLIED {age_text(when, now)} ago")
            return " · ".join(parts)
        if "config_status" not in getattr(self.app.backend, "capabilities", frozenset()):  # type: ignore[attr-defined]
            return "not reported by this backend (roll back a pipeline below)"
        return "no earlier APPLIED config on record"

    def render_collector(self, c: Collector, snap: FleetSnapshot) -> RichGroup:
        now = self.app.now()  # type: ignore[attr-defined]
        parts: list[Any] = []
        health = Text()
        health.append(f"{HEALTH_GLYPH[c.health]} {c.health.value}", style="bold")
        if c.last_error:
            health.append(f"  {c.last_error}", style="red")
        if c.health_reason and c.health_reason != c.last_error:
            health.append(f"  ({c.health_reason})", style="dim")
        parts.append(health)
        parts.append(
            kv_lines(
                [
                    ("id", c.id),
                    ("name", c.name),
                    ("type / version", f"{c.type.value} {c.version}"),
                    ("enabled", "yes" if c.enabled else "no (receives an empty config)"),
                    ("last seen", f"{age_text(c.last_seen, now)} ago ({rfc3339(c.last_seen) or 'never'})"),
                    ("config status", c.remote_config.status.value + (f" · hash {c.remote_config.hash}" if c.remote_config.hash else "")),
                    ("runs", config_state_text(c)),
                    *([("came up", came_up_text(c))] if c.came_up is not None else []),
                    *([("components", components_text(c))] if c.available_components is not None else []),
                    ("rollback to", self.target_text(c, snap, now)),
                ]
            )
        )
        if c.remote_config.error:
            parts.append(Text(f"config error: {c.remote_config.error}", style="red"))
        if c.component_health is not None:
            parts.append(Text("\nComponent health", style="bold"))
            parts.append(component_tree_text(c.component_health))
        parts.append(Text("Pipelines (↩ = rollback target)", style="bold"))
        if not c.pipelines:
            parts.append(Text("  no pipeline matches this collector", style="dim"))
        for name in c.pipelines:
            revs = snap.revisions.get(name, ())
            target = self.app.pipeline_target(name, revs)  # type: ignore[attr-defined]
            line = Text(f"  {name}", style="bold")
            if revs:
                line.append(f"  live rev {revs[-1].id}", style="")
            if target is not None:
                line.append(f"  ↩ rev {target.id} ({age_text(target.created_at, now)} ago, {who(target.author)})")
            else:
                line.append("  ↩ no earlier revision", style="dim")
            parts.append(line)
        parts.append(Text("\nAttributes (merged; L = local, R = remote)", style="bold"))
        merged = c.attributes
        width = max((len(k) for k in merged), default=10)
        attrs = Text()
        for k in sorted(merged):
            origin = "R" if k in c.remote_attributes and not k.startswith("collector.") else "L"
            if k == "collector.ID":
                origin = "V"
            shadowed = k in c.remote_attributes and k in c.local_attributes and origin == "R"
            attrs.append(f"  {origin} ", style="dim")
            attrs.append(f"{k:<{width}}  ", style="bold")
            attrs.append(merged[k])
            if shadowed:
                attrs.append(f"  (local: {c.local_attributes[k]})", style="dim")
            attrs.append("\n")
        parts.append(attrs)
        if c.effective_config:
            parts.append(Text("Effective config", style="bold"))
            for fname, body in sorted(c.effective_config.items()):
                if fname:
                    parts.append(Text(f"# file: {fname}", style="dim"))
                parts.append(syntax_for(body, fname))
        return RichGroup(*parts)


class PipelineDetailScreen(DetailScreen):
    SCOPE = "pipeline-detail"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back"),
        Binding("m", "mark", "Mark base"),
        *bindings_for("pipeline-detail"),
    ]
    DEFAULT_CSS = """
    PipelineDetailScreen #head { height: auto; padding: 0 1; }
    PipelineDetailScreen #split { height: 1fr; }
    PipelineDetailScreen #revs { width: 28; height: 1fr; border: round $panel; }
    PipelineDetailScreen #revs:focus { border: round $primary; }
    PipelineDetailScreen #right { width: 1fr; height: 1fr; padding: 0 1; }
    PipelineDetailScreen #mode { height: 1; color: $text-muted; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.pipeline_name = name
        self.revisions: tuple[Revision, ...] = ()
        self.mark: str | None = None  # base revision for a diff between any two
        self.show_diff = True

    def compose(self) -> ComposeResult:
        yield StatusRow()
        yield Static("", classes="crumb", id="crumb")
        yield Static("", id="head")
        with Horizontal(id="split"):
            yield NavOptionList(id="revs")
            with Vertical(id="right"):
                yield Static("", id="mode")
                with VerticalScroll(id="scroll"):
                    yield Static("", id="content")
        yield Footer()

    async def on_mount(self) -> None:
        crumb = Text(no_wrap=True)
        crumb.append(" Pipelines › ", style="dim")
        crumb.append(self.pipeline_name, style="bold")
        self.query_one("#crumb", Static).update(crumb)
        await self._load_revisions()
        self.query_one("#revs", OptionList).focus()

    async def _load_revisions(self) -> None:
        self.revisions = await self.app.load_revisions(self.pipeline_name)  # type: ignore[attr-defined]
        self.refresh_from(self.app.snapshot)  # type: ignore[attr-defined]
        revs = self.query_one("#revs", OptionList)
        if self.revisions:
            revs.highlighted = len(self.revisions) - 1

    def reload_revisions(self) -> None:
        """The history changed (a rollback, a push, ctrl+r): read it again, cursor on the live one."""
        self.run_worker(self._load_revisions(), group="revisions", exclusive=True, exit_on_error=False)

    def refresh_from(self, snap: FleetSnapshot | None) -> None:
        if snap is None:
            return
        p = snap.pipeline(self.pipeline_name)
        now = self.app.now()  # type: ignore[attr-defined]
        head = Text()
        if p is None:
            head.append("this pipeline no longer exists (deleted); its history is below\n", style="bold red")
        else:
            matched = [c for c in snap.collectors if p.name in c.pipelines]
            by_env = Counter(c.attr("env") or "-" for c in matched)
            head.append(f"{p.config_type.value} · {'enabled' if p.enabled else 'DISABLED'} · id {p.id or '-'}")
            head.append(f" · updated {age_text(p.updated_at, now)} ago")
            if p.source:
                head.append(f" · source {p.source}")
            head.append("\nmatchers ", style="bold")
            head.append(", ".join(p.matchers) or "(none)")
            head.append("\nmatches now ", style="bold")
            head.append(f"{len(matched)} collectors")
            if by_env:
                head.append(" (" + ", ".join(f"{k} {v}" for k, v in sorted(by_env.items())) + ")")
            from otelcockpit.policy import lint_pipeline

            findings = lint_pipeline(p, snap, production=self.app.settings.context.production).findings  # type: ignore[attr-defined]
            head.append("\npolicy ", style="bold")
            if not findings:
                head.append("no findings", style="green")
            for n, f in enumerate(findings[:3]):
                style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "dim")
                head.append(("" if n == 0 else "; ") + f"{f.severity} line {f.line or '-'}: {f.message}", style=style)
            if len(findings) > 3:
                head.append(f" (+{len(findings) - 3} more: otelcockpit pipeline show {p.name})", style="dim")
            target = self.app.pipeline_target(self.pipeline_name, self.revisions)  # type: ignore[attr-defined]
            head.append("\nrollback target ", style="bold")
            head.append(f"rev {target.id} by {who(target.author)}, {age_text(target.created_at, now)} ago" if target else "none")
        self.query_one("#head", Static).update(head)
        revs = self.query_one("#revs", OptionList)
        highlighted = revs.highlighted
        revs.clear_options()
        for r in self.revisions:
            label = Text(no_wrap=True, overflow="ellipsis")
            label.append("* " if r.id == self.mark else "  ")
            label.append(f"{r.id} {r.operation.value:<6} {age_text(r.created_at, now):>4} ")
            label.append(who(r.author), style="dim")
            revs.add_option(Option(label, id=r.id))
        if highlighted is not None and highlighted < len(self.revisions):
            revs.highlighted = highlighted

    def current(self) -> Revision | None:
        revs = self.query_one("#revs", OptionList)
        if revs.highlighted is None or revs.highlighted >= len(self.revisions):
            return None
        return self.revisions[revs.highlighted]

    @on(OptionList.OptionHighlighted, "#revs")
    def show(self) -> None:
        rev = self.current()
        mode = self.query_one("#mode", Static)
        content = self.query_one("#content", Static)
        if rev is None:
            mode.update("")
            content.update("")
            return
        if not self.show_diff:
            mode.update(f"contents of rev {rev.id} (d: diff)")
            body = rev.snapshot.contents if rev.snapshot else ""
            content.update(syntax_for(body))
            return
        base = None
        if self.mark and self.mark != rev.id:
            base = next((r for r in self.revisions if r.id == self.mark), None)
        if base is None:
            base = previous_of(self.revisions, rev.id)
        if base is None:
            mode.update(f"rev {rev.id}: the first revision (d: contents, m: mark a base)")
            content.update(syntax_for(rev.snapshot.contents if rev.snapshot else ""))
            return
        mode.update(f"diff rev {base.id} → {rev.id} (d: contents, m: mark a base)")
        old = self._rev_text(base)
        new = self._rev_text(rev)
        content.update(diff_text(old, new, f"rev {base.id}", f"rev {rev.id}"))

    @staticmethod
    def _rev_text(rev: Revision) -> str:
        if rev.snapshot is None or rev.operation.value == "delete":
            return ""
        p = rev.snapshot
        header = f"# matchers: {', '.join(p.matchers)}\n# enabled: {str(p.enabled).lower()}\n"
        return header + p.contents

    def action_diff(self) -> None:
        self.show_diff = not self.show_diff
        self.show()

    def action_mark(self) -> None:
        rev = self.current()
        if rev is None:
            return
        self.mark = None if self.mark == rev.id else rev.id
        self.refresh_from(self.app.snapshot)  # type: ignore[attr-defined]
        self.show()

    def action_rollback(self) -> None:
        rev = self.current()
        if rev is not None:
            self.app.rollback_pipeline(self.pipeline_name, rev)  # type: ignore[attr-defined]

    def action_push(self) -> None:
        self.app.start_push(self.pipeline_name)  # type: ignore[attr-defined]
