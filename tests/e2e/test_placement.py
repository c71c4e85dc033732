"""Placement through the real `openstack` CLI (osc-placement) and raw HTTP: providers,
inventories, classes, traits, aggregates, allocations, usages, candidates, generations,
restart, and the race for the last VCPU.

The expected bodies and messages are the real placement service's (openstack-placement 16,
checked side by side with ../shared/peer/placement.sh)."""

from __future__ import annotations

import threading
import uuid

import pytest

from cloudlib import unique

pytestmark = pytest.mark.kumo_only("placement is served by kumo, not by the Keystone peer")

LATEST = "1.39"


def new_uuid() -> str:
    return str(uuid.uuid4())


def ok(r, code=200):
    assert r.status_code == code, f"{r.request.method} {r.url}: {r.status_code} {r.text[:800]}"
    return r.json() if r.content else None


def placement_error(r, status: int, code: str | None = "placement.undefined_code") -> dict:
    """Assert r is Placement's error body; returns the error."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:800]}"
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    err = body["errors"][0]
    assert err["status"] == status
    assert err["request_id"] == r.headers["x-openstack-request-id"]
    if code is None:
        assert "code" not in err, err
    else:
        assert err["code"] == code, err
    return err


@pytest.fixture
def rp(cloud):
    """Create providers (raw API) and delete them (allocations first) after the test."""
    made: list[str] = []

    def create(name: str | None = None, parent: str | None = None, **inventories) -> str:
        u = new_uuid()
        body = {"name": name or unique("rp"), "uuid": u}
        if parent:
            body["parent_provider_uuid"] = parent
        ok(cloud.placement("POST", "/resource_providers", json=body, version=LATEST))
        made.append(u)
        if inventories:
            set_inventory(cloud, u, **inventories)
        return u

    yield create
    for u in reversed(made):
        allocs = cloud.placement("GET", f"/resource_providers/{u}/allocations", version=LATEST)
        if allocs.status_code == 200:
            for consumer in allocs.json()["allocations"]:
                cloud.placement("DELETE", f"/allocations/{consumer}", version=LATEST)
        r = cloud.placement("DELETE", f"/resource_providers/{u}", version=LATEST)
        assert r.status_code in (204, 404), r.text


def generation(cloud, u: str) -> int:
    return ok(cloud.placement("GET", f"/resource_providers/{u}", version=LATEST))["generation"]


def set_inventory(cloud, u: str, **totals):
    body = {"resource_provider_generation": generation(cloud, u),
            "inventories": {rc: (v if isinstance(v, dict) else {"total": v}) for rc, v in totals.items()}}
    return ok(cloud.placement("PUT", f"/resource_providers/{u}/inventories", json=body, version=LATEST))


def claim(cloud, consumer: str, allocations: dict, *, project="p-e2e", user="u-e2e", generation=None,
          version="1.28", **extra):
    body = {"allocations": {rp: {"resources": res} for rp, res in allocations.items()},
            "project_id": project, "user_id": user, "consumer_generation": generation, **extra}
    return cloud.placement("PUT", f"/allocations/{consumer}", json=body, version=version)


# ---------------------------------------------------------------- discovery


def test_version_document_and_catalog(cloud):
    r = cloud.placement("GET", "", token="")
    assert r.status_code == 200, r.text
    (v,) = r.json()["versions"]
    assert (v["id"], v["min_version"], v["max_version"], v["status"]) == ("v1.0", "1.0", "1.39", "CURRENT")
    assert r.headers["openstack-api-version"] == "placement 1.0"
    r = cloud.placement("GET", "/", token="", version="latest")
    assert r.headers["openstack-api-version"] == "placement 1.39"
    assert r.headers["cache-control"] == "no-cache" and "last-modified" in r.headers
    err = placement_error(cloud.placement("GET", "/resource_providers", version="1.40"), 406, code=None)
    assert (err["min_version"], err["max_version"]) == ("1.0", "1.39")
    placement_error(cloud.placement("GET", "/resource_providers", token="bogus"), 401, code=None)
    catalog = cloud.osc("catalog", "show", "placement", fmt_json=True)
    assert catalog["type"] == "placement"
    assert f"{cloud.base_url}/placement" in str(catalog["endpoints"])


def test_error_bodies_carry_code_from_1_23(cloud):
    missing = new_uuid()
    placement_error(cloud.placement("GET", f"/resource_providers/{missing}", version="1.22"), 404, code=None)
    err = placement_error(cloud.placement("GET", f"/resource_providers/{missing}", version="1.23"), 404)
    assert f"No resource provider with uuid {missing} found" in err["detail"]
    err = placement_error(cloud.placement("PATCH", "/resource_providers", version=LATEST), 405)
    assert "The method PATCH is not allowed" in err["detail"]
    placement_error(cloud.placement("GET", "/traits", version="1.5"), 404, code=None)
    err = placement_error(cloud.placement("POST", "/resource_providers", data="x",
                                          headers={"Content-Type": "text/plain"}, version=LATEST), 415)
    assert "use application/json" in err["detail"]
    err = placement_error(cloud.placement("POST", "/resource_providers", json={"nom": "x"}, version=LATEST), 400)
    assert "JSON does not validate" in err["detail"]


# ---------------------------------------------------------------- the CLI (osc-placement)


def test_cli_resource_provider_lifecycle(cloud):
    name = unique("rp-cli")
    created = cloud.osc("--os-placement-api-version", "1.20", "resource", "provider", "create", name, fmt_json=True)
    u = created["uuid"]
    try:
        assert created["name"] == name and created["generation"] == 0
        listed = cloud.osc("--os-placement-api-version", "1.14", "resource", "provider", "list", "--name", name,
                           fmt_json=True)
        assert [p["uuid"] for p in listed] == [u]
        assert listed[0]["root_provider_uuid"] == u and listed[0]["parent_provider_uuid"] is None
        child = cloud.osc("--os-placement-api-version", "1.20", "resource", "provider", "create", name + "-child",
                          "--parent-provider", u, fmt_json=True)
        tree = cloud.osc("--os-placement-api-version", "1.14", "resource", "provider", "list", "--in-tree",
                         child["uuid"], fmt_json=True)
        assert {p["uuid"] for p in tree} == {u, child["uuid"]}
        out = cloud.osc_fail("resource", "provider", "delete", u)
        assert "409" in out, out
        cloud.osc("resource", "provider", "delete", child["uuid"])
        shown = cloud.osc("resource", "provider", "show", u, fmt_json=True)
        assert shown["uuid"] == u and shown["name"] == name
        cloud.osc("resource", "provider", "set", u, "--name", name + "-renamed")
        assert cloud.osc("resource", "provider", "show", u, fmt_json=True)["name"] == name + "-renamed"
    finally:
        cloud.osc_run("resource", "provider", "delete", u)
    out = cloud.osc_fail("resource", "provider", "show", u)
    assert "404" in out or "No resource provider" in out, out


def test_cli_inventory_set_and_list(cloud, rp):
    u = rp()
    cloud.osc("resource", "provider", "inventory", "set", u, "--resource", "VCPU=8",
              "--resource", "VCPU:allocation_ratio=16.0", "--resource", "MEMORY_MB=4096",
              "--resource", "MEMORY_MB:reserved=512", "--resource", "MEMORY_MB:step_size=128")
    inv = {i["resource_class"]: i for i in cloud.osc("resource", "provider", "inventory", "list", u, fmt_json=True)}
    assert set(inv) == {"VCPU", "MEMORY_MB"}
    assert inv["VCPU"]["total"] == 8 and inv["VCPU"]["allocation_ratio"] == 16.0
    assert inv["MEMORY_MB"]["reserved"] == 512 and inv["MEMORY_MB"]["step_size"] == 128
    assert inv["MEMORY_MB"]["max_unit"] == 2147483647 and inv["VCPU"]["min_unit"] == 1
    cloud.osc("resource", "provider", "inventory", "set", u, "--amend", "--resource", "DISK_GB=100")
    shown = cloud.osc("resource", "provider", "inventory", "show", u, "DISK_GB", fmt_json=True)
    assert shown["total"] == 100
    body = ok(cloud.placement("GET", f"/resource_providers/{u}/inventories", version=LATEST))
    assert set(body["inventories"]) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    assert body["resource_provider_generation"] == generation(cloud, u) == 2
    cloud.osc("resource", "provider", "inventory", "delete", u, "--resource-class", "DISK_GB")
    assert set(ok(cloud.placement("GET", f"/resource_providers/{u}/inventories"))["inventories"]) == {
        "VCPU", "MEMORY_MB"}


def test_cli_allocation_candidate_list(cloud, rp):
    u = rp(VCPU=4, MEMORY_MB=2048)
    rows = cloud.osc("--os-placement-api-version", "1.29", "allocation", "candidate", "list",
                     "--resource", "VCPU=1", fmt_json=True)
    mine = [row for row in rows if row["resource provider"] == u]
    assert len(mine) == 1, rows
    assert mine[0]["allocation"] == "VCPU=1"
    assert "VCPU=0/4" in mine[0]["inventory used/capacity"]
    rows = cloud.osc("--os-placement-api-version", "1.29", "allocation", "candidate", "list",
                     "--resource", "VCPU=5", fmt_json=True)
    assert not [row for row in rows if row["resource provider"] == u]


def test_cli_trait_set_and_resource_class_create(cloud, rp):
    u = rp()
    trait = "CUSTOM_" + unique("t").upper().replace("-", "_")
    rc = "CUSTOM_" + unique("rc").upper().replace("-", "_")
    cloud.osc("--os-placement-api-version", "1.6", "trait", "create", trait)
    try:
        out = cloud.osc("--os-placement-api-version", "1.6", "resource", "provider", "trait", "set", u,
                        "--trait", trait, "--trait", "HW_CPU_X86_AVX2", fmt_json=True)
        assert {t["name"] for t in out} == {trait, "HW_CPU_X86_AVX2"}
        listed = cloud.osc("--os-placement-api-version", "1.6", "resource", "provider", "trait", "list", u,
                           fmt_json=True)
        assert {t["name"] for t in listed} == {trait, "HW_CPU_X86_AVX2"}
        out = cloud.osc_fail("--os-placement-api-version", "1.6", "trait", "delete", trait)
        assert "409" in out and "in use" in out, out
        cloud.osc("--os-placement-api-version", "1.6", "resource", "provider", "trait", "delete", u)
    finally:
        cloud.osc_run("--os-placement-api-version", "1.6", "trait", "delete", trait)
    cloud.osc("--os-placement-api-version", "1.2", "resource", "class", "create", rc)
    try:
        names = [c["name"] for c in cloud.osc("--os-placement-api-version", "1.2", "resource", "class", "list",
                                              fmt_json=True)]
        assert rc in names and "VCPU" in names and "PCPU" in names
        assert cloud.osc("--os-placement-api-version", "1.2", "resource", "class", "show", rc,
                         fmt_json=True)["name"] == rc
        out = cloud.osc_fail("--os-placement-api-version", "1.2", "resource", "class", "delete", "VCPU")
        assert "400" in out, out
    finally:
        cloud.osc("--os-placement-api-version", "1.2", "resource", "class", "delete", rc)


# ---------------------------------------------------------------- allocations and usages (HTTP)


def test_allocations_and_usages(cloud, rp):
    cn = rp(VCPU={"total": 8, "allocation_ratio": 2.0}, MEMORY_MB=4096)
    disk = rp(DISK_GB=100)
    project, user = unique("proj"), unique("user")
    c1, c2 = new_uuid(), new_uuid()
    r = claim(cloud, c1, {cn: {"VCPU": 2, "MEMORY_MB": 1024}, disk: {"DISK_GB": 10}},
              project=project, user=user, version="1.38", consumer_type="INSTANCE")
    assert r.status_code == 204, r.text
    got = ok(cloud.placement("GET", f"/allocations/{c1}", version="1.38"))
    assert got["allocations"][cn]["resources"] == {"VCPU": 2, "MEMORY_MB": 1024}
    assert got["allocations"][disk]["resources"] == {"DISK_GB": 10}
    assert (got["project_id"], got["user_id"], got["consumer_generation"], got["consumer_type"]) == (
        project, user, 1, "INSTANCE")
    # 1.12 shows project/user but no generation; 1.0 neither
    assert "consumer_generation" not in ok(cloud.placement("GET", f"/allocations/{c1}", version="1.12"))
    assert set(ok(cloud.placement("GET", f"/allocations/{c1}", version="1.0"))) == {"allocations"}
    assert claim(cloud, c2, {cn: {"VCPU": 4}}, project=project, user=unique("other")).status_code == 204
    # usages: per provider, per project, per project+user, per consumer type
    assert ok(cloud.placement("GET", f"/resource_providers/{cn}/usages"))["usages"] == {"VCPU": 6, "MEMORY_MB": 1024}
    assert ok(cloud.placement("GET", "/usages", params={"project_id": project}, version="1.9"))["usages"] == {
        "VCPU": 6, "MEMORY_MB": 1024, "DISK_GB": 10}
    assert ok(cloud.placement("GET", "/usages", params={"project_id": project, "user_id": user},
                              version="1.9"))["usages"] == {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10}
    by_type = ok(cloud.placement("GET", "/usages", params={"project_id": project}, version="1.38"))["usages"]
    assert by_type == {"INSTANCE": {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10, "consumer_count": 1},
                       "unknown": {"VCPU": 4, "consumer_count": 1}}
    assert ok(cloud.placement("GET", "/usages", params={"project_id": project, "consumer_type": "all"},
                              version="1.38"))["usages"] == {
        "all": {"VCPU": 6, "MEMORY_MB": 1024, "DISK_GB": 10, "consumer_count": 2}}
    # the provider's view of its allocations
    rp_allocs = ok(cloud.placement("GET", f"/resource_providers/{cn}/allocations", version=LATEST))
    assert rp_allocs["allocations"][c1] == {"resources": {"VCPU": 2, "MEMORY_MB": 1024}, "consumer_generation": 1}
    assert rp_allocs["resource_provider_generation"] == generation(cloud, cn)
    # capacity: 8 VCPU * 2.0 = 16, 6 used: 11 more does not fit, 10 does
    err = placement_error(claim(cloud, new_uuid(), {cn: {"VCPU": 11}}), 409)
    assert "The requested amount would exceed the capacity" in err["detail"]
    err = placement_error(claim(cloud, new_uuid(), {cn: {"DISK_GB": 1}}), 409)
    assert "Unable to allocate inventory" in err["detail"]
    err = placement_error(claim(cloud, new_uuid(), {new_uuid(): {"VCPU": 1}}), 400)
    assert "that does not exist" in err["detail"]
    # POST /allocations moves c2's allocation and removes c1's in one go
    gen2 = ok(cloud.placement("GET", f"/allocations/{c2}", version=LATEST))["consumer_generation"]
    body = {c2: {"allocations": {cn: {"resources": {"VCPU": 1}}}, "project_id": project, "user_id": user,
                 "consumer_generation": gen2},
            c1: {"allocations": {}, "project_id": project, "user_id": user, "consumer_generation": 1}}
    ok(cloud.placement("POST", "/allocations", json=body, version="1.28"), 204)
    assert ok(cloud.placement("GET", f"/allocations/{c1}", version=LATEST)) == {"allocations": {}}
    assert ok(cloud.placement("GET", f"/resource_providers/{cn}/usages"))["usages"] == {"VCPU": 1, "MEMORY_MB": 0}
    ok(cloud.placement("DELETE", f"/allocations/{c2}"), 204)
    placement_error(cloud.placement("DELETE", f"/allocations/{c2}", version=LATEST), 404)
    assert ok(cloud.placement("GET", "/usages", params={"project_id": project}, version="1.9"))["usages"] == {}


def test_in_use_inventory_and_provider_cannot_go(cloud, rp):
    cn = rp(VCPU=4, MEMORY_MB=1024)
    c = new_uuid()
    assert claim(cloud, c, {cn: {"VCPU": 1}}).status_code == 204
    body = {"resource_provider_generation": generation(cloud, cn), "inventories": {"MEMORY_MB": {"total": 1}}}
    err = placement_error(cloud.placement("PUT", f"/resource_providers/{cn}/inventories", json=body,
                                          version=LATEST), 409, code="placement.inventory.inuse")
    assert f"Inventory for 'VCPU' on resource provider '{cn}' in use" in err["detail"]
    placement_error(cloud.placement("DELETE", f"/resource_providers/{cn}", version=LATEST), 409,
                    code="placement.resource_provider.inuse")
    ok(cloud.placement("DELETE", f"/allocations/{c}"), 204)


# ---------------------------------------------------------------- generations


def test_generation_conflicts(cloud, rp):
    cn = rp()
    g = generation(cloud, cn)
    set_inventory(cloud, cn, VCPU=4)
    stale = {"resource_provider_generation": g, "inventories": {"VCPU": {"total": 8}}}
    err = placement_error(cloud.placement("PUT", f"/resource_providers/{cn}/inventories", json=stale,
                                          version=LATEST), 409, code="placement.concurrent_update")
    assert "resource provider generation conflict" in err["detail"]
    placement_error(cloud.placement("PUT", f"/resource_providers/{cn}/inventories/VCPU",
                                    json={"resource_provider_generation": g, "total": 8}, version=LATEST),
                    409, code="placement.concurrent_update")
    placement_error(cloud.placement("PUT", f"/resource_providers/{cn}/traits",
                                    json={"resource_provider_generation": g, "traits": []}, version=LATEST),
                    409, code="placement.concurrent_update")
    placement_error(cloud.placement("PUT", f"/resource_providers/{cn}/aggregates",
                                    json={"resource_provider_generation": g, "aggregates": []}, version=LATEST),
                    409, code="placement.concurrent_update")
    # before 1.19, aggregates had no generation and did not move it
    g = generation(cloud, cn)
    agg = new_uuid()
    assert ok(cloud.placement("PUT", f"/resource_providers/{cn}/aggregates", json=[agg], version="1.1")) == {
        "aggregates": [agg]}
    assert generation(cloud, cn) == g
    out = ok(cloud.placement("PUT", f"/resource_providers/{cn}/aggregates",
                             json={"resource_provider_generation": g, "aggregates": [agg]}, version=LATEST))
    assert out == {"aggregates": [agg], "resource_provider_generation": g + 1}
    # consumer generations (1.28): null means "new consumer"
    c = new_uuid()
    assert claim(cloud, c, {cn: {"VCPU": 1}}, generation=None).status_code == 204
    err = placement_error(claim(cloud, c, {cn: {"VCPU": 2}}, generation=None), 409,
                          code="placement.concurrent_update")
    assert "consumer generation conflict - expected 1 but got None" in err["detail"]
    placement_error(claim(cloud, c, {cn: {"VCPU": 2}}, generation=5), 409, code="placement.concurrent_update")
    assert claim(cloud, c, {cn: {"VCPU": 2}}, generation=1).status_code == 204
    placement_error(claim(cloud, new_uuid(), {cn: {"VCPU": 1}}, generation=3), 409,
                    code="placement.concurrent_update")
    # every allocation write moved the provider's generation
    assert generation(cloud, cn) == g + 3
    # emptying with the right generation removes the consumer
    assert claim(cloud, c, {}, generation=2).status_code == 204
    assert ok(cloud.placement("GET", f"/allocations/{c}", version=LATEST)) == {"allocations": {}}


# ---------------------------------------------------------------- the race for the last VCPU


def test_fifty_claims_race_for_the_last_vcpu(cloud, rp):
    cn = rp(VCPU=4, MEMORY_MB=4096)
    filler = new_uuid()
    assert claim(cloud, filler, {cn: {"VCPU": 3}}).status_code == 204
    token = cloud.admin_token
    consumers = [new_uuid() for _ in range(50)]
    results: dict[str, int] = {}
    start = threading.Barrier(len(consumers))

    def race(consumer):
        start.wait()
        body = {"allocations": {cn: {"resources": {"VCPU": 1, "MEMORY_MB": 64}}}, "project_id": "p-race",
                "user_id": "u-race", "consumer_generation": None}
        r = cloud.placement("PUT", f"/allocations/{consumer}", json=body, token=token, version="1.28")
        results[consumer] = r.status_code

    threads = [threading.Thread(target=race, args=(c,)) for c in consumers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = sorted(results.values())
    assert len(codes) == 50, results
    assert codes.count(204) == 1 and codes.count(409) == 49, codes
    usages = ok(cloud.placement("GET", f"/resource_providers/{cn}/usages"))["usages"]
    assert usages == {"VCPU": 4, "MEMORY_MB": 64}
    winner = next(c for c, code in results.items() if code == 204)
    rp_allocs = ok(cloud.placement("GET", f"/resource_providers/{cn}/allocations", version=LATEST))["allocations"]
    assert set(rp_allocs) == {filler, winner}
    assert ok(cloud.placement("GET", "/usages", params={"project_id": "p-race"}, version="1.9"))["usages"] == {
        "VCPU": 1, "MEMORY_MB": 64}
    # no trace of the 49 losers
    for c in consumers:
        if c != winner:
            assert ok(cloud.placement("GET", f"/allocations/{c}")) == {"allocations": {}}


# ---------------------------------------------------------------- restart and kill -9


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_state_survives(cloud, rp, how):
    parent = rp(VCPU=16, MEMORY_MB=8192)
    child = rp(parent=parent, SRIOV_NET_VF=4)
    trait = "CUSTOM_" + unique("keep").upper().replace("-", "_")
    ok(cloud.placement("PUT", f"/traits/{trait}", version=LATEST), 201)
    ok(cloud.placement("PUT", f"/resource_providers/{child}/traits",
                       json={"resource_provider_generation": generation(cloud, child), "traits": [trait]},
                       version=LATEST))
    c = new_uuid()
    assert claim(cloud, c, {parent: {"VCPU": 2}, child: {"SRIOV_NET_VF": 1}}).status_code == 204
    before = {u: ok(cloud.placement("GET", f"/resource_providers/{u}", version=LATEST)) for u in (parent, child)}
    allocs = ok(cloud.placement("GET", f"/allocations/{c}", version=LATEST))
    if how == "restart":
        cloud.restart()
    else:
        cloud.kill9_and_up()
    for u in (parent, child):
        assert ok(cloud.placement("GET", f"/resource_providers/{u}", version=LATEST)) == before[u]
    assert ok(cloud.placement("GET", f"/allocations/{c}", version=LATEST)) == allocs
    assert ok(cloud.placement("GET", f"/resource_providers/{child}/traits", version=LATEST))["traits"] == [trait]
    assert ok(cloud.placement("GET", f"/resource_providers/{parent}/usages"))["usages"] == {"VCPU": 2,
                                                                                           "MEMORY_MB": 0}
    cands = ok(cloud.placement("GET", "/allocation_candidates",
                               params={"resources": "VCPU:1,SRIOV_NET_VF:1", "required": trait}, version=LATEST))
    assert [sorted(a["allocations"]) for a in cands["allocation_requests"]] == [sorted([parent, child])]
    ok(cloud.placement("DELETE", f"/allocations/{c}"), 204)
    ok(cloud.placement("DELETE", f"/resource_providers/{child}/traits", version=LATEST), 204)
    ok(cloud.placement("DELETE", f"/traits/{trait}", version=LATEST), 204)


# ---------------------------------------------------------------- policy


def test_members_are_refused_readers_see_their_project_usage(cloud):
    demo = cloud.cloud_auth("kumo")
    token = cloud.login(demo["username"], demo["password"], project=demo["project_name"])
    err = placement_error(cloud.placement("GET", "/resource_providers", token=token, version=LATEST), 403)
    assert "placement:resource_providers:list" in err["detail"]
    projects = cloud.admin("GET", "/projects", params={"name": demo["project_name"]})["projects"]
    own = projects[0]["id"]
    assert ok(cloud.placement("GET", "/usages", params={"project_id": own}, token=token, version="1.9")) == {
        "usages": {}}
    placement_error(cloud.placement("GET", "/usages", params={"project_id": "someone-else"}, token=token,
                                    version="1.9"), 403, code=None)
