"""Base class of the cockpit's views, with bindings from the action registry."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from otelcockpit.actions import ACTIONS, dangerous_actions
from otelcockpit.fleet.model import FleetSnapshot


def bindings_for(scope: str) -> list[BindingType]:
    return [
        Binding(a.key, a.action, a.description, show=a.show, id=a.id, key_display=a.key_display)
        for a in ACTIONS
        if a.scope == scope
    ]


class View(Vertical):
    """A full-height view switched with `:` commands. Subclasses set SCOPE and implement hooks."""

    SCOPE: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = []
    HAS_FILTER: ClassVar[bool] = False  # `/` is offered (footer, help) only in views that filter

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Set before Textual merges the class's bindings in DOMNode.__init_subclass__.
        if cls.SCOPE and "BINDINGS" not in cls.__dict__:
            cls.BINDINGS = bindings_for(cls.SCOPE)
        super().__init_subclass__(**kwargs)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only: mutating actions are not run and not shown (footer, help, palette).
        if self.app.read_only and action in dangerous_actions(self.SCOPE):  # type: ignore[attr-defined]
            return False
        return True

    def update_snapshot(self, snap: FleetSnapshot) -> None:  # pragma: no cover - overridden
        pass

    sort_key: str | None = None  # the chosen row order, for views that can sort (kept across sessions)

    def apply_filter(self, text: str) -> str | None:
        return "this view has no filter"

    def set_sort(self, key: str | None) -> None:
        """Views that sort their rows override this."""

    def focus_main(self) -> None:
        self.focus()

    def set_crumb(self, text: Text) -> None:
        """Update the crumb line only when it changed: every repaint is bytes on an SSH link."""
        crumb = self.query_one("#crumb", Static)
        key = (text.plain, tuple(text.spans))
        if getattr(crumb, "_crumb_key", None) != key:
            crumb._crumb_key = key  # type: ignore[attr-defined]
            crumb.update(text)

    def refresh_ages(self) -> None:
        """Repaint what shows relative times; views with a table override nothing else."""
        for table in self.query("VirtualTable"):
            table.refresh()


class TableView(View):
    """A view around one VirtualTable: focus goes to it, `/` filters it by text."""

    HAS_FILTER = True
    filter_text = ""

    @property
    def table(self) -> Any:
        from otelcockpit.tui.vtable import VirtualTable

        return self.query_one(VirtualTable)

    def focus_main(self) -> None:
        self.table.focus()

    def apply_filter(self, text: str) -> str | None:
        self.filter_text = text.strip()
        if self.filter_text:
            self.table.set_text_filter(self.filter_text)
        else:
            self.table.set_filter(None)
        self.table.cursor_to_first()
        return None


class GroupingMixin:
    """`g` on a table view: pick an attribute, show a group table instead of the rows; `g` again
    (or esc) goes back. Subclasses set GROUP_KEYS, GROUP_TITLE and GROUPS_ID and fill the groups."""

    GROUP_KEYS: ClassVar[tuple[str, ...]] = ()
    GROUP_TITLE: ClassVar[str] = "Group by"
    GROUPS_ID: ClassVar[str] = "groups"
    group_key: str | None = None

    def groups_table(self) -> Any:
        return self.query_one(f"#{self.GROUPS_ID}")  # type: ignore[attr-defined]

    def focus_main(self) -> None:
        (self.groups_table() if self.group_key else self.table).focus()  # type: ignore[attr-defined]

    def action_group(self) -> None:
        from otelcockpit.tui.fleet_view import GroupPicker

        if self.group_key:
            self.group_key = None
            self.remove_class("-grouped")  # type: ignore[attr-defined]
            self.update_crumb()  # type: ignore[attr-defined]
            self.table.focus()  # type: ignore[attr-defined]
            return

        def chosen(key: str | None) -> None:
            if key:
                self.group_key = key
                self.add_class("-grouped")  # type: ignore[attr-defined]
                self._fill_groups()
                self.update_crumb()  # type: ignore[attr-defined]
                self.groups_table().focus()

        self.app.push_screen(GroupPicker(list(self.GROUP_KEYS), title=self.GROUP_TITLE), chosen)  # type: ignore[attr-defined]

    def _fill_groups(self) -> None:  # pragma: no cover - every subclass fills its own
        raise NotImplementedError
