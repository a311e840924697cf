"""What every collector really runs, against what the control plane assigns it: its config state.

One function decides, for every backend, from what the backend reports (:class:`RemoteConfig` and
:class:`ConfigReport`):

* ``in sync``: it runs the assigned config (its effective config is the assigned one, byte for byte
  or in substance; or, when it reports no effective config, its remote config status says it
  applied the assigned hash);
* ``drifted``: it reports an effective config other than the assigned one while it says it applied
  the assigned one (or it runs a remote config nothing assigns it any more); the reason says what
  differs;
* ``on fallback``: it runs its local (bootstrap) config: it never applied a remote config since it
  started (it could not reach the fleet API, nothing is assigned to it, or it cannot take a remote
  config at all);
* ``on cached remote``: it runs a remote config it applied earlier (its persisted cache), not the
  assigned one;
* ``unknown``: the backend cannot tell (Fleet Management's v1 API, an agent that reports neither
  its effective config nor its remote config status); the reason says why. Never a guess.

:func:`compare_files` is how a backend that holds both texts (the OpAMP server, the demo) says how
an effective config differs from the assigned one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from otelcockpit.fleet.model import Collector, ConfigReport, ConfigStatus, RemoteConfig


class ConfigState(StrEnum):
    IN_SYNC = "in sync"
    DRIFTED = "drifted"
    FALLBACK = "on fallback"
    CACHED = "on cached remote"
    UNKNOWN = "unknown"


CONFIG_STATE_ORDER = (
    ConfigState.DRIFTED,
    ConfigState.FALLBACK,
    ConfigState.CACHED,
    ConfigState.UNKNOWN,
    ConfigState.IN_SYNC,
)
# One glyph per state, so a state never rests on colour alone.
CONFIG_STATE_GLYPH = {
    ConfigState.IN_SYNC: "=",
    ConfigState.DRIFTED: "≠",
    ConfigState.FALLBACK: "↓",
    ConfigState.CACHED: "↺",
    ConfigState.UNKNOWN: "?",
}
# Short forms for narrow columns.
CONFIG_STATE_SHORT = {
    ConfigState.IN_SYNC: "in sync",
    ConfigState.DRIFTED: "drifted",
    ConfigState.FALLBACK: "fallback",
    ConfigState.CACHED: "cached",
    ConfigState.UNKNOWN: "unknown",
}
# The states in which a collector runs something other than what it is assigned.
OFF_ASSIGNMENT = frozenset({ConfigState.DRIFTED, ConfigState.FALLBACK, ConfigState.CACHED})


@dataclass(frozen=True, slots=True)
class StateView:
    state: ConfigState
    reason: str

    @property
    def text(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value

    def as_json(self) -> dict[str, str]:
        return {"state": self.state.value, "reason": self.reason}


def _short(h: str) -> str:
    return h[:12] if h else "-"


def _name(label: str, h: str) -> str:
    return label or f"config {_short(h)}"


@lru_cache(maxsize=4096)
def config_state(rc: RemoteConfig, rep: ConfigReport) -> StateView:
    """The config state from what a backend reports (pure; cached: snapshots share these objects)."""
    if rep.unknown:
        return StateView(ConfigState.UNKNOWN, rep.unknown)
    if not rep.accepts_remote:
        return StateView(ConfigState.FALLBACK, "it does not accept a remote config: it runs its local config")
    status, reported, assigned = rc.status, rc.hash, rc.assigned
    eff = rep.effective_hash
    applied = status == ConfigStatus.APPLIED and bool(reported)
    reported_name = _name(rep.reported_label, reported)
    if not assigned:
        if eff and rep.effective_label:
            return StateView(ConfigState.DRIFTED, f"it runs {rep.effective_label}, but no config is assigned to it")
        if not eff and applied:
            return StateView(ConfigState.DRIFTED, f"it reports {reported_name} APPLIED, but no config is assigned to it")
        if not eff and not rep.reports_status:
            return StateView(
                ConfigState.UNKNOWN, "nothing is assigned to it, and it reports neither its effective config nor a status"
            )
        return StateView(ConfigState.FALLBACK, "no config is assigned to it: it runs its local config")
    a_name = _name(rep.assigned_label, assigned)
    note = ""
    if status == ConfigStatus.APPLYING and reported == assigned:
        note = f"; it is applying {a_name}"
    elif status == ConfigStatus.FAILED and reported == assigned:
        note = f"; {a_name} FAILED to apply" + (f" ({rc.error})" if rc.error else "")
    if rep.held:
        note += f"; {a_name} is not sent to it: {rep.held}"
    if eff:
        if eff == assigned:
            return StateView(ConfigState.IN_SYNC, f"it runs {a_name}")
        if rep.effective_label:
            return StateView(
                ConfigState.CACHED, f"it runs {rep.effective_label}, a remote config it applied earlier; assigned {a_name}{note}"
            )
        if rep.equivalent:
            return StateView(
                ConfigState.IN_SYNC, f"it runs {a_name} (its effective config says the same in another form)"
            )
        what = "; ".join(rep.differs[:3])
        differs = f" ({what})" if what else ""
        if status == ConfigStatus.UNSET or not reported:
            return StateView(
                ConfigState.FALLBACK,
                f"it runs its local bootstrap config: no remote config applied since it started; assigned {a_name}{note}",
            )
        if applied and reported == assigned:
            return StateView(
                ConfigState.DRIFTED, f"it reports {a_name} APPLIED, but its effective config differs{differs}"
            )
        if applied:
            return StateView(
                ConfigState.DRIFTED,
                f"it reports {reported_name} APPLIED (assigned {a_name}), and its effective config is neither{differs}",
            )
        return StateView(
            ConfigState.FALLBACK,
            f"its effective config is no remote config (its bootstrap config){note or '; assigned ' + a_name}",
        )
    # No effective config reported: the remote config status is all there is.
    if not rep.reports_status:
        return StateView(ConfigState.UNKNOWN, "it reports neither its effective config nor a remote config status")
    if applied and reported == assigned:
        return StateView(ConfigState.IN_SYNC, f"it reports {a_name} APPLIED (it reports no effective config)")
    if applied:
        return StateView(
            ConfigState.CACHED, f"it reports {reported_name} APPLIED, a remote config it applied earlier; assigned {a_name}{note}"
        )
    if status == ConfigStatus.UNSET or not reported:
        return StateView(
            ConfigState.FALLBACK,
            f"it has applied no remote config (status unset): it runs its local config; assigned {a_name}{note}",
        )
    if status == ConfigStatus.APPLYING:
        why = f"it is applying {reported_name} and reports no effective config"
    elif status == ConfigStatus.FAILED:
        why = f"{reported_name} FAILED to apply" + (f" ({rc.error})" if rc.error else "") + " and it reports no effective config"
    else:
        why = f"it reports {reported_name} {status.value.upper()} and no effective config"
    return StateView(ConfigState.UNKNOWN, f"{why}: what runs is not known; assigned {a_name}")


def collector_state(c: Collector) -> StateView:
    return config_state(c.remote_config, c.config_report)


def came_up_state(c: Collector) -> StateView | None:
    """The state it was in when it last (re)started, where the backend recorded it."""
    if c.came_up is None:
        return None
    return config_state(c.came_up.remote_config, c.came_up.report)


def state_counts(collectors: Iterable[Collector]) -> dict[str, int]:
    """How many collectors are in each state (every state present, in CONFIG_STATE_ORDER)."""
    counts: Counter[ConfigState] = Counter(collector_state(c).state for c in collectors)
    return {s.value: counts.get(s, 0) for s in CONFIG_STATE_ORDER}


# ---- comparing an effective config with the assigned one ---------------------------------------------

# What an OpAMP supervisor adds to the config it is given (its own extension, health checks, its
# telemetry settings): these never count as a difference.
SUPERVISOR_PATHS = ("extensions", "service.extensions", "service.telemetry")
MAX_DIFFS = 5


def _parse(body: str, content_type: str, name: str) -> Any:
    """A file as data: JSON or YAML parsed; anything else (Alloy) as its significant lines."""
    ct = (content_type or "").lower()
    lower = name.lower()
    if "json" in ct or lower.endswith(".json"):
        try:
            return json.loads(body or "null")
        except ValueError:
            return _lines(body)
    if "yaml" in ct or lower.endswith((".yaml", ".yml")) or (not ct and not lower.endswith((".alloy", ".river"))):
        import yaml

        try:
            return yaml.safe_load(body)
        except yaml.YAMLError:
            return _lines(body)
    return _lines(body)


class _Lines(tuple):  # type: ignore[type-arg]
    """A text compared by its significant lines."""


def _lines(body: str) -> _Lines:
    out = []
    for line in body.splitlines():
        s = line.strip()
        if s and not s.startswith(("//", "#")):
            out.append(s)
    return _Lines(out)


def _merge(a: Any, b: Any) -> Any:
    """Deep merge (maps merged key by key, the later value wins otherwise), the supervisor's way."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    return b


def _merged(files: Mapping[str, Any]) -> Any:
    doc: Any = None
    lines: list[str] = []
    for name in sorted(files):
        f = files[name]
        body, ct = (f[0], f[1]) if isinstance(f, tuple) else (str(f), "")
        data = _parse(body, ct, name)
        if isinstance(data, _Lines):
            lines.extend(data)
        elif data is not None:
            doc = data if doc is None else _merge(doc, data)
    if lines:
        return _Lines(lines) if doc is None else {"": doc, "#lines": _Lines(lines)}
    return doc


def _text(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else str(v)
    return s if len(s) <= 60 else s[:59] + "…"


def _allowed(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in SUPERVISOR_PATHS)


def _diff(a: Any, e: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(e, dict):
        for k in a:
            sub = f"{path}.{k}" if path else str(k)
            if k not in e:
                if not _allowed(sub):
                    out.append(f"{sub} is missing")
            else:
                _diff(a[k], e[k], sub, out)
        for k in e:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a and not _allowed(sub):
                out.append(f"{sub} is added")
        return
    if isinstance(a, list) and isinstance(e, list) and not _allowed(path):
        if all(not isinstance(x, dict | list) for x in [*a, *e]):
            for x in a:
                if x not in e:
                    out.append(f"{path} lacks {_text(x)}")
            for x in e:
                if x not in a:
                    out.append(f"{path} adds {_text(x)}")
            return
    if isinstance(a, _Lines) and isinstance(e, _Lines):
        missing = [x for x in a if x not in e]
        added = [x for x in e if x not in a]
        for x in missing[:2]:
            out.append(f"line '{_text(x)}' is missing")
        for x in added[:2]:
            out.append(f"line '{_text(x)}' is added")
        if len(missing) + len(added) > 4:
            out.append(f"{len(missing)} line(s) missing, {len(added)} added in all")
        return
    if a != e and not _allowed(path):
        out.append(f"{path or 'the config'}: assigned {_text(a)}, runs {_text(e)}")


def compare_files(assigned: Mapping[str, Any], effective: Mapping[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """(equivalent, what differs) between an assigned config and an effective one. Files are
    name -> body or (body, content type); several files are merged in name order (as the OpAMP
    supervisor merges remote files). Equivalent: the same settings once parsed, apart from what a
    supervisor adds (:data:`SUPERVISOR_PATHS`)."""
    out: list[str] = []
    _diff(_merged(assigned), _merged(effective), "", out)
    return (not out, tuple(out[:MAX_DIFFS]) + ((f"and {len(out) - MAX_DIFFS} more",) if len(out) > MAX_DIFFS else ()))
