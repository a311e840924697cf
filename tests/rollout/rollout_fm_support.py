"""Helpers for the rollout tests against the Fleet Management fake and the CLI.

They live here, not in conftest.py, because test modules import them by name and several test folders
have a conftest module: importing "conftest" would pick whichever was imported first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from otelcockpit.fm_fake import Credentials, FakeState, load_state

CREDS = Credentials(instance_id="4242", read_token="read-secret", write_token="write-secret")
REPO = Path(__file__).resolve().parents[2]


class RecordingState(FakeState):
    """The fake, with a log of every BulkUpdateCollectors call (ids and ops) for the no-double-push checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk_calls: list[tuple[list[str], list[dict[str, Any]]]] = []

    def BulkUpdateCollectors(self, msg: Any) -> dict[str, Any]:  # noqa: N802 - the RPC's name
        out = super().BulkUpdateCollectors(msg)
        self.bulk_calls.append((list(msg.get("ids") or []), list(msg.get("ops") or [])))
        return out


def recording_state(collectors: int | None = 60) -> RecordingState:
    base = load_state(seed=7, collectors=collectors)
    state = RecordingState()
    for key in ("pipelines", "by_name", "revisions", "collectors", "next_pipeline_id", "next_revision_id"):
        setattr(state, key, getattr(base, key))
    state.limits.api_rps = 1000.0  # the documented 3/s would only slow the suite down
    return state


def cli_env(tmp_path: Path, *, token: str = CREDS.write_token) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_MANAGEMENT_", "OTELCOCKPIT_"))}
    env["OTELCOCKPIT_CONFIG"] = str(tmp_path / "no-config.yaml")
    env["OTELCOCKPIT_DATA_DIR"] = str(tmp_path / "data")
    env["NO_COLOR"] = "1"
    env["FLEET_MANAGEMENT_INSTANCE_ID"] = CREDS.instance_id
    env["FLEET_MANAGEMENT_TOKEN"] = token
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
