"""The network service (Neutron v2.0: networks, subnets, quotas) through the real `openstack` CLI
and raw HTTP: defaults, validation errors in Neutron's body, policy (admin-only attributes, project
scoping), quotas, filters, fields and pagination. kumo only."""

from __future__ import annotations

import json

import pytest
import requests

from cloudlib import run, unique
from netlib import admin_api, demo_api, neutron_error, osc_demo

pytestmark = pytest.mark.kumo_only("the network service is kumo's")


@pytest.fixture(scope="module")
def admin(cloud):
    return admin_api(cloud)


@pytest.fixture(scope="module")
def demo(cloud):
    return demo_api(cloud)


def test_discovery(cloud, demo):
    r = requests.get(cloud.base_url + "/network/", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["versions"][0]["id"] == "v2.0"
    r = demo("GET", "/")
    assert r.status_code == 200
    assert {x["collection"] for x in r.json()["resources"]} >= {"networks", "subnets"}
    aliases = {e["alias"] for e in demo("GET", "/extensions").json()["extensions"]}
    assert {"net-mtu", "external-net", "quotas"} <= aliases
    assert "router" in aliases and "security-group" in aliases
    assert demo("GET", "/extensions/net-mtu").json()["extension"]["name"] == "Network MTU"
    assert demo("GET", "/extensions/router").json()["extension"]["name"] == "Neutron L3 Router"
    neutron_error(demo("GET", "/extensions/l3-flavors"), 404)
    cat = cloud.osc("catalog", "show", "network", fmt_json=True)
    assert any(e["url"] == cloud.base_url + "/network" for e in cat["endpoints"]), cat


def test_network_lifecycle_cli(cloud):
    name = unique("net")
    net = osc_demo(cloud, "network", "create", "--description", "d1", name, fmt_json=True)
    assert net["name"] == name and net["status"] == "ACTIVE" and net["mtu"] == 1450  # a VXLAN tenant network, as Neutron
    assert net["shared"] is False and net["router:external"] in (False, "Internal")
    assert net["admin_state_up"] in (True, "UP")
    assert net["revision_number"] == 0
    shown = osc_demo(cloud, "network", "show", name, fmt_json=True)
    assert shown["id"] == net["id"] and shown["description"] == "d1"
    listed = osc_demo(cloud, "network", "list", fmt_json=True)
    assert any(n["ID"] == net["id"] for n in listed)
    osc_demo(cloud, "network", "set", "--name", name + "-x", "--disable", net["id"])
    shown = osc_demo(cloud, "network", "show", net["id"], fmt_json=True)
    assert shown["name"] == name + "-x" and shown["admin_state_up"] in (False, "DOWN")
    assert shown["revision_number"] == 1
    osc_demo(cloud, "network", "delete", net["id"])
    err = cloud.osc_fail("network", "show", net["id"], cloud="kumo")
    assert "No Network found" in err or "could not be found" in err, err


def test_shared_and_external_are_admin_only(cloud, admin, demo):
    name = unique("shared")
    err = cloud.osc_fail("network", "create", "--share", name, cloud="kumo")
    assert "403" in err or "disallowed by policy" in err, err
    msg = neutron_error(demo("POST", "/networks", json={"network": {"name": name, "shared": True}}),
                        403, "PolicyNotAuthorized")
    assert "create_network:shared" in msg
    net = cloud.osc("network", "create", "--share", name, fmt_json=True)
    assert net["shared"] is True
    ext = cloud.osc("network", "create", "--external", unique("ext"), fmt_json=True)
    assert ext["router:external"] in (True, "External")
    # demo sees both (shared, external), may not change or delete them
    ids = {n["id"] for n in demo("GET", "/networks").json()["networks"]}
    assert {net["id"], ext["id"]} <= ids
    neutron_error(demo("PUT", f"/networks/{net['id']}", json={"network": {"name": "x"}}), 403,
                  "PolicyNotAuthorized")
    neutron_error(demo("DELETE", f"/networks/{ext['id']}"), 403, "PolicyNotAuthorized")
    for n in (net, ext):
        assert admin("DELETE", f"/networks/{n['id']}").status_code == 204


def test_subnet_defaults_and_options(cloud):
    net = osc_demo(cloud, "network", "create", unique("snet"), fmt_json=True)
    sub = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-range", "10.0.0.0/24",
                   unique("sub"), fmt_json=True)
    assert sub["gateway_ip"] == "10.0.0.1"
    pools = sub["allocation_pools"]
    pools = json.loads(pools) if isinstance(pools, str) and pools.startswith("[") else pools
    text = json.dumps(pools) if not isinstance(pools, str) else pools
    assert "10.0.0.2" in text and "10.0.0.254" in text, pools
    assert sub["enable_dhcp"] in (True, "True") and sub["ip_version"] == 4
    shown = osc_demo(cloud, "network", "show", net["id"], fmt_json=True)
    assert sub["id"] in json.dumps(shown["subnets"])

    s2 = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-range", "10.1.0.0/24",
                  "--allocation-pool", "start=10.1.0.10,end=10.1.0.20", "--dns-nameserver", "8.8.8.8",
                  "--no-dhcp", unique("sub"), fmt_json=True)
    assert "10.1.0.10" in json.dumps(s2["allocation_pools"]) and "10.1.0.20" in json.dumps(s2["allocation_pools"])
    assert "8.8.8.8" in json.dumps(s2["dns_nameservers"])
    assert s2["enable_dhcp"] in (False, "False")

    s6 = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--ip-version", "6",
                  "--subnet-range", "2001:db8::/64", "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
                  unique("sub6"), fmt_json=True)
    assert s6["gateway_ip"] == "2001:db8::1" and s6["ipv6_ra_mode"] == "slaac"
    assert "2001:db8::2" in json.dumps(s6["allocation_pools"])

    osc_demo(cloud, "subnet", "set", "--name", "renamed", s2["id"])
    assert osc_demo(cloud, "subnet", "show", s2["id"], fmt_json=True)["name"] == "renamed"
    osc_demo(cloud, "subnet", "delete", s2["id"])
    # deleting the network takes its subnets with it
    osc_demo(cloud, "network", "delete", net["id"])
    cloud.osc_fail("subnet", "show", sub["id"], cloud="kumo")


def test_subnet_errors(cloud, demo):
    net = demo("POST", "/networks", json={"network": {"name": unique("e")}}).json()["network"]
    ok = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.5.0.0/16"}})
    assert ok.status_code == 201, ok.text
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.5.1.0/24"}})
    assert "overlaps with another subnet" in neutron_error(r, 400, "InvalidInput")
    err = cloud.osc_fail("subnet", "create", "--network", net["id"], "--subnet-range", "10.5.2.0/24",
                         unique("s"), cloud="kumo")
    assert "overlaps with another subnet" in err, err
    err = cloud.osc_fail("subnet", "create", "--network", net["id"], "--subnet-range", "10.7.0.1/24",
                         unique("s"), cloud="kumo")
    assert "10.7.0.0/24" in err, err
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.7.0.1/24"}})
    assert "'10.7.0.0/24' is recommended" in neutron_error(r, 400)
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "bogus"}})
    neutron_error(r, 400)
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.8.0.0/24",
                                                  "allocation_pools": [{"start": "10.8.0.1", "end": "10.8.0.9"}]}})
    neutron_error(r, 409, "GatewayConflictWithAllocationPools")
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.8.0.0/24",
                                                  "allocation_pools": [{"start": "10.8.0.5", "end": "10.9.0.9"}]}})
    neutron_error(r, 400, "OutOfBoundsAllocationPool")
    missing = "00000000-0000-0000-0000-000000000000"
    r = demo("GET", f"/networks/{missing}")
    assert neutron_error(r, 404, "NetworkNotFound") == f"Network {missing} could not be found."
    neutron_error(demo("GET", f"/subnets/{missing}"), 404, "SubnetNotFound")
    neutron_error(demo("POST", "/subnets", json={"subnet": {"network_id": missing, "ip_version": 4,
                                                            "cidr": "10.9.0.0/24"}}), 404, "NetworkNotFound")
    neutron_error(demo("POST", "/networks", data="{not json"), 400)
    neutron_error(demo("POST", "/networks", json={"network": {"bogus": 1}}), 400)
    neutron_error(demo("POST", "/networks", json={"network": {"admin_state_up": "maybe"}}), 400)
    neutron_error(demo("POST", "/networks", json={"network": {"name": "x" * 300_000}}), 413)
    assert demo("DELETE", f"/networks/{net['id']}").status_code == 204


def test_project_isolation(cloud, admin, demo):
    project = cloud.create_project(unique("net-other"))
    try:
        r = admin("POST", "/networks", json={"network": {"name": unique("priv"), "project_id": project["id"]}})
        assert r.status_code == 201, r.text
        priv = r.json()["network"]
        assert priv["project_id"] == project["id"]
        ids = {n["id"] for n in demo("GET", "/networks").json()["networks"]}
        assert priv["id"] not in ids
        neutron_error(demo("GET", f"/networks/{priv['id']}"), 404, "NetworkNotFound")
        neutron_error(demo("DELETE", f"/networks/{priv['id']}"), 404, "NetworkNotFound")
        assert priv["id"] in {n["id"] for n in admin("GET", "/networks").json()["networks"]}
        # demo may not create in another project
        neutron_error(demo("POST", "/networks", json={"network": {"project_id": project["id"]}}), 403)
        assert admin("DELETE", f"/networks/{priv['id']}").status_code == 204
    finally:
        cloud.delete("projects", project["id"])


def test_quota(cloud, admin, demo):
    project = cloud.create_project(unique("net-quota"))
    try:
        pid = project["id"]
        assert admin("GET", f"/quotas/{pid}/default").json()["quota"] == {
            "network": 100, "subnet": 100, "port": 500, "security_group": 10, "security_group_rule": 100,
            "router": 10, "floatingip": 50}
        r = admin("PUT", f"/quotas/{pid}", json={"quota": {"network": 1}})
        assert r.status_code == 200 and r.json()["quota"]["network"] == 1, r.text
        assert any(q["project_id"] == pid for q in admin("GET", "/quotas").json()["quotas"])
        r = admin("POST", "/networks", json={"network": {"name": "q1", "project_id": pid}})
        assert r.status_code == 201
        first = r.json()["network"]["id"]
        r = admin("POST", "/networks", json={"network": {"name": "q2", "project_id": pid}})
        assert neutron_error(r, 409, "OverQuota") == "Quota exceeded for resources: ['network']."
        d = admin("GET", f"/quotas/{pid}/details.json").json()["quota"]
        assert d["network"] == {"limit": 1, "used": 1, "reserved": 0}
        neutron_error(demo("PUT", f"/quotas/{pid}", json={"quota": {"network": 5}}), 403)
        shown = cloud.osc("quota", "show", "--network", pid, fmt_json=True)
        assert json.dumps(shown).find("network") >= 0
        assert admin("DELETE", f"/quotas/{pid}").status_code == 204
        assert admin("GET", f"/quotas/{pid}").json()["quota"]["network"] == 100
        admin("DELETE", f"/networks/{first}")
    finally:
        cloud.delete("projects", project["id"])


def test_filters_fields_pagination(cloud, demo):
    tag = unique("pg")
    made = []
    for i in range(5):
        r = demo("POST", "/networks", json={"network": {"name": f"{tag}-{i}", "description": tag}})
        made.append(r.json()["network"]["id"])
    try:
        r = demo("GET", "/networks", params=[("description", tag), ("fields", "id"), ("fields", "name")])
        nets = r.json()["networks"]
        assert len(nets) == 5 and all(set(n) == {"id", "name"} for n in nets), nets
        r = demo("GET", "/networks", params=[("name", f"{tag}-1"), ("name", f"{tag}-3")])
        assert sorted(n["name"] for n in r.json()["networks"]) == [f"{tag}-1", f"{tag}-3"]
        r = demo("GET", "/networks", params={"description": tag, "shared": "false", "sort_key": "name",
                                             "sort_dir": "desc"})
        assert [n["name"] for n in r.json()["networks"]] == [f"{tag}-{i}" for i in range(4, -1, -1)]
        seen = []
        url = cloud.base_url + "/network/v2.0/networks?" + f"description={tag}&limit=2&sort_key=name&sort_dir=asc"
        while url:
            page = requests.get(url, headers={"X-Auth-Token": demo.token}, timeout=30).json()
            seen += [n["name"] for n in page["networks"]]
            nxt = [link["href"] for link in page.get("networks_links", []) if link["rel"] == "next"]
            url = nxt[0] if nxt else None
            assert len(seen) <= 10
        assert seen == [f"{tag}-{i}" for i in range(5)], seen
        r = demo("GET", "/networks", params={"limit": "x"})
        neutron_error(r, 400)
        r = demo("GET", f"/networks/{made[0]}", params={"fields": "name"})
        assert r.json() == {"network": {"name": f"{tag}-0"}}
    finally:
        for i in made:
            demo("DELETE", f"/networks/{i}")


def test_bulk_create_and_no_token(cloud, demo):
    tag = unique("bulk")
    r = demo("POST", "/networks", json={"networks": [{"name": f"{tag}-a"}, {"name": f"{tag}-b"}]})
    assert r.status_code == 201, r.text
    nets = r.json()["networks"]
    assert [n["name"] for n in nets] == [f"{tag}-a", f"{tag}-b"]
    # all or nothing: one bad item creates none
    r = demo("POST", "/networks", json={"networks": [{"name": f"{tag}-c"}, {"bogus": 1}]})
    neutron_error(r, 400)
    assert not demo("GET", "/networks", params={"name": f"{tag}-c"}).json()["networks"]
    r = demo("POST", "/subnets", json={"subnets": [
        {"network_id": nets[0]["id"], "ip_version": 4, "cidr": "192.168.1.0/24"},
        {"network_id": nets[0]["id"], "ip_version": 4, "cidr": "192.168.2.0/24", "gateway_ip": None}]})
    assert r.status_code == 201, r.text
    subs = r.json()["subnets"]
    assert subs[1]["gateway_ip"] is None
    assert subs[1]["allocation_pools"] == [{"start": "192.168.2.1", "end": "192.168.2.254"}]
    r = requests.get(cloud.base_url + "/network/v2.0/networks", timeout=30)
    neutron_error(r, 401)
    for n in nets:
        assert demo("DELETE", f"/networks/{n['id']}").status_code == 204


@pytest.mark.parametrize("path,body", [
    ("/networks", {"network": None}),
    ("/networks", {"network": []}),
    ("/networks", {"networks": "x"}),
    ("/networks", {"networks": []}),
    ("/networks", [1, 2]),
    ("/networks", {"network": {"name": 5}}),
    ("/networks", {"network": {"availability_zone_hints": "az"}}),
    ("/networks", {"network": {"mtu": 9000}}),
    ("/subnets", {"subnet": {}}),
    ("/subnets", {"subnet": {"network_id": 1, "ip_version": 4, "cidr": "10.0.0.0/24"}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": "four", "cidr": "10.0.0.0/24"}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": 10}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24",
                             "allocation_pools": "a"}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24",
                             "allocation_pools": [{"start": 1}]}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24", "host_routes": [1]}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24",
                             "dns_nameservers": ["1.1.1.1", "1.1.1.1"]}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 6, "cidr": "10.0.0.0/24"}}),
    ("/subnets", {"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24", "ipv6_ra_mode": "slaac"}}),
])
def test_bad_bodies_are_400s(demo, path, body):
    r = demo("POST", path, json=body)
    neutron_error(r, 400)


def test_bad_updates_and_queries(demo):
    net = demo("POST", "/networks", json={"network": {"name": unique("bu")}}).json()["network"]
    sub = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                    "cidr": "10.20.0.0/24"}}).json()["subnet"]
    try:
        for body in ({"network": {"mtu": 1}}, {"network": {"id": "x"}}, {"network": {"admin_state_up": None}},
                     {"network": 3}, {}):
            neutron_error(demo("PUT", f"/networks/{net['id']}", json=body), 400)
        for body in ({"subnet": {"cidr": "10.0.0.0/8"}}, {"subnet": {"gateway_ip": "nope"}},
                     {"subnet": {"allocation_pools": [{"start": "10.20.0.1", "end": "10.20.0.5"}]}}):
            assert demo("PUT", f"/subnets/{sub['id']}", json=body).status_code in (400, 409)
        r = demo("PUT", f"/subnets/{sub['id']}", json={"subnet": {"gateway_ip": None, "dns_nameservers": ["9.9.9.9"]}})
        assert r.status_code == 200 and r.json()["subnet"]["gateway_ip"] is None, r.text
        for q in ({"sort_key": "nope", "sort_dir": "asc"}, {"sort_dir": "up", "sort_key": "name"},
                  {"sort_key": "name"}, {"limit": "-1"}, {"limit": "1", "marker": "missing"}):
            assert demo("GET", "/networks", params=q).status_code in (400, 404), q
    finally:
        demo("DELETE", f"/networks/{net['id']}")
