"""The collector filter of the Fleet and incident views and of ``collectors --match``: one grammar,
one meaning everywhere.

A filter is a comma-separated list of terms, all of which must hold:

* a matcher, ``name OP value`` (``=``, ``!=``, ``=~``, ``!~``, Alertmanager syntax), on an attribute
  or on one of the collector's columns, :data:`FIELDS` (``health="unhealthy"``, ``config="failed"``,
  ``type="otel"``, ``version=~"v1\\.9.*"``, ``problem!=""``);
* anything else is text: every word must appear in the collector's name, id, version, type, states,
  pipelines or attribute values (``gw prod``).

``env="prod",region="eu-west-1"``, ``gw,env="prod"`` and ``{env="prod"}`` are filters. The column names
shadow attributes of the same name (a collector attribute called ``health`` cannot be matched).
:func:`narrow` adds a term, which is how a drill-down into a group composes with the filter in force.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from otelcockpit.fleet.configstate import collector_state
from otelcockpit.fleet.matchers import (
    Matcher,
    MatcherError,
    _Parser,
    cached_predicate,
    keys_of,
    parse_matchers,
    quote,
)
from otelcockpit.fleet.model import Collector
from otelcockpit.fleet.problems import problem


def place_text(c: Collector) -> str:
    """Where a collector runs, in one word: its cluster, ECS cluster or platform."""
    return c.attr("cluster") or c.attr("ecs.cluster") or c.attr("platform") or "-"


# The collector's columns, matchable like attributes: name -> (value, what it is).
FIELDS: dict[str, tuple[Callable[[Collector], str], str]] = {
    "name": (lambda c: c.name, "the collector's name"),
    "id": (lambda c: c.id, "its id"),
    "type": (lambda c: c.type.value, "alloy, otel, or sdk (an OpAMP client inside an application)"),
    "version": (lambda c: c.version, "the collector's version"),
    "health": (lambda c: c.health.value, "healthy, degraded, unhealthy, offline or unknown"),
    "config": (lambda c: c.remote_config.status.value, "its remote config status: applied, applying, failed or unset"),
    "problem": (lambda c: (p.value if (p := problem(c)) else ""),
                "the worst of: unhealthy, config failed, other config, offline ('' when none)"),
    "where": (place_text, "the CLUSTER/PLATFORM column: cluster, ECS cluster or platform"),
    "enabled": (lambda c: "yes" if c.enabled else "no", "yes or no (remote configuration on or off)"),
    "config_state": (lambda c: collector_state(c).state.value,
                     "what it runs: in sync, drifted, on fallback, on cached remote or unknown"),
}

_MATCHER_START = re.compile(r'\s*("[^"]*"|[^\s{}!=~"\',]+)\s*(=~|!~|!=|=)')


def value_of(c: Collector, key: str) -> str:
    """A column's value for the column names (:data:`FIELDS`), else the merged attribute."""
    field = FIELDS.get(key)
    return field[0](c) if field is not None else c.attr(key)


def search_text(c: Collector) -> str:
    """What a text term searches: name, id, version, type, states, pipelines, attribute values."""
    return " ".join(
        (c.name, c.id, c.version, c.type.value, c.health.value, c.remote_config.status.value,
         collector_state(c).state.value, *c.pipelines, *c.local_attributes.values(), *c.remote_attributes.values())
    ).lower()


def is_matcher_query(text: str) -> bool:
    """The filter starts with a matcher (``env="prod"...``) rather than text."""
    return text.lstrip().startswith("{") or bool(_MATCHER_START.match(text))


@dataclass(frozen=True)
class CollectorFilter:
    text: str
    matchers: tuple[Matcher, ...] = ()
    words: tuple[str, ...] = ()  # lower case; each must appear in search_text

    @property
    def empty(self) -> bool:
        return not self.matchers and not self.words

    def predicate(self) -> Callable[[Collector], bool]:
        """A fast test for one collector (matcher verdicts cached per combination of values)."""
        words = self.words
        test = cached_predicate(self.matchers) if self.matchers else None

        def check(c: Collector) -> bool:
            if test is not None and not test(partial(value_of, c)):
                return False
            if words:
                text = search_text(c)
                return all(w in text for w in words)
            return True

        return check

    def matches(self, c: Collector) -> bool:
        return self.predicate()(c)

    def positions(self, rows: Sequence[Collector]) -> list[int]:
        """Positions of the rows the matchers select, in bulk (the text words are not applied):
        one value lookup per row and key, one evaluation per distinct combination of values."""
        matchers = self.matchers
        keys = keys_of(matchers)
        attr = Collector.attr
        columns = []
        for k in keys:
            field = FIELDS.get(k)
            if field is None:
                columns.append([attr(c, k) for c in rows])
            else:
                get = field[0]
                columns.append([get(c) for c in rows])
        verdict: dict[tuple[str, ...], bool] = {}
        out = []
        for i, values in enumerate(zip(*columns, strict=True)):
            hit = verdict.get(values)
            if hit is None:
                lookup = dict(zip(keys, values, strict=True))
                hit = verdict[values] = all(m.matches_value(lookup[m.name]) for m in matchers)
            if hit:
                out.append(i)
        return out


def parse_filter(text: str) -> CollectorFilter:
    """Parse a filter; a bad matcher raises :class:`MatcherError` naming the column."""
    stripped = text.strip()
    if not stripped:
        return CollectorFilter("")
    if stripped.startswith("{"):
        return CollectorFilter(stripped, parse_matchers(stripped))
    p = _Parser(text)
    matchers: list[Matcher] = []
    words: list[str] = []
    while True:
        p.skip_ws()
        if p.at_end():
            break
        if _MATCHER_START.match(text, p.pos):
            matchers.append(p.matcher(stop_comma=True))
            p.skip_ws()
            if p.at_end():
                break
            if text[p.pos] != ",":
                raise p.error(f"expected ',' after the matcher, found {text[p.pos]!r}")
            p.pos += 1
            continue
        end = text.find(",", p.pos)
        end = len(text) if end < 0 else end
        words += text[p.pos : end].lower().split()
        p.pos = min(len(text), end + 1)
    return CollectorFilter(stripped, tuple(matchers), tuple(words))


def narrow(text: str, key: str, value: str) -> str:
    """The filter ``text`` with ``key="value"`` added (a drill-down into a group narrows the filter
    in force instead of replacing it); an existing ``key=...`` term with ``=`` is replaced."""
    term = f"{key}={quote(value)}"
    stripped = text.strip()
    if not stripped:
        return term
    try:
        current = parse_filter(stripped)
    except MatcherError:
        return term
    kept = [str(m) for m in current.matchers if not (m.name == key and m.op == "=")]
    if current.words:
        kept.append(" ".join(current.words))
    return ",".join([*kept, term])
