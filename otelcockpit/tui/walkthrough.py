"""``otelcockpit walkthrough``: a guided session for a room or a screen share.

One slide at a time, from the organisation's live numbers (the adoption analysis of the current
fleet). Presenter keys: ``n`` (or → / space) next, ``p`` (or ←) previous, ``1``-``4`` jump to a
phase, ``home`` the first slide. ``p`` means *previous* here; live updates pause with ``P``.
Slides keep their lines short and wrap, so they stay readable with a large projector font.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from otelcockpit.errors import CockpitError
from otelcockpit.fleet.model import FleetSnapshot
from otelcockpit.settings import Settings
from otelcockpit.tui.app import CockpitApp, run_app
from otelcockpit.tui.view import View

KIND_STYLE = {"ok": "green", "fail": "bold red", "warn": "yellow", "info": "", "head": "bold", "note": "dim"}
KIND_MARK = {"ok": "✔ ", "fail": "✖ ", "warn": "⚠ ", "info": "· ", "head": "", "note": "  › "}


def render_slide(slide: Any, *, compact: bool) -> RenderableType:
    """A slide as one Rich renderable: marks in their own column, so wrapped lines hang."""
    parts: list[RenderableType] = []
    title = Text(slide.title if compact else f" {slide.title} ", style="bold" if compact else "bold reverse")
    parts.append(title)
    if slide.lead:
        parts.append(Text(slide.lead, style="italic"))
    grid: Table | None = None
    notes = 0
    for ln in slide.lines:
        if ln.kind == "head":
            if grid is not None:
                parts.append(grid)
                grid = None
            if not compact:
                parts.append(Text(""))
            parts.append(Text(ln.text, style="bold underline"))
            continue
        if ln.kind == "note":
            notes += 1
            if compact and notes > 1:
                continue  # at 80x24 one reason per failing check; the export has them all
        else:
            notes = 0
        if grid is None:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=2, no_wrap=True)
            grid.add_column(ratio=1)
        mark = Text(KIND_MARK.get(ln.kind, "").rstrip() or " ", style=KIND_STYLE.get(ln.kind, ""))
        if ln.kind == "note":
            mark = Text("  ›", style="dim")
        grid.add_row(
            mark, Text(ln.text, style=KIND_STYLE.get(ln.kind, "") if ln.kind in ("note", "warn") else "")
        )
    if grid is not None:
        parts.append(grid)
    if slide.table:
        head, *rows = slide.table
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=False, show_edge=False)
        last = len(head) - 1
        for i, h in enumerate(head):
            if compact:  # one line per row at 80x24: the last column is cut, the export keeps it whole
                table.add_column(h, no_wrap=True, overflow="ellipsis", ratio=1 if i == last else None)
            else:
                table.add_column(h, overflow="fold")
        if compact:
            table.expand = True
        for r in rows:
            table.add_row(*r)
        if not compact:
            parts.append(Text(""))
        parts.append(table)
    return Group(*parts)


class SlideBody(VerticalScroll, can_focus=True, inherit_bindings=False):
    """The slide's scroll area: up/down and page keys scroll a long slide; left, right and home
    are left to the presenter keys."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Up", show=False),
        Binding("down", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
    ]


class WalkthroughView(View):
    SCOPE = "walkthrough"
    TITLE = "Walkthrough"

    DEFAULT_CSS = """
    WalkthroughView #w-body { height: 1fr; padding: 0 2; }
    WalkthroughView.-compact #w-body { padding: 0 1; }
    WalkthroughView #w-slide { height: auto; }
    WalkthroughView.-roomy #w-slide { padding: 1 2; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slides: list[Any] = []
        self.index = 0
        self.error = ""
        self._shown: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="crumb", id="crumb")
        with SlideBody(id="w-body"):
            yield Static("", id="w-slide")

    def focus_main(self) -> None:
        self.query_one("#w-body").focus()

    @property
    def compact(self) -> bool:
        return self.app.size.height < 34 or self.app.size.width < 100

    def on_resize(self) -> None:
        self.render_slide(force=True)

    # ---- data --------------------------------------------------------------------------------
    def update_snapshot(self, snap: FleetSnapshot) -> None:
        app: Any = self.app
        app.request_adoption()
        if app.adoption is not None:
            self.update_adoption(app.adoption)
        else:
            self.render_slide()

    def update_adoption(self, data: Any) -> None:
        from otelcockpit.adoption.walkthrough import build_slides

        app: WalkthroughApp = self.app  # type: ignore[assignment]
        if data is None or app.snapshot is None:
            self.render_slide()
            return
        current = self.slides[self.index].id if self.slides else None
        try:
            from otelcockpit.adoption.outage import load_record

            self.slides = build_slides(app.snapshot, data, journey=app.journey, drill=load_record())
            self.error = ""
        except CockpitError as exc:
            self.error = exc.message
        if current is not None:
            self.index = next((i for i, s in enumerate(self.slides) if s.id == current), self.index)
        self.index = max(0, min(self.index, len(self.slides) - 1))
        self.render_slide()

    def refresh_ages(self) -> None:
        pass  # slides carry no relative times

    def render_slide(self, *, force: bool = False) -> None:
        app: Any = self.app
        compact = self.compact
        self.set_class(compact, "-compact")
        self.set_class(not compact, "-roomy")
        crumb = Text(" Walkthrough ", style="bold")
        if self.slides:
            slide = self.slides[self.index]
            crumb.append(f"· {self.index + 1}/{len(self.slides)} ", style="bold")
            crumb.append("· " + " ".join(self._dots()), style="dim")
        crumb.append("  n next · p previous · 1-4 phase", style="dim")
        self.set_crumb(crumb)
        body = self.query_one("#w-slide", Static)
        if self.error or app.adoption_error:
            key: tuple[Any, ...] = ("error", self.error or app.adoption_error)
            if key != self._shown:
                self._shown = key
                body.update(Text(self.error or app.adoption_error, style="bold red"))
            return
        if not self.slides:
            key = ("loading",)
            if key != self._shown:
                self._shown = key
                body.update(Text("analysing the fleet and the services…", style="dim"))
            return
        slide = self.slides[self.index]
        key = (slide, self.index, compact)
        if key == self._shown and not force:
            return
        self._shown = key
        body.update(render_slide(slide, compact=compact))
        self.query_one("#w-body", SlideBody).scroll_home(animate=False)

    def _dots(self) -> list[str]:
        out = []
        for i, s in enumerate(self.slides):
            label = str(s.phase) if s.phase else "●"
            out.append(f"[{label}]" if i == self.index else label)
        return out

    # ---- presenter keys ----------------------------------------------------------------------
    def go(self, index: int) -> None:
        if not self.slides:
            return
        self.index = max(0, min(index, len(self.slides) - 1))
        self.render_slide()

    def action_next(self) -> None:
        self.go(self.index + 1)

    def action_prev(self) -> None:
        self.go(self.index - 1)

    def action_first(self) -> None:
        self.go(0)

    def action_phase(self, number: int) -> None:
        from otelcockpit.adoption.walkthrough import phase_index

        i = phase_index(self.slides, int(number))
        if i is not None:
            self.go(i)

    @property
    def current(self) -> Any:
        return self.slides[self.index] if self.slides else None


class WalkthroughApp(CockpitApp):
    """The cockpit app with the walkthrough as its one view (read-only is not forced)."""

    TITLE = "otelcockpit walkthrough"
    views: ClassVar[dict[str, tuple[type[View], tuple[str, ...]]]] = {
        "walkthrough": (WalkthroughView, ("walkthrough", "w"))
    }
    commands_help: ClassVar[list[tuple[str, str]]] = [
        (":walkthrough", "the walkthrough (the only view of this app)"),
        (":ctx NAME", "switch context"),
        (":theme NAME", "switch theme (a light one suits projectors)"),
        (":q", "quit"),
    ]
    state_name: ClassVar[str] = "walkthrough-state.json"

    def __init__(self, settings: Settings, *, journey: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("initial_view", "walkthrough")
        super().__init__(settings, **kwargs)
        self.journey = journey

    def switch_context(self, name: str) -> str | None:
        error = super().switch_context(name)
        if error is None:
            view = self.current_view
            if isinstance(view, WalkthroughView):
                view.slides = []
                view.render_slide()
        return error


def run_walkthrough(settings: Settings, *, journey: str | None = None) -> int:
    return run_app(settings, app_cls=WalkthroughApp, journey=journey)
