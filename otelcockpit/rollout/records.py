"""What the cockpit knows of rollouts, wherever the engine runs.

For the demo and Fleet Management the engine runs in the cockpit's process and keeps its journal
in the data dir; on the OpAMP backend it runs inside ``otelcockpit serve`` and is read through the
admin API. Both give the same :class:`RolloutRecords`: the rollouts, the engine's own change
events, which collectors each rollout reached, and every collector's rollback target. The TUI, the
incident view and its ``--json`` read this, never the journal or the API directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from otelcockpit.fleet.model import Collector, CollectorTarget, parse_time
from otelcockpit.rollout.history import ChangeEntry, collector_targets, timeline
from otelcockpit.rollout.journal import Journal
from otelcockpit.rollout.model import CollectorProgress, RolloutView

ROLLOUTS_LISTED = 50  # the newest rollouts read (their views are small; progress is read for fewer)
REACH_ROLLOUTS = 10  # rollouts whose per-collector progress is read ("what reached this collector")


@dataclass(frozen=True)
class RolloutRecords:
    rollouts: tuple[RolloutView, ...] = ()  # newest first
    # Change events in the window, oldest first: the journal's own, or everything the server knows
    # (its journal, its audit log and its config versions as "revisions" entries).
    events: tuple[ChangeEntry, ...] = ()
    progress: Mapping[str, Mapping[str, CollectorProgress]] = field(default_factory=dict)  # rollout -> collector
    collector_targets: Mapping[str, CollectorTarget] = field(default_factory=dict)
    error: str = ""  # why the records could not be read ('' when they were)


def _recent(views: Iterable[RolloutView], since: datetime | None) -> list[RolloutView]:
    """The rollouts worth reading progress for: touched inside the window, newest first."""
    out = [v for v in views if since is None or (v.updated_at or v.created_at or since) >= since]
    return out[:REACH_ROLLOUTS]


def from_journal(
    journal: Journal | None,
    collectors: Iterable[Collector],
    *,
    context: str = "",
    since: datetime | None = None,
    with_progress: bool = False,
    failures: int = 20,
) -> RolloutRecords:
    """Read the local journal (never writing). ``context``: only rollouts of that context (and
    those recorded without one); empty = all."""
    from otelcockpit.rollout.engine import build_view

    if journal is None:
        return RolloutRecords()
    records = [r for r in journal.list(limit=ROLLOUTS_LISTED) if not context or r.context in ("", context)]
    views = tuple(build_view(journal, r, failures=failures) for r in records)
    events = tuple(e for e in timeline(journal, {}, since=since) if e.source == "journal")
    progress = {v.id: journal.load_progress(v.id) for v in _recent(views, since)} if with_progress else {}
    targets = {cid: CollectorTarget(h) for cid, h in collector_targets(journal, collectors).items()}
    return RolloutRecords(views, events, progress, targets)


def _progress_map(d: Mapping[str, Any]) -> dict[str, CollectorProgress]:
    from otelcockpit.rollout_targets.opamp import progress_from_json

    return {p.collector_id: p for p in (progress_from_json(x) for x in d.get("collectors") or ())}


async def from_server(
    client: Any,
    *,
    since_seconds: float,
    with_progress: bool = False,
    progress_cache: dict[tuple[str, str], Mapping[str, CollectorProgress]] | None = None,
) -> RolloutRecords:
    """Read the rollouts of ``otelcockpit serve`` through its admin API (an OpAmpRollouts).

    ``progress_cache``: kept by a caller that reads again and again (the incident view, every few
    seconds): a rollout's per-collector progress (one row per agent: large on a big fleet) is read
    again only when the rollout changed since."""
    from datetime import timedelta

    from otelcockpit.fleet.model import utcnow
    from otelcockpit.rollout_targets.opamp import view_from_json

    views = tuple(view_from_json(d) for d in (await client.list())[:ROLLOUTS_LISTED])
    fields = ChangeEntry.__dataclass_fields__
    events = tuple(
        ChangeEntry(**{**{k: v for k, v in d.items() if k in fields}, "at": parse_time(d["at"])})
        for d in await client.changes(f"{max(1, int(since_seconds))}s")
    )
    progress: dict[str, Mapping[str, CollectorProgress]] = {}
    if with_progress:
        since = utcnow() - timedelta(seconds=since_seconds)
        cache = progress_cache if progress_cache is not None else {}
        for v in _recent(views, since):
            key = (v.id, f"{v.updated_at}|{v.state.value}|{v.current_stage}")
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = _progress_map(await client.get(v.id, collectors=True))
            progress[v.id] = hit
        if progress_cache is not None:  # forget the versions of rollouts that moved on
            for key in [k for k in progress_cache if progress.get(k[0]) is not progress_cache[k]]:
                del progress_cache[key]
    raw = (await client.targets()).get("collectors") or {}
    targets = {str(cid): CollectorTarget.from_json(t) for cid, t in raw.items() if isinstance(t, Mapping)}
    return RolloutRecords(views, events, progress, targets)


async def load(
    settings: Any,
    collectors: Iterable[Collector],
    *,
    since: datetime,
    now: datetime,
    journal_path: Any = None,
    context: str = "",
    with_progress: bool = False,
    progress_cache: dict[tuple[str, str], Mapping[str, CollectorProgress]] | None = None,
) -> RolloutRecords | None:
    """The records for a resolved ``Settings``: from ``otelcockpit serve`` on the opamp backend,
    else from the local journal at ``journal_path`` (None when there is no journal). A server that
    cannot be read gives empty records with the error, never an exception: the caller's own data
    (the fleet, the revisions) is still worth showing."""
    import asyncio

    from otelcockpit.errors import CockpitError

    if settings.backend == "opamp":
        from otelcockpit.rollout_targets.opamp import client_for

        try:
            async with client_for(settings) as client:
                seconds = (now - since).total_seconds()
                return await from_server(
                    client, since_seconds=seconds, with_progress=with_progress, progress_cache=progress_cache
                )
        except CockpitError as exc:
            return RolloutRecords(error=exc.message)
    if journal_path is None:
        return None

    def read() -> RolloutRecords:
        journal = Journal(journal_path)
        try:
            return from_journal(journal, collectors, context=context, since=since, with_progress=with_progress)
        finally:
            journal.close()

    return await asyncio.to_thread(read)
