"""The walkthrough as data (slides from the live adoption analysis) and its Markdown export."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from otelcockpit import settings as settings_mod
from otelcockpit.adoption.cockpit import analyse, load_sources, resolve_sources
from otelcockpit.adoption.phases import PhaseReport, order_warnings
from otelcockpit.adoption.walkthrough import (
    FAIL,
    build_slides,
    choose_journey,
    next_actions,
    phase_index,
    to_markdown,
)
from otelcockpit.backends import make_backend
from otelcockpit.errors import UsageError
from otelcockpit.fleet.model import Health

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(frozen_clock):  # noqa: ANN001, ANN201
    settings = settings_mod.resolve()

    async def go():  # noqa: ANN202
        backend = make_backend(settings, clock=frozen_clock)
        try:
            return await backend.snapshot()
        finally:
            await backend.close()

    snap = asyncio.run(go())
    inventory, journeys, conventions = load_sources(resolve_sources(settings))
    return snap, analyse(snap, inventory, journeys=journeys, conventions=conventions)


def test_slides_in_presenting_order(demo) -> None:
    snap, data = demo
    slides = build_slides(snap, data)
    assert [s.id for s in slides] == [
        "intro",
        "phase-1",
        "phase-2",
        "phase-3",
        "phase-4",
        "order",
        "drill",
        "teams",
        "journey",
        "next",
    ]
    for n in (1, 2, 3, 4):
        assert slides[phase_index(slides, n)].phase == n
    assert phase_index(slides, 5) is None


def test_intro_carries_the_live_numbers(demo) -> None:
    snap, data = demo
    intro = build_slides(snap, data)[0]
    text = "\n".join(ln.text for ln in intro.lines)
    healthy = sum(1 for c in snap.collectors if c.health == Health.HEALTHY)
    assert f"{len(snap.collectors)} collectors: {healthy} healthy" in text
    code = sum(1 for e in data.eligibility if e.code_change)
    assert f"{len(data.eligibility)} services" in text and f"{code} need a code change" in text
    for p in data.phases.phases:
        passed = sum(1 for i in p.items if i.passed)
        assert f"{p.number}. {p.name}: {passed}/{len(p.items)} checks pass" in text


def test_phase_slides_show_every_check_and_why(demo) -> None:
    snap, data = demo
    slides = build_slides(snap, data)
    for phase in data.phases.phases:
        slide = slides[phase_index(slides, phase.number)]
        texts = [ln.text for ln in slide.lines]
        for item in phase.items:
            line = next(ln for ln in slide.lines if ln.text.startswith(item.title))
            assert line.kind == ("ok" if item.passed else "fail")
        assert "Why here" in texts
    p3 = slides[phase_index(slides, 3)]
    why = " ".join(ln.text for ln in p3.lines)
    assert (
        "no sampling at the source" in why
        and "no tail sampling" in why
        and "one critical journey" in why.lower()
    )


def test_why_the_order_matters_uses_the_live_checks(demo) -> None:
    snap, data = demo
    order = next(s for s in build_slides(snap, data) if s.id == "order")
    heads = [ln.text for ln in order.lines if ln.kind == "head"]
    assert heads == [
        "Foundations before app-specific insight",
        "No code change where a zero-code path exists",
        "Central sampling: no sampling at the source, no tail sampling",
        "One critical journey end to end first",
        "Never let an unavailable fleet API push collectors back to a default config",
    ]
    # The demo runs tail sampling on its gateways: the slide says so, as a failing check.
    tail = data.phases.item("p3.no-tail-sampling")
    line = next(ln for ln in order.lines if ln.text.startswith(tail.title))
    assert line.kind == ("ok" if tail.passed else FAIL)
    # The phase-order warnings of the analysis are on the slide.
    for w in data.phases.warnings:
        assert any(ln.text == w for ln in order.lines)


def test_the_drill_slide_is_built_from_a_drills_real_numbers(demo) -> None:
    from otelcockpit.drill import DrillOptions
    from otelcockpit.drill.demo import run_demo_drill
    from otelcockpit.fleet.model import parse_time

    snap, data = demo
    empty = next(s for s in build_slides(snap, data) if s.id == "drill")
    assert empty.lead.startswith("No outage drill is recorded here yet")
    assert any("otelcockpit drill outage --serve" in ln.text for ln in empty.lines)
    record = asyncio.run(
        run_demo_drill(DrillOptions(scale_out=9, without_cache=0.5), start=parse_time("2026-11-20T09:00:00Z"))
    )
    slide = next(s for s in build_slides(snap, data, drill=record) if s.id == "drill")
    back = record.step("api back")
    assert back is not None
    fallback, cached = back.observed["came_up_fallback"], back.observed["came_up_cached"]
    assert fallback + cached == 9
    assert f"When it returned: {fallback} had come up on their bootstrap config, {cached} on a cached older remote config." in slide.lead
    head, *rows = slide.table
    assert head == ("step", "at", "what happened", "the cockpit counted")
    assert [r[0] for r in rows] == ["steady", "api down", "scale-out", "api back", "converged"]
    assert rows[3][3] == f"api down 0, collectors 429, came up fallback {fallback}, came up cached {cached}, still off 9"
    boot = next(ln for ln in slide.lines if "came up on their bootstrap config" in ln.text)
    assert boot.kind == FAIL and "adds a debug exporter" in boot.text  # heavier than the managed config
    assert any(ln.text.startswith("api down: a push was refused: refused: the fleet data is stale") for ln in slide.lines)
    assert slide.lines[-1].text == "lint the bootstrap config: otelcockpit lint --bootstrap FILE"


def test_eligibility_per_team(demo) -> None:
    snap, data = demo
    teams = next(s for s in build_slides(snap, data) if s.id == "teams")
    head, *rows = teams.table
    assert head[0] == "TEAM"
    assert sum(int(r[1]) for r in rows) == len(data.eligibility)
    decided = [e for e in data.eligibility if e.status == "decided"]
    assert sum(int(r[3]) for r in rows) == sum(1 for e in decided if e.code_change)
    # zero-code, code change, conditional, unknown: each service in one of them
    for r in rows:
        assert int(r[2]) + int(r[3]) + int(r[4]) + int(r[5]) == int(r[1])
    conditional = [e for e in data.eligibility if e.status == "conditional"]
    assert sum(int(r[4]) for r in rows) == len(conditional) > 0  # the demo has some
    # the field to fill, per team and in the slide's warning
    for e in conditional:
        row = next(r for r in rows if r[0] == (e.service.team or "unknown"))
        assert row[7] != "-"
    assert any("conditional" in ln.text and "fill" in ln.text for ln in teams.lines)


def test_journey_choice(demo) -> None:
    snap, data = demo
    least = min(data.journeys, key=lambda j: j.coverage)
    assert choose_journey(data.journeys, None) is least
    slides = build_slides(snap, data)
    journey = next(s for s in slides if s.id == "journey")
    assert journey.title == f"Journey: {least.journey.name}"
    by_name = next(s for s in build_slides(snap, data, journey="Article READ") if s.id == "journey")
    assert by_name.title == "Journey: Article read"
    assert [r[0] for r in by_name.table[1:]] == list(
        next(j for j in data.journeys if j.journey.id == "article-read").journey.services
    )
    with pytest.raises(UsageError, match="no such journey .known: article-read"):
        build_slides(snap, data, journey="nope")


def test_next_actions_are_derived_from_the_failing_checks(demo) -> None:
    snap, data = demo
    earliest = next(p for p in data.phases.phases if not p.at_threshold)
    actions = next_actions(data, choose_journey(data.journeys, None))
    failing = [ln for ln in actions if ln.kind == FAIL]
    assert failing and all(ln.text.startswith(f"Phase {earliest.number}: ") for ln in failing)
    assert {ln.text.split(": ", 1)[1].rsplit(" (", 1)[0] for ln in failing} <= {
        i.title for i in earliest.items if not i.passed
    }
    # Fix that phase (every check at its threshold): the actions move on to the next phase.
    fixed = tuple(
        replace(p, items=tuple(replace(i, value=i.threshold) for i in p.items))
        if p.number == earliest.number
        else p
        for p in data.phases.phases
    )
    data2 = replace(data, phases=PhaseReport(fixed, tuple(order_warnings(fixed)), data.phases.services))
    later = next(p for p in fixed if not p.at_threshold)
    actions2 = next_actions(data2, None)
    assert [ln for ln in actions2 if ln.kind == FAIL][0].text.startswith(f"Phase {later.number}: ")
    assert not any(ln.text.startswith(f"Phase {earliest.number}: ") for ln in actions2)


def test_markdown(demo) -> None:
    snap, data = demo
    slides = build_slides(snap, data, full=True)
    md = to_markdown(slides)
    assert md.startswith("# OpenTelemetry rollout walkthrough\n")
    assert md.count("\n## ") == len(slides)
    assert "## 2. Phase 1: Infrastructure" in md and "## 10. Next actions" in md and "## 11. Sign-offs" in md
    assert "| TEAM | SVCS |" in md and "|---|" in md
    assert "\n\n\n" not in md and md.endswith("\n")


def test_the_export_is_a_finished_document(demo, frozen_clock) -> None:
    """Bullets without a stray mark, checks as tables with their sign-offs (who, when, why), whole
    lists (no "… and 4 more"), times to the second, counts that match what they name."""
    from otelcockpit.adoption.phases import SignOff

    snap, data = demo
    phases = tuple(
        replace(p, items=tuple(replace(i, signoff=SignOff(i.id, "ana", "2026-11-19T16:30:00.123456Z", "dev ECS next sprint"))
                               if i.id == "p1.host-metrics" else i for i in p.items))
        for p in data.phases.phases
    )
    data = replace(data, phases=replace(data.phases, phases=phases))
    md = to_markdown(build_slides(snap, data, full=True))
    assert "- · " not in md and "…" not in md
    assert "| Check | Now | Threshold | Passes | Signed off |" in md
    assert "| ana, 2026-11-19 16:30:00 UTC: dev ECS next sprint |" in md
    assert "| Host metrics (prometheus.exporter.unix or hostmetrics) on VM and node collectors (p1.host-metrics) | 1 | ana " in md
    assert "(data of 2026-11-20 09:00:00 UTC)" in md and ".123456" not in md
    # Every failing reason of every failing check is there.
    for p in data.phases.phases:
        for i in p.items:
            for reason in i.failing:
                assert reason in md
    # "Plan code changes with N teams" names all N.
    line = next(ln for ln in md.splitlines() if "Plan code changes with" in ln)
    n = int(line.split("with ")[1].split(" team")[0])
    assert line.split(": ", 1)[1].count("(") == n
    # The screen keeps its short lists (the export is the whole document).
    screen = build_slides(snap, data)
    assert any("… and" in ln.text for s in screen for ln in s.lines)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "otelcockpit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_export_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "session.md"
    proc = _cli("walkthrough", "--journey", "subscription-purchase", "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "11 slides" in proc.stdout  # the 10 of the screen and the sign-offs
    md = out.read_text()
    assert "## 9. Journey: Subscription purchase" in md
    assert md.count("\n## ") == 11 and "## 11. Sign-offs" in md


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = _cli("walkthrough", "--journey", "nope", "--export", str(tmp_path / "x.md"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "otelcockpit: --journey nope: no such journey (known: article-read, subscription-purchase, login)"
    ]
    assert not (tmp_path / "x.md").exists()
    proc = _cli("walkthrough", "--export", str(tmp_path / "missing-dir" / "x.md"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("otelcockpit: --export ") and "Traceback" not in proc.stderr
    )
