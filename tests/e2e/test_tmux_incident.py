"""The incident view and the walkthrough, as the real program in a real terminal (tmux, 80x24)."""

from __future__ import annotations

from waits import wait_until


def _quits(t) -> bool:  # noqa: ANN001
    t.keys("q")
    return wait_until(lambda: not t.alive(), "the app to quit on q", timeout=5)


def test_incident_view_read_only_changed_before_it_broke(terminal):
    t = terminal("incident")
    screen = t.wait_for("CHANGED BEFORE", "PROBLEM", "WHERE")
    # The footer comes with the table's focus, which may land a paint after the rows (seen in CI).
    screen = t.wait_for("alloy-prod-euw1-node-033", "y Copy rollback cmd")
    assert " RO " in screen  # always read-only, without --read-only
    row = next(line for line in screen.splitlines() if "alloy-prod-euw1-node-033" in line)
    # linux_host_metrics revision 1003 reached it 2 h ago; at 80 columns the change is cut after its
    # revision, the changes table below has its rollback target.
    assert "unhealthy" in row and "prod/eu-west-1" in row and "linux_host_metrics rev 10" in row
    changes = next(line for line in screen.splitlines() if "linux_host_metrics" in line and "rev 1003" in line
                   and "1002" in line)
    assert changes
    assert "Changes in the last 24 h" in screen and "Rollouts none running or paused" in screen
    # Nothing that writes is offered, in the footer or in help.
    t.keys("?")
    help_screen = t.wait_for("Keys here")
    for label in ("On/off", "Set attribute", "Roll back", "Sign off"):
        assert label not in help_screen
    t.keys("Escape")
    t.wait_gone("Keys here")
    # y copies the selected collector's rollback command (OSC 52) and says so.
    t.keys("y")
    screen = t.wait_for("Copied the rollback command")
    assert "linux_host_metrics --to 1002" in screen
    assert _quits(t)


def test_incident_hours_flag(terminal):
    t = terminal("incident", "--hours", "4")
    screen = t.wait_for("Changes in the last 4 h")
    screen = t.wait_for("rev 1003")
    assert "rev 1006" not in screen  # otel_gateway_traces changed 5 h ago


def test_walkthrough_presenter_keys(terminal):
    t = terminal("walkthrough")
    screen = t.wait_for("Walkthrough · 1/10")
    t.wait_for("Rolling OpenTelemetry out")
    t.keys("n")
    screen = t.wait_for("Walkthrough · 2/10")
    assert "Phase 1: Infrastructure" in screen
    t.keys("n")
    t.wait_for("Phase 2: Baseline service visibility")
    t.keys("p")  # previous (pause is shift+p in the walkthrough)
    screen = t.wait_for("Walkthrough · 2/10")
    assert "PAUSED" not in screen
    t.keys("3")
    t.wait_for("Phase 3: Transactions", "Walkthrough · 4/10", "n Next", "p Previous")
    assert _quits(t)


def test_incident_too_small_terminal(terminal):
    t = terminal("incident", width=70, height=20)
    screen = t.wait_for("terminal too small")
    assert "80x24" in screen
