"""The AvailableComponents pre-flight of a push, end to end: a real ``serve``, simulated agents that report
their components over WebSocket, the admin API and the CLI. The plan lists exactly the agents that lack a
component the new version uses; the context's choice leaves them out (and the server never offers them
the version, even after the fold) or blocks the push."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opamp_server_support import WRITE_TOKEN, ServeProcess, wait_for
from rollout_opamp_support import (
    V1,
    agents,
    cli,
    rollout,
    setup_v1,
    simulate,
    stop_all,
    wait_agents,
    wait_state,
)
from waits import wait_until

from otelcockpit.simulate.agents import components_of, make_profiles

COUNT, SEED = 12, 11
KAFKA = V1.replace(
    "exporters:\n  debug: {}\n", "exporters:\n  debug: {}\n  kafka:\n    brokers: [kafka-1:9092]\n"
).replace("exporters: [debug]", "exporters: [debug, kafka]")


def lacking_kafka() -> set[str]:
    """The agents of this seed whose (simulated) distribution has no kafka exporter."""
    import uuid

    return {
        str(uuid.UUID(bytes=p.uid))
        for p in make_profiles(COUNT, SEED)
        if "kafka" not in components_of(p)["exporters"]
    }


def components_reported(sp: ServeProcess) -> bool:
    for a in agents(sp):
        status, detail = sp.api("GET", f"/agents/{a['instance_uid']}")
        if status != 200 or not (detail.get("available_components") or {}).get("components"):
            return False
    return True


@pytest.fixture
def fleet(serve: ServeProcess):  # noqa: ANN201
    procs = [simulate(serve, COUNT, seed=SEED)]
    try:
        wait_agents(serve, COUNT)
        setup_v1(serve, COUNT)
        wait_for(lambda: components_reported(serve), 20)
        yield serve
    finally:
        stop_all(procs)


def env(tmp_path: Path) -> dict[str, str]:
    return {"OTELCOCKPIT_OPAMP_TOKEN": WRITE_TOKEN, "OTELCOCKPIT_DATA_DIR": str(tmp_path / "cli-data")}


def test_the_plan_lists_exactly_the_agents_without_the_component_and_blocks_by_default(
    fleet: ServeProcess, tmp_path: Path
) -> None:
    expected = lacking_kafka()
    assert 0 < len(expected) < COUNT  # the seed gives both kinds
    body = {"config": "gateway", "files": {"collector.yaml": {"body": KAFKA}}, "canary": "1", "soak": "0s"}
    status, out = fleet.api("POST", "/rollouts/plan", body)
    assert status == 200, out
    pf = out["plan"]["preflight"]
    assert {i["id"] for i in pf["incompatible"]} == expected
    assert all(i["missing"] == ["exporter:kafka"] for i in pf["incompatible"])
    assert pf["checked"] == COUNT and pf["unreported"] == 0 and pf["blocks"] is True
    assert out["plan"]["blocked"] is True
    staged = {cid for s in out["plan"]["stages"] for cid in s["collector_ids"]}
    assert expected <= staged  # a blocked plan still shows the whole blast radius
    finding = next(f for f in out["plan"]["findings"] if f["rule"] == "missing-component")
    # on the line of the plan's text (the version's files under their '# file:' headers) that names it
    assert finding["severity"] == "error"
    assert finding["line"] == out["plan"]["new"]["contents"].splitlines().index("  kafka:") + 1
    # The server refuses to start it, with the one line every face uses.
    status, err = fleet.api("POST", "/rollouts", body)
    assert status == 409 and "1 pre-flight error(s) block this push" in err["error"], err

    # The CLI shows the same plan (through the admin API) and refuses the same way.
    new = tmp_path / "gateway.yaml"
    new.write_text(KAFKA, encoding="utf-8")
    url = fleet.admin_url.removesuffix("/api/v1")
    args = ("--source", "opamp", "--url", url, "--pipeline", "gateway", "--file", str(new), "--canary", "1")
    r = cli("rollout", "plan", *args, "--no-diff", env=env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"plan: pre-flight: {len(expected)} collector(s) lack exporter:kafka: the push is BLOCKED" in r.stdout
    assert r.stdout.count("  blocks: ") == len(expected)
    r = cli("rollout", "start", *args, "--yes", env=env(tmp_path))
    assert r.returncode == 1 and "pre-flight error(s) block this push" in r.stderr, (r.stdout, r.stderr)


def test_exclude_leaves_them_out_and_the_server_never_offers_them_the_version(
    fleet: ServeProcess, tmp_path: Path
) -> None:
    expected = lacking_kafka()
    # The context's choice: rollout_defaults.missing_components: exclude (here given as the CLI flag's
    # default through a context in a config file, as a user would).
    config = tmp_path / "config.yaml"
    url = fleet.admin_url.removesuffix("/api/v1")
    config.write_text(
        "current_context: lab\ncontexts:\n  lab:\n    backend: opamp\n"
        f"    url: {url}\n    rollout_defaults:\n      missing_components: exclude\n      soak: 0s\n",
        encoding="utf-8",
    )
    new = tmp_path / "gateway.yaml"
    new.write_text(KAFKA, encoding="utf-8")
    e = {**env(tmp_path), "OTELCOCKPIT_CONFIG": str(config)}
    r = cli("rollout", "plan", "--pipeline", "gateway", "--file", str(new), "--canary", "1", "--json", env=e)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert {i["id"] for i in plan["preflight"]["incompatible"]} == expected
    assert plan["preflight"]["applied"] == "exclude" and plan["blocked"] is False
    assert plan["blast_radius"]["total"] == COUNT - len(expected)
    # A flag on the command line wins over the context.
    r = cli("rollout", "plan", "--pipeline", "gateway", "--file", str(new), "--missing-components", "block", env=e)
    assert r.returncode == 0 and "the push is BLOCKED (missing_components: block" in r.stdout, r.stderr
    r = cli("rollout", "start", "--pipeline", "gateway", "--file", str(new), "--canary", "1", "--yes", "--json", env=e)
    assert r.returncode == 0, (r.stdout, r.stderr)
    rid = json.loads(r.stdout)["id"]
    staged = {cid for s in rollout(fleet, rid)["plan"]["stages"] for cid in s["collector_ids"]}
    assert staged.isdisjoint(expected) and len(staged) == COUNT - len(expected)
    wait_state(fleet, rid, "completed", timeout=60)
    # After the fold every agent's assignment names version 2; the ones without kafka were never offered it.
    status, cfg = fleet.api("GET", "/configs/gateway")
    v1_hash, v2_hash = (v["hash"] for v in cfg["versions"])
    wait_for(lambda: all(
        (a["remote_config_status"] or {}).get("last_hash") == (v1_hash if a["instance_uid"] in expected else v2_hash)
        and a["remote_config_status"]["status"] == "APPLIED"
        for a in agents(fleet)
    ), 30)  # fmt: skip
    # ... and the config state says why, on every face that lists collectors.
    r = cli("collectors", "--json", env=e)
    assert r.returncode == 0, r.stderr
    states = {c["id"]: c["config_state"] for c in json.loads(r.stdout)["collectors"]}
    for uid, st in states.items():
        if uid in expected:
            assert st["state"] == "on cached remote", st
            assert "gateway@v2 is not sent to it: it lacks exporter:kafka" in st["reason"], st
        else:
            assert st == {"state": "in sync", "reason": "it runs gateway@v2"}, st


async def test_the_tui_review_lists_them_and_start_stays_off(fleet: ServeProcess, monkeypatch) -> None:  # noqa: ANN001
    import io

    from rich.console import Console

    from otelcockpit import settings as settings_mod
    from otelcockpit.tui.app import CockpitApp
    from otelcockpit.tui.rollout_views import EditScreen, ReviewScreen

    expected = lacking_kafka()
    names = {a["instance_uid"]: f"{a['identifying_attributes']['service.name']}@{a['non_identifying_attributes']['host.name']}"
             for a in agents(fleet)}  # fmt: skip
    monkeypatch.setenv("OTELCOCKPIT_OPAMP_TOKEN", WRITE_TOKEN)
    app = CockpitApp(
        settings_mod.resolve(source="opamp", url=fleet.admin_url), live=True, cursor_blink=False, initial_view="pipelines"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.snapshot is not None and app.snapshot.pipeline("gateway") is not None,
                         "the gateway pipeline in the cockpit", pilot=pilot)
        app.query_one("#pipelines").table.move_to_key("gateway")
        await pilot.press("u")
        assert isinstance(app.screen, EditScreen)
        area = app.screen.query_one("TextArea")
        area.text = area.text.replace("exporters:\n  debug: {}\n", "exporters:\n  debug: {}\n  kafka:\n    brokers: [kafka-1:9092]\n").replace(
            "exporters: [debug]", "exporters: [debug, kafka]"
        )
        await pilot.press("ctrl+s")
        await pilot.pause()
        review = app.screen
        assert isinstance(review, ReviewScreen)
        for _ in range(100):  # the server plans it
            await pilot.pause(0.05)
            if review.plan is not None:
                break
        assert review.plan is not None
        assert {i.id for i in review.plan.preflight.incompatible} == expected
        assert review.query_one("#start").disabled  # blocked by the pre-flight (the default)
        console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
        console.print(review.query_one("#plan-text").content)
        text = console.export_text()
        assert f"pre-flight: {len(expected)} collector(s) lack exporter:kafka: the push is BLOCKED" in text
        assert "Lacking a component the new version uses (they block the push)" in text
        for uid in expected:
            assert f"  {names[uid]}  lacks exporter:kafka" in text
        await pilot.press("escape")
