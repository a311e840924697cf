"""The real program in a real terminal (tmux, 80x24): what an on-call engineer over SSH sees."""

from __future__ import annotations

from waits import wait_until


def test_demo_fleet_filter_detail_and_quit(terminal):
    t = terminal()
    screen = t.wait_for("[1] Fleet 420")  # the cockpit opens first
    t.keys("1")
    # the Fleet view's keys are in the footer once it has focus
    t.wait_for("g Group", "Collectors 420", "alloy-prod-euw1-node-001", "? Help", "/ Filter")
    # The `/` filter, live: the gateways only.
    t.open_filter()
    t.type("gw")
    screen = t.wait_for("otel-prod-euw1-gw-001")
    assert "alloy-prod-euw1-node-001" not in screen
    t.keys("Enter")
    screen = t.wait_for("/gw")
    # The detail of the selected collector, and back.
    t.keys("Enter")
    t.wait_for("Collectors › otel-prod-euw1-gw-001", "type / version", "rollback to")
    t.keys("Escape")
    t.wait_gone("Collectors ›")
    # esc clears the filter, q quits cleanly.
    t.keys("Escape")
    t.wait_for("Collectors 420")
    t.keys("q")
    wait_until(lambda: not t.alive(), "the cockpit to quit on q", timeout=5)


def test_matcher_filter_in_a_real_terminal(terminal):
    t = terminal("--view", "fleet")  # straight to the Fleet view
    t.wait_for("g Group")
    t.open_filter()
    t.type('env="staging",region=~"us-.*"')
    t.keys("Enter")
    screen = t.wait_for('/env="staging"')
    rows = [line for line in screen.splitlines() if "-stg-" in line]
    assert rows and all("us-east-1" in line for line in rows)


def test_read_only_hides_every_mutating_key(terminal):
    t = terminal("--read-only")
    t.wait_for("[1] Fleet")
    t.keys("1")
    screen = t.wait_for("g Group")
    assert " RO " in screen
    assert "On/off" not in screen  # the footer offers nothing that writes
    t.keys("e")  # bound to nothing in read-only: no confirmation appears
    screen = t.screen()
    assert "Enable collector" not in screen and "Disable collector" not in screen
    t.keys("?")
    screen = t.wait_for("Keys here")
    assert "On/off" not in screen and "Set attribute" not in screen
    assert "read-only" in screen


def test_writable_footer_offers_mutating_key(terminal):
    t = terminal()
    t.wait_for("[1] Fleet")
    t.keys("1")
    screen = t.wait_for("e On/off")
    t.keys("e")
    screen = t.wait_for("collector")
    assert "Cancel" in screen


def test_too_small_terminal_says_so(terminal):
    t = terminal(width=70, height=20)
    screen = t.wait_for("terminal too small")
    assert "70x20" in screen and "80x24" in screen


def test_cockpit_is_the_first_screen(terminal):
    t = terminal()
    # Every panel of the cockpit (a loaded machine paints them in several passes).
    t.wait_for("Changed in the last 24 h", "[1] Fleet 420", "[3] Services", "[4] Phases", "[5] Rollout")
    t.wait_for("zero-code")  # the eligibility analysis arrives from a worker


def test_unknown_view_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "otelcockpit", "--view", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "otelcockpit: unknown view 'nope' (one of cockpit, fleet, pipelines, services, phases, rollouts, changes)"
    ]


def test_a_terminal_that_disappears_ends_the_app_with_its_state_saved(terminal):
    import json
    import os
    from pathlib import Path

    t = terminal("--view", "fleet")
    t.wait_for("g Group")
    t.open_filter()
    t.type("gw")
    t.keys("Enter")
    t.wait_for("/gw")
    pid = int(t.tmux("list-panes", "-t", t.session, "-F", "#{pane_pid}").split()[0])
    t.tmux("kill-session", "-t", t.session)  # the SSH link drops: SIGHUP
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, "the app to end with its terminal", timeout=10)
    state = json.loads((Path(os.environ["OTELCOCKPIT_DATA_DIR"]) / "tui-state.json").read_text())
    assert state["view"] == "fleet" and state["filters"]["fleet"] == "gw"
