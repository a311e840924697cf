"""Which pipelines match which collectors (Fleet Management's GetConfig rule).

A pipeline reaches a collector when both are enabled, the pipeline's config type fits the
collector type (Alloy pipelines to Alloy collectors, OTel to OTel) and every matcher matches
the collector's merged attributes. Results are cached by the values of the attributes the
matchers read, so 100,000 collectors cost one evaluation per distinct combination.

A pipeline whose matchers this parser cannot read (the backend accepted them, we do not) matches
no collector here and is listed in ``PipelineMatcher.errors``: the cockpit shows the problem
instead of crashing on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from otelcockpit.fleet.matchers import Matcher, MatcherError, compile_matchers, keys_of, matches_getter
from otelcockpit.fleet.model import Collector, CollectorType, Pipeline


class PipelineMatcher:
    def __init__(self, pipelines: Iterable[Pipeline]) -> None:
        self.pipelines = tuple(sorted(pipelines, key=lambda p: p.name))
        self._compiled: list[tuple[Pipeline, tuple[Matcher, ...]]] = []
        self.errors: dict[str, str] = {}  # pipeline name -> why its matchers cannot be read
        keys: set[str] = set()
        for p in self.pipelines:
            try:
                compiled = compile_matchers(tuple(p.matchers))
            except MatcherError as exc:
                self.errors[p.name] = str(exc)
                continue
            self._compiled.append((p, compiled))
            keys.update(keys_of(compiled))
        self.keys = tuple(sorted(keys))
        self._cache: dict[tuple[object, ...], tuple[str, ...]] = {}

    def names_for(self, collector: Collector) -> tuple[str, ...]:
        if not collector.enabled:
            return ()
        return self.names_for_attrs(collector.type, collector.attr)

    def names_for_attrs(self, ctype: CollectorType, get: Callable[[str], str]) -> tuple[str, ...]:
        """Matched pipeline names for an enabled collector of ``ctype`` whose merged attributes ``get`` reads."""
        key = (ctype, *(get(k) for k in self.keys))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        names = tuple(
            p.name
            for p, compiled in self._compiled
            if p.enabled and p.config_type == ctype and matches_getter(compiled, get)
        )
        self._cache[key] = names
        return names

    def collectors_for(self, pipeline: Pipeline, collectors: Sequence[Collector]) -> list[Collector]:
        """The collectors ``pipeline`` reaches (none when it is disabled, as ``names_for`` says)."""
        if not pipeline.enabled:
            return []
        try:
            compiled = compile_matchers(tuple(pipeline.matchers))
        except MatcherError:
            return []
        return [
            c
            for c in collectors
            if c.enabled and pipeline.config_type == c.type and matches_getter(compiled, c.attr)
        ]


def with_matched_pipelines(
    collectors: Sequence[Collector], pipelines: Iterable[Pipeline]
) -> tuple[Collector, ...]:
    """Return collectors whose ``pipelines`` field is recomputed (same object when unchanged)."""
    pm = PipelineMatcher(pipelines)
    out = []
    for c in collectors:
        names = pm.names_for(c)
        out.append(c if names == c.pipelines else c.with_changes(pipelines=names))
    return tuple(out)
