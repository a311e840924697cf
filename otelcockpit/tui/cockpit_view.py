"""The cockpit: the whole rollout on one screen, each panel one key away from its full view.

Panels: fleet health by env and region with the data age; eligibility (services per path, how many
need a code change, how many are decided, conditional on a field to fill, or unknown, and on a tall
terminal the teams with fields to fill); the phase checklist with each phase's progress and the first failing item; the
rollout staged or running; and every pipeline changed in the last 24 hours with its rollback target.
At 80x24 every panel is one line and the changes list gets the rest; taller terminals get details.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, ConfigState, collector_state
from otelcockpit.fleet.model import HEALTH_ORDER, FleetSnapshot, Health, age_text
from otelcockpit.tui.render import HEALTH_GLYPH
from otelcockpit.tui.view import View

HEALTH_COLOUR = {
    Health.HEALTHY: "green",
    Health.DEGRADED: "yellow",
    Health.UNHEALTHY: "red",
    Health.OFFLINE: "bright_black",
    Health.UNKNOWN: "bright_black",
}


def health_summary(counts: Counter[str]) -> Text:
    t = Text()
    for h in (Health.HEALTHY, *[x for x in HEALTH_ORDER if x != Health.HEALTHY]):
        n = counts.get(h.value, 0)
        if n:
            t.append(f" {HEALTH_GLYPH[h]}{n}", style=HEALTH_COLOUR[h])
    return t


def _places(snap: FleetSnapshot) -> list[tuple[tuple[str, str], Counter[str]]]:
    by: dict[tuple[str, str], Counter[str]] = {}
    for c in snap.collectors:
        by.setdefault((c.attr("env") or "-", c.attr("region") or "-"), Counter())[c.health.value] += 1
    return sorted(by.items())


# What the cockpit says of collectors that do not run their assigned config, worst first.
OFF_STATES = ((ConfigState.DRIFTED, "red"), (ConfigState.FALLBACK, "yellow"), (ConfigState.CACHED, "cyan"),
              (ConfigState.UNKNOWN, "bright_black"))  # fmt: skip


def runs_summary(snap: FleetSnapshot) -> Text:
    """`` runs =417 ≠1 ↓4 ↺8``: how many collectors are in each config state."""
    counts: Counter[ConfigState] = Counter(collector_state(c).state for c in snap.collectors)
    t = Text()
    if not counts:
        return t
    t.append("  runs ")
    t.append(f"{CONFIG_STATE_GLYPH[ConfigState.IN_SYNC]}{counts.get(ConfigState.IN_SYNC, 0)}", style="green")
    for state, colour in OFF_STATES:
        if counts.get(state):
            t.append(f" {CONFIG_STATE_GLYPH[state]}{counts[state]}", style=colour)
    return t


def outage_lines(app: Any, snap: FleetSnapshot, now: Any, *, wrap: bool = False) -> list[Text]:
    """The last fleet-API outage this cockpit saw: what the collectors that came up since it began came
    up on, what that sends compared with the managed config, and whether they have converged."""
    since = getattr(app, "outage_since", None)
    if since is None:
        return []
    from otelcockpit.adoption.outage import outage_report

    report = outage_report(snap, now=now, since=since, texts=getattr(app, "outage_texts", {}))
    came = sum(report.came_up.values())
    if not came:
        lines = [f"fleet API away since {age_text(since, now)} ago; nothing has reported since"] if snap.stale else []
    elif wrap:
        lines = report.lines()[2:]  # the API and the state counts are on the head line already
    else:  # one line each: the counts, then the heaviest config they came up on
        fb, cached = report.came_up.get(ConfigState.FALLBACK.value, 0), report.came_up.get(ConfigState.CACHED.value, 0)
        state = "all converged" if report.converged else f"{report.still_off} still off"
        lines = [f"since the API went away {age_text(since, now)} ago {came} came up: {fb} fallback, {cached} cached · {state}"]
        heavy = next((g for g in report.groups if g.compared), None)
        if heavy is not None:
            lines.append(f"{heavy.collectors} on {heavy.runs}: {heavy.compared[0]}")
    style = "yellow" if report.still_off else ""
    return [Text(" " + line, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis", style=style) for line in lines]


def fleet_panel(snap: FleetSnapshot, now: Any, *, detailed: bool, app: Any = None) -> Text | Table:
    counts: Counter[str] = Counter(c.health.value for c in snap.collectors)
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("[1] Fleet ", style="bold")
    head.append(f"{len(snap.collectors)}")
    head.append_text(health_summary(counts))
    head.append_text(runs_summary(snap))
    head.append(f"  age {age_text(snap.fetched_at, now)}")
    if snap.stale:
        head.append(f" STALE, pushes refused: {snap.stale_reason}", style="bold yellow")
    if not detailed:
        return head
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="dim", expand=False)
    table.add_column("ENV")
    table.add_column("REGION")
    table.add_column("TOTAL", justify="right")
    table.add_column("HEALTH")
    for (env, region), hc in _places(snap):
        table.add_row(env, region, str(sum(hc.values())), health_summary(hc))
    grid = Table.grid()
    grid.add_row(head)
    for line in outage_lines(app, snap, now, wrap=True):
        grid.add_row(line)
    grid.add_row(table)
    return grid


def place_lines(snap: FleetSnapshot, rows: int) -> list[Text]:
    """Compact: the places (env, region) with something not healthy, in their fixed order, in at
    most ``rows`` lines (the last says how many more). One line each, so a refresh that changes one
    place's counts repaints one line, not the list: bytes on an SSH link."""
    troubled = [(k, hc) for k, hc in _places(snap) if sum(hc.values()) != hc.get(Health.HEALTHY.value, 0)]
    if rows < 1 or not troubled:
        return []
    shown = troubled if len(troubled) <= rows else troubled[: rows - 1]
    out = []
    for (env, region), hc in shown:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {env:<8} {region:<15} {sum(hc.values()):>5} ")
        t.append_text(health_summary(hc))
        out.append(t)
    if len(shown) < len(troubled):
        out.append(Text(f" +{len(troubled) - len(shown)} more places with problems (1: the Fleet view)", style="dim"))
    return out


def eligibility_panel(app: Any, *, detailed: bool) -> Text:
    from otelcockpit.adoption.cockpit import counts_by_team, decision_counts

    data = app.adoption
    t = Text(no_wrap=not detailed, overflow="ellipsis")
    t.append("[3] Services ", style="bold")
    if data is None:
        t.append(app.adoption_error or "analysing…", style="red" if app.adoption_error else "dim")
        return t
    total = len(data.eligibility)
    code = sum(1 for e in data.eligibility if e.code_change)
    unknown = sum(1 for e in data.eligibility if e.code_change is None)
    paths = Counter(e.path for e in data.eligibility)
    counts = decision_counts(data.eligibility)
    t.append(f"{total}  zero-code {total - code - unknown}", style="green")
    t.append("  code change ")
    t.append(str(code), style="red" if code else "")
    # decided / conditional (the fields to fill) / unknown: what a rollout lead plans with
    t.append(f"  conditional {counts.conditional}", style="yellow" if counts.conditional else "")
    t.append(f"  unknown {counts.unknown}", style="yellow" if counts.unknown else "")
    if counts.fill:
        t.append(f" · fill {counts.fill_text()}", style="yellow")
    t.append("  · " + " ".join(f"{p} {n}" for p, n in paths.most_common()), style="dim")
    if detailed:
        teams = counts_by_team(data.eligibility)
        settled = sum(1 for c in teams.values() if not (c.conditional or c.unknown))
        for team, c in teams.items():
            if c.conditional or c.unknown:
                t.append(f"\n  {team[:16]:<16} {c.services:>3} service{'s' if c.services != 1 else ''}: ")
                t.append(f"{c.decided} decided, ")
                t.append(f"{c.conditional} conditional", style="yellow" if c.conditional else "")
                t.append(f", {c.unknown} unknown", style="yellow" if c.unknown else "")
                if c.fill:
                    t.append(f" · fill {c.fill_text()}", style="dim")
        if settled:
            t.append(f"\n  {settled} other team{'s' if settled != 1 else ''}: every service decided", style="dim")
    return t


def phases_panel(app: Any, *, detailed: bool) -> Text:
    data = app.adoption
    t = Text(no_wrap=not detailed, overflow="ellipsis")
    t.append("[4] Phases ", style="bold")
    if data is None:
        t.append("analysing…", style="dim")
        return t
    first_fail = None
    for p in data.phases.phases:
        passed = sum(1 for i in p.items if i.passed)
        mark = "✔" if p.at_threshold else "✖"
        t.append(f" {p.number}{mark}{passed}/{len(p.items)}", style="green" if p.at_threshold else "yellow")
        if first_fail is None:
            first_fail = next((i for i in p.items if not i.passed), None)
    if first_fail is not None:
        t.append(f"  next: {first_fail.title} ({first_fail.value:.0%} of {first_fail.threshold:.0%})")
    if data.phases.warnings:
        t.append(f"  ⚠ {len(data.phases.warnings)} order warning(s)", style="yellow")
    return t


def rollout_panel(app: Any) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("[5] Rollout ", style="bold")
    views = getattr(app, "rollouts", None) or ()
    active = [v for v in views if v.state.value in ("planned", "running", "paused")]
    if not active:
        last = views[0] if views else None
        t.append("none running", style="dim")
        if last is not None:
            t.append(f"  last: {last.pipeline} {last.state.value}", style="dim")
        return t
    v = active[0]
    total = sum(s.total for s in v.stages) or 1
    applied = sum(s.applied for s in v.stages)
    width = 10
    filled = round(width * applied / total)
    colour = "yellow" if v.state.value == "paused" else "green"
    t.append(f"{v.pipeline} {v.state.value} stage {v.current_stage + 1}/{len(v.stages)} ")
    t.append("█" * filled + "░" * (width - filled), style=colour)
    t.append(f" {applied}/{total}")
    if v.failed:
        t.append(f" ✖{v.failed}", style="red")
    if v.reason and v.state.value == "paused":
        t.append(f"  {v.reason}", style="yellow")
    if len(active) > 1:
        t.append(f"  (+{len(active) - 1} more)", style="dim")
    return t


def changes_panel(app: Any, now: Any) -> Text:
    t = Text()
    t.append("[2] Changed in the last 24 h, with rollback targets", style="bold")
    entries = getattr(app, "changes", None)
    if entries is None:
        t.append("\n  loading…", style="dim")
        return t
    since = now - timedelta(hours=24)
    recent = [e for e in entries if e.at >= since]
    if not recent:
        t.append("\n  no pipeline changed", style="dim")
        return t
    latest: dict[str, Any] = {}
    for e in recent:
        latest[e.pipeline] = e  # entries are in time order: keep the newest per pipeline
    for e in sorted(latest.values(), key=lambda e: e.at, reverse=True):
        t.append("\n  ")
        t.append(f"{e.pipeline:<24} ", style="bold")
        t.append(f"{age_text(e.at, now):>4} ago  {(e.author or '?').split('@')[0]:<14} ")
        if e.rollback_target:
            t.append(f"↩ rev {e.rollback_target}", style="cyan")
        else:
            t.append("↩ none", style="dim")
    return t


PLACE_LINES = 12  # at most this many place lines in the compact layout


class CockpitView(View):
    SCOPE = "cockpit"
    TITLE = "Cockpit"

    DEFAULT_CSS = """
    CockpitView #cockpit-body { height: 1fr; padding: 0 1; }
    CockpitView .panel { height: auto; text-overflow: ellipsis; }
    CockpitView.-compact .panel { text-wrap: nowrap; }
    CockpitView.-compact .panel.-list { text-wrap: nowrap; }
    CockpitView .panel.-spaced { margin-top: 1; }
    CockpitView.-compact .panel.-spaced { margin-top: 0; }
    CockpitView .panel.place { display: none; text-wrap: nowrap; }
    CockpitView .panel.place.-shown { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        with VerticalScroll(id="cockpit-body"):
            yield Static("", id="p-fleet", classes="panel")
            for i in range(PLACE_LINES):  # compact: the troubled places, a line each
                yield Static("", id=f"p-place-{i}", classes="panel place")
            yield Static("", id="p-services", classes="panel -spaced")
            yield Static("", id="p-phases", classes="panel -spaced")
            yield Static("", id="p-rollout", classes="panel -spaced")
            yield Static("", id="p-changes", classes="panel -spaced -list")

    def focus_main(self) -> None:
        self.query_one("#cockpit-body").focus()

    def _set(self, panel: str, renderable: Any) -> None:
        """Repaint a panel only when what it says changed: every repaint is bytes on an SSH link."""
        widget = self.query_one(f"#{panel}", Static)
        if isinstance(renderable, Text):
            key: Any = (renderable.plain, tuple(renderable.spans))
        else:
            from rich.console import Console

            console = Console(width=max(20, self.size.width), record=True, file=io.StringIO(), color_system=None)
            console.print(renderable)
            key = console.export_text()
        if getattr(widget, "_panel_key", None) != key:
            widget._panel_key = key  # type: ignore[attr-defined]
            widget.update(renderable)

    @property
    def detailed(self) -> bool:
        return self.app.size.height >= 34

    def on_resize(self) -> None:
        self.set_class(not self.detailed, "-compact")
        if self.app.snapshot is not None:  # type: ignore[attr-defined]
            self.update_snapshot(self.app.snapshot)  # type: ignore[attr-defined]

    def update_snapshot(self, snap: FleetSnapshot) -> None:
        app: Any = self.app
        app.request_adoption()
        app.request_changes()
        crumb = Text(" Cockpit ", style="bold")
        crumb.append("· keys 1-5 open each panel's view", style="dim")
        self.set_crumb(crumb)
        self.set_class(not self.detailed, "-compact")
        self.update_adoption(app.adoption)
        self._fleet_and_changes(snap)

    def _fleet_and_changes(self, snap: FleetSnapshot | None) -> None:
        """The changes list, then the fleet panel in the lines left: compact, the other panels take
        a line each, and the troubled places fill what the changes leave free."""
        app: Any = self.app
        now = app.now()
        changes = changes_panel(app, now)
        self._set("p-changes", changes)
        self._set("p-rollout", rollout_panel(app))
        if snap is None:
            return
        detailed = self.detailed
        self._set("p-fleet", fleet_panel(snap, now, detailed=detailed, app=app))
        # status row, crumb, footer; then the fleet head, services, phases and rollout lines
        rows = app.size.height - 3 - 4 - (changes.plain.count("\n") + 1)
        lines: list[Text] = []
        if not detailed:
            lines = outage_lines(app, snap, now)[: max(0, min(2, rows))]  # the outage first, then the places
            lines += place_lines(snap, min(rows, PLACE_LINES) - len(lines))
        for i in range(PLACE_LINES):
            widget = self.query_one(f"#p-place-{i}", Static)
            widget.set_class(i < len(lines), "-shown")
            if i < len(lines):
                self._set(f"p-place-{i}", lines[i])

    def update_adoption(self, data: Any) -> None:
        self._set("p-services", eligibility_panel(self.app, detailed=self.detailed))
        self._set("p-phases", phases_panel(self.app, detailed=self.detailed))

    def update_changes(self) -> None:
        self._fleet_and_changes(self.app.snapshot)  # type: ignore[attr-defined]
