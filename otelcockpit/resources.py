"""Where the packaged data lives: ``themes/`` and ``fixtures/``.

In a checkout they sit beside the package; in an installed wheel hatch copies them to
``otelcockpit/_data/``. Both layouts are supported so the demo runs without a checkout.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    packaged = _PKG / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PKG.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"otelcockpit data folder {name!r} is missing from this installation")


def themes_dir() -> Path:
    return data_dir("themes")


def fixtures_dir() -> Path:
    return data_dir("fixtures")


def demo_dir() -> Path:
    return fixtures_dir() / "demo"
