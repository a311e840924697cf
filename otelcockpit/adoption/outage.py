"""The fleet-API outage, as the cockpit reports it: one function every face calls.

During a scale-out the fleet API (Fleet Management, an OpAMP server) may be away; the collectors that
start meanwhile run whatever they start with: a remote config they cached earlier, or their local
bootstrap config, which often sends far more than the managed one. :func:`outage_report` says, from
one snapshot:

* whether the API is up, and how old the data is (a stale snapshot: the API is down, pushes refused);
* how many collectors are in each config state now (:mod:`otelcockpit.fleet.configstate`);
* how many came up during the outage window on their fallback (bootstrap) config or on a cached
  remote config (from what each reported when it started), and how many of those still run it;
* what those configs export compared with the managed ones (:mod:`otelcockpit.policy.exports`),
  one group per config they came up on;
* whether they have converged (none of them still off its assignment).

The texts of the configs compared come from the backend (``texts``: config hash -> text); a group
without its texts says so instead of guessing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from otelcockpit.fleet.configstate import (
    CONFIG_STATE_ORDER,
    ConfigState,
    came_up_state,
    collector_state,
)
from otelcockpit.fleet.model import Collector, CollectorType, FleetSnapshot, Health, age_text, rfc3339

BOOTSTRAP_LABEL = "their bootstrap config"
OFF = (ConfigState.FALLBACK, ConfigState.CACHED)


@dataclass(frozen=True)
class ExportGroup:
    """The collectors that came up on one config, and what it exports against the managed one."""

    runs: str  # what they came up on: "its bootstrap config", "gateway@v1"
    state: ConfigState  # on fallback | on cached remote
    collectors: int
    still: int  # of them, still running it now
    assigned: str  # what is assigned to them
    compared: tuple[str, ...] = ()  # "exports every span (the managed config: 10%), 10x the spans"
    note: str = ""  # why there is no comparison, when there is none
    runs_exports: Mapping[str, Any] | None = None
    managed_exports: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "state": self.state.value,
            "collectors": self.collectors,
            "still": self.still,
            "assigned": self.assigned,
            "compared": list(self.compared),
            "note": self.note,
            "exports": dict(self.runs_exports) if self.runs_exports else None,
            "managed_exports": dict(self.managed_exports) if self.managed_exports else None,
        }


@dataclass(frozen=True)
class OutageReport:
    backend: str
    api: str  # "up" | "down"
    api_reason: str
    data_age: str  # age of the data (of the last good data while the API is down)
    fetched_at: datetime
    refuses_pushes: bool
    since: datetime | None  # the outage window the came-up counts look at (None: no window, no counts)
    until: datetime | None
    collectors: int
    online: int
    states: Mapping[str, int]  # every collector, by config state now
    came_up: Mapping[str, int]  # came up in the window, by the state they came up in
    still: Mapping[str, int]  # of those that came up off their assignment, how many still are
    groups: tuple[ExportGroup, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def came_up_off(self) -> int:
        return sum(self.came_up.get(s.value, 0) for s in OFF)

    @property
    def still_off(self) -> int:
        return sum(self.still.values())

    @property
    def converged(self) -> bool:
        """Every collector that came up off its assignment in the window runs it now."""
        return self.api == "up" and self.still_off == 0

    def lines(self) -> list[str]:
        """The report in sentences: what the CLI prints and the walkthrough shows."""
        out = []
        if self.api == "down":
            age = "" if " old" in self.api_reason else f" (data {self.data_age} old)"
            out.append(f"fleet API DOWN: {self.api_reason}{age}; pushes are refused")
        else:
            out.append(f"fleet API up (data {self.data_age} old)")
        states = ", ".join(f"{n} {s}" for s, n in self.states.items() if n)
        out.append(f"{self.collectors} collector(s), {self.online} online: {states or 'none'}")
        if self.since is None:  # no outage window: nothing came up "during" one
            return out
        window = f" between {rfc3339(self.since)} and {rfc3339(self.until) if self.until else 'now'}"
        fb = self.came_up.get(ConfigState.FALLBACK.value, 0)
        cached = self.came_up.get(ConfigState.CACHED.value, 0)
        total = sum(self.came_up.values())
        out.append(
            f"{total} collector(s) came up{window}: {fb} on their fallback (bootstrap) config, "
            f"{cached} on a cached remote config, {total - fb - cached} on their assigned config"
        )
        if self.came_up_off:
            if self.converged:
                out.append(f"all {self.came_up_off} of them have converged on their assigned config")
            else:
                still = ", ".join(f"{n} {s}" for s, n in self.still.items() if n)
                out.append(f"{self.still_off} of them still run it ({still})")
        for g in self.groups:
            head = f"{g.collectors} came up on {g.runs} ({g.still} still), assigned {g.assigned}"
            if g.compared:
                out.append(f"{head}: it " + "; ".join(g.compared))
            elif g.note:
                out.append(f"{head}: {g.note}")
            else:
                out.append(f"{head}: it sends no more than the managed config")
        out.extend(self.notes)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "api": self.api,
            "api_reason": self.api_reason,
            "data_age": self.data_age,
            "fetched_at": rfc3339(self.fetched_at),
            "refuses_pushes": self.refuses_pushes,
            "since": rfc3339(self.since),
            "until": rfc3339(self.until),
            "collectors": self.collectors,
            "online": self.online,
            "states": dict(self.states),
            "came_up": dict(self.came_up),
            "still": dict(self.still),
            "converged": self.converged,
            "groups": [g.as_json() for g in self.groups],
            "lines": self.lines(),
        }


def in_window(c: Collector, since: datetime | None, until: datetime | None) -> bool:
    """It came up in the outage window (none without a window: only an outage gives one)."""
    up = c.came_up
    if up is None or up.at is None or since is None:
        return False
    return up.at >= since and (until is None or up.at <= until)


def came_up_off(collectors: Iterable[Collector], since: datetime | None, until: datetime | None = None) -> list[Collector]:
    """The collectors that came up in the window on their fallback or a cached remote config."""
    out = []
    for c in collectors:
        if in_window(c, since, until):
            st = came_up_state(c)
            if st is not None and st.state in OFF:
                out.append(c)
    return out


def group_key(c: Collector) -> tuple[str, str]:
    """(hash of what it came up on, hash of what was assigned then)."""
    assert c.came_up is not None
    return c.came_up.report.effective_hash, c.came_up.remote_config.assigned


def outage_report(
    snap: FleetSnapshot,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    texts: Mapping[str, str] | None = None,
) -> OutageReport:
    """The outage as the cockpit shows it (see the module doc). ``texts``: config hash -> text, for the
    configs the off-assignment collectors came up on and the ones assigned to them."""
    from otelcockpit.policy.exports import ExportsError, compare, exports

    texts = texts or {}
    collectors = snap.collectors
    states: Counter[str] = Counter(collector_state(c).state.value for c in collectors)
    came: Counter[str] = Counter()
    still: Counter[str] = Counter()
    groups: dict[tuple[str, str], list[Collector]] = {}
    for c in collectors:
        if not in_window(c, since, until):
            continue
        st = came_up_state(c)
        if st is None:
            continue
        came[st.state.value] += 1
        if st.state in OFF:
            groups.setdefault(group_key(c), []).append(c)
            now_state = collector_state(c).state
            if now_state in OFF:
                still[now_state.value] += 1
    out_groups = []
    for (runs_hash, assigned_hash), members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        first = members[0]
        assert first.came_up is not None
        up_state = came_up_state(first)
        assert up_state is not None
        runs = first.came_up.report.effective_label or (
            BOOTSTRAP_LABEL if up_state.state == ConfigState.FALLBACK else f"config {runs_hash[:12]}"
        )
        assigned = first.came_up.report.assigned_label or f"config {assigned_hash[:12]}"
        n_still = sum(1 for m in members if collector_state(m).state in OFF)
        ctype = "alloy" if first.type == CollectorType.ALLOY else "otel"
        runs_text, managed_text = texts.get(runs_hash), texts.get(assigned_hash)
        if runs_text is None or managed_text is None:
            missing = "the config they came up on" if runs_text is None else "the managed config"
            out_groups.append(
                ExportGroup(runs, up_state.state, len(members), n_still, assigned, note=f"{missing} is not known here: not compared")
            )
            continue
        try:
            r, m = exports(runs_text, ctype), exports(managed_text, ctype)
        except ExportsError as exc:
            out_groups.append(
                ExportGroup(runs, up_state.state, len(members), n_still, assigned, note=f"cannot read it to compare: {exc.message}")
            )
            continue
        out_groups.append(
            ExportGroup(runs, up_state.state, len(members), n_still, assigned, tuple(compare(r, m)), "", r.as_json(), m.as_json())
        )
    return OutageReport(
        backend=snap.backend,
        api="down" if snap.stale else "up",
        api_reason=snap.stale_reason or snap.health.message,
        data_age=age_text(snap.fetched_at, now),
        fetched_at=snap.fetched_at,
        refuses_pushes=snap.stale,
        since=since,
        until=until,
        collectors=len(collectors),
        online=sum(1 for c in collectors if c.health != Health.OFFLINE),
        states={s.value: states.get(s.value, 0) for s in CONFIG_STATE_ORDER},
        came_up={s.value: came.get(s.value, 0) for s in CONFIG_STATE_ORDER},
        still={s.value: still.get(s.value, 0) for s in OFF},
        groups=tuple(out_groups),
    )


def hashes_to_compare(collectors: Sequence[Collector], since: datetime | None, until: datetime | None = None) -> dict[str, str]:
    """The config hashes :func:`outage_report` wants texts for, each with a collector that knows it
    (what it came up on; what was assigned to it)."""
    out: dict[str, str] = {}
    for c in came_up_off(collectors, since, until):
        runs, assigned = group_key(c)
        out.setdefault(runs, c.id)
        out.setdefault(assigned, c.id)
    out.pop("", None)
    return out


# ---- a drill's record (what the walkthrough's slide is built from) ---------------------------------


@dataclass(frozen=True)
class DrillStep:
    name: str  # "steady", "api down", "scale-out", "api back", "converged"
    at_seconds: float  # since the drill started
    what: str  # what the drill did, in words
    report: Mapping[str, Any]  # OutageReport.as_json() at that step
    expected: Mapping[str, int] = field(default_factory=dict)  # what the drill caused, to compare
    observed: Mapping[str, int] = field(default_factory=dict)  # what the cockpit counted
    refused: str = ""  # the refusal of a push tried at this step

    @property
    def exact(self) -> bool:
        return all(self.observed.get(k) == v for k, v in self.expected.items())

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "at_seconds": round(self.at_seconds, 1),
            "what": self.what,
            "expected": dict(self.expected),
            "observed": dict(self.observed),
            "exact": self.exact,
            "refused": self.refused,
            "report": dict(self.report),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DrillStep:
        return cls(
            str(d.get("name", "")),
            float(d.get("at_seconds", 0)),
            str(d.get("what", "")),
            dict(d.get("report") or {}),
            {str(k): int(v) for k, v in (d.get("expected") or {}).items()},
            {str(k): int(v) for k, v in (d.get("observed") or {}).items()},
            str(d.get("refused", "")),
        )


@dataclass(frozen=True)
class DrillRecord:
    """One run of the outage drill: where it ran, with what, and what the cockpit saw at each step."""

    backend: str  # "demo" | "serve"
    started_at: datetime
    parameters: Mapping[str, Any]
    steps: tuple[DrillStep, ...]
    converged_after_seconds: float | None  # from the API's return to every collector on its assignment

    @property
    def exact(self) -> bool:
        return all(s.exact for s in self.steps)

    def step(self, name: str) -> DrillStep | None:
        return next((s for s in self.steps if s.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "drill": "outage",
            "backend": self.backend,
            "started_at": rfc3339(self.started_at),
            "parameters": dict(self.parameters),
            "exact": self.exact,
            "converged_after_seconds": self.converged_after_seconds,
            "steps": [s.as_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DrillRecord:
        from otelcockpit.fleet.model import parse_time

        started = parse_time(d.get("started_at"))
        if started is None:
            raise ValueError("a drill record needs started_at")
        conv = d.get("converged_after_seconds")
        return cls(
            str(d.get("backend", "")),
            started,
            dict(d.get("parameters") or {}),
            tuple(DrillStep.from_json(s) for s in d.get("steps") or ()),
            float(conv) if conv is not None else None,
        )

    def summary(self) -> list[str]:
        """The drill in a few sentences (the walkthrough's slide, the end of the command's output)."""
        p = self.parameters
        back = self.step("api back")
        out = [
            f"Drill on {self.backend} ({rfc3339(self.started_at)}): the fleet API was away for "
            f"{p.get('outage_seconds', '?')}s while {p.get('scale_out', '?')} collector(s) started "
            f"({p.get('collectors', '?')} running before)."
        ]
        if back is not None:
            came = back.report.get("came_up") or {}
            out.append(
                f"When it returned: {came.get(ConfigState.FALLBACK.value, 0)} had come up on their bootstrap config, "
                f"{came.get(ConfigState.CACHED.value, 0)} on a cached older remote config."
            )
            for g in back.report.get("groups") or ():
                what = "; ".join(g.get("compared") or ()) or g.get("note") or "no heavier than the managed config"
                out.append(f"{g.get('collectors')} on {g.get('runs')}: {what}.")
        if self.converged_after_seconds is not None:
            out.append(f"All converged on their assigned config {self.converged_after_seconds:.0f}s after the API returned.")
        else:
            out.append("They had not all converged when the drill ended.")
        out.append("Counts exact at every step." if self.exact else "Counts NOT exact at every step: see the steps.")
        return out


def drills_dir() -> Any:
    from otelcockpit.settings import data_dir

    return data_dir() / "drills"


def save_record(record: DrillRecord, path: Any = None) -> Any:
    """Write the record (default: ``drills/outage-latest.json`` in the data dir); returns the path."""
    import json
    from pathlib import Path

    target = Path(path) if path is not None else drills_dir() / "outage-latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record.as_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def load_record(path: Any = None) -> DrillRecord | None:
    """The last drill's record (or the one at ``path``); None when there is none. A record that does
    not read is a ConfigError naming the file."""
    import json
    from pathlib import Path

    from otelcockpit.errors import ConfigError

    target = Path(path) if path is not None else drills_dir() / "outage-latest.json"
    try:
        raw = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path is not None:
            raise ConfigError(f"{target}: no such file") from None
        return None
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read: {exc.strerror}") from None
    try:
        return DrillRecord.from_json(json.loads(raw))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{target}: not a drill record ({exc})") from None
