"""The paged engineer, in a real terminal (tmux, 80x24), against a real `otelcockpit serve` with real
simulated OpAMP agents: "collectors in prod <region> started failing after a config change".

From launch they find the broken collectors of that place, see what changed just before, copy the
rollback command (in at most 3 keys from the incident view), run the copied command in another
terminal, and watch the fleet recover. Once from `otelcockpit incident`, once from the cockpit.
The copy is read where a user's terminal puts it: tmux turns the OSC 52 sequence into a paste buffer.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waits import wait_until

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "opamp_server"))
sys.path.insert(0, str(HERE.parent / "rollout_opamp"))

from opamp_server_support import WRITE_TOKEN, ServeProcess, start_serve  # noqa: E402
from rollout_opamp_support import V1, agents, setup_v1, simulate, stop_all, wait_agents  # noqa: E402

from otelcockpit.opamp_server.core import config_hash  # noqa: E402
from otelcockpit.simulate.agents import build_agents, make_profiles  # noqa: E402

ROOT = HERE.parents[1]
COUNT, SEED, FAIL_RATE = 10, 11, 0.5


def digest(body: str) -> bytes:
    return config_hash({"collector.yaml": (body.encode(), "text/yaml")})


def failing(body: str) -> set[str]:
    """The names of the simulated agents that report FAILED for this file (decided per agent and hash)."""
    sims = build_agents(COUNT, SEED, fail_rate=FAIL_RATE)
    return {f"{a.profile.attr('service.name')}@{a.profile.attr('host.name')}" for a in sims if a.will_fail(digest(body))}


def the_place() -> tuple[str, str, set[str]]:
    """The (env, region) with the most agents, and their names."""
    profiles = make_profiles(COUNT, SEED)
    by = Counter((p.attr("env"), p.attr("region")) for p in profiles)
    (env, region), n = by.most_common(1)[0]
    assert n >= 2, by
    names = {f"{p.attr('service.name')}@{p.attr('host.name')}" for p in profiles
             if (p.attr("env"), p.attr("region")) == (env, region)}
    return env, region, names


def salted(want: Any) -> str:
    for i in range(20000):
        body = V1 + f"# change {i}\n"
        if want(failing(body)):
            return body
    raise AssertionError("no salt found")


@pytest.fixture
def broken_place(tmp_path: Path, config_file: Path) -> Iterator[dict[str, Any]]:
    """serve + 10 agents on v1 (which none fails); a staged push of v2 to one place, where every
    agent fails to apply it, has paused at its gate. A context `lab` names the server."""
    env, region, members = the_place()
    v1 = salted(lambda bad: not bad)
    v2 = salted(lambda bad: members <= bad)
    serve: ServeProcess = start_serve(tmp_path / "srv", heartbeat=2)
    procs = [simulate(serve, COUNT, transport="ws", fail_rate=FAIL_RATE, seed=SEED, duration=600)]
    try:
        wait_agents(serve, COUNT)
        setup_v1(serve, COUNT, body=v1)
        config_file.write_text(
            "current_context: lab\n"
            f"contexts:\n  lab:\n    backend: opamp\n    url: {serve.admin_url.removesuffix('/api/v1')}\n"
            "    token_env: OTELCOCKPIT_OPAMP_TOKEN\n"
        )
        v2_file = tmp_path / "gateway-v2.yaml"
        v2_file.write_text(v2)
        env_vars = {**os.environ, "OTELCOCKPIT_OPAMP_TOKEN": WRITE_TOKEN}
        start = subprocess.run(
            [sys.executable, "-m", "otelcockpit", "rollout", "start", "--pipeline", "gateway", "--file", str(v2_file),
             "--canary", f'env="{env}",region="{region}"', "--waves", "100%", "--max-failures", "0", "--soak", "0s",
             "--yes", "--json"],
            capture_output=True, text=True, env=env_vars, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
        assert start.returncode == 0, start.stderr
        rid = json.loads(start.stdout)["id"]

        def paused() -> bool:
            status, body = serve.api("GET", f"/rollouts/{rid}")
            return status == 200 and body["state"] == "paused"

        wait_until(paused, f"rollout {rid} to pause at its gate", timeout=60)
        broken = {a["instance_uid"] for a in agents(serve) if (a["remote_config_status"] or {}).get("status") == "FAILED"}
        assert len(broken) == len(members)
        yield {"env": env, "region": region, "members": members, "serve": serve, "env_vars": env_vars}
    finally:
        for p in procs:  # nothing to keep: no need to wait for the agents to say goodbye
            p.kill()
        stop_all(procs)
        serve.stop()


def clipboard(t: Any) -> str:
    """What the app copied (OSC 52): tmux keeps it as its newest paste buffer."""
    return wait_until(lambda: t.tmux("show-buffer").strip(), "a copy in tmux's paste buffer", timeout=10)


def run_copied(terminal: Any, command: str, env_vars: dict[str, str]) -> str:
    """Run the copied command in another terminal as a person would: it asks, they say y."""
    argv = shlex.split(command)
    assert argv[0] == "otelcockpit", command
    t2 = terminal(*argv[1:], env={"OTELCOCKPIT_OPAMP_TOKEN": env_vars["OTELCOCKPIT_OPAMP_TOKEN"]})
    t2.wait_for("[y/N]", timeout=30)
    t2.type("y")
    t2.keys("Enter")

    def state() -> list[str]:
        fmt = "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}"
        return t2.tmux("display-message", "-p", "-t", t2.session, fmt).strip().split("|")

    wait_until(lambda: state()[0] == "1", lambda: f"the rollback command to end ({state()}):\n{t2.screen()}", timeout=60)
    dead, status, signal = state()
    assert status in ("0", "") and not signal, f"the rollback command ended badly ({state()}):\n{t2.screen()}"
    return t2.screen()


def all_applied_again(serve: ServeProcess, members: set[str]) -> bool:
    got = {f"{(a['identifying_attributes'] or {}).get('service.name')}@{(a['non_identifying_attributes'] or {}).get('host.name')}":
           (a["remote_config_status"] or {}).get("status") for a in agents(serve)}  # fmt: skip
    return all(got.get(m) == "APPLIED" for m in members)


@pytest.fixture
def clip_terminal(terminal):  # noqa: ANN001, ANN201
    """The terminal fixture, with tmux keeping what applications copy (OSC 52) and panes that stay
    after their program ends (to read what it printed)."""

    def start(*argv: str, **kwargs: Any) -> Any:
        t = terminal(*argv, **kwargs)
        t.tmux("set-option", "-g", "set-clipboard", "on")
        t.tmux("set-option", "-g", "remain-on-exit", "on")
        return t

    return start


def test_from_the_incident_view(broken_place, clip_terminal) -> None:  # the terminals end first
    place, members = f'{broken_place["env"]}/{broken_place["region"]}', broken_place["members"]
    t = clip_terminal("incident", env={"OTELCOCKPIT_OPAMP_TOKEN": WRITE_TOKEN})
    t.wait_for("CHANGED BEFORE", "cfg failed", "PROBLEM", "WHERE", timeout=30)  # the essential columns, at 80x24
    # The broken collectors of the place: the filter of the Fleet view.
    t.open_filter()
    t.type(f'env="{broken_place["env"]}",region="{broken_place["region"]}"')
    t.keys("Enter")
    screen = t.wait_for(f'/env="{broken_place["env"]}"', f"Where {place}", "gateway paused")
    rows = [ln for ln in screen.splitlines() if "cfg failed" in ln]
    assert len(rows) == len(members) and all(place in ln for ln in rows), screen
    assert all("gateway rollout" in ln for ln in rows), screen  # what changed before it broke: the push
    # ...and the rollout, stopped at its gate ("gateway paused", waited for above).
    # One key copies the rollback command.
    t.keys("y")
    t.wait_for("Copied the rollback command")
    command = clipboard(t)
    assert command == "otelcockpit --context lab rollback gateway --to 1", command
    out = run_copied(clip_terminal, command, broken_place["env_vars"])
    assert "gateway" in out and "revision 1" in out
    wait_until(lambda: all_applied_again(broken_place["serve"], members), "the place's agents back on version 1",
               timeout=120)
    t.wait_for("no collector with a problem", timeout=30)  # the place recovered


def test_from_the_cockpit(broken_place, clip_terminal) -> None:  # the terminals end first
    env, region, members = broken_place["env"], broken_place["region"], broken_place["members"]
    t = clip_terminal(env={"OTELCOCKPIT_OPAMP_TOKEN": WRITE_TOKEN})
    t.wait_for("[1] Fleet 10", "cfg", "gateway", timeout=30)
    # The troubled place is a line of the cockpit: select it (j/k) and open its broken collectors.
    for _ in range(12):
        screen = t.screen()
        line = next((ln for ln in screen.splitlines() if f" {env} " in ln and region in ln), "")
        if "cfg" in line:
            break
        t.keys("j")
    t.keys("Enter")
    screen = t.wait_for(f'/env="{env}",region="{region}",problem!=""', "Collectors")
    rows = [ln for ln in screen.splitlines() if "failed" in ln]
    assert len(rows) == len(members), screen
    # Back to the cockpit: what changed, with its rollback target; select it and copy the command.
    t.keys("0")
    t.wait_for("[2] Changed in the last 24 h", "gateway", "↩ rev 1")
    t.keys("G")  # the last item of the list: the newest change is the only one
    t.keys("y")
    t.wait_for("Copied the rollback command")
    command = clipboard(t)
    assert command == "otelcockpit --context lab rollback gateway --to 1", command
    run_copied(clip_terminal, command, broken_place["env_vars"])
    wait_until(lambda: all_applied_again(broken_place["serve"], members), "the place's agents back on version 1",
               timeout=120)
    t.wait_gone("cfg", timeout=30)  # no collector left whose config failed to apply
