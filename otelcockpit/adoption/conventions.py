"""Conventions: required attributes, allowed values and naming patterns, checked against the fleet
(collector attributes) and the inventory (service fields), in the spirit of a Weaver registry.

File format (YAML)::

    collectors:
      required: [env, region, owner]           # attributes every collector carries
      values: {env: [prod, staging, dev]}      # allowed values
      patterns: {collector.version: '^v?\\d+\\.\\d+\\.\\d+$'}   # regular expressions (full match)
      when:                                    # extra rules for a subset
        - match: 'platform="kubernetes"'       # Alertmanager-style matchers
          required: [cluster]
    services:
      required: [team, tier]
      values: {tier: [0, 1, 2, 3]}
      patterns: {name: '^[a-z][a-z0-9-]*$'}
      when:
        - match: 'tier=~"0|1"'
          required: [journeys]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otelcockpit.adoption.inventory import Inventory, Service
from otelcockpit.errors import ConfigError
from otelcockpit.fleet.matchers import Matcher, MatcherError, matches_getter, parse_matchers
from otelcockpit.fleet.model import Collector
from otelcockpit.yamlio import load_yaml


@dataclass(frozen=True)
class RuleSet:
    required: tuple[str, ...] = ()
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    patterns: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    when: tuple[tuple[tuple[Matcher, ...], str, RuleSet], ...] = ()  # (matchers, text, rules)


@dataclass(frozen=True)
class Conventions:
    collectors: RuleSet = RuleSet()
    services: RuleSet = RuleSet()
    origin: str = ""


@dataclass(frozen=True)
class Violation:
    kind: str  # collector | service
    subject: str  # collector name or service name
    attribute: str
    rule: str  # required | value | pattern
    message: str

    def as_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "attribute": self.attribute,
            "rule": self.rule,
            "message": self.message,
        }


def _ruleset(raw: Any, where: str) -> RuleSet:
    if raw is None:
        return RuleSet()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping (required, values, patterns, when)")
    unknown = set(raw) - {"required", "values", "patterns", "when", "match"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    required = tuple(str(x) for x in raw.get("required") or ())
    values = {str(k): tuple(str(x) for x in (v or ())) for k, v in (raw.get("values") or {}).items()}
    patterns: dict[str, re.Pattern[str]] = {}
    for k, v in (raw.get("patterns") or {}).items():
        try:
            patterns[str(k)] = re.compile(str(v))
        except re.error as exc:
            raise ConfigError(f"{where}: pattern for {k!r}: {exc}") from None
    when = []
    for sub in raw.get("when") or ():
        sub_where = f"{where.split(':')[0]}:{getattr(sub, 'line', '')}".rstrip(":")
        if not isinstance(sub, Mapping) or not sub.get("match"):
            raise ConfigError(f"{sub_where}: each 'when' entry needs a match")
        try:
            matchers = parse_matchers(str(sub["match"]))
        except MatcherError as exc:
            raise ConfigError(f"{sub_where}: {exc}") from None
        when.append(
            (matchers, str(sub["match"]), _ruleset({k: v for k, v in sub.items() if k != "match"}, sub_where))
        )
    return RuleSet(required, values, patterns, tuple(when))


def parse_conventions(data: Any, origin: str) -> Conventions:
    if data is None:
        return Conventions(origin=origin)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping with collectors: and services:")
    unknown = set(data) - {"collectors", "services"}
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (collectors, services)"
        )

    def at(key: str) -> str:
        line = getattr(data.get(key), "line", None)
        return f"{origin}:{line}" if line else origin

    return Conventions(
        _ruleset(data.get("collectors"), at("collectors")),
        _ruleset(data.get("services"), at("services")),
        origin,
    )


def load_conventions(path: Path) -> Conventions:
    return parse_conventions(load_yaml(path), str(path))


def _check(
    kind: str, subject: str, get: Callable[[str], str], rules: RuleSet, scope: str = ""
) -> list[Violation]:
    out: list[Violation] = []
    suffix = f" (for {scope})" if scope else ""
    for key in rules.required:
        if not get(key):
            out.append(Violation(kind, subject, key, "required", f"missing required attribute {key}{suffix}"))
    for key, allowed in rules.values.items():
        value = get(key)
        if value and value not in allowed:
            out.append(
                Violation(
                    kind,
                    subject,
                    key,
                    "value",
                    f"{key}={value!r} is not allowed (allowed: {', '.join(allowed)}){suffix}",
                )
            )
    for key, rx in rules.patterns.items():
        value = get(key)
        if value and not rx.fullmatch(value):
            out.append(
                Violation(
                    kind, subject, key, "pattern", f"{key}={value!r} does not match {rx.pattern}{suffix}"
                )
            )
    for matchers, text, sub in rules.when:
        if matches_getter(matchers, get):
            out.extend(_check(kind, subject, get, sub, text))
    return out


def _service_getter(svc: Service) -> Callable[[str], str]:
    def get(key: str) -> str:
        if key == "name":
            return svc.name
        value = svc.get(key)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)

    return get


def _keys(rules: RuleSet) -> set[str]:
    keys = set(rules.required) | set(rules.values) | set(rules.patterns)
    for matchers, _, sub in rules.when:
        keys |= {m.name for m in matchers} | _keys(sub)
    return keys


def check_collectors(conv: Conventions, collectors: Sequence[Collector]) -> list[Violation]:
    """Violations per collector; evaluated once per distinct combination of the attributes read."""
    keys = sorted(_keys(conv.collectors))
    memo: dict[tuple[str, ...], list[Violation]] = {}
    out: list[Violation] = []
    for c in collectors:
        values = tuple(c.attr(k) for k in keys)
        found = memo.get(values)
        if found is None:
            found = memo[values] = _check("collector", "", c.attr, conv.collectors)
        out.extend(Violation(v.kind, c.name, v.attribute, v.rule, v.message) for v in found)
    return out


def check_services(conv: Conventions, inventory: Inventory) -> list[Violation]:
    out: list[Violation] = []
    for s in inventory.services:
        out.extend(_check("service", s.name, _service_getter(s), conv.services))
    return out


def check(conv: Conventions, collectors: Sequence[Collector], inventory: Inventory | None) -> list[Violation]:
    return check_collectors(conv, collectors) + (check_services(conv, inventory) if inventory else [])
