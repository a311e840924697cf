"""Manual sign-off of phase items (who, when, note), kept in SQLite in the user data dir.

Signing off is a mutating action: callers must refuse it in read-only mode (the CLI does, and
:func:`sign_off` takes ``read_only`` as a second guard). The table is append-only: the latest
sign-off of an item wins, earlier ones stay as history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from otelcockpit.adoption.phases import SignOff
from otelcockpit.errors import CockpitError, ReadOnlyError

SCHEMA = """
CREATE TABLE IF NOT EXISTS signoffs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL,
    by TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    context TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS signoffs_item ON signoffs(item, id);
"""


def default_path() -> Path:
    from otelcockpit.settings import data_dir

    return data_dir() / "signoffs.sqlite"


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0)
    except (OSError, sqlite3.Error) as exc:
        raise CockpitError(f"{path}: cannot open the sign-off store: {exc}") from None
    try:
        conn.executescript(SCHEMA)
        yield conn
        conn.commit()
    except sqlite3.Error as exc:
        raise CockpitError(f"{path}: sign-off store error: {exc}") from None
    finally:
        conn.close()


def sign_off(
    item: str,
    by: str,
    *,
    note: str = "",
    at: datetime,
    context: str = "",
    read_only: bool = False,
    path: Path | None = None,
) -> SignOff:
    if read_only:
        raise ReadOnlyError("read-only mode: signing off a phase item is a mutating action")
    if not by.strip():
        raise CockpitError("a sign-off needs a name (--by NAME)")
    stamp = at.replace(microsecond=0).isoformat().replace("+00:00", "Z")  # to the second
    with _connect(path or default_path()) as conn:
        conn.execute(
            "INSERT INTO signoffs (item, by, at, note, context) VALUES (?, ?, ?, ?, ?)",
            (item, by.strip(), stamp, note, context),
        )
    return SignOff(item=item, by=by.strip(), at=stamp, note=note)


def latest(path: Path | None = None, *, context: str | None = None) -> dict[str, SignOff]:
    """The latest sign-off of each item (optionally of one context)."""
    p = path or default_path()
    if not p.exists():
        return {}
    with _connect(p) as conn:
        if context is None:
            rows = conn.execute("SELECT item, by, at, note FROM signoffs ORDER BY id").fetchall()
        else:
            rows = conn.execute(
                "SELECT item, by, at, note FROM signoffs WHERE context = ? ORDER BY id", (context,)
            ).fetchall()
    return {item: SignOff(item, by, at, note) for item, by, at, note in rows}


def history(path: Path | None = None) -> list[tuple[SignOff, str]]:
    p = path or default_path()
    if not p.exists():
        return []
    with _connect(p) as conn:
        rows = conn.execute("SELECT item, by, at, note, context FROM signoffs ORDER BY id").fetchall()
    return [(SignOff(item, by, at, note), ctx) for item, by, at, note, ctx in rows]
