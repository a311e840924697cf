"""A local Grafana Fleet Management: a real HTTP server speaking the Connect JSON protocol.

``otelcockpit fake-fleet-management`` runs it; tests start it on 127.0.0.1 with an ephemeral
port (:class:`~otelcockpit.fm_fake.server.ThreadedFakeServer`). See ``state.py`` for the
semantics and ``app.py`` for the wire.
"""

from __future__ import annotations

from otelcockpit.fm_fake.app import Credentials, FakeServerApp
from otelcockpit.fm_fake.fixtures import load_state
from otelcockpit.fm_fake.state import FakeState, Limits, RpcError

__all__ = ["Credentials", "FakeServerApp", "FakeState", "Limits", "RpcError", "load_state"]
