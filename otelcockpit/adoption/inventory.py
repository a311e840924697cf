"""The service inventory (``services.yaml``), merged with what the fleet discovers.

A missing field stays missing (``None``): the eligibility engine tries every value it can take and
says which answer depends on it, never a guess. An unknown language or platform is an error naming
the file and line.

Every value carries its origin (:class:`Origin`): ``inventory`` (file:line), ``discovered`` (which
agents or collectors reported it, see :mod:`otelcockpit.adoption.discovery`) or ``assumed`` (a
documented default). Where the file and a report disagree, the conflict is kept on the service
(``conflicts``) and shown, not silently resolved: the file's value stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from otelcockpit.errors import ConfigError
from otelcockpit.yamlio import load_yaml_text

LANGUAGES = (
    "java",
    "kotlin",
    "scala",
    "nodejs",
    "python",
    "dotnet",
    "go",
    "rust",
    "cpp",
    "ruby",
    "php",
    "nginx",
    "apache-httpd",
)
JVM_LANGUAGES = ("java", "kotlin", "scala")
PLATFORMS = ("kubernetes", "vm", "ecs-fargate", "ecs-ec2", "lambda", "windows")
INSTRUMENTATION_STATES = (
    "none",
    "operator",
    "injector",
    "obi",
    "dotnet-builtin",
    "lambda-layer",
    "agent-in-image",
    "compile-time",
    "sdk",
)

# Fields a service may carry. Everything else in an entry is an error (a typo would otherwise
# silently become "unknown").
FIELDS = (
    "name",
    "team",
    "tier",
    "journeys",
    "language",
    "runtime_version",
    "runtime_flavor",
    "platform",
    "env",
    "region",
    "cluster",
    "os",
    "distro",
    "arch",
    "libc",
    "glibc_version",
    "kernel",
    "host_distro",
    "k8s_distribution",
    "btf",
    "privileged_allowed",
    "host_pid_allowed",
    "operator_installed",
    "operator_version",
    "node_module_system",
    "existing_sdk",
    "head_sampling_at_source",
    "can_rebuild_image",
    "instrumentation",
)
BOOL_FIELDS = (
    "btf",
    "privileged_allowed",
    "host_pid_allowed",
    "operator_installed",
    "head_sampling_at_source",
    "can_rebuild_image",
)
K8S_DISTRIBUTIONS = ("eks", "eks-fargate", "gke", "gke-autopilot", "aks", "openshift", "other")
# Documented defaults (the header of services.yaml says so): shown as "assumed"; every other field
# has none.
DEFAULTS: Mapping[str, Any] = {
    "can_rebuild_image": True,
    "head_sampling_at_source": False,
    "runtime_flavor": "standard",  # HotSpot/OpenJDK, CPython, CoreCLR, node: say so when it is not
    "existing_sdk": "none",  # say so when the code already carries an OpenTelemetry SDK
}
DEFAULT_REASONS: Mapping[str, str] = {
    "can_rebuild_image": "default: image rebuildable",
    "head_sampling_at_source": "default: no SDK sampling",
    "runtime_flavor": "default: the standard runtime",
    "existing_sdk": "default: no SDK in the code",
}

# What a discovered attribute means for the inventory.
SDK_LANGUAGE_MAP = {
    "java": "java",
    "nodejs": "nodejs",
    "python": "python",
    "dotnet": "dotnet",
    "go": "go",
    "rust": "rust",
    "ruby": "ruby",
    "php": "php",
    "cpp": "cpp",
}
ARCH_MAP = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
}


@dataclass(frozen=True)
class Origin:
    """Where a value came from: ``inventory`` (file:line), ``discovered`` (which reporters, which
    attribute) or ``assumed`` (a documented default, or an assumption the engine states)."""

    kind: str  # inventory | discovered | assumed
    detail: str = ""

    def text(self, *, short: bool = True) -> str:
        detail = self.detail
        if short and self.kind == "inventory" and detail:
            # file:line by file name only (an inventory's directory says nothing to the reader)
            detail = detail.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{self.kind} ({detail})" if detail else self.kind


@dataclass(frozen=True)
class Conflict:
    field: str
    inventory: str
    discovered: str
    source: str  # which collector/agent reported it

    def text(self) -> str:
        return f"{self.field}: inventory says {self.inventory!r}, {self.source} reports {self.discovered!r}"


@dataclass(frozen=True)
class Service:
    """One service. ``fields`` holds only what is known; a missing key is unknown."""

    name: str
    fields: Mapping[str, Any]
    origin: str = ""  # file:line of the entry
    discovered: Mapping[str, str] = field(default_factory=dict)  # field -> value filled from discovery
    conflicts: tuple[Conflict, ...] = ()
    only_discovered: bool = False
    origins: Mapping[str, Origin] = field(default_factory=dict)  # field -> where its value came from
    # field -> the values the fleet reports where the service may run (several hosts disagree,
    # e.g. a node pool of amd64 and arm64 nodes); the field itself stays unknown
    candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """A field's value, a documented default, or None (unknown). Derived fields included."""
        if key in self.fields:
            return self.fields[key]
        if key == "distro_family":
            return distro_family(self.fields.get("distro"))
        if key == "language_family":
            lang = self.fields.get("language")
            return "java" if lang in JVM_LANGUAGES else lang
        if key == "container":
            platform = self.fields.get("platform")
            return (
                None if platform is None else platform in ("kubernetes", "ecs-fargate", "ecs-ec2", "lambda")
            )
        if key == "os" and self.fields.get("platform") == "windows":
            return "windows"
        return DEFAULTS.get(key)

    def origin_of(self, key: str) -> Origin | None:
        """Where the value of ``key`` comes from (None when it is unknown)."""
        if key in self.origins:
            return self.origins[key]
        if key in self.fields:
            return Origin("inventory", self.origin)
        if key in self.candidates:
            return Origin("discovered")
        if key == "os" and self.fields.get("platform") == "windows":
            return Origin("inventory", "platform windows")
        if key in DEFAULTS:
            return Origin("assumed", DEFAULT_REASONS.get(key, "default"))
        return None

    @property
    def team(self) -> str:
        return str(self.fields.get("team") or "")

    @property
    def language(self) -> str:
        return str(self.fields.get("language") or "")

    @property
    def platform(self) -> str:
        return str(self.fields.get("platform") or "")

    @property
    def journeys(self) -> tuple[str, ...]:
        return tuple(self.fields.get("journeys") or ())

    @property
    def instrumentation(self) -> str | None:
        value = self.fields.get("instrumentation")
        return None if value is None else str(value)


@dataclass(frozen=True)
class Inventory:
    services: tuple[Service, ...]
    path: str = ""

    def service(self, name: str) -> Service | None:
        for s in self.services:
            if s.name == name:
                return s
        return None

    @property
    def conflicts(self) -> list[tuple[str, Conflict]]:
        return [(s.name, c) for s in self.services for c in s.conflicts]


def distro_family(distro: Any) -> str | None:
    if distro is None:
        return None
    d = str(distro).lower()
    if d.startswith(("debian", "ubuntu")):
        return "debian"
    if d.startswith(("rhel", "centos", "rocky", "alma", "fedora", "oracle")):
        return "rhel"
    if d.startswith("alpine"):
        return "alpine"
    return "other"


def _key_lines(text: str) -> list[dict[str, int]]:
    """For each entry of ``services:``, the line of each key (merged keys: the anchor's line)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    out: list[dict[str, int]] = []
    if not isinstance(root, yaml.MappingNode):
        return out
    for k, v in root.value:
        if isinstance(k, yaml.ScalarNode) and k.value == "services" and isinstance(v, yaml.SequenceNode):
            for item in v.value:
                out.append(_mapping_lines(item) if isinstance(item, yaml.MappingNode) else {})
    return out


def _mapping_lines(node: yaml.MappingNode) -> dict[str, int]:
    lines: dict[str, int] = {}
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == "<<":
            merged = [v] if isinstance(v, yaml.MappingNode) else list(getattr(v, "value", []))
            for m in merged:
                if isinstance(m, yaml.MappingNode):
                    for mk, ml in _mapping_lines(m).items():
                        lines.setdefault(mk, ml)
        elif isinstance(k, yaml.ScalarNode):
            lines[k.value] = k.start_mark.line + 1
    return lines


def parse_inventory(text: str, origin: str) -> Inventory:
    data = load_yaml_text(text, origin)
    if not isinstance(data, Mapping) or not isinstance(data.get("services"), list):
        raise ConfigError(f"{origin}: expected a mapping with a 'services' list")
    key_lines = _key_lines(text)
    services: list[Service] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(data["services"]):
        lines = key_lines[index] if index < len(key_lines) else {}
        entry_line = getattr(raw, "line", None) or min(lines.values(), default=0)
        where = f"{origin}:{entry_line}" if entry_line else origin

        def at(key: str, where: str = where, lines: dict[str, int] = lines) -> str:
            line = lines.get(key)
            return f"{origin}:{line}" if line else where

        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: each service must be a mapping")
        name = raw.get("name")
        if not name:
            raise ConfigError(f"{where}: a service needs a name")
        name = str(name)
        if name in seen:
            raise ConfigError(f"{at('name')}: service {name!r} is listed twice (first at {seen[name]})")
        seen[name] = at("name")
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            key = str(key)
            if key not in FIELDS:
                raise ConfigError(f"{at(key)}: service {name!r}: unknown field {key!r}")
            if value is None or value == "":
                continue  # missing: unknown
            if key in BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise ConfigError(
                        f"{at(key)}: service {name!r}: {key} must be true or false, not {value!r}"
                    )
            elif key == "journeys":
                if not isinstance(value, list):
                    raise ConfigError(f"{at(key)}: service {name!r}: journeys must be a list")
                value = tuple(str(j) for j in value)
            elif key == "tier":
                value = str(value)
            else:
                value = str(value)
            fields[key] = value
        lang = fields.get("language")
        if lang is not None:
            lang = lang.lower()
            if lang not in LANGUAGES:
                raise ConfigError(
                    f"{at('language')}: service {name!r}: unknown language {lang!r} (one of {', '.join(LANGUAGES)})"
                )
            fields["language"] = lang
        platform = fields.get("platform")
        if platform is not None:
            platform = platform.lower()
            if platform not in PLATFORMS:
                raise ConfigError(
                    f"{at('platform')}: service {name!r}: unknown platform {platform!r} (one of {', '.join(PLATFORMS)})"
                )
            fields["platform"] = platform
        k8s = fields.get("k8s_distribution")
        if k8s is not None:
            k8s = k8s.lower()
            if k8s not in K8S_DISTRIBUTIONS:
                raise ConfigError(
                    f"{at('k8s_distribution')}: service {name!r}: unknown k8s_distribution {k8s!r} "
                    f"(one of {', '.join(K8S_DISTRIBUTIONS)})"
                )
            fields["k8s_distribution"] = k8s
        inst = fields.get("instrumentation")
        if inst is not None and inst not in INSTRUMENTATION_STATES:
            raise ConfigError(
                f"{at('instrumentation')}: service {name!r}: unknown instrumentation {inst!r} "
                f"(one of {', '.join(INSTRUMENTATION_STATES)})"
            )
        origins = {key: Origin("inventory", at(key)) for key in fields}
        services.append(Service(name=name, fields=fields, origin=at("name"), origins=origins))
    return Inventory(services=tuple(services), path=origin)


def load_inventory(path: Path | str) -> Inventory:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse_inventory(text, str(p))


# ---- discovery --------------------------------------------------------------------------------


def merge_discovered(inventory: Inventory, collectors: Sequence[Any], view: Any = None) -> Inventory:
    """See :func:`otelcockpit.adoption.discovery.merge_discovered` (kept here for callers that
    know the inventory module only)."""
    from otelcockpit.adoption.discovery import merge_discovered as merge

    return merge(inventory, collectors, view)
