"""otelcockpit: a terminal cockpit for rolling OpenTelemetry out across a fleet."""

__version__ = "0.1.0"
