"""YAML loading with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from otelcockpit.errors import ConfigError

# libyaml's parser when PyYAML has it (several times faster on the demo fixtures); the same
# constructors and error marks either way.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping_with_line(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    if isinstance(mapping, dict):
        return LineDict(mapping, node.start_mark.line + 1)
    return mapping


class LineDict(dict):  # type: ignore[type-arg]
    """A dict that remembers the line it started on (for error messages)."""

    __slots__ = ("line",)

    def __init__(self, data: dict[Any, Any], line: int) -> None:
        super().__init__(data)
        self.line = line


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_with_line)


def line_of(obj: object) -> int | None:
    return getattr(obj, "line", None)


def load_yaml_text(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # At the end of the stream PyYAML points one line past the last: name the last line instead.
        last_line = max(1, len(text.splitlines()))
        where = f"{origin}:{min(mark.line + 1, last_line)}" if mark else origin
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return load_yaml_text(text, str(path))


def where(path: Path | str, obj: object) -> str:
    line = line_of(obj)
    return f"{path}:{line}" if line else str(path)
