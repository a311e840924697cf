"""``otelcockpit rollout ... --source opamp --url URL``: the CLI drives the rollout that runs in the server;
read-only refuses every step (the CLI with exit 1 and one line, the API with 403)."""

from __future__ import annotations

import json
from pathlib import Path

from opamp_server_support import READ_TOKEN, WRITE_TOKEN, ServeProcess, wait_for
from rollout_opamp_support import V2, all_applied, cli, setup_v1, simulate, stop_all, wait_agents, wait_state


def _env(tmp_path: Path, token: str) -> dict[str, str]:
    return {
        "OTELCOCKPIT_OPAMP_TOKEN": token,
        "OTELCOCKPIT_CONFIG": str(tmp_path / "no-config.yaml"),
        "OTELCOCKPIT_DATA_DIR": str(tmp_path / "cli-data"),
    }


def test_cli_plan_start_status_changes_rollback_and_read_only(serve: ServeProcess, tmp_path: Path) -> None:
    procs = [simulate(serve, 6, transport="ws", seed=31)]
    try:
        wait_agents(serve, 6)
        v1 = setup_v1(serve, 6)
        new = tmp_path / "gateway.yaml"
        new.write_text(V2, encoding="utf-8")
        src = ["--source", "opamp", "--url", serve.admin_url]
        flags = [
            "--pipeline",
            "gateway",
            "--file",
            str(new),
            "--canary",
            "1",
            "--waves",
            "50%,100%",
            "--apply-timeout",
            "20s",
            "--soak",
            "0s",
        ]
        env = _env(tmp_path, WRITE_TOKEN)

        r = cli("rollout", "plan", *src, *flags, env=env)
        assert r.returncode == 0, r.stderr
        assert "blast radius: 6 collector(s)" in r.stdout and "live revision 1" in r.stdout
        assert "+    verbosity: basic" in r.stdout  # the diff
        assert serve.api("GET", "/rollouts")[1] == {"rollouts": []}  # planning changes nothing
        r = cli("rollout", "plan", *src, *flags, env=_env(tmp_path, READ_TOKEN))
        assert r.returncode == 0, r.stderr  # a read token may plan

        # read-only: every step refused before anything is sent, exit 1, one line
        for argv in (
            ["rollout", "start", *src, *flags, "--yes"],
            ["rollout", "pause", *src, "r0000"],
            ["rollout", "resume", *src, "r0000"],
            ["rollout", "abort", *src, "r0000"],
            ["rollback", *src, "gateway", "--now"],
        ):
            r = cli(*argv, "--read-only", env=env)
            assert r.returncode == 1, (argv, r.stdout, r.stderr)
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("otelcockpit: read-only: refused"), (
                r.stderr
            )
        # a read token: the server refuses (403), the CLI says so in one line
        r = cli("rollout", "start", *src, *flags, "--yes", env=_env(tmp_path, READ_TOKEN))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "write token" in r.stderr, r.stderr
        assert serve.api("GET", "/rollouts")[1] == {"rollouts": []}

        # start returns at once; the rollout runs in the server
        r = cli("rollout", "start", *src, *flags, "--yes", "--json", env=env)
        assert r.returncode == 0, r.stderr
        started = json.loads(r.stdout)
        rid = started["id"]
        assert started["backend"] == "opamp" and started["plan"]["new"]["id"] == "2"
        r = cli("rollout", "status", *src, rid, "--watch", env=env)
        assert r.returncode == 0, r.stderr
        assert f"rollout {rid}" in r.stdout and "state completed" in r.stdout, r.stdout
        v2 = serve.api("GET", "/configs/gateway/versions/2")[1]["hash"]
        wait_for(lambda: all_applied(serve, v2, 6), 15)
        r = cli("rollout", "status", *src, "--json", env=env)
        assert [x["id"] for x in json.loads(r.stdout)["rollouts"]] == [rid]
        r = cli("rollout", "status", *src, env=env)
        assert rid in r.stdout and "completed" in r.stdout
        r = cli("rollout", "pause", *src, rid, env=env)
        assert r.returncode == 1 and "completed" in r.stderr and r.stderr.count("\n") == 1

        r = cli("changes", *src, "--since", "1h", "--json", env=env)
        assert r.returncode == 0, r.stderr
        kinds = [c["kind"] for c in json.loads(r.stdout)["changes"]]
        assert "rollout.completed" in kinds and "rollout.planned" in kinds

        # rollback to the last known good: version 1 again on every agent
        r = cli("rollback", *src, "gateway", "--now", env=env)
        assert r.returncode == 0, r.stderr
        assert "from revision 2 to revision 1" in r.stdout, r.stdout
        wait_for(lambda: all_applied(serve, v1, 6), 15)
        assert wait_state(serve, rid, "rolled_back")["state"] == "rolled_back"
        r = cli("rollback", *src, "gateway", "--now", "--to", "7", env=env)
        assert r.returncode == 2 and "--to 7: not a revision of gateway" in r.stderr and r.stderr.count("\n") == 1
    finally:
        stop_all(procs)


def run_as_printed(line: str, env: dict[str, str], answer: str | None = None) -> tuple[int, str]:
    """Run a command line the cockpit printed or copied, as a user pasting it would: exactly as it is,
    in a terminal when it asks a question (answered with ``answer``)."""
    import os
    import pty
    import shlex
    import subprocess
    import sys

    words = shlex.split(line)
    assert words[0] == "otelcockpit", line
    argv = [sys.executable, "-m", "otelcockpit", *words[1:]]
    full = {**os.environ, **env}
    if answer is None:
        r = subprocess.run(argv, capture_output=True, text=True, env=full, timeout=60)
        return r.returncode, r.stdout + r.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=full)
    os.close(follower)
    out = b""
    os.write(leader, (answer + "\n").encode())
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_every_printed_command_runs_as_printed(serve: ServeProcess, tmp_path: Path) -> None:
    """Started with --source opamp --url (no context): the follow and pause commands `rollout start`
    prints, and the rollback command the incident view copies, carry what reaches the same server."""
    procs = [simulate(serve, 4, transport="ws", seed=71)]
    try:
        wait_agents(serve, 4)
        v1 = setup_v1(serve, 4)
        new = tmp_path / "gateway.yaml"
        new.write_text(V2, encoding="utf-8")
        src = ["--source", "opamp", "--url", serve.admin_url]
        env = _env(tmp_path, WRITE_TOKEN)
        r = cli("rollout", "start", *src, "--pipeline", "gateway", "--file", str(new), "--canary", "1",
                "--waves", "100%", "--soak", "0s", "--manual", "--yes", env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        printed = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                   if line.startswith(("follow:", "pause:"))}  # fmt: skip
        assert set(printed) == {"follow", "pause"}
        for line in printed.values():
            assert f"--source opamp --url {serve.admin_url}" in line, line
        code, out = run_as_printed(printed["follow"], env)  # waits while it runs, up to the manual pause
        assert code == 0 and "state paused" in out, out
        code, out = run_as_printed(printed["pause"], env)
        assert code == 0 and "already paused" in out, out

        r = cli("incident", *src, "--hours", "1", "--json", env=env)
        assert r.returncode == 0, r.stderr
        [line] = json.loads(r.stdout)["rollouts"]
        command = line["rollback_command"]
        assert command.startswith(f"otelcockpit --source opamp --url {serve.admin_url} rollback gateway"), command
        code, out = run_as_printed(command, env, answer="y")
        assert code == 0 and "aborted rollout" in out, out
        wait_for(lambda: all_applied(serve, v1, 4), 20)
    finally:
        stop_all(procs)
