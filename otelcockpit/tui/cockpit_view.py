"""The cockpit: the whole rollout on one screen, each panel one key away from its full view.

Panels: fleet health by env and region with the data age; eligibility (services per path, how many
need a code change, how many are decided, conditional on a field to fill, or unknown, and on a tall
terminal the teams with fields to fill); the phase checklist with each phase's progress and the first failing item; the
rollout staged or running; and every pipeline changed in the last 24 hours with its rollback target.
At 80x24 every panel is one line and the changes list gets the rest; taller terminals get details.

The places (env, region) and the changed pipelines are a list: ``j``/``k`` (``↑``/``↓``, ``g``/``G``)
select one; ``enter`` on a place opens the Fleet view on its collectors with a problem, on a change
the pipeline's history; ``y`` copies a change's rollback command.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, ConfigState, collector_state
from otelcockpit.fleet.model import HEALTH_ORDER, FleetSnapshot, Health, age_text
from otelcockpit.fleet.problems import PROBLEM_LOOK, Problem, problem, problems
from otelcockpit.tui.render import HEALTH_GLYPH, words
from otelcockpit.tui.view import View, bindings_for

SELECTED = "reverse"  # the selected place or change
# The config problems counted per place beside the health states.
CONFIG_PROBLEMS = frozenset({Problem.CONFIG_FAILED.value, Problem.OTHER_CONFIG.value})

HEALTH_COLOUR = {
    Health.HEALTHY: "green",
    Health.DEGRADED: "yellow",
    Health.UNHEALTHY: "red",
    Health.OFFLINE: "bright_black",
    Health.UNKNOWN: "bright_black",
}


def health_summary(counts: Counter[str], *, other: bool = True) -> Text:
    """`` ●384 ✖8 ◐14 ○11 !2 cfg ≠1 other``: collectors per health state, then how many failed to
    apply their config and (``other``) how many run another config than their assigned one. The
    config problems are the problems module's, so a place and the incident view agree."""
    t = Text()
    for h in (Health.HEALTHY, *[x for x in HEALTH_ORDER if x != Health.HEALTHY]):
        n = counts.get(h.value, 0)
        if n:
            t.append(f" {HEALTH_GLYPH[h]}{n}", style=HEALTH_COLOUR[h])
    labels = ((Problem.CONFIG_FAILED, "cfg"), (Problem.OTHER_CONFIG, "other"))
    for p, word in labels if other else labels[:1]:
        n = counts.get(p.value, 0)
        if n:
            t.append(f" {PROBLEM_LOOK[p].glyph}{n} {word}", style=PROBLEM_LOOK[p].colour)
    return t


def _count(counts: Counter[str], c: Any) -> None:
    counts[c.health.value] += 1
    for p in problems(c):
        if p.value in CONFIG_PROBLEMS:
            counts[p.value] += 1


def _total(counts: Counter[str]) -> int:
    return sum(n for k, n in counts.items() if k not in CONFIG_PROBLEMS)


_places_of: list[Any] = [None, []]  # [the snapshot, its places]: one pass over the fleet per snapshot


def _places(snap: FleetSnapshot) -> list[tuple[tuple[str, str], Counter[str]]]:
    """Counts per place (env, region), computed once per snapshot: a refresh asks three times (the
    head, the selectable places, their lines), and at 100,000 collectors a pass is 0.3 s."""
    if _places_of[0] is snap:
        return _places_of[1]
    by: dict[tuple[str, str], Counter[str]] = {}
    for c in snap.collectors:
        _count(by.setdefault((c.attr("env") or "-", c.attr("region") or "-"), Counter()), c)
    _places_of[:] = [snap, sorted(by.items())]
    return _places_of[1]


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


def troubled(hc: Counter[str]) -> bool:
    """A place with a collector that is not healthy or has a config problem."""
    return _total(hc) != hc.get(Health.HEALTHY.value, 0) or any(hc.get(k) for k in CONFIG_PROBLEMS)


def fleet_panel(
    snap: FleetSnapshot, now: Any, *, detailed: bool, selected: tuple[str, str] | None = None, app: Any = None
) -> Text | Table:
    counts: Counter[str] = Counter()
    for _key, hc in _places(snap):
        counts.update(hc)
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("[1] Fleet ", style="bold")
    head.append(f"{len(snap.collectors)}")
    head.append_text(health_summary(counts, other=False))  # the runs summary says it
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
        table.add_row(env, region, str(_total(hc)), health_summary(hc), style=SELECTED if (env, region) == selected else None)
    grid = Table.grid()
    grid.add_row(head)
    for line in outage_lines(app, snap, now, wrap=True):
        grid.add_row(line)
    grid.add_row(table)
    return grid


def place_keys(snap: FleetSnapshot, *, detailed: bool, rows: int) -> list[tuple[str, str]]:
    """The places the cursor can select: every row of the table (tall), else the troubled places
    that have a line."""
    places = _places(snap)
    if detailed:
        return [k for k, _hc in places]
    bad = [k for k, hc in places if troubled(hc)]
    if rows < 1:
        return []
    return bad if len(bad) <= rows else bad[: rows - 1]


def place_lines(snap: FleetSnapshot, rows: int, selected: tuple[str, str] | None = None) -> list[Text]:
    """Compact: the places (env, region) with something not healthy, in their fixed order, in at
    most ``rows`` lines (the last says how many more). One line each, so a refresh that changes one
    place's counts repaints one line, not the list: bytes on an SSH link."""
    bad = [(k, hc) for k, hc in _places(snap) if troubled(hc)]
    if rows < 1 or not bad:
        return []
    shown = bad if len(bad) <= rows else bad[: rows - 1]
    out = []
    for (env, region), hc in shown:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {env:<8} {region:<15} {_total(hc):>5} ")
        t.append_text(health_summary(hc))
        if (env, region) == selected:
            t.stylize(SELECTED)
        out.append(t)
    if len(shown) < len(bad):
        out.append(Text(f" +{len(bad) - len(shown)} more places with problems (1: the Fleet view)", style="dim"))
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
    paths = Counter(e.path for e in data.eligibility)
    counts = decision_counts(data.eligibility)
    code = counts.code_change
    t.append(f"{total}  zero-code {counts.zero_code}", style="green")
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
        # What the Phases view says, the cockpit says: the analysis failed, or it is still running.
        error = getattr(app, "adoption_error", "")
        t.append(f"unavailable: {error}" if error else "analysing…", style="red" if error else "dim")
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
            t.append(f"  last: {last.pipeline} {words(last.state.value)}", style="dim")
        return t
    v = active[0]
    total = sum(s.total for s in v.stages) or 1
    applied = sum(s.applied for s in v.stages)
    width = 10
    filled = round(width * applied / total)
    colour = "yellow" if v.state.value == "paused" else "green"
    t.append(f"{v.pipeline} {words(v.state.value)} stage {v.current_stage + 1}/{len(v.stages)} ")
    t.append("█" * filled + "░" * (width - filled), style=colour)
    t.append(f" {applied}/{total}")
    if v.failed:
        t.append(f" ✖{v.failed}", style="red")
    if v.reason and v.state.value == "paused":
        t.append(f"  {v.reason}", style="yellow")
    if len(active) > 1:
        t.append(f"  (+{len(active) - 1} more)", style="dim")
    return t


def recent_changes(app: Any, now: Any) -> list[Any] | None:
    """The newest change of every pipeline changed in the last 24 h, newest first (None: loading).
    A rollout's later events (paused, stage ...) carry the rollback target of the rollout."""
    from dataclasses import replace

    entries = getattr(app, "changes", None)
    if entries is None:
        return None
    since = now - timedelta(hours=24)
    latest: dict[str, Any] = {}
    targets: dict[str, str] = {}  # rollout id -> its rollback target
    for e in entries:
        if e.rollout_id and e.rollback_target:
            targets[e.rollout_id] = e.rollback_target
        if e.at >= since and e.pipeline:
            latest[e.pipeline] = e  # entries are in time order: keep the newest per pipeline
    out = [
        replace(e, rollback_target=targets[e.rollout_id]) if not e.rollback_target and e.rollout_id in targets else e
        for e in latest.values()
    ]
    return sorted(out, key=lambda e: e.at, reverse=True)


def changes_panel(app: Any, now: Any, selected: str | None = None) -> Text:
    t = Text()
    t.append("[2] Changed in the last 24 h, with rollback targets", style="bold")
    recent = recent_changes(app, now)
    if recent is None:
        t.append("\n  loading…", style="dim")
        return t
    if not recent:
        t.append("\n  no pipeline changed", style="dim")
        return t
    for e in recent:
        t.append("\n")
        start = len(t)
        t.append("  ")
        t.append(f"{e.pipeline:<24} ", style="bold")
        t.append(f"{age_text(e.at, now):>4} ago  {(e.author or '?').split('@')[0]:<14} ")
        if e.rollback_target:
            t.append(f"↩ rev {e.rollback_target}", style="cyan")
        else:
            t.append("↩ none", style="dim")
        if e.pipeline == selected:
            t.stylize(SELECTED, start, len(t))
    return t


PLACE_LINES = 12  # at most this many place lines in the compact layout


class CockpitView(View, can_focus=True):
    SCOPE = "cockpit"
    TITLE = "Cockpit"
    BINDINGS: ClassVar[list[BindingType]] = [
        *bindings_for("cockpit"),
        Binding("up,k", "select(-1)", "Up", show=False),
        Binding("down,j", "select(1)", "Down", show=False),
        Binding("home,g", "select_edge(0)", "First", show=False),
        Binding("end,G", "select_edge(1)", "Last", show=False),
    ]

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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items: list[tuple[str, Any]] = []  # ("place", (env, region)) | ("change", ChangeEntry)
        self.selected: tuple[str, Any] | None = None  # ("place", (env, region)) | ("change", pipeline)

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        with VerticalScroll(id="cockpit-body", can_focus=False):
            yield Static("", id="p-fleet", classes="panel")
            for i in range(PLACE_LINES):  # compact: the troubled places, a line each
                yield Static("", id=f"p-place-{i}", classes="panel place")
            yield Static("", id="p-services", classes="panel -spaced")
            yield Static("", id="p-phases", classes="panel -spaced")
            yield Static("", id="p-rollout", classes="panel -spaced")
            yield Static("", id="p-changes", classes="panel -spaced -list")

    def focus_main(self) -> None:
        self.focus()

    def _set(self, panel: str, renderable: Any) -> None:
        """Repaint a panel only when what it says changed: every repaint is bytes on an SSH link."""
        widget = self.query_one(f"#{panel}", Static)
        if isinstance(renderable, Text):
            key: Any = (renderable.plain, tuple(renderable.spans))
        else:
            from rich.console import Console

            console = Console(width=max(20, self.size.width), record=True, file=io.StringIO(), color_system=None)
            console.print(renderable)
            key = (console.export_text(), self.selected)
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
        crumb.append("· keys 1-5 open each panel's view · j/k select a place or a change", style="dim")
        self.set_crumb(crumb)
        self.set_class(not self.detailed, "-compact")
        self.update_adoption(app.adoption)
        self._fleet_and_changes(snap)

    def _selected_place(self) -> tuple[str, str] | None:
        return self.selected[1] if self.selected and self.selected[0] == "place" else None

    def _selected_pipeline(self) -> str | None:
        return self.selected[1] if self.selected and self.selected[0] == "change" else None

    def _fleet_and_changes(self, snap: FleetSnapshot | None) -> None:
        """The changes list, then the fleet panel in the lines left: compact, the other panels take
        a line each, and the troubled places fill what the changes leave free."""
        app: Any = self.app
        now = app.now()
        changes = changes_panel(app, now, self._selected_pipeline())
        self._set("p-changes", changes)
        self._set("p-rollout", rollout_panel(app))
        recent = recent_changes(app, now) or []
        if snap is None:
            self.items = [("change", e) for e in recent]
            return
        detailed = self.detailed
        # status row, crumb, footer; then the fleet head, services, phases and rollout lines
        rows = app.size.height - 3 - 4 - (changes.plain.count("\n") + 1)
        outage = [] if detailed else outage_lines(app, snap, now)[: max(0, min(2, rows))]  # the outage first
        budget = min(rows, PLACE_LINES) - len(outage)
        places = place_keys(snap, detailed=detailed, rows=budget)
        self.items = [("place", k) for k in places] + [("change", e) for e in recent]
        self._keep_selection()
        self._set("p-fleet", fleet_panel(snap, now, detailed=detailed, selected=self._selected_place(), app=app))
        lines = [] if detailed else outage + place_lines(snap, budget, self._selected_place())
        for i in range(PLACE_LINES):
            widget = self.query_one(f"#p-place-{i}", Static)
            widget.set_class(i < len(lines), "-shown")
            if i < len(lines):
                self._set(f"p-place-{i}", lines[i])
        if self._selected_pipeline() is not None:  # the selection may have moved to a change
            self._set("p-changes", changes_panel(app, now, self._selected_pipeline()))

    def _key_of(self, item: tuple[str, Any]) -> tuple[str, Any]:
        kind, value = item
        return (kind, value.pipeline) if kind == "change" else (kind, value)

    def _keep_selection(self) -> None:
        """The selection stays on its place or pipeline across refreshes (the first item else)."""
        keys = [self._key_of(i) for i in self.items]
        if self.selected not in keys:
            self.selected = keys[0] if keys else None

    def update_adoption(self, data: Any) -> None:
        self._set("p-services", eligibility_panel(self.app, detailed=self.detailed))
        self._set("p-phases", phases_panel(self.app, detailed=self.detailed))

    def update_changes(self) -> None:
        self._fleet_and_changes(self.app.snapshot)  # type: ignore[attr-defined]

    # ---- the list of places and changes ----------------------------------------------------------
    def _select_index(self, index: int) -> None:
        if not self.items:
            return
        index = max(0, min(len(self.items) - 1, index))
        self.selected = self._key_of(self.items[index])
        self._fleet_and_changes(self.app.snapshot)  # type: ignore[attr-defined]
        kind = self.selected[0]
        target = "#p-changes" if kind == "change" else ("#p-fleet" if self.detailed else f"#p-place-{index}")
        self.query_one("#cockpit-body", VerticalScroll).scroll_to_widget(self.query_one(target), animate=False)

    def _index(self) -> int:
        keys = [self._key_of(i) for i in self.items]
        return keys.index(self.selected) if self.selected in keys else 0

    def action_select(self, delta: int) -> None:
        self._select_index(self._index() + int(delta))

    def action_select_edge(self, end: int) -> None:
        self._select_index(len(self.items) - 1 if int(end) else 0)

    def current_item(self) -> tuple[str, Any] | None:
        keys = [self._key_of(i) for i in self.items]
        return self.items[keys.index(self.selected)] if self.selected in keys else None

    def action_open(self) -> None:
        """A place: the Fleet view on its collectors with a problem (or not healthy); a change: the
        pipeline's history."""
        item = self.current_item()
        if item is None:
            return
        kind, value = item
        app: Any = self.app
        if kind == "change":
            app.open_pipeline(value.pipeline)
            return
        app.switch_view("fleet")
        app.set_filter(place_filter(app.snapshot, value))

    def action_copy_rollback(self) -> None:
        item = self.current_item()
        if item is None or item[0] != "change":
            self.notify("select a changed pipeline (j/k) to copy its rollback command", severity="warning")
            return
        e = item[1]
        self.app.copy_rollback(e.pipeline, e.rollback_target)  # type: ignore[attr-defined]


def place_filter(snap: FleetSnapshot | None, place: tuple[str, str]) -> str:
    """The Fleet view filter for a place's broken collectors: with a problem when it has some, else
    not healthy."""
    from otelcockpit.fleet.matchers import quote

    env, region = place
    text = f"env={quote(env if env != '-' else '')},region={quote(region if region != '-' else '')}"
    members = [c for c in (snap.collectors if snap else ()) if (c.attr("env") or "-", c.attr("region") or "-") == place]
    if any(problem(c) is not None for c in members):
        return text + ',problem!=""'
    if any(c.health != Health.HEALTHY for c in members):
        return text + ',health!="healthy"'
    return text
