"""YAML themes (built-ins in ``themes/``, the user's in the config dir) turned into Textual themes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from otelcockpit.errors import ConfigError, UsageError
from otelcockpit.resources import themes_dir
from otelcockpit.yamlio import load_yaml

COLOUR_KEYS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
REQUIRED_VARIABLES = ("health-healthy", "health-degraded", "health-unhealthy", "health-offline", "health-unknown")


def theme_from_mapping(data: object, origin: str) -> Theme:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: a theme must be a mapping")
    name = data.get("name")
    if not name or not isinstance(name, str):
        raise ConfigError(f"{origin}: a theme needs a name")
    if "primary" not in data:
        raise ConfigError(f"{origin}: theme {name!r} needs a primary colour")
    kwargs: dict[str, object] = {}
    for key in COLOUR_KEYS:
        if key in data and data[key] is not None:
            value = str(data[key])
            try:
                Color.parse(value)
            except ColorParseError:
                raise ConfigError(f"{origin}: theme {name!r}: {key} is not a colour: {value!r}") from None
            kwargs[key] = value
    variables = {str(k): str(v) for k, v in (data.get("variables") or {}).items()}
    for key, value in variables.items():
        try:
            Color.parse(value)
        except ColorParseError:
            raise ConfigError(f"{origin}: theme {name!r}: variable {key} is not a colour: {value!r}") from None
    # A user theme may leave out the cockpit's own slots: fill them from the theme's colours.
    defaults = {
        "health-healthy": kwargs.get("success", "green"),
        "health-degraded": kwargs.get("warning", "yellow"),
        "health-unhealthy": kwargs.get("error", "red"),
        "health-offline": "grey",
        "health-unknown": "grey",
        "badge-read-only": kwargs.get("error", "red"),
    }
    for key, value in defaults.items():
        variables.setdefault(key, str(value))
    return Theme(
        name=name,
        dark=bool(data.get("dark", True)),
        luminosity_spread=float(data.get("luminosity_spread", 0.15)),
        variables=variables,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass
class ThemeSet:
    themes: dict[str, Theme] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def load_dir(path: Path, into: ThemeSet, *, strict: bool) -> None:
    if not path.is_dir():
        return
    for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        try:
            theme = theme_from_mapping(load_yaml(file), str(file))
        except ConfigError as exc:
            if strict:
                raise
            into.failures.append(exc.message)
            continue
        into.themes[theme.name] = theme


def load_themes(user_dir: Path | None) -> ThemeSet:
    """Built-in themes (a broken one is a bug: raise) then the user's (failures collected)."""
    result = ThemeSet()
    load_dir(themes_dir(), result, strict=True)
    if user_dir is not None:
        load_dir(user_dir, result, strict=False)
    return result


def check_theme(name: str, themes: ThemeSet) -> None:
    if name not in themes.themes:
        known = ", ".join(sorted(themes.themes))
        raise UsageError(f"unknown theme {name!r} (known: {known})")
