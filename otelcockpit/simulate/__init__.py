"""Simulated OpAMP agents (``otelcockpit simulate-agents``), importable by tests and benchmarks."""
