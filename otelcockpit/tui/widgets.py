"""Shared widgets: the status row, the command line, the filter bar, confirmation and prompt modals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, OptionList, Static

from otelcockpit.fleet.model import FleetSnapshot, age_text


class NavOptionList(OptionList):
    """An OptionList that moves with ``j``/``k`` and ``g``/``G`` too, like every list of the cockpit."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "go_first", "First", show=False),
        Binding("G", "last", "Last", show=False),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from otelcockpit.tui.vtable import ancestor_binds

        if action == "go_first" and ancestor_binds(self, "g"):
            return False
        return super().check_action(action, parameters)

    def action_go_first(self) -> None:
        self.action_first()


class NavDataTable(DataTable[Any]):
    """A DataTable that moves with ``j``/``k`` and ``g``/``G`` too; ``g`` is left to a view that binds
    it (the Fleet view's group key)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "go_first", "First", show=False),
        Binding("G", "go_last", "Last", show=False),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from otelcockpit.tui.vtable import ancestor_binds

        if action == "go_first" and ancestor_binds(self, "g"):
            return False
        return super().check_action(action, parameters)

    def action_go_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_go_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class StatusRow(Widget):
    """context · backend · RO badge · data age · backend health · PAUSED — one line, on every screen.

    It renders from the app's state (``app.status_state()``), so every screen's copy agrees.
    """

    DEFAULT_CSS = """
    StatusRow { height: 1; background: $panel; color: $foreground; }
    """

    def render(self) -> Text:
        state = self.app.status_state()  # type: ignore[attr-defined]
        vars_ = self.app.theme_variables
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {state['context']}", style="bold")
        if state["production"]:
            t.append(" PROD", style=f"bold {vars_.get('error', 'red')}")
        t.append(f" · {state['backend']}")
        if state["read_only"]:
            t.append(" ")
            t.append(" RO ", style=f"bold reverse {vars_.get('badge-read-only', 'red')}")
        snap: FleetSnapshot | None = state["snapshot"]
        now: datetime = state["now"]
        if snap is None:
            t.append(" · loading…", style="dim")
        else:
            age = age_text(snap.fetched_at, now)
            if snap.stale:
                t.append(f" · STALE {age}", style=f"bold {vars_.get('warning', 'yellow')}")
                reason = snap.stale_reason or snap.health.message
                if reason:
                    t.append(f" ({reason})", style=vars_.get("warning", "yellow"))
            else:
                t.append(f" · age {age}")
            h = snap.health
            t.append(" · api ")
            t.append(h.status, style=vars_.get("success" if h.ok else "error", ""))
            if h.latency_ms:
                t.append(f" {h.latency_ms:.0f}ms")
        if state["paused"]:
            t.append(" ")
            t.append(" PAUSED ", style=f"bold reverse {vars_.get('warning', 'yellow')}")
        return t


class ListSuggester(Suggester):
    """Completes the last word of a command line from a live list (``:ctx pr`` -> ``:ctx prod``)."""

    def __init__(self, words: Callable[[str], Sequence[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.words = words

    async def get_suggestion(self, value: str) -> str | None:
        for word in self.words(value):
            if word.lower().startswith(value.lower()) and word != value:
                return word
        return None


class BarInput(Input):
    """An Input that gives up focus on escape (the bar hides) instead of the app going back; `tab`
    takes the suggestion of the `:` line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "submit", "Run"),
        Binding("tab", "complete", "Complete"),
    ]

    class Cancelled(Input.Changed):
        pass

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "complete" and self.suggester is None:
            return False  # the `/` bar has nothing to complete: tab is not offered
        return super().check_action(action, parameters)

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled(self, self.value))

    def action_complete(self) -> None:
        """Take the suggestion (greyed after the cursor); without one, stay in the input."""
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)


class PromptBar(Horizontal):
    """The bottom bar for `:` commands and `/` filters (k9s style)."""

    DEFAULT_CSS = """
    PromptBar { height: 1; display: none; background: $panel; }
    PromptBar.-open { display: block; }
    PromptBar Label { width: auto; padding: 0 0 0 1; color: $accent; text-style: bold; }
    PromptBar BarInput { border: none; height: 1; padding: 0 1; background: $panel; width: 1fr; }
    PromptBar BarInput:focus { border: none; }
    PromptBar #error { width: auto; color: $error; padding: 0 1; }
    """

    def __init__(self, prompt: str, *, suggester: Suggester | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self._suggester = suggester

    def compose(self) -> ComposeResult:
        yield Label(self.prompt)
        yield BarInput(suggester=self._suggester, select_on_focus=False)
        yield Label("", id="error")

    @property
    def input(self) -> BarInput:
        return self.query_one(BarInput)

    def open(self, value: str = "") -> None:
        self.add_class("-open")
        self.input.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]
        self.input.value = value
        self.input.cursor_position = len(value)
        self.set_error("")
        # The bar was display:none until now; focus once styles apply, so keys typed at once land here.
        self.input.focus()
        self.call_after_refresh(self.input.focus)

    def close(self) -> None:
        self.remove_class("-open")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def set_error(self, message: str) -> None:
        self.query_one("#error", Label).update(message)


class ConfirmScreen(ModalScreen[bool]):
    """Confirm a mutating action. Cancel is focused; a production context asks for its name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    ConfirmScreen #title { text-style: bold; }
    ConfirmScreen #body { margin: 1 0; }
    ConfirmScreen Horizontal { height: auto; align: right middle; }
    ConfirmScreen Button { margin-left: 2; }
    ConfirmScreen Input { margin-bottom: 1; }
    """

    def __init__(self, title: str, body: str, *, confirm_label: str = "Apply", type_to_confirm: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.type_to_confirm = type_to_confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="title")
            yield Static(self.body, id="body")
            if self.type_to_confirm:
                yield Static(f"Production context: type [b]{self.type_to_confirm}[/b] to enable {self.confirm_label}.")
                yield Input(placeholder=self.type_to_confirm, id="typed")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error", disabled=bool(self.type_to_confirm))

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]
        self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#typed")
    def typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.type_to_confirm

    @on(Button.Pressed, "#confirm")
    def confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (e.g. ``key=value`` for a remote attribute)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
    PromptScreen #error { color: $error; height: auto; }
    """

    def __init__(self, title: str, placeholder: str, validate: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.validator = validate

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            yield Input(placeholder=self.placeholder)
            yield Static("", id="error")

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]
        inp.focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        error = self.validator(event.value) if self.validator else None
        if error:
            self.query_one("#error", Static).update(error)
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TooSmallScreen(ModalScreen[None]):
    """Covers everything while the terminal is smaller than the cockpit can lay out without clipping."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; background: $background; }
    TooSmallScreen Static { width: auto; height: auto; text-align: center; color: $warning; }
    """

    def __init__(self, need: tuple[int, int]) -> None:
        super().__init__()
        self.need = need

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small")

    def on_mount(self) -> None:
        self.update_size()

    def update_size(self, size: Any = None) -> None:
        w, h = size or self.app.size
        nw, nh = self.need
        self.query_one("#too-small", Static).update(
            f"terminal too small: {w}x{h}\nthe cockpit needs {nw}x{nh}\n\n"
            "enlarge the window, or set min_size\nin config.yaml (e.g. 80x23)\n\nq quits"
        )

    def on_resize(self, event: Any) -> None:
        self.app.check_size()  # type: ignore[attr-defined]

    def key_q(self) -> None:
        self.app.exit()
