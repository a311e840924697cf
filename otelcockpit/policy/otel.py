"""OpenTelemetry Collector YAML read with pyyaml, keeping the line of every key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


class OtelSyntaxError(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


@dataclass
class Node:
    """A YAML value with its line: scalars as str/int/..., mappings as dict[str, Node], lists."""

    value: Any
    line: int
    key_line: int = 0  # the line of the key that holds it (for mapping values)

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            return self.value.get(key)
        return None

    def plain(self) -> Any:
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _convert(node: yaml.Node, loader: yaml.SafeLoader, key_line: int = 0) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Node] = {}
        for k, v in node.value:
            key = loader.construct_object(k)
            out[str(key)] = _convert(v, loader, k.start_mark.line + 1)
        return Node(out, line, key_line or line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(v, loader, v.start_mark.line + 1) for v in node.value], line, key_line or line)
    return Node(loader.construct_object(node), line, key_line or line)


def parse_otel(text: str) -> Node:
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return Node({}, 1)
            return _convert(root, loader)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An error at the end of the stream is reported past the last line: name the last line.
        last = max(1, len(text.rstrip("\n").split("\n")))
        line = min(mark.line + 1, last) if mark else None
        raise OtelSyntaxError(line, exc.problem or exc.context or "invalid YAML") from None
    except yaml.YAMLError as exc:
        raise OtelSyntaxError(None, str(exc)) from None


@dataclass
class PipelineDef:
    id: str  # e.g. "traces/ecs"
    signal: str  # traces | metrics | logs | profiles
    line: int
    receivers: list[tuple[str, int]] = field(default_factory=list)
    processors: list[tuple[str, int]] = field(default_factory=list)
    exporters: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class OtelConfig:
    root: Node
    components: dict[str, dict[str, Node]]  # section -> component id -> node (key line in key_line)
    pipelines: list[PipelineDef]


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def read_config(root: Node) -> OtelConfig:
    if not isinstance(root.value, dict):
        raise OtelSyntaxError(
            root.line, "a Collector configuration must be a mapping (receivers:, exporters:, service:)"
        )
    components: dict[str, dict[str, Node]] = {}
    for section in SECTIONS:
        node = root.get(section)
        if node is None or node.value is None:
            components[section] = {}
            continue
        if not isinstance(node.value, dict):
            raise OtelSyntaxError(node.line, f"{section} must be a mapping of component ids")
        components[section] = dict(node.value)
    pipelines: list[PipelineDef] = []
    service = root.get("service")
    pnode = service.get("pipelines") if service is not None else None
    if pnode is not None and pnode.value is not None:
        if not isinstance(pnode.value, dict):
            raise OtelSyntaxError(pnode.line, "service.pipelines must be a mapping")
        for pid, body in pnode.value.items():
            if not isinstance(body.value, dict):
                raise OtelSyntaxError(
                    body.line, f"pipeline {pid} must be a mapping (receivers, processors, exporters)"
                )
            p = PipelineDef(pid, component_type(pid), body.key_line)
            for part in ("receivers", "processors", "exporters"):
                lst = body.get(part)
                if lst is None or lst.value is None:
                    continue
                if not isinstance(lst.value, list):
                    raise OtelSyntaxError(lst.line, f"pipeline {pid}: {part} must be a list")
                getattr(p, part).extend((str(x.value), x.line) for x in lst.value)
            pipelines.append(p)
    return OtelConfig(root, components, pipelines)
