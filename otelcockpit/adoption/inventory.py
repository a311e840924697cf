"""The service inventory (``services.yaml``), merged with what the fleet discovers.

A missing field stays missing (``None``): the eligibility engine turns it into ``unknown`` with a
reason, never a guess. An unknown language or platform is an error naming the file and line.

Discovery: agents and SDK-embedded OpAMP clients report ``service.name``,
``telemetry.sdk.language``, ``process.runtime.*``, ``os.type`` and ``host.arch``. Those reports
fill fields the file leaves empty; where the file and a report disagree, the conflict is kept on
the service (``conflicts``) and shown, not silently resolved: the file's value stays in force.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
# Documented defaults (the header of services.yaml says so); every other field has none.
DEFAULTS: Mapping[str, Any] = {
    "can_rebuild_image": True,
    "head_sampling_at_source": False,
    "runtime_flavor": "standard",  # HotSpot/OpenJDK, CPython, CoreCLR, node: say so when it is not
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
        inst = fields.get("instrumentation")
        if inst is not None and inst not in INSTRUMENTATION_STATES:
            raise ConfigError(
                f"{at('instrumentation')}: service {name!r}: unknown instrumentation {inst!r} "
                f"(one of {', '.join(INSTRUMENTATION_STATES)})"
            )
        services.append(Service(name=name, fields=fields, origin=at("name")))
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


def _normalise_runtime(value: str) -> str:
    return value.strip().lstrip("v")


def discovered_reports(collectors: Iterable[Any]) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """What agents report about applications: service name -> [(reporter, {field: value})].

    Only reporters that name an SDK language count (a Collector reporting its own
    ``service.name`` such as ``otelcol-contrib`` is not an application).
    """
    out: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for c in collectors:
        attr = c.attr
        name = attr("service.name")
        lang = attr("telemetry.sdk.language")
        if not name or not lang:
            continue
        found: dict[str, str] = {"language": SDK_LANGUAGE_MAP.get(lang.lower(), lang.lower())}
        runtime = attr("process.runtime.version")
        if runtime:
            found["runtime_version"] = _normalise_runtime(runtime)
        rname = attr("process.runtime.name")
        if rname and "graal" in rname.lower() and "native" in rname.lower():
            found["runtime_flavor"] = "graalvm-native"
        os_type = attr("os.type")
        if os_type:
            found["os"] = os_type.lower()
        arch = attr("host.arch")
        if arch:
            found["arch"] = ARCH_MAP.get(arch.lower(), arch.lower())
        out.setdefault(name, []).append((getattr(c, "name", "") or getattr(c, "id", "agent"), found))
    return out


def _same(field_name: str, inventory_value: Any, discovered: str) -> bool:
    a = str(inventory_value).strip().lower()
    b = discovered.strip().lower()
    if field_name == "language":
        fam = {"kotlin": "java", "scala": "java"}
        return fam.get(a, a) == fam.get(b, b)
    if field_name == "runtime_version":
        # "21" matches "21.0.4"; "net8.0" matches "8.0.10"; "3.12" matches "3.12.7"
        a2 = re.sub(r"^(netcoreapp|net)", "", a)
        return b == a2 or b.startswith(a2 + ".") or a2.startswith(b + ".")
    return a == b


def merge_discovered(inventory: Inventory, collectors: Sequence[Any]) -> Inventory:
    """Fill unknown fields from what agents report; keep disagreements as conflicts.

    Services reported by agents but absent from the file are added (``only_discovered``).
    """
    reports = discovered_reports(collectors)
    if not reports:
        return inventory
    out: list[Service] = []
    for svc in inventory.services:
        rep = reports.pop(svc.name, None)
        if not rep:
            out.append(svc)
            continue
        fields = dict(svc.fields)
        filled: dict[str, str] = {}
        conflicts: list[Conflict] = []
        for reporter, found in rep:
            for key, value in found.items():
                if key in svc.fields:
                    if not _same(key, svc.fields[key], value) and not any(
                        c.field == key and c.discovered == value for c in conflicts
                    ):
                        conflicts.append(Conflict(key, str(svc.fields[key]), value, reporter))
                elif key in filled:
                    if filled[key] != value and not any(
                        c.field == key and c.discovered == value for c in conflicts
                    ):
                        conflicts.append(Conflict(key, f"{filled[key]} (discovered)", value, reporter))
                else:
                    filled[key] = value
                    fields[key] = value
        out.append(replace(svc, fields=fields, discovered=filled, conflicts=tuple(conflicts)))
    for name, rep in sorted(reports.items()):
        fields: dict[str, Any] = {}
        filled = {}
        conflicts = []
        for reporter, found in rep:
            for key, value in found.items():
                if key in fields and fields[key] != value:
                    conflicts.append(Conflict(key, f"{fields[key]} (discovered)", value, reporter))
                else:
                    fields.setdefault(key, value)
                    filled.setdefault(key, value)
        if fields.get("language") not in LANGUAGES:
            fields.pop("language", None)
        out.append(
            Service(
                name=name,
                fields=fields,
                origin="discovered",
                discovered=filled,
                conflicts=tuple(conflicts),
                only_discovered=True,
            )
        )
    return Inventory(services=tuple(out), path=inventory.path)
