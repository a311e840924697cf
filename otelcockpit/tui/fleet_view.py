"""The Fleet view: the collector table, filtering by text or matchers, grouping by an attribute."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from otelcockpit.fleet.filtering import narrow, parse_filter, place_text, search_text, value_of
from otelcockpit.fleet.matchers import MatcherError
from otelcockpit.fleet.model import HEALTH_ORDER, Collector, ConfigStatus, FleetSnapshot, Health, age_text
from otelcockpit.tui.render import CONFIG_CLASS, HEALTH_CLASS, HEALTH_GLYPH, runs_cell, runs_glyph
from otelcockpit.tui.view import GroupingMixin, View
from otelcockpit.tui.vtable import Column, TableHeader, VirtualTable
from otelcockpit.tui.widgets import NavDataTable, NavOptionList

GROUP_KEYS = ("env", "region", "cluster", "platform", "role", "owner", "type", "version", "health", "config", "config_state")


class CollectorTable(VirtualTable[Collector]):
    def __init__(self, clock: Callable[[], datetime], **kwargs: Any) -> None:
        self.clock = clock
        super().__init__(self._columns(), key=lambda c: c.id, search=search_text, **kwargs)
        self.empty_text = "no collectors match"

    def _columns(self) -> list[Column[Collector]]:
        return [
            Column("health", " ", 1, lambda c: (HEALTH_GLYPH[c.health], HEALTH_CLASS[c.health])),
            # what it runs: the state's glyph on a narrow terminal (= in sync, ≠ drifted, ↓ fallback,
            # ↺ cached, ? unknown), the word from 100 columns on
            Column("runs-glyph", "R", 1, lambda c: (runs_glyph(c), runs_cell(c)[1]), max_table_width=100),
            Column("name", "NAME", 24, lambda c: (c.name, None if c.enabled else "vtable--dim"), flex=3, priority=2),
            Column("type", "TYPE", 5, lambda c: (c.type.value, None)),
            Column("version", "VERSION", 8, lambda c: (c.version, None)),
            Column("env", "ENV", 7, lambda c: (c.attr("env") or "-", None)),
            Column("region", "REGION", 9, lambda c: (c.attr("region") or "-", None), flex=1),
            Column("where", "CLUSTER/PLATFORM", 16, lambda c: (place_text(c), None), flex=1, min_table_width=100),
            Column(
                "config",
                "CONFIG",
                8,
                lambda c: (c.remote_config.status.value, CONFIG_CLASS[c.remote_config.status]),
            ),
            Column("runs", "RUNS", 8, runs_cell, min_table_width=100),
            Column("seen", "SEEN", 4, lambda c: (age_text(c.last_seen, self.clock()), None), align_right=True),
        ]


_HEALTH_RANK = {h: i for i, h in enumerate(HEALTH_ORDER)}
_CONFIG_RANK = {ConfigStatus.FAILED: 0, ConfigStatus.APPLYING: 1}
_NUMBER = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=4096)  # a fleet runs a few dozen versions: parse each once
def _version_key(version: str) -> tuple[Any, ...]:
    """"v1.10.2" after "v1.9.0": digits compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _NUMBER.split(version) if p)


# How the Fleet view can order its rows: (label in the picker, sort key, descending).
# Sorting is stable: rows with equal keys keep the order the backend gave them.
SORTS: dict[str, tuple[str, Callable[[Collector], Any], bool]] = {
    "name": ("name", lambda c: c.name, False),
    "health": ("health, worst first", lambda c: (_HEALTH_RANK.get(c.health, 9), c.name), False),
    "seen": ("last seen, longest silent first",
             lambda c: (c.last_seen is not None, c.last_seen.timestamp() if c.last_seen else 0.0, c.name), False),
    "config": ("config status, failed first", lambda c: (_CONFIG_RANK.get(c.remote_config.status, 2), c.name), False),
    "version": ("version, newest first", lambda c: _version_key(c.version), True),
    "env": ("env, then region", lambda c: (c.attr("env"), c.attr("region"), c.name), False),
    "type": ("type", lambda c: (c.type.value, c.name), False),
}


def sorted_collectors(collectors: Any, sort: str | None) -> Any:
    """The rows in the chosen order (the backend's own order, by name, when none is chosen)."""
    if not sort or sort not in SORTS:
        return collectors
    _label, key, reverse = SORTS[sort]
    return sorted(collectors, key=key, reverse=reverse)


class GroupPicker(ModalScreen[str | None]):
    """Pick the attribute to group by."""

    BINDINGS: ClassVar[list[BindingType]] = [("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    GroupPicker { align: center middle; }
    GroupPicker > Vertical { width: 40; height: auto; max-height: 90%; border: thick $primary; background: $surface; }
    GroupPicker OptionList { height: auto; max-height: 16; border: none; }
    """

    def __init__(self, keys: list[str], *, title: str = "Group collectors by") -> None:
        super().__init__()
        self.keys = keys
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f" {self.title_text}", classes="title")
            yield NavOptionList(*[Option(k, id=k) for k in self.keys])

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


def attr_for_group(c: Collector, key: str) -> str:
    return value_of(c, key)


class FleetView(GroupingMixin, View):
    SCOPE = "fleet"
    TITLE = "Collectors"
    HAS_FILTER = True
    GROUP_KEYS = GROUP_KEYS
    GROUP_TITLE = "Group collectors by"
    GROUPS_ID = "groups"

    DEFAULT_CSS = """
    FleetView #groups { display: none; height: 1fr; }
    FleetView.-grouped #groups { display: block; }
    FleetView.-grouped #table-box { display: none; }
    FleetView #table-box { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self.group_key: str | None = None
        self.sort_key: str | None = None
        self._indexed = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        table = CollectorTable(self.app.now, id="table")  # type: ignore[attr-defined]
        with Vertical(id="table-box"):
            yield TableHeader(table, classes="table-header")
            yield table
        yield NavDataTable(id="groups", cursor_type="row", zebra_stripes=False)

    @property
    def table(self) -> CollectorTable:
        return self.query_one(CollectorTable)

    def update_snapshot(self, snap: FleetSnapshot) -> None:
        self.table.set_rows(sorted_collectors(snap.collectors, self.sort_key))
        if not self._indexed:
            self._indexed = True
            self.call_after_refresh(self.table.index_search_texts)
        if self.group_key:
            self._fill_groups()
        self.update_crumb()

    def update_crumb(self) -> None:
        snap = self.app.snapshot  # type: ignore[attr-defined]
        total = len(snap.collectors) if snap else 0
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {self.TITLE} ", style="bold")
        if self.filter_text:
            t.append(f"{self.table.shown}/{total}", style="bold")
            t.append(f" · /{self.filter_text}")
        else:
            t.append(f"{total}", style="bold")
        if self.group_key:
            t.append(f" · grouped by {self.group_key}")
        if self.sort_key:
            t.append(f" · sorted by {SORTS[self.sort_key][0]}", style="dim")
        self.set_crumb(t)

    # ---- filtering -----------------------------------------------------------------------------
    def apply_filter(self, text: str) -> str | None:
        """Apply a filter (text words and matchers on attributes and columns, see
        otelcockpit.fleet.filtering); return an error message instead of raising. The cursor goes to
        the first row that passes."""
        try:
            flt = parse_filter(text)
        except MatcherError as exc:
            return str(exc)
        table = self.table
        if flt.empty:
            self.filter_text = ""
            table.set_filter(None)
        elif not flt.matchers:
            table.set_text_filter(" ".join(flt.words))
        else:
            positions = flt.positions(table.rows)
            if flt.words:
                positions = table.narrow_by_words(positions, flt.words)
            table.set_filter(flt.predicate(), positions=positions)
        self.filter_text = flt.text
        table.cursor_to_first()
        self.update_crumb()
        return None

    # ---- grouping ------------------------------------------------------------------------------
    def _fill_groups(self) -> None:
        dt = self.query_one("#groups", DataTable)
        key = self.group_key or "env"
        rows = self.table.visible_rows()
        counts: Counter[str] = Counter()
        health: dict[str, Counter[str]] = {}
        for c in rows:
            v = attr_for_group(c, key)
            counts[v] += 1
            health.setdefault(v, Counter())[c.health.value] += 1
        groups = {v: (counts[v], health[v]) for v in sorted(counts, key=lambda v: (-counts[v], v))}
        cursor_value = None
        if dt.row_count and dt.cursor_row < dt.row_count:
            cursor_value = dt.coordinate_to_cell_key(dt.cursor_coordinate).row_key.value
        dt.clear(columns=True)
        dt.add_column(key.upper(), key="value")
        dt.add_column("TOTAL", key="count")
        for h in Health:
            dt.add_column(f"{HEALTH_GLYPH[h]} {h.value}", key=h.value)
        for value, (count, health) in groups.items():
            cells: list[Any] = [value or "(none)", Text(str(count), justify="right")]
            for h in Health:
                n = health.get(h.value, 0)
                cells.append(Text(str(n) if n else "·", justify="right"))
            dt.add_row(*cells, key=value)
        if cursor_value is not None and cursor_value in groups:
            dt.move_cursor(row=list(groups).index(cursor_value))

    @on(DataTable.RowSelected, "#groups")
    def group_selected(self, event: DataTable.RowSelected) -> None:
        """Drill into a group: its value is added to the filter in force (never replaces it)."""
        value = str(event.row_key.value)
        key = self.group_key
        if key is None:
            return
        self.group_key = None
        self.remove_class("-grouped")
        self.app.set_filter(narrow(self.filter_text, key, value))  # type: ignore[attr-defined]
        self.table.focus()

    # ---- sorting -------------------------------------------------------------------------------
    def action_sort(self) -> None:
        labels = {SORTS[k][0]: k for k in SORTS}

        def chosen(label: str | None) -> None:
            if label is not None:
                self.set_sort(labels[label])

        self.app.push_screen(GroupPicker(list(labels), title="Sort collectors by"), chosen)

    def set_sort(self, key: str | None) -> None:
        """Order the rows (None or "name": the backend's order); the filter stays and the cursor
        goes to the first row (the worst one, for the health orders)."""
        self.sort_key = None if key in (None, "name") or key not in SORTS else key
        sorts = self.app.sorts  # type: ignore[attr-defined]
        if self.sort_key:
            sorts[self.id] = self.sort_key
        else:
            sorts.pop(self.id, None)
        snap = self.app.snapshot  # type: ignore[attr-defined]
        if snap is not None:
            self.table.set_rows(sorted_collectors(snap.collectors, self.sort_key))
        self.table.cursor_to_first()
        self.update_crumb()

    # ---- actions -------------------------------------------------------------------------------
    def action_open(self) -> None:
        c = self.table.current
        if c is not None:
            self.app.open_collector(c.id)  # type: ignore[attr-defined]

    @on(VirtualTable.Selected)
    def selected(self, event: VirtualTable.Selected) -> None:
        self.app.open_collector(event.key)  # type: ignore[attr-defined]

    def action_toggle_enabled(self) -> None:
        c = self.table.current
        if c is not None:
            self.app.toggle_collector(c)  # type: ignore[attr-defined]

    def action_set_attribute(self) -> None:
        c = self.table.current
        if c is not None:
            self.app.set_remote_attribute(c)  # type: ignore[attr-defined]
