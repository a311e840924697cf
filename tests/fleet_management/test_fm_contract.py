"""Contract tests: our client against the fake Fleet Management over real HTTP on loopback."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from otelcockpit.backends.fleet_management import (
    FleetAPIError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

P = "pipeline.v1.PipelineService"
C = "collector.v1.CollectorService"

ALLOY = 'prometheus.exporter.self "x" { }\n'


def pipe(name: str, **extra: object) -> dict:
    return {"name": name, "contents": ALLOY, "matchers": ['env="prod"'], "enabled": True, **extra}


# ---- pipelines ------------------------------------------------------------------------------------
def test_pipeline_rpcs_round_trip(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            created = await c.create_pipeline(pipe("alpha", configType="CONFIG_TYPE_ALLOY"))
            assert created["id"].isdigit() and created["name"] == "alpha"
            assert created["createdAt"].endswith("Z") and created["enabled"] is True
            pid = created["id"]
            assert await c.get_pipeline_id("alpha") == pid
            got = await c.get_pipeline(pid)
            assert got == created
            other = await c.create_pipeline(pipe("beta"))
            assert other["id"].isdigit() and other["id"] != pid
            assert [p["name"] for p in await c.list_pipelines()] == ["alpha", "beta"]
            # ListPipelines filters: attributes (a preview of what a collector would get), type, enabled.
            await c.create_pipeline({**pipe("gamma"), "matchers": ['env="dev"'], "enabled": False})
            assert [p["name"] for p in await c.list_pipelines(local_attributes={"env": "prod"})] == [
                "alpha",
                "beta",
            ]
            assert [p["name"] for p in await c.list_pipelines(enabled=False)] == ["gamma"]
            assert [p["name"] for p in await c.list_pipelines(config_type="CONFIG_TYPE_ALLOY")] == ["alpha"]
            # validateOnly previews without persisting.
            preview = await c.create_pipeline(pipe("delta"), validate_only=True)
            assert preview["name"] == "delta"
            with pytest.raises(NotFound):
                await c.get_pipeline_id("delta")
            await c.delete_pipeline(pid)
            with pytest.raises(NotFound):
                await c.get_pipeline(pid)
            return await c.list_pipelines()

    assert [p["name"] for p in h.run(go())] == ["beta", "gamma"]


def test_update_replaces_the_whole_pipeline_and_404s_when_missing(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            p = await c.create_pipeline(pipe("alpha", source={"type": "SOURCE_TYPE_GIT", "namespace": "ns"}))
            updated = await c.update_pipeline({"id": p["id"], "name": "alpha", "contents": "new\n"})
            with pytest.raises(NotFound) as missing:
                await c.update_pipeline({"id": "999999", "name": "ghost", "contents": "x"})
            with pytest.raises(InvalidArgument):
                await c.update_pipeline({"name": "alpha", "contents": "x"})  # no id
            return p, updated, missing.value

    p, updated, missing = h.run(go())
    assert updated["id"] == p["id"] and updated["createdAt"] == p["createdAt"]
    assert updated["contents"] == "new\n"
    assert "matchers" not in updated and "source" not in updated  # not sent -> removed
    assert missing.status == 404 and missing.code == "not_found"


def test_upsert_goes_by_name_and_names_are_unique(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            first = await c.upsert_pipeline(pipe("alpha"))
            second = await c.upsert_pipeline({**pipe("alpha"), "contents": "changed\n"})
            with pytest.raises(InvalidArgument) as dup:
                await c.create_pipeline(pipe("alpha"))
            beta = await c.create_pipeline(pipe("beta"))
            with pytest.raises(InvalidArgument) as rename:
                await c.update_pipeline({**pipe("alpha"), "id": beta["id"]})
            revs = await c.list_pipeline_revisions(first["id"])
            return first, second, dup.value, rename.value, revs, await c.list_pipelines()

    first, second, dup, rename, revs, pipelines = h.run(go())
    assert second["id"] == first["id"] and second["contents"] == "changed\n"
    assert dup.code == "already_exists" and dup.status == 409
    assert rename.code == "already_exists"
    assert [r["operation"] for r in revs] == ["INSERT", "UPDATE"]
    assert sorted(p["name"] for p in pipelines) == ["alpha", "beta"]


def test_ids_are_assigned_by_the_server(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            with pytest.raises(InvalidArgument):
                await c.create_pipeline({**pipe("alpha"), "id": "123"})
            return [await c.create_pipeline(pipe(f"p{i}")) for i in range(5)]

    made = h.run(go())
    ids = [p["id"] for p in made]
    assert all(i.isdigit() for i in ids) and len(set(ids)) == 5


def test_a_revision_on_every_insert_update_and_delete(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            p = await c.create_pipeline(pipe("alpha"))
            await c.update_pipeline({**pipe("alpha"), "id": p["id"], "enabled": False})
            await c.upsert_pipeline(pipe("alpha"))
            await c.delete_pipeline(p["id"])
            own = await c.list_pipeline_revisions(p["id"])
            everything = await c.list_pipelines_revisions()
            one = await c.get_pipeline_revision(own[1]["revisionId"])
            with pytest.raises(NotFound):
                await c.get_pipeline_revision("424242")
            return own, everything, one

    own, everything, one = h.run(go())
    assert [r["operation"] for r in own] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert [r["snapshot"]["enabled"] for r in own] == [True, False, True, True]
    assert all(r["revisionId"].isdigit() and r["createdAt"].endswith("Z") for r in own)
    assert len({r["revisionId"] for r in own}) == 4
    assert own == everything
    assert one == own[1]


def test_bulk_delete_pipelines_is_atomic(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            a = await c.create_pipeline(pipe("a"))
            b = await c.create_pipeline(pipe("b"))
            with pytest.raises(NotFound):
                await c.bulk_delete_pipelines([a["id"], "999999"])
            kept = [p["name"] for p in await c.list_pipelines()]
            await c.bulk_delete_pipelines([a["id"], b["id"]])
            return kept, await c.list_pipelines(), await c.list_pipelines_revisions()

    kept, after, revs = h.run(go())
    assert kept == ["a", "b"]
    assert after == []
    assert [r["operation"] for r in revs] == ["INSERT", "INSERT", "DELETE", "DELETE"]


def test_sync_pipelines_is_scoped_by_source(empty_fake, h):
    git_a = {"type": "SOURCE_TYPE_GIT", "namespace": "team-a"}
    git_b = {"type": "SOURCE_TYPE_GIT", "namespace": "team-b"}

    async def go():
        async with h.make_client(empty_fake.url) as c:
            await c.sync_pipelines(git_a, [pipe("a1"), pipe("a2")])
            await c.sync_pipelines(git_b, [pipe("b1")])
            await c.create_pipeline(pipe("manual"))
            # team-a drops a2 and adds a3: only team-a's pipelines are cleaned up.
            await c.sync_pipelines(git_a, [pipe("a1"), pipe("a3")])
            with pytest.raises(InvalidArgument) as no_ns:
                await c.sync_pipelines({"type": "SOURCE_TYPE_GIT"}, [pipe("x")])
            with pytest.raises(InvalidArgument):
                await c.call(P, "SyncPipelines", {"pipelines": [pipe("x")]})
            return await c.list_pipelines(), no_ns.value

    pipelines, no_ns = h.run(go())
    by_name = {p["name"]: p for p in pipelines}
    assert sorted(by_name) == ["a1", "a3", "b1", "manual"]
    assert by_name["a3"]["source"] == git_a and by_name["b1"]["source"] == git_b
    assert "source" not in by_name["manual"]
    assert "namespace" in no_ns.message


# ---- collectors ---------------------------------------------------------------------------------
def _register(url: str, h, cid: str, local: dict, name: str = "") -> None:
    r = httpx.post(
        f"{url}/{C}/RegisterCollector",
        json={"id": cid, "localAttributes": local, **({"name": name} if name else {})},
        auth=(h.creds.instance_id, h.creds.read_token),
    )
    assert r.status_code == 200 and r.json() == {}


def test_collector_rpcs_round_trip(empty_fake, h):
    _register(empty_fake.url, h, "host-a", {"collector.os": "linux", "env": "dev"}, "Host A")

    async def go():
        async with h.make_client(empty_fake.url) as c:
            made = await c.create_collector(
                {
                    "id": "host-b",
                    "name": "B",
                    "remoteAttributes": {"env": "prod"},
                    "collectorType": "COLLECTOR_TYPE_OTEL",
                }
            )
            with pytest.raises(InvalidArgument):
                await c.create_collector({"id": "host-b"})  # already exists
            a = await c.get_collector("host-a")
            # Update replaces: remote attributes not sent are removed; local ones stay (the collector owns them).
            await c.update_collector(
                {"id": "host-a", "remoteAttributes": {"team": "x", "env": "prod"}, "enabled": True}
            )
            await c.update_collector({"id": "host-a", "remoteAttributes": {"team": "y"}, "enabled": False})
            a2 = await c.get_collector("host-a")
            with pytest.raises(NotFound):
                await c.update_collector({"id": "ghost", "enabled": True})
            listed = await c.list_collectors()
            attrs = await c.list_collector_attributes()
            await c.delete_collector("host-b")
            with pytest.raises(NotFound):
                await c.delete_collector("host-b")
            return made, a, a2, listed, attrs, await c.list_collectors()

    made, a, a2, listed, attrs, after = h.run(go())
    assert made["collectorType"] == "COLLECTOR_TYPE_OTEL" and made["remoteAttributes"] == {"env": "prod"}
    assert "localAttributes" not in made
    assert (
        a["name"] == "Host A"
        and a["localAttributes"]["env"] == "dev"
        and a["collectorType"] == "COLLECTOR_TYPE_ALLOY"
    )
    assert a2["remoteAttributes"] == {"team": "y"} and a2["enabled"] is False
    assert a2["localAttributes"] == {"collector.os": "linux", "env": "dev"}
    assert sorted(c["id"] for c in listed) == ["host-a", "host-b"]
    assert attrs["local"] == {"collector.os": ["linux"], "env": ["dev"]}
    assert attrs["remote"] == {"env": ["prod"], "team": ["y"]}
    assert [c["id"] for c in after] == ["host-a"]


def test_bulk_update_collectors_is_atomic_and_ordered(empty_fake, h):
    for cid in ("a", "b"):
        _register(empty_fake.url, h, cid, {"env": "dev"})

    async def go():
        async with h.make_client(empty_fake.url) as c:
            await c.bulk_update_collectors(
                ["a", "b"],
                [
                    {"op": "ADD", "path": "remoteAttributes.team", "value": "core"},
                    {"op": "ADD", "path": "/remote_attributes/ring", "value": "canary"},
                    {
                        "op": "REPLACE",
                        "path": "remoteAttributes.team",
                        "value": "platform",
                        "oldValue": "core",
                    },
                    {"op": "COPY", "from": "remoteAttributes.ring", "path": "remoteAttributes.ring_copy"},
                    {"op": "MOVE", "from": "remoteAttributes.ring_copy", "path": "remoteAttributes.wave"},
                ],
            )
            first = await c.list_collectors()
            # The second op is invalid: nothing is applied, not even the first.
            with pytest.raises(InvalidArgument):
                await c.bulk_update_collectors(
                    ["a", "b"],
                    [
                        {"op": "ADD", "path": "remoteAttributes.x", "value": "1"},
                        {"op": "ADD", "path": "remoteAttributes.collector.os", "value": "windows"},
                    ],
                )
            with pytest.raises(NotFound):
                await c.bulk_update_collectors(
                    ["a", "ghost"], [{"op": "ADD", "path": "remoteAttributes.x", "value": "1"}]
                )
            with pytest.raises(NotFound):
                await c.bulk_delete_collectors(["a", "ghost"])
            second = await c.list_collectors()
            await c.bulk_update_collectors(["a"], [{"op": "REMOVE", "path": "remoteAttributes.wave"}])
            await c.bulk_delete_collectors(["b"])
            return first, second, await c.list_collectors()

    first, second, third = h.run(go())
    for col in first:
        assert col["remoteAttributes"] == {"team": "platform", "ring": "canary", "wave": "canary"}
    assert second == first
    assert [c["id"] for c in third] == ["a"] and third[0]["remoteAttributes"] == {
        "team": "platform",
        "ring": "canary",
    }


def test_matchers_evaluate_over_merged_attributes(empty_fake, h):
    _register(empty_fake.url, h, "a", {"collector.os": "linux", "env": "dev", "region": "eu-west-1"})
    _register(empty_fake.url, h, "b", {"collector.os": "windows", "env": "prod"})
    _register(empty_fake.url, h, "c", {"collector.os": "linux", "env": "prod", "team": "pay"})

    async def go():
        async with h.make_client(empty_fake.url) as c:
            # remote wins over local, except for collector.* keys
            await c.bulk_update_collectors(
                ["a"], [{"op": "ADD", "path": "remoteAttributes.env", "value": "prod"}]
            )

            async def ids(*m: str) -> list[str]:
                return sorted(x["id"] for x in await c.list_collectors(list(m)))

            out = {
                "env=prod": await ids('env="prod"'),
                "regex": await ids('region=~"eu-.*"'),
                "anchored": await ids('region=~"eu"'),
                "neq-missing": await ids('team!="pay"'),
                "empty-is-missing": await ids('team=""'),
                "and": await ids("collector.os=linux", 'env="prod"'),
                "virtual id": await ids('collector.ID="b"'),
                "not-regex": await ids('collector.os!~"lin.*"'),
            }
            with pytest.raises(InvalidArgument):
                await c.list_collectors(["=prod"])
            with pytest.raises(InvalidArgument):
                await c.list_collectors(['env=~"("'])
            return out

    out = h.run(go())
    assert out == {
        "env=prod": ["a", "b", "c"],
        "regex": ["a"],
        "anchored": [],
        "neq-missing": ["a", "b"],
        "empty-is-missing": ["a", "b"],
        "and": ["a", "c"],
        "virtual id": ["b"],
        "not-regex": ["b"],
    }


@pytest.mark.parametrize(
    "remote, needle",
    [
        ({"k" * 101: "v"}, "longer than 100"),
        ({"k": "v" * 151}, "longer than 150"),
        ({f"k{i}": "v" for i in range(101)}, "at most 100"),
        ({"collector.os": "linux"}, "reserved"),
    ],
)
def test_attribute_limits(empty_fake, h, remote, needle):
    async def go():
        async with h.make_client(empty_fake.url) as c:
            with pytest.raises(InvalidArgument) as exc:
                await c.create_collector({"id": "x", "remoteAttributes": remote})
            return exc.value

    assert needle in h.run(go()).message


def test_matcher_length_limit(empty_fake, h):
    long = 'env="' + "x" * 200 + '"'

    async def go():
        async with h.make_client(empty_fake.url) as c:
            with pytest.raises(InvalidArgument) as exc:
                await c.create_pipeline({**pipe("p"), "matchers": [long]})
            return exc.value

    assert "200" in h.run(go()).message


# ---- the wire -------------------------------------------------------------------------------------
def test_connect_protocol_details(empty_fake, h):
    url = empty_fake.url
    auth = (h.creds.instance_id, h.creds.write_token)
    # snake_case accepted, enums by number, unknown fields ignored; responses camelCase without zero values
    r = httpx.post(
        f"{url}/{P}/CreatePipeline",
        json={
            "pipeline": {"name": "p", "contents": "x", "config_type": 2, "enabled": False, "whatever": 1},
            "validate_only": False,
        },
        auth=auth,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["configType"] == "CONFIG_TYPE_OTEL" and body["enabled"] is False
    assert "matchers" not in body and "config_type" not in body and "whatever" not in body
    assert isinstance(body["id"], str)
    # an empty body is not a JSON object
    r = httpx.post(
        f"{url}/{P}/ListPipelines", content=b"", headers={"content-type": "application/json"}, auth=auth
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_argument"
    # other content types: 415 with Accept-Post
    r = httpx.post(
        f"{url}/{P}/ListPipelines", content=b"\x00", headers={"content-type": "application/proto"}, auth=auth
    )
    assert r.status_code == 415 and "application/json" in r.headers["accept-post"]
    # management RPCs are POST only; unknown routes are a plain 404
    assert httpx.get(f"{url}/{P}/ListPipelines", auth=auth).status_code == 405
    r = httpx.post(f"{url}/{P}/NoSuchThing", json={}, auth=auth)
    assert r.status_code == 404 and not r.headers["content-type"].startswith("application/json")
    # empty list answers are {}
    assert httpx.post(f"{url}/{C}/ListCollectors", json={}, auth=auth).json() == {}
    # GetConfig also answers Connect GET requests
    message = base64.urlsafe_b64encode(json.dumps({"id": "g1"}).encode()).decode().rstrip("=")
    r = httpx.get(
        f"{url}/{C}/GetConfig",
        params={"connect": "v1", "encoding": "json", "base64": "1", "message": message},
        auth=auth,
    )
    assert r.status_code == 200 and "hash" in r.json()


def test_proxy_answers_fall_back_to_the_http_status(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url + "/not-the-api/x") as c:
            with pytest.raises(FleetAPIError) as exc:
                await c.list_pipelines()
            return exc.value

    err = h.run(go())
    assert err.code == "unimplemented" and err.status == 404 and "check the URL" in err.message


# ---- auth, rate limits, failures -------------------------------------------------------------------
def test_wrong_token_names_the_variables(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url, write=True) as c:
            c._http.auth = httpx.BasicAuth(h.creds.instance_id, "wrong")
            with pytest.raises(Unauthenticated) as exc:
                await c.list_collectors()
            return exc.value

    err = h.run(go())
    assert err.kind == "unauthenticated" and err.status == 401
    assert "FLEET_MANAGEMENT_INSTANCE_ID" in err.message and "FLEET_MANAGEMENT_TOKEN" in err.message
    assert "fleet-management:read" in err.message and "\n" not in err.message


def test_read_credential_cannot_write(empty_fake, h):
    async def go():
        async with h.make_client(empty_fake.url, write=False) as c:
            assert await c.list_pipelines() == []
            with pytest.raises(PermissionDenied) as exc:
                await c.upsert_pipeline(pipe("p"))
            return exc.value

    err = h.run(go())
    assert err.status == 403 and err.code == "permission_denied" and err.kind == "permission_denied"
    assert "fleet-management:write" in err.message and "FLEET_MANAGEMENT_TOKEN" in err.message


def test_rate_limited_requests_are_retried_with_backoff(start_fake, h):
    fake = start_fake(rate_limit=5.0)

    async def go():
        import asyncio

        async with h.make_client(fake.url, rate=1000.0, max_retries=8, backoff_base=0.1) as c:
            results = await asyncio.gather(*(c.list_pipelines() for _ in range(9)))
            return results, c.retries

    results, retries = h.run(go())
    assert results == [[]] * 9
    assert retries > 0
    assert fake.server_app.statuses[429] > 0


def test_rate_limit_without_retries_is_a_typed_error(start_fake, h):
    fake = start_fake(rate_limit=1.0)

    async def go():
        async with h.make_client(fake.url, max_retries=0) as c:
            await c.list_pipelines()
            with pytest.raises(FleetAPIError) as exc:
                await c.list_pipelines()
            return exc.value

    err = h.run(go())
    assert err.kind == "rate_limited" and err.status == 429


def test_get_limits_sets_the_client_rate(start_fake, h):
    fake = start_fake(rate_limit=5.0)

    async def go():
        async with h.make_client(fake.url, rate=3.0) as c:
            limits = await c.get_limits()
            rate = await c.adjust_rate_from_limits()
            return limits, rate, c.bucket.rate

    limits, rate, bucket_rate = h.run(go())
    assert limits["requestsPerSecond"]["api"] == 5.0
    assert rate == 5.0 and bucket_rate == 5.0


def test_the_client_bucket_holds_the_documented_rate(empty_fake, h):
    import time

    async def go():
        async with h.make_client(empty_fake.url, rate=3.0) as c:
            start = time.monotonic()
            for _ in range(6):
                await c.list_pipelines()
            return time.monotonic() - start

    # burst of 3, then one every 1/3 s: 6 calls take at least ~1 s
    assert h.run(go()) >= 0.9


def test_unreachable_url_names_the_url(h):
    async def go():
        async with h.make_client("http://127.0.0.1:9") as c:
            with pytest.raises(Unavailable) as exc:
                await c.list_pipelines()
            return exc.value

    err = h.run(go())
    assert "http://127.0.0.1:9" in err.message and err.kind == "unavailable"


def test_proxy_503_is_retried_then_reported_by_http_status(empty_fake, h):
    app = empty_fake.server_app

    async def go():
        async with h.make_client(empty_fake.url, max_retries=3) as c:
            app.outage, app.outage_remaining = 503, 2
            recovered = await c.list_pipelines()
            retries = c.retries
            app.outage, app.outage_remaining = 504, None
            with pytest.raises(Unavailable) as exc:
                await c.list_pipelines()
            return recovered, retries, c.retries, exc.value

    recovered, first_retries, total_retries, err = h.run(go())
    assert recovered == [] and first_retries == 2
    assert total_retries == 2 + 3
    assert err.status == 504 and err.code == "unavailable" and empty_fake.url in err.message


def test_a_server_that_never_answers_times_out(h):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        async def go():
            async with h.make_client(url, timeout=0.3) as c:
                with pytest.raises(Unavailable) as exc:
                    await c.list_collectors()
                return exc.value

        err = h.run(go())
    assert "did not answer" in err.message and url in err.message and err.code == "deadline_exceeded"
