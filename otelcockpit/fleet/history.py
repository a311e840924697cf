"""Pipeline history: which revision is live, and what to roll back to."""

from __future__ import annotations

from collections.abc import Sequence

from otelcockpit.fleet.model import Operation, Revision


def current_revision(revisions: Sequence[Revision]) -> Revision | None:
    return revisions[-1] if revisions else None


def rollback_target(revisions: Sequence[Revision]) -> Revision | None:
    """The revision before the live one that still had contents (a delete is not a target)."""
    for rev in reversed(revisions[:-1]):
        if rev.operation != Operation.DELETE and rev.snapshot is not None:
            return rev
    return None


def previous_of(revisions: Sequence[Revision], revision_id: str) -> Revision | None:
    for i, rev in enumerate(revisions):
        if rev.id == revision_id:
            return revisions[i - 1] if i > 0 else None
    return None
