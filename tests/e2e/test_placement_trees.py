"""Placement with provider trees and sharing providers, as Nova and Neutron use it: candidates
spanning a tree, granular groups, allocations set and shown through the CLI, and the reshaper
(service role only) moving inventory and allocations from a compute node to its child."""

from __future__ import annotations

import uuid

import pytest

from cloudlib import unique
from test_placement import LATEST, claim, generation, new_uuid, ok, placement_error, rp, set_inventory  # noqa: F401

pytestmark = pytest.mark.kumo_only("placement is served by kumo, not by the Keystone peer")


def trait(cloud, prefix: str) -> str:
    name = "CUSTOM_" + unique(prefix).upper().replace("-", "_")
    ok(cloud.placement("PUT", f"/traits/{name}", version=LATEST), 201)
    return name


def set_traits(cloud, u: str, *traits: str):
    ok(cloud.placement("PUT", f"/resource_providers/{u}/traits",
                       json={"resource_provider_generation": generation(cloud, u), "traits": list(traits)},
                       version=LATEST))


def set_aggregates(cloud, u: str, *aggs: str):
    ok(cloud.placement("PUT", f"/resource_providers/{u}/aggregates",
                       json={"resource_provider_generation": generation(cloud, u), "aggregates": list(aggs)},
                       version=LATEST))


def requests_of(body, mine: set[str]) -> list[dict]:
    """The allocation requests (as {rp: resources}) that only use providers in `mine`."""
    out = []
    for a in body["allocation_requests"]:
        allocs = {rp: x["resources"] for rp, x in a["allocations"].items()}
        if set(allocs) <= mine:
            out.append(allocs)
    return out


@pytest.fixture
def topology(cloud, rp):
    """cn (VCPU 8, MEMORY 4096) with NUMA children n0, n1 each with a PF (VF 4, one physnet
    trait each); a sharing disk provider in the compute node's aggregate."""
    physnet1, physnet2 = trait(cloud, "physnet1"), trait(cloud, "physnet2")
    cn = rp(VCPU=8, MEMORY_MB=4096)
    n0, n1 = rp(parent=cn), rp(parent=cn)
    pf0, pf1 = rp(parent=n0, SRIOV_NET_VF=4), rp(parent=n1, SRIOV_NET_VF=4)
    set_traits(cloud, pf0, physnet1)
    set_traits(cloud, pf1, physnet2)
    disk = rp(DISK_GB=1000)
    set_traits(cloud, disk, "MISC_SHARES_VIA_AGGREGATE")
    agg = new_uuid()
    set_aggregates(cloud, cn, agg)
    set_aggregates(cloud, disk, agg)
    yield {"cn": cn, "n0": n0, "n1": n1, "pf0": pf0, "pf1": pf1, "disk": disk, "physnet1": physnet1,
           "physnet2": physnet2, "agg": agg, "all": {cn, n0, n1, pf0, pf1, disk}}
    for u in (pf0, pf1, disk):
        cloud.placement("DELETE", f"/resource_providers/{u}/traits", version=LATEST)
    for t in (physnet1, physnet2):
        cloud.placement("DELETE", f"/traits/{t}", version=LATEST)


def test_candidates_span_the_tree_and_the_sharing_provider(cloud, topology):
    t = topology
    body = ok(cloud.placement("GET", "/allocation_candidates", version=LATEST, params={
        "resources": "VCPU:2,DISK_GB:100,SRIOV_NET_VF:1", "required": t["physnet2"]}))
    assert requests_of(body, t["all"]) == [
        {t["cn"]: {"VCPU": 2}, t["disk"]: {"DISK_GB": 100}, t["pf1"]: {"SRIOV_NET_VF": 1}}]
    summaries = body["provider_summaries"]
    assert summaries[t["pf1"]]["parent_provider_uuid"] == t["n1"]
    assert summaries[t["pf1"]]["root_provider_uuid"] == t["cn"]
    assert summaries[t["pf1"]]["traits"] == [t["physnet2"]]
    assert summaries[t["disk"]]["resources"] == {"DISK_GB": {"capacity": 1000, "used": 0}}
    # granular: one VF on each physnet, from different PFs; mappings say which group got which
    body = ok(cloud.placement("GET", "/allocation_candidates", version=LATEST, params={
        "resources": "VCPU:1", "resources_A": "SRIOV_NET_VF:1", "required_A": t["physnet1"],
        "resources_B": "SRIOV_NET_VF:1", "required_B": t["physnet2"], "group_policy": "isolate"}))
    mine = [a for a in body["allocation_requests"] if set(a["allocations"]) <= t["all"]]
    assert len(mine) == 1, mine
    assert mine[0]["mappings"] == {"": [t["cn"]], "_A": [t["pf0"]], "_B": [t["pf1"]]}
    # same_subtree: the VF and the NUMA node's... n0 has no resources: a resourceless group
    body = ok(cloud.placement("GET", "/allocation_candidates", version=LATEST, params={
        "resources_VF": "SRIOV_NET_VF:1", "required_VF": t["physnet1"], "required_NUMA": "!" + t["physnet2"],
        "same_subtree": "_VF,_NUMA", "group_policy": "none"}))
    mine = [a for a in body["allocation_requests"] if set(a["allocations"]) <= t["all"]]
    assert {tuple(a["mappings"]["_NUMA"]) for a in mine} == {(t["cn"],), (t["n0"],), (t["pf0"],)}
    # before 1.29, a request may not use two providers of one tree
    body = ok(cloud.placement("GET", "/allocation_candidates", version="1.28",
                              params={"resources": "VCPU:1,SRIOV_NET_VF:1"}))
    assert requests_of(body, t["all"]) == []


def test_cli_allocations_on_a_tree(cloud, topology):
    t = topology
    consumer, project, user = new_uuid(), unique("proj"), unique("user")
    cloud.osc("--os-placement-api-version", "1.38", "resource", "provider", "allocation", "set", consumer,
              "--allocation", f"rp={t['cn']},VCPU=2,MEMORY_MB=512",
              "--allocation", f"rp={t['pf0']},SRIOV_NET_VF=1",
              "--allocation", f"rp={t['disk']},DISK_GB=20",
              "--project-id", project, "--user-id", user, "--consumer-type", "INSTANCE")
    try:
        shown = cloud.osc("--os-placement-api-version", "1.38", "resource", "provider", "allocation", "show",
                          consumer, fmt_json=True)
        by_rp = {row["resource_provider"]: row["resources"] for row in shown}
        assert by_rp == {t["cn"]: {"VCPU": 2, "MEMORY_MB": 512}, t["pf0"]: {"SRIOV_NET_VF": 1},
                         t["disk"]: {"DISK_GB": 20}}
        usage = {row["resource_class"]: row["usage"] for row in cloud.osc(
            "--os-placement-api-version", "1.9", "resource", "usage", "show", project, fmt_json=True)}
        assert usage == {"VCPU": 2, "MEMORY_MB": 512, "SRIOV_NET_VF": 1, "DISK_GB": 20}
        used = {row["resource_class"]: row["usage"] for row in cloud.osc(
            "resource", "provider", "usage", "show", t["pf0"], fmt_json=True)}
        assert used == {"SRIOV_NET_VF": 1}
        # the whole tree cannot give 4 more VFs on physnet1
        body = ok(cloud.placement("GET", "/allocation_candidates", version=LATEST, params={
            "resources": "SRIOV_NET_VF:4", "required": t["physnet1"]}))
        assert requests_of(body, t["all"]) == []
    finally:
        cloud.osc("resource", "provider", "allocation", "delete", consumer)
    assert ok(cloud.placement("GET", f"/allocations/{consumer}")) == {"allocations": {}}


@pytest.fixture
def service_token(cloud, cleanup):
    """A token of a user holding the `service` role (what the reshaper's policy asks)."""
    project = cloud.create_project(unique("svc"))
    cleanup("projects", project["id"])
    password = "pw-" + unique("svc")
    user = cloud.create_user(unique("svc"), password)
    cleanup("users", user["id"])
    cloud.grant("service", project_id=project["id"], user_id=user["id"])
    return cloud.login(user["name"], password, project_id=project["id"])


def test_reshaper_moves_vcpu_to_a_child(cloud, rp, service_token):
    cn = rp(VCPU=8, MEMORY_MB=4096, DISK_GB=100)
    consumer = new_uuid()
    assert claim(cloud, consumer, {cn: {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10}}).status_code == 204
    child = rp(parent=cn)
    body = {
        "inventories": {
            cn: {"resource_provider_generation": generation(cloud, cn),
                 "inventories": {"DISK_GB": {"total": 100}}},
            child: {"resource_provider_generation": generation(cloud, child),
                    "inventories": {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096}}},
        },
        "allocations": {consumer: {
            "allocations": {child: {"resources": {"VCPU": 2, "MEMORY_MB": 1024}},
                            cn: {"resources": {"DISK_GB": 10}}},
            "project_id": "p-e2e", "user_id": "u-e2e", "consumer_generation": 1,
            "consumer_type": "INSTANCE"}},
    }
    # admins may not reshape: the policy wants the service role
    placement_error(cloud.placement("POST", "/reshaper", json=body, version=LATEST), 403)
    ok(cloud.placement("POST", "/reshaper", json=body, token=service_token, version=LATEST), 204)
    assert set(ok(cloud.placement("GET", f"/resource_providers/{cn}/inventories"))["inventories"]) == {"DISK_GB"}
    assert ok(cloud.placement("GET", f"/resource_providers/{child}/usages"))["usages"] == {"VCPU": 2,
                                                                                          "MEMORY_MB": 1024}
    allocs = ok(cloud.placement("GET", f"/allocations/{consumer}", version=LATEST))
    assert allocs["consumer_generation"] == 2
    assert {rp: a["resources"] for rp, a in allocs["allocations"].items()} == {
        child: {"VCPU": 2, "MEMORY_MB": 1024}, cn: {"DISK_GB": 10}}
    # the same request again: generations moved, nothing changes
    err = placement_error(cloud.placement("POST", "/reshaper", json=body, token=service_token, version=LATEST),
                          409, code="placement.concurrent_update")
    assert "resource provider generation conflict" in err["detail"]
    missing = str(uuid.uuid4())
    body = {"inventories": {missing: {"resource_provider_generation": 0, "inventories": {}}}, "allocations": {}}
    placement_error(cloud.placement("POST", "/reshaper", json=body, token=service_token, version=LATEST), 400,
                    code="placement.resource_provider.not_found")
