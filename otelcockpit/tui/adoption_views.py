"""The rollout views: Services (eligibility for zero-code instrumentation) and Phases (the
checklist computed from the fleet, sign-offs, and the critical journeys' coverage)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from otelcockpit.adoption.cockpit import AdoptionData, decision_counts, filter_services, service_attr
from otelcockpit.adoption.eligibility import Eligibility
from otelcockpit.adoption.journeys import coverage_bar
from otelcockpit.adoption.phases import PhaseItem
from otelcockpit.errors import CockpitError
from otelcockpit.fleet.model import FleetSnapshot
from otelcockpit.tui.detail import DetailScreen
from otelcockpit.tui.view import GroupingMixin, TableView, View
from otelcockpit.tui.vtable import Column, TableHeader, VirtualTable
from otelcockpit.tui.widgets import NavDataTable, StatusRow

SERVICE_GROUP_KEYS = ("team", "path", "platform", "language", "status")
PATH_CLASS = {"sdk": "vtable--error", "unknown": "vtable--unknown", "compile-time": "vtable--degraded"}


def path_cell(e: Eligibility) -> tuple[str, str | None]:
    """The path, with "?" when it is conditional on a field to fill."""
    if e.status == "conditional":
        return e.path + "?", "vtable--degraded"
    return e.path, PATH_CLASS.get(e.path)


def loading_text(app: Any, what: str) -> Text:
    error = getattr(app, "adoption_error", "")
    if error:
        return Text(f" {what} unavailable: {error}", style="bold red")
    return Text(f" {what}: analysing the fleet…", style="dim")


class ServiceTable(VirtualTable[Eligibility]):
    def __init__(self, **kwargs: Any) -> None:
        cols: list[Column[Eligibility]] = [
            Column("name", "SERVICE", 18, lambda e: (e.name, None), flex=3, priority=2),
            Column("team", "TEAM", 11, lambda e: (e.service.team or "-", None), flex=1),
            Column("lang", "LANG", 7, lambda e: (e.service.language or "?", None)),
            Column("platform", "PLATFORM", 11, lambda e: (e.service.platform or "?", None)),
            Column("path", "PATH", 15, path_cell),
            Column(
                "code",
                "CODE",
                4,
                lambda e: ("?" if e.code_change is None else "yes" if e.code_change else "no",
                           "vtable--error" if e.code_change else None),
            ),
            Column("blockers", "BLOCKERS", 10, lambda e: (first_blocker(e), None), flex=3, min_table_width=100),
        ]
        super().__init__(cols, key=lambda e: e.name, search=service_search, **kwargs)
        self.empty_text = "no services match"


def first_blocker(e: Eligibility) -> str:
    if e.status == "conditional" and e.fill:
        return "fill " + ", ".join(f.field for f in e.fill) + ": " + e.condition
    if e.status == "unknown" and e.unknowns:
        return e.unknowns[0]
    if not e.blockers:
        return "-"
    more = f" (+{len(e.blockers) - 1})" if len(e.blockers) > 1 else ""
    return e.blockers[0] + more


def service_search(e: Eligibility) -> str:
    s = e.service
    return " ".join((e.name, s.team, s.language, s.platform, e.path, e.status, *s.journeys)).lower()


class ServicesView(GroupingMixin, View):
    SCOPE = "services"
    TITLE = "Services"
    HAS_FILTER = True
    GROUP_KEYS = SERVICE_GROUP_KEYS
    GROUP_TITLE = "Group services by"
    GROUPS_ID = "svc-groups"

    DEFAULT_CSS = """
    ServicesView #svc-groups { display: none; height: 1fr; }
    ServicesView.-grouped #svc-groups { display: block; }
    ServicesView.-grouped #svc-box { display: none; }
    ServicesView #svc-box { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self.group_key: str | None = None
        self.data: AdoptionData | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        table = ServiceTable(id="svc-table")
        with VerticalScroll(id="svc-box"):
            yield TableHeader(table, classes="table-header")
            yield table
        yield NavDataTable(id="svc-groups", cursor_type="row")

    @property
    def table(self) -> ServiceTable:
        return self.query_one(ServiceTable)

    def update_snapshot(self, snap: FleetSnapshot) -> None:
        self.app.request_adoption()  # type: ignore[attr-defined]
        self.update_adoption(self.app.adoption)  # type: ignore[attr-defined]

    def update_adoption(self, data: AdoptionData | None) -> None:
        crumb = self.query_one("#crumb", Static)
        if data is None:
            crumb.update(loading_text(self.app, "Services"))
            return
        if data is not self.data:
            self.data = data
            self.table.set_rows(data.eligibility)
            if self.group_key:
                self._fill_groups()
        self.update_crumb()

    def update_crumb(self) -> None:
        data = self.data
        if data is None:
            return
        total = len(data.eligibility)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {self.TITLE} ", style="bold")
        t.append(f"{self.table.shown}/{total}" if self.filter_text else str(total), style="bold")
        c = decision_counts(data.eligibility)
        t.append(f" · zero-code {c.zero_code} · code change {c.code_change}")
        t.append(f" · conditional (path?) {c.conditional} · unknown {c.unknown}")
        if self.filter_text:
            t.append(f" · /{self.filter_text}")
        if self.group_key:
            t.append(f" · by {self.group_key}")
        self.set_crumb(t)

    def apply_filter(self, text: str) -> str | None:
        text = text.strip()
        if not text:
            self.filter_text = ""
            self.table.set_filter(None)
        elif "=" in text or "!~" in text:
            try:
                chosen = {e.name for e in filter_services(self.table.rows, text)}
            except CockpitError as exc:
                return exc.message
            self.filter_text = text
            self.table.set_filter(lambda e: e.name in chosen)
        else:
            self.filter_text = text
            self.table.set_text_filter(text)
        self.table.cursor_to_first()
        self.update_crumb()
        return None

    def _fill_groups(self) -> None:
        dt = self.query_one("#svc-groups", DataTable)
        key = self.group_key or "team"
        counts: Counter[str] = Counter()
        code: Counter[str] = Counter()
        open_: Counter[str] = Counter()
        paths: dict[str, Counter[str]] = {}
        for e in self.table.visible_rows():
            value = service_attr(e, key) or "unknown"
            counts[value] += 1
            code[value] += 1 if e.code_change and e.status == "decided" else 0
            open_[value] += 1 if e.status != "decided" else 0
            paths.setdefault(value, Counter())[e.path] += 1
        dt.clear(columns=True)
        dt.add_column(key.upper(), key="value")
        dt.add_column("SERVICES", key="n")
        dt.add_column("CODE CHANGE", key="code")
        dt.add_column("UNDECIDED", key="open")
        dt.add_column("PATHS", key="paths")
        for value in sorted(counts, key=lambda v: (-counts[v], v)):
            top = ", ".join(f"{p} {n}" for p, n in paths[value].most_common(3))
            dt.add_row(
                value,
                Text(str(counts[value]), justify="right"),
                Text(str(code[value]), justify="right"),
                Text(str(open_[value]), justify="right"),
                top,
                key=value,
            )

    @on(DataTable.RowSelected, "#svc-groups")
    def group_selected(self, event: DataTable.RowSelected) -> None:
        key, value = self.group_key, str(event.row_key.value)
        self.group_key = None
        self.remove_class("-grouped")
        self.app.set_filter(f'{key}="{value}"')  # type: ignore[attr-defined]
        self.table.focus()

    def action_open(self) -> None:
        e = self.table.current
        if e is not None:
            self.app.push_screen(ServiceDetailScreen(e.name))

    @on(VirtualTable.Selected)
    def selected(self, event: VirtualTable.Selected) -> None:
        self.app.push_screen(ServiceDetailScreen(event.key))


class ServiceDetailScreen(DetailScreen):
    DEFAULT_CSS = """
    ServiceDetailScreen #body { height: 1fr; padding: 0 1; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.service_name = name
        self._explained: tuple[Eligibility, Any] | None = None

    def compose(self) -> ComposeResult:
        yield StatusRow()
        yield Static("", classes="crumb", id="crumb")
        with VerticalScroll(id="body"):
            yield Static("", id="content")
        yield Footer()

    def on_mount(self) -> None:
        crumb = Text(no_wrap=True)
        crumb.append(" Services › ", style="dim")
        crumb.append(self.service_name, style="bold")
        self.query_one("#crumb", Static).update(crumb)
        self.refresh_from(self.app.snapshot)  # type: ignore[attr-defined]
        self.query_one("#body").focus()

    def refresh_from(self, snap: FleetSnapshot | None) -> None:
        data: AdoptionData | None = self.app.adoption  # type: ignore[attr-defined]
        e = data.service(self.service_name) if data else None
        content = self.query_one("#content", Static)
        if e is None:
            content.update(Text("this service is not in the inventory any more", style="bold red"))
            return
        if self._explained is None or self._explained[0] is not e:
            from otelcockpit.adoption.explain import explain

            self._explained = (e, explain(e))
        content.update(render_service(e, data, self._explained[1]))


ORIGIN_STYLE = {"inventory": "", "discovered": "cyan", "assumed": "yellow", "unknown": "dim"}


def render_service(e: Eligibility, data: AdoptionData | None, x: Any = None) -> RichGroup:
    """The Services view's detail: the answer, what to fill, the facts with their origin, the
    conflicts, every path, and the walk through the rules (the same as ``eligibility --explain``)."""
    s = e.service
    parts: list[Any] = []
    head = Text()
    head.append(f"{e.path}", style="bold")
    head.append(f"  {e.status}", style={"decided": "green", "conditional": "yellow"}.get(e.status, "red"))
    if e.code_change is None:
        head.append("  path unknown: a missing field decides it", style="yellow")
    elif e.code_change:
        head.append("  needs a code change", style="red")
    else:
        head.append("  no code change", style="green")
    if e.alternatives:
        head.append(f"   alternatives: {', '.join(e.alternatives)}", style="dim")
    parts.append(head)
    if e.condition:
        parts.append(Text(f"  {e.condition}", style="yellow"))
    for a in e.assumptions:
        parts.append(Text(f"  {a}", style="dim"))
    if e.fill:
        parts.append(Text("\nFill in", style="bold"))
        for f in e.fill:
            line = Text(f"  • {f.label} ({f.field})")
            if f.choices:
                line.append(": " + "; ".join(f"{v} → {p}" for v, p, _ in f.choices), style="yellow")
            parts.append(line)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    facts.add_row("team", s.team or "-")
    rows = x.facts if x is not None else ()
    for f in rows:
        if f.kind == "unknown" and not f.value.startswith("unknown (tried"):
            continue  # a field the rules never needed here
        cell = Text(f.value)
        cell.append(f"  {f.origin}", style=ORIGIN_STYLE.get(f.kind, "") or "dim")
        facts.add_row(f.field, cell)
    if s.instrumentation:
        facts.add_row("instrumentation", s.instrumentation)
    if s.journeys:
        facts.add_row("journeys", ", ".join(s.journeys))
    # file:line of the entry, by file name only (an inventory's directory says nothing to the reader)
    facts.add_row("from", s.origin.replace("\\", "/").rsplit("/", 1)[-1] if s.origin else "-")
    parts.append(Text("\nFacts (value · where it came from)", style="bold"))
    parts.append(facts)
    if s.conflicts:
        parts.append(Text("\nInventory and discovery disagree (the file wins until you fix one)", style="bold"))
        for c in s.conflicts:
            parts.append(Text(f"  • {c.text()}", style="yellow"))
    if e.reasons:
        parts.append(Text("\nWhy", style="bold"))
        for r in e.reasons:
            parts.append(Text(f"  • {r}"))
    if e.blockers:
        parts.append(Text("\nBlockers and checks", style="bold"))
        for b in e.blockers:
            parts.append(Text(f"  • {b}", style="yellow"))
    if e.unknowns:
        parts.append(Text("\nUnknown", style="bold"))
        for u in e.unknowns:
            parts.append(Text(f"  • {u}", style="dim"))
    if e.paths:
        paths = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        paths.add_column("PATH", no_wrap=True)
        paths.add_column("STATUS", no_wrap=True)
        paths.add_column("WHY")
        for a in sorted(e.paths, key=lambda a: a.rank):
            style = {"eligible": "green", "blocked": "red", "unknown": "yellow", "conditional": "yellow"}.get(a.status, "")
            why = a.reason
            if a.status == "conditional" and a.condition:
                why += " — if " + a.condition
            elif a.blockers:
                why += " — " + "; ".join(a.blockers)
            paths.add_row(a.path, Text(a.status, style=style), why)
        parts.append(Text("\nEvery path", style="bold"))
        parts.append(paths)
    if x is not None and x.steps:
        parts.append(Text("\nThe walk through the rules (best-ranked path first)", style="bold"))
        for n, step in enumerate(x.steps, 1):
            line = Text(f"  {n}. ")
            line.append(step.rule, style="bold")
            line.append(" " + step.head()[len(step.rule) + 1 :])
            parts.append(line)
            if step.facts:
                parts.append(
                    Text("     " + "; ".join(f"{f.field}={f.value} ({f.origin})" for f in step.facts), style="dim")
                )
            if step.assumption:
                parts.append(Text(f"     assumption: {step.assumption}", style="yellow"))
            for src in step.sources:
                parts.append(Text(f"     {src}", style="dim"))
            if step.changes:
                parts.append(Text("     would change: " + "; ".join(c.text() for c in step.changes), style="cyan"))
    return RichGroup(*parts)


class PhaseTable(VirtualTable[PhaseItem]):
    def __init__(self, **kwargs: Any) -> None:
        cols: list[Column[PhaseItem]] = [
            Column("ok", " ", 1, lambda i: ("✔" if i.passed else "✖", "vtable--healthy" if i.passed else "vtable--unhealthy")),
            Column("phase", "P", 1, lambda i: (str(i.phase), None)),
            Column("title", "CHECK", 24, lambda i: (i.title, None), flex=2, priority=1),
            Column("value", "NOW", 5, lambda i: (f"{i.value:.0%}", None), align_right=True),
            Column("need", "NEED", 5, lambda i: (f"{i.threshold:.0%}", None), align_right=True),
            Column("sign", "SIGN-OFF", 8, lambda i: (i.signoff.by if i.signoff else "-", None if i.signoff else "vtable--dim")),
        ]
        super().__init__(cols, key=lambda i: i.id, search=lambda i: f"{i.id} {i.title} {i.evidence}".lower(), **kwargs)


class PhasesView(TableView):
    SCOPE = "phases"
    TITLE = "Phases"

    DEFAULT_CSS = """
    PhasesView #phase-box { height: 1fr; }
    PhasesView PhaseTable { height: 1fr; min-height: 4; }
    PhasesView #item-detail { height: auto; max-height: 7; padding: 0 1; background: $surface; }
    PhasesView #journeys { height: auto; max-height: 6; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    PhasesView #warnings { height: auto; max-height: 2; padding: 0 1; color: $warning; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data: AdoptionData | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        yield Static("", id="warnings")
        table = PhaseTable(id="phase-table")
        yield TableHeader(table, classes="table-header")
        yield table
        yield Static("", id="item-detail")
        yield Static("", id="journeys")

    def update_snapshot(self, snap: FleetSnapshot) -> None:
        self.app.request_adoption()  # type: ignore[attr-defined]
        self.update_adoption(self.app.adoption)  # type: ignore[attr-defined]

    def update_adoption(self, data: AdoptionData | None) -> None:
        if data is None:
            self.query_one("#crumb", Static).update(loading_text(self.app, "Phases"))
            return
        if data is self.data:
            return
        self.data = data
        report = data.phases
        items = [i for p in report.phases for i in p.items]
        self.table.set_rows(items)
        crumb = Text(no_wrap=True, overflow="ellipsis")
        crumb.append(" Phases ", style="bold")
        for p in report.phases:
            passed = sum(1 for i in p.items if i.passed)
            style = "green" if p.at_threshold else "yellow"
            crumb.append(f" {p.number} {p.name.split(' (')[0]} ", style="bold")
            crumb.append(f"{passed}/{len(p.items)}", style=style)
        self.query_one("#crumb", Static).update(crumb)
        warn = Text("\n".join(f"⚠ {w}" for w in report.warnings[:2]))
        self.query_one("#warnings", Static).update(warn)
        self.query_one("#warnings").display = bool(report.warnings)
        self.query_one("#journeys", Static).update(journeys_text(data))
        self.show_item()

    @on(VirtualTable.Highlighted)
    def show_item(self) -> None:
        item = self.table.current
        detail = self.query_one("#item-detail", Static)
        if item is None:
            detail.update("")
            return
        t = Text()
        t.append(f"{item.id} ", style="bold")
        t.append(item.evidence)
        for f in item.failing[:3]:
            t.append(f"\n  - {f}", style="yellow")
        if len(item.failing) > 3:
            t.append(f"\n  … {len(item.failing) - 3} more (otelcockpit phases)", style="dim")
        if item.signoff:
            s = item.signoff
            t.append(f"\n  signed off by {s.by} at {s.at}" + (f": {s.note}" if s.note else ""), style="green")
        detail.update(t)

    def action_signoff(self) -> None:
        item = self.table.current
        if item is not None:
            self.app.sign_off(item)  # type: ignore[attr-defined]


def journeys_text(data: AdoptionData) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if not data.journeys:
        t.append("no critical user journeys defined (journeys.yaml)", style="dim")
        return t
    for n, j in enumerate(data.journeys):
        if n:
            t.append("\n")
        t.append(f"{j.journey.name[:22]:<22} ", style="bold")
        t.append(coverage_bar(j.coverage, 12), style="green" if j.coverage >= 1 else "yellow")
        t.append(f" {j.coverage:4.0%} ")
        if j.first_gap:
            t.append(f"gap: {j.first_gap}", style="dim")
    return t

