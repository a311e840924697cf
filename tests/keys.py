"""Typing into a Textual app under test, as a user at the keyboard does."""

from __future__ import annotations

from typing import Any


async def type_text(pilot: Any, text: str) -> None:
    """Each character as a key press (a space is the "space" key)."""
    for ch in text:
        await pilot.press(ch if ch != " " else "space")


async def apply_filter(pilot: Any, text: str) -> None:
    """`/`, the filter text, `enter`: what a user types to filter the view in front."""
    await pilot.press("slash")
    await type_text(pilot, text)
    await pilot.press("enter")
