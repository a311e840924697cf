"""Baseline for the first-paint benchmark: the same 100,000 demo collectors in a stock DataTable.

It does what a straightforward Textual app would do: build the fleet, then add every row to a
``textual.widgets.DataTable`` with the same columns as the cockpit's fleet table.
Run: python bench/baseline_datatable.py N
"""

from __future__ import annotations

import sys

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.model import age_text


class Baseline(App[None]):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def compose(self) -> ComposeResult:
        yield DataTable()

    def on_mount(self) -> None:
        backend = DemoBackend(collectors=self.n)
        snap = backend.snapshot_now()
        table = self.query_one(DataTable)
        table.add_columns(" ", "NAME", "TYPE", "VERSION", "ENV", "REGION", "CONFIG", "SEEN")
        now = snap.fetched_at
        table.add_rows(
            (
                c.health.value[0],
                c.name,
                c.type.value,
                c.version,
                c.attr("env"),
                c.attr("region"),
                c.remote_config.status.value,
                age_text(c.last_seen, now),
            )
            for c in snap.collectors
        )


if __name__ == "__main__":
    Baseline(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000).run()
