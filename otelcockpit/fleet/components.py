"""Component names, the one spelling the pre-flight compares: ``kind:type`` (``receiver:otlp``,
``exporter:kafka``) for OpenTelemetry Collector components, the component name for Alloy
(``otelcol.exporter.otlp``).

OpAMP AvailableComponents is a map of kinds (``receivers``, ``processors``, ``exporters``,
``extensions``, ``connectors``), each with a sub-component map keyed by the component type
(OpAMP spec; the collector's opamp extension fills it that way). :func:`names_from_tree` turns that
tree, however a backend decoded it, into the names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SINGULAR = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "extensions": "extension",
    "connectors": "connector",
}


def names_from_tree(tree: Mapping[str, Iterable[str]] | Mapping[str, Any]) -> frozenset[str]:
    """``{"receivers": ["otlp", ...], ...}`` (or a mapping per kind) as ``{"receiver:otlp", ...}``; a
    kind without sub-components counts as a name itself."""
    out: set[str] = set()
    for kind, subs in tree.items():
        singular = SINGULAR.get(str(kind), str(kind))
        names = list(subs) if subs else []
        if names:
            out.update(f"{singular}:{n}" for n in names)
        else:
            out.add(str(kind))
    return frozenset(out)


def missing(needs: Iterable[str], available: frozenset[str] | None) -> tuple[str, ...]:
    """What of ``needs`` an agent lacks (sorted); () when it has all, or does not say (None)."""
    if available is None:
        return ()
    return tuple(sorted(n for n in needs if n not in available))
