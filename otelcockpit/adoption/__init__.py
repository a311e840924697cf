"""Adoption: the service inventory, zero-code eligibility, rollout phases, journeys, conventions.

Pure functions over data (no textual, no HTTP, no backend): the TUI and the CLI only render what
these modules return.
"""
