"""Grafana Fleet Management: an async Connect-JSON client and the backend built on it."""

from __future__ import annotations

from otelcockpit.backends.fleet_management.backend import FleetManagementBackend, from_settings
from otelcockpit.backends.fleet_management.client import (
    FleetAPIError,
    FleetClient,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "FleetAPIError",
    "FleetClient",
    "FleetManagementBackend",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
    "from_settings",
]
