"""The one action registry. Every key the cockpit binds is declared here.

Mutating actions carry ``dangerous=True``. In read-only mode the TUI does not run them, does not
show them in the footer, the help screen or the command palette, and the backend wrapper
refuses writes as a second guard. The CLI and the TUI share this list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    id: str  # stable id, also the Textual binding id
    key: str  # Textual key spec, e.g. "ctrl+r"
    action: str  # Textual action string on the scope's node
    description: str
    scope: str  # "app", "fleet", "pipelines", "detail", ...
    dangerous: bool = False
    show: bool = True  # shown in the footer
    key_display: str | None = None


ACTIONS: tuple[ActionSpec, ...] = (
    # --- everywhere -----------------------------------------------------------------------------
    ActionSpec("help", "question_mark", "help", "Help", "app", key_display="?"),
    ActionSpec("command", "colon", "command_line", "Command", "app", key_display=":"),
    ActionSpec("filter", "slash", "filter", "Filter", "app", key_display="/"),
    ActionSpec("back", "escape", "back", "Back", "app", show=False),
    ActionSpec("refresh", "ctrl+r", "refresh", "Refresh", "app", show=False),
    ActionSpec("pause", "p", "toggle_pause", "Pause", "app"),
    ActionSpec("quit", "q", "quit", "Quit", "app", show=False),
    ActionSpec("view-cockpit", "0", "view('cockpit')", "Cockpit", "app", show=False),
    ActionSpec("view-fleet", "1", "view('fleet')", "Fleet", "app", show=False),
    ActionSpec("view-pipelines", "2", "view('pipelines')", "Pipelines", "app", show=False),
    ActionSpec("view-services", "3", "view('services')", "Services", "app", show=False),
    ActionSpec("view-phases", "4", "view('phases')", "Phases", "app", show=False),
    # --- fleet view -----------------------------------------------------------------------------
    ActionSpec("open-collector", "enter", "open", "Detail", "fleet"),
    ActionSpec("group", "g", "group", "Group", "fleet"),
    ActionSpec("toggle-collector", "e", "toggle_enabled", "On/off", "fleet", dangerous=True),
    ActionSpec("set-attribute", "a", "set_attribute", "Set attribute", "fleet", dangerous=True, show=False),
    # --- pipelines view -------------------------------------------------------------------------
    ActionSpec("open-pipeline", "enter", "open", "Detail", "pipelines"),
    ActionSpec("toggle-pipeline", "e", "toggle_enabled", "On/off", "pipelines", dangerous=True),
    # --- services view --------------------------------------------------------------------------
    ActionSpec("open-service", "enter", "open", "Detail", "services"),
    ActionSpec("group-services", "g", "group", "Group", "services"),
    # --- phases view ----------------------------------------------------------------------------
    ActionSpec("signoff", "s", "signoff", "Sign off", "phases", dangerous=True),
    # --- pipeline detail ------------------------------------------------------------------------
    ActionSpec("diff-revisions", "d", "diff", "Diff", "pipeline-detail"),
    ActionSpec("rollback-pipeline", "R", "rollback", "Roll back", "pipeline-detail", dangerous=True),
)

BY_ID = {a.id: a for a in ACTIONS}


def for_scope(scope: str, *, read_only: bool) -> list[ActionSpec]:
    return [a for a in ACTIONS if a.scope == scope and not (read_only and a.dangerous)]


def dangerous_actions(scope: str) -> frozenset[str]:
    """Action names (without arguments) that mutate, for ``check_action``."""
    return frozenset(a.action.split("(")[0] for a in ACTIONS if a.scope == scope and a.dangerous)
