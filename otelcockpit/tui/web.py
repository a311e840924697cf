"""Serving the cockpit to browsers through textual-serve (used by `otelcockpit web`)."""

from __future__ import annotations


def serve(command: str, *, host: str, port: int, public_url: str | None) -> None:
    """Run textual-serve: every browser tab gets its own process running ``command``."""
    from textual_serve.server import Server

    Server(command, host=host, port=port, title="otelcockpit", public_url=public_url).serve()
