"""Small rendering helpers shared by views: health glyphs, status words, diffs."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rich.text import Text

from otelcockpit.fleet.configstate import CONFIG_STATE_GLYPH, CONFIG_STATE_SHORT, ConfigState, collector_state
from otelcockpit.fleet.model import Collector, ConfigStatus, Health

# Glyph and word together: status never rests on colour alone (NO_COLOR, colour-blind users).
HEALTH_GLYPH = {
    Health.HEALTHY: "●",
    Health.DEGRADED: "◐",
    Health.UNHEALTHY: "✖",
    Health.OFFLINE: "○",
    Health.UNKNOWN: "?",
}
HEALTH_CLASS = {
    Health.HEALTHY: "vtable--healthy",
    Health.DEGRADED: "vtable--degraded",
    Health.UNHEALTHY: "vtable--unhealthy",
    Health.OFFLINE: "vtable--offline",
    Health.UNKNOWN: "vtable--unknown",
}
CONFIG_CLASS = {
    ConfigStatus.FAILED: "vtable--error",
    ConfigStatus.APPLYING: "vtable--accent",
    ConfigStatus.UNSET: "vtable--dim",
    ConfigStatus.APPLIED: None,
}
# What a collector runs (its config state): glyph and word, like health.
STATE_CLASS = {
    ConfigState.IN_SYNC: None,
    ConfigState.DRIFTED: "vtable--error",
    ConfigState.FALLBACK: "vtable--degraded",
    ConfigState.CACHED: "vtable--accent",
    ConfigState.UNKNOWN: "vtable--dim",
}


def runs_cell(c: Collector) -> tuple[str, str | None]:
    """The RUNS column: the state's short word (``drifted``, ``fallback``, ``cached``, ``in sync``)."""
    state = collector_state(c).state
    return CONFIG_STATE_SHORT[state], STATE_CLASS[state]


def runs_glyph(c: Collector) -> str:
    return CONFIG_STATE_GLYPH[collector_state(c).state]


def words(state: str) -> str:
    """A state as people write it: ``rolled_back`` -> ``rolled back``."""
    return state.replace("_", " ")


def diff_text(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> Text:
    """A unified diff of two texts, styled (+ green, - red, @@ cyan)."""
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm="", n=context
        )
    )
    return unified_text(lines)


def unified_text(lines: list[str]) -> Text:
    """Lines of a unified diff, styled."""
    out = Text()
    if not lines:
        out.append("no differences", style="dim")
        return out
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        out.append(line + "\n", style=style)
    return out


def kv_lines(items: Iterable[tuple[str, str]], key_width: int = 22) -> Text:
    out = Text()
    for k, v in items:
        out.append(f"{k:<{key_width}} ", style="bold")
        out.append(f"{v}\n")
    return out
