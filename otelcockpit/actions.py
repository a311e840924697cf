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
    ActionSpec("view-rollouts", "5", "view('rollouts')", "Rollouts", "app", show=False),
    # --- fleet view -----------------------------------------------------------------------------
    ActionSpec("open-collector", "enter", "open", "Detail", "fleet"),
    ActionSpec("group", "g", "group", "Group", "fleet"),
    ActionSpec("sort", "s", "sort", "Sort", "fleet"),
    ActionSpec("toggle-collector", "e", "toggle_enabled", "On/off", "fleet", dangerous=True),
    ActionSpec("set-attribute", "a", "set_attribute", "Set attribute", "fleet", dangerous=True, show=False),
    # --- pipelines view -------------------------------------------------------------------------
    ActionSpec("open-pipeline", "enter", "open", "Detail", "pipelines"),
    ActionSpec("toggle-pipeline", "e", "toggle_enabled", "On/off", "pipelines", dangerous=True),
    ActionSpec("push-pipeline", "u", "push", "Staged push", "pipelines", dangerous=True),
    # --- services view --------------------------------------------------------------------------
    ActionSpec("open-service", "enter", "open", "Detail", "services"),
    ActionSpec("group-services", "g", "group", "Group", "services"),
    # --- phases view ----------------------------------------------------------------------------
    ActionSpec("signoff", "s", "signoff", "Sign off", "phases", dangerous=True),
    # --- pipeline detail ------------------------------------------------------------------------
    ActionSpec("diff-revisions", "d", "diff", "Diff", "pipeline-detail"),
    ActionSpec("rollback-pipeline", "R", "rollback", "Roll back", "pipeline-detail", dangerous=True),
    # --- incident view (always read-only; copying a command to the clipboard is not a mutation) ---
    ActionSpec("incident-copy", "y", "copy_rollback", "Copy rollback cmd", "incident"),
    ActionSpec("incident-copy-c", "c", "copy_rollback", "Copy rollback cmd", "incident", show=False),
    ActionSpec("incident-open", "enter", "open", "Open", "incident"),
    # --- cockpit: the places and the changed pipelines are a list ---------------------------------
    ActionSpec("cockpit-open", "enter", "open", "Open", "cockpit"),
    ActionSpec("cockpit-copy", "y", "copy_rollback", "Copy rollback cmd", "cockpit"),
    # --- changes view ---------------------------------------------------------------------------
    ActionSpec("changes-open", "enter", "open", "Pipeline", "changes"),
    ActionSpec("changes-copy", "y", "copy_rollback", "Copy rollback cmd", "changes"),
    # --- walkthrough (presenter keys) -------------------------------------------------------------
    ActionSpec("walkthrough-next", "n", "next", "Next", "walkthrough"),
    ActionSpec("walkthrough-prev", "p", "prev", "Previous", "walkthrough"),
    ActionSpec("walkthrough-next-right", "right", "next", "Next", "walkthrough", show=False),
    ActionSpec("walkthrough-prev-left", "left", "prev", "Previous", "walkthrough", show=False),
    ActionSpec("walkthrough-next-space", "space", "next", "Next", "walkthrough", show=False),
    ActionSpec("walkthrough-phase-1", "1", "phase(1)", "Phase 1", "walkthrough", show=False),
    ActionSpec("walkthrough-phase-2", "2", "phase(2)", "Phase 2", "walkthrough", show=False),
    ActionSpec("walkthrough-phase-3", "3", "phase(3)", "Phase 3", "walkthrough", show=False),
    ActionSpec("walkthrough-phase-4", "4", "phase(4)", "Phase 4", "walkthrough", show=False),
    ActionSpec("walkthrough-first", "home", "first", "First", "walkthrough", show=False),
    ActionSpec("walkthrough-pause", "P", "app.toggle_pause", "Pause", "walkthrough", show=False),
    ActionSpec("push-pipeline-detail", "u", "push", "Staged push", "pipeline-detail", dangerous=True),
    # --- rollouts view and one rollout ---------------------------------------------------------
    ActionSpec("open-rollout", "enter", "open", "Detail", "rollouts"),
    ActionSpec("pause-rollout", "P", "pause_rollout", "Pause rollout", "rollout", dangerous=True),
    ActionSpec("resume-rollout", "r", "resume_rollout", "Resume rollout", "rollout", dangerous=True),
    ActionSpec("abort-rollout", "A", "abort_rollout", "Abort rollout", "rollout", dangerous=True),
    ActionSpec("rollback-rollout", "B", "rollback_rollout", "Roll back rollout", "rollout", dangerous=True),
)

BY_ID = {a.id: a for a in ACTIONS}


def for_scope(scope: str, *, read_only: bool) -> list[ActionSpec]:
    return [a for a in ACTIONS if a.scope == scope and not (read_only and a.dangerous)]


def dangerous_actions(scope: str) -> frozenset[str]:
    """Action names (without arguments) that mutate, for ``check_action``."""
    return frozenset(a.action.split("(")[0] for a in ACTIONS if a.scope == scope and a.dangerous)
