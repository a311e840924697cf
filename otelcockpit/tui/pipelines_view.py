"""The Pipelines view: pipelines, their matchers, how many collectors each reaches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Static

from otelcockpit.fleet.model import FleetSnapshot, Pipeline, Revision, age_text
from otelcockpit.tui.view import View
from otelcockpit.tui.vtable import Column, TableHeader, VirtualTable


@dataclass(frozen=True)
class PipelineRow:
    pipeline: Pipeline
    collectors: int
    rollback: Revision | None
    revisions: int  # -1: not read yet (the backend lists them apart from the snapshot)


class PipelineTable(VirtualTable[PipelineRow]):
    def __init__(self, app_now: Any, **kwargs: Any) -> None:
        self.now = app_now
        cols: list[Column[PipelineRow]] = [
            Column("name", "NAME", 18, lambda r: (r.pipeline.name, None if r.pipeline.enabled else "vtable--dim"), flex=2,
                   priority=2),
            Column("type", "TYPE", 5, lambda r: (r.pipeline.config_type.value, None)),
            Column("on", "ON", 3, lambda r: ("yes" if r.pipeline.enabled else "no", None if r.pipeline.enabled else "vtable--dim")),
            Column("n", "COLL", 5, lambda r: (str(r.collectors), None), align_right=True),
            Column("revs", "REVS", 4, lambda r: (str(r.revisions) if r.revisions >= 0 else "…", None), align_right=True),
            Column("upd", "UPD", 4, lambda r: (age_text(r.pipeline.updated_at, self.now()), None), align_right=True),
            Column("matchers", "MATCHERS", 16, lambda r: (",".join(r.pipeline.matchers) or "(none)", None), flex=3,
                   priority=1),
        ]
        super().__init__(cols, key=lambda r: r.pipeline.name, **kwargs)
        self.empty_text = "no pipelines"


class PipelinesView(View):
    SCOPE = "pipelines"
    TITLE = "Pipelines"
    HAS_FILTER = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self._rows: dict[str, PipelineRow] = {}

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        table = PipelineTable(self.app.now, id="ptable")  # type: ignore[attr-defined]
        yield TableHeader(table, classes="table-header")
        yield table

    @property
    def table(self) -> PipelineTable:
        return self.query_one(PipelineTable)

    def focus_main(self) -> None:
        self.table.focus()

    def update_snapshot(self, snap: FleetSnapshot) -> None:
        app: Any = self.app
        if not snap.revisions:
            app.request_revisions()  # the backend lists them apart (OpAMP, Fleet Management)
        history = snap.revisions or app.revisions
        counts: Counter[str] = Counter()
        for c in snap.collectors:
            counts.update(c.pipelines)
        rows = []
        for p in snap.pipelines:
            revs = history.get(p.name, ()) if history is not None else None
            row = PipelineRow(p, counts.get(p.name, 0), self.app.pipeline_target(p.name, revs or ()),  # type: ignore[attr-defined]
                              -1 if revs is None else len(revs))
            old = self._rows.get(p.name)
            rows.append(old if old == row else row)  # keep identity when nothing changed
        self._rows = {r.pipeline.name: r for r in rows}
        self.table.set_rows(rows)
        self.update_crumb()

    def update_revisions(self) -> None:
        snap = self.app.snapshot  # type: ignore[attr-defined]
        if snap is not None:
            self.update_snapshot(snap)

    def update_crumb(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {self.TITLE} ", style="bold")
        total = len(self.table.rows)
        if self.filter_text:
            t.append(f"{self.table.shown}/{total} · /{self.filter_text}")
        else:
            t.append(str(total), style="bold")
        self.set_crumb(t)

    def apply_filter(self, text: str) -> str | None:
        text = text.strip()
        self.filter_text = text
        if not text:
            self.table.set_filter(None)
        else:
            needle = text.lower()
            self.table.set_filter(
                lambda r: needle in r.pipeline.name.lower()
                or needle in " ".join(r.pipeline.matchers).lower()
                or needle in r.pipeline.source.lower()
            )
        self.table.cursor_to_first()
        self.update_crumb()
        return None

    def action_open(self) -> None:
        r = self.table.current
        if r is not None:
            self.app.open_pipeline(r.pipeline.name)  # type: ignore[attr-defined]

    @on(VirtualTable.Selected)
    def selected(self, event: VirtualTable.Selected) -> None:
        self.app.open_pipeline(event.key)  # type: ignore[attr-defined]

    def action_toggle_enabled(self) -> None:
        r = self.table.current
        if r is not None:
            self.app.toggle_pipeline(r.pipeline)  # type: ignore[attr-defined]

    def action_push(self) -> None:
        r = self.table.current
        if r is not None:
            self.app.start_push(r.pipeline.name)  # type: ignore[attr-defined]


def collectors_matching(snap: FleetSnapshot, pipeline: Pipeline) -> list[Any]:
    """Collectors that get this pipeline now (uses the matched names the backend computed)."""
    return [c for c in snap.collectors if pipeline.name in c.pipelines]

