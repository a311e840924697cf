"""Fixtures of the rollout tests: the Fleet Management fake on 127.0.0.1 (real HTTP), CLI helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rollout_fm_support import CREDS, recording_state  # noqa: E402

from otelcockpit.fm_fake import FakeServerApp, FakeState  # noqa: E402
from otelcockpit.fm_fake.server import ThreadedFakeServer  # noqa: E402


@pytest.fixture
def fm_fake() -> Iterator[Callable[..., ThreadedFakeServer]]:
    servers: list[ThreadedFakeServer] = []

    def start(state: FakeState | None = None) -> ThreadedFakeServer:
        server = ThreadedFakeServer(FakeServerApp(state or recording_state(), CREDS)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


