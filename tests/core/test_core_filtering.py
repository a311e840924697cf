"""The collector filter (Fleet view, incident view, `collectors --match`) and what counts as a problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from otelcockpit.backends.demo import DemoBackend
from otelcockpit.fleet.filtering import FIELDS, narrow, parse_filter, value_of
from otelcockpit.fleet.matchers import MatcherError
from otelcockpit.fleet.model import Collector, CollectorType, ConfigStatus, Health, RemoteConfig
from otelcockpit.fleet.problems import Problem, problem, problems


@pytest.fixture(scope="module")
def fleet():  # noqa: ANN201
    at = datetime(2026, 11, 20, 9, tzinfo=UTC)
    return DemoBackend(clock=lambda: at).snapshot_now().collectors


def chosen(collectors, text: str) -> list[Collector]:  # noqa: ANN001
    test = parse_filter(text).predicate()
    return [c for c in collectors if test(c)]


def test_columns_match_like_attributes(fleet) -> None:  # noqa: ANN001
    unhealthy = chosen(fleet, 'health="unhealthy"')
    assert unhealthy and {c.health for c in unhealthy} == {Health.UNHEALTHY}
    assert len(unhealthy) == sum(1 for c in fleet if c.health == Health.UNHEALTHY)
    failed = chosen(fleet, 'config="failed"')
    assert [c.name for c in failed] == ["alloy-prod-euw1-node-018", "alloy-prod-use1-node-041"]
    assert {c.type for c in chosen(fleet, 'type="otel"')} == {CollectorType.OTEL}
    assert all(c.version.startswith("v1.12") for c in chosen(fleet, 'version=~"v1\\\\.12.*"'))
    assert [c.name for c in chosen(fleet, 'name="alloy-prod-euw1-node-033"')] == ["alloy-prod-euw1-node-033"]
    broken = chosen(fleet, 'problem!=""')
    assert {c.id for c in broken} == {c.id for c in fleet if problems(c)}
    assert all(value_of(c, "where") in ("prod-eu-1",) for c in chosen(fleet, 'where="prod-eu-1"'))
    assert set(FIELDS) >= {"name", "id", "type", "version", "health", "config", "problem", "where", "enabled"}


def test_matchers_and_words_compose(fleet) -> None:  # noqa: ANN001
    rows = chosen(fleet, 'env="prod",region="eu-west-1",health!="healthy"')
    assert rows and all(c.attr("env") == "prod" and c.attr("region") == "eu-west-1" for c in rows)
    assert all(c.health != Health.HEALTHY for c in rows)
    # Text words and matchers together, in either order.
    both = chosen(fleet, 'gw,env="prod"')
    assert both == chosen(fleet, 'env="prod",gw') and both
    assert all("gw" in c.name and c.attr("env") == "prod" for c in both)
    # The bulk path (positions) agrees with the per-row predicate for the matchers.
    flt = parse_filter('env="prod",health=~"unhealthy|offline"')
    assert [fleet[i] for i in flt.positions(list(fleet))] == chosen(fleet, 'env="prod",health=~"unhealthy|offline"')


@pytest.mark.parametrize(("text", "column"), [('env="prod" region="eu"', 12), ('env="prod', 5), ("env='prod'", 5)])
def test_bad_filters_name_the_column(text: str, column: int) -> None:
    with pytest.raises(MatcherError, match=f"at column {column}:"):
        parse_filter(text)


def test_narrow_adds_to_the_filter_in_force() -> None:
    assert narrow("", "region", "us-east-1") == 'region="us-east-1"'
    assert narrow('env="prod"', "region", "us-east-1") == 'env="prod",region="us-east-1"'
    # The same key again replaces its value (drilling into another region of the same env).
    assert narrow('env="prod",region="eu-west-1"', "region", "us-east-1") == 'env="prod",region="us-east-1"'
    assert narrow("gw", "health", "unhealthy") == 'gw,health="unhealthy"'
    assert narrow('{env="prod"}', "type", "otel") == 'env="prod",type="otel"'


def test_what_counts_as_a_problem() -> None:
    c = Collector("a", "a", CollectorType.OTEL, health=Health.HEALTHY, remote_config=RemoteConfig(ConfigStatus.APPLIED, "h1"))
    assert problems(c) == ()
    assert problem(c.with_changes(health=Health.DEGRADED)) is None  # degraded is not broken
    failed = c.with_changes(remote_config=RemoteConfig(ConfigStatus.FAILED, "h2", "bad yaml"))
    assert problems(failed) == (Problem.CONFIG_FAILED,)
    # A backend that knows the assigned hash (OpAMP): APPLIED with another hash is a problem;
    # APPLYING the assigned one is not.
    other = c.with_changes(remote_config=RemoteConfig(ConfigStatus.APPLIED, "h1", "", assigned="h2"))
    assert problems(other) == (Problem.OTHER_CONFIG,)
    assert problems(c.with_changes(remote_config=RemoteConfig(ConfigStatus.APPLYING, "h2", "", assigned="h2"))) == ()
    both = failed.with_changes(health=Health.UNHEALTHY)
    assert problems(both) == (Problem.UNHEALTHY, Problem.CONFIG_FAILED) and problem(both) == Problem.UNHEALTHY
    assert problems(c.with_changes(health=Health.OFFLINE)) == (Problem.OFFLINE,)
