"""`?` help: built from the live bindings of the screen it was opened on, plus the `:` commands."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Covered by NAV_KEYS below, or Textual's own plumbing that only adds noise to a help screen.
HIDDEN_ACTIONS = {
    "cursor", "page", "edge", "top", "select", "select_edge", "scroll_left", "scroll_right", "page_left",
    "page_right", "scroll_up", "scroll_down", "scroll_home", "scroll_end", "page_up", "page_down",
    "app.focus_next", "app.focus_previous", "screen.copy_text", "command_palette", "app.command_palette",
    "cursor_up", "cursor_down", "first", "last", "select_all",
}

SCROLL_NAV = [("↑ ↓ pgup pgdn", "scroll")]


def nav_keys(actions: set[str], g_is_taken: bool = False) -> list[tuple[str, str]]:
    """The movement keys that work here: a list's, a scrolling body's, or none. ``g_is_taken``: the
    view uses `g` for something else (grouping), so `home` is the way to the first row."""
    if actions & {"cursor", "select", "cursor_up", "cursor_down"}:
        return [
            ("↑ ↓ j k", "move"),
            ("pgup pgdn space", "page"),
            ("home · end G" if g_is_taken else "home g · end G", "first / last"),
        ]
    if actions & {"scroll_up", "scroll_down"}:
        return SCROLL_NAV
    return []


def key_label(b: Binding, app_key_display: str) -> str:
    return b.key_display or app_key_display


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss_help", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, bindings: dict[str, ActiveBinding], commands: list[tuple[str, str]], read_only: bool) -> None:
        super().__init__()
        self.bindings_map = bindings
        self.commands = commands
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.render_help(), id="help")

    def render_help(self) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        if self.read_only:
            grid.add_row(Text(" RO ", style="bold reverse"), "read-only: actions that change the fleet are off")
        grid.add_row(Text("Keys here", style="bold underline"), "")
        rows: dict[str, tuple[str, str, bool]] = {}  # action -> (key, description, from the registry)
        actions = {a.binding.action.split("(")[0] for a in self.bindings_map.values()}
        for _key, active in self.bindings_map.items():
            b = active.binding
            if b.action.split("(")[0] in HIDDEN_ACTIONS:
                continue
            ours = bool(b.id)  # the cockpit's own keys come from the registry (they carry an id)
            known = rows.get(b.action)
            if known is not None and (known[2] or not ours) and not b.show:
                continue  # one key per action: the cockpit's own (q), not Textual's (ctrl+q)
            rows[b.action] = (self.app.get_key_display(b), b.description or b.action, ours)
        for label, description, _ours in rows.values():
            grid.add_row(label, description)
        g = self.bindings_map.get("g")
        for k, d in nav_keys(actions, g_is_taken=g is not None and g.binding.action not in ("top", "go_first")):
            grid.add_row(k, d)
        grid.add_row("ctrl+p", "command palette")
        grid.add_row("", "")
        grid.add_row(Text("Commands ( : )", style="bold underline"), "")
        for cmd, desc in self.commands:
            grid.add_row(cmd, desc)
        grid.add_row("", "")
        if any(a.binding.action == "app.filter" or a.binding.action == "filter" for a in self.bindings_map.values()):
            grid.add_row(Text("Filter ( / )", style="bold underline"), "")
            grid.add_row("text", "rows containing every word")
            grid.add_row('env="prod",region=~"eu-.*"', "Alertmanager matchers on attributes (=, !=, =~, !~)")
            grid.add_row("health config problem", "collectors: columns match like attributes, e.g.")
            grid.add_row("type version name", 'health="unhealthy",config="failed",problem!=""')
            grid.add_row("id where enabled", "a group drill-down (g, enter) adds to the filter")
            grid.add_row('config_state="on fallback"', "what a collector runs: in sync, drifted, on fallback, on cached remote, unknown")
        grid.add_row("", "")
        grid.add_row(Text("Runs ( R )", style="bold underline"), "")
        grid.add_row("= ≠ ↓ ↺ ?", "in sync · drifted · on fallback · on cached remote · unknown (the detail says why)")
        return grid

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
