"""The OpAMP server behind ``otelcockpit serve``.

- ``proto/``: our ``.proto`` files (package ``opamp.proto.v1``) and the committed generated modules
  (``scripts/gen_proto.py``, ``make proto``).
- ``core``: the protocol as a pure function of (stored agent state, AgentToServer, now).
- ``store``: SQLite (WAL) with group commit; every acknowledged change is committed before its reply.
- ``hub``: agents in memory, connections, configs, assignments, the event bus.
- ``transport``: ``/v1/opamp`` over plain HTTP and WebSocket (raw ASGI); ``corked``: one TCP write per reply.
- ``admin``: the JSON admin API under ``/api/v1``; ``views``: its JSON shapes.
- ``server``: runs both listeners (uvicorn) in one process.
"""
