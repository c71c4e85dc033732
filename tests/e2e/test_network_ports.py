"""Ports of the network service through the real `openstack` CLI and raw HTTP: addresses from
the subnets (IPAM), the DHCP port, MACs, conflicts in Neutron's error bodies, networks and
subnets kept by their ports, bindings hidden from non-admins, If-Match, quotas. kumo only."""

from __future__ import annotations

import pytest

from cloudlib import unique
from netlib import NetApi, neutron_error, osc_demo

pytestmark = pytest.mark.kumo_only("the network service is kumo's")


@pytest.fixture(scope="module")
def admin(cloud):
    return NetApi(cloud, cloud.admin_token)


@pytest.fixture(scope="module")
def demo(cloud):
    auth = cloud.cloud_auth("kumo")
    token = cloud.login(auth["username"], auth["password"], project=auth["project_name"])
    return NetApi(cloud, token)


def make_net(cloud, cidr="10.10.0.0/24", **opts):
    net = osc_demo(cloud, "network", "create", unique("pnet"), fmt_json=True)
    args = ["subnet", "create", "--network", net["id"], "--subnet-range", cidr]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", v] if v is not True else [f"--{k.replace('_', '-')}"]
    sub = osc_demo(cloud, *args, unique("psub"), fmt_json=True)
    return net, sub


def ips(port) -> list[str]:
    return [f["ip_address"] for f in port["fixed_ips"]]


def test_port_gets_an_address_and_the_network_a_dhcp_port(cloud, admin, demo):
    net, sub = make_net(cloud)
    dhcp = admin("GET", f"/ports?network_id={net['id']}&device_owner=network:dhcp").json()["ports"]
    assert len(dhcp) == 1 and ips(dhcp[0]) == ["10.10.0.2"], dhcp
    port = osc_demo(cloud, "port", "create", "--network", net["id"], unique("p"), fmt_json=True)
    assert port["status"] == "DOWN"
    assert port["mac_address"].startswith("fa:16:3e:")
    fixed = demo("GET", f"/ports/{port['id']}").json()["port"]
    assert fixed["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.10.0.3"}]
    # binding details are the admin's
    assert "binding:host_id" not in fixed and fixed["binding:vnic_type"] == "normal"
    default_sg = demo("GET", "/security-groups?name=default").json()["security_groups"][0]
    assert fixed["security_groups"] == [default_sg["id"]]
    shown = admin("GET", f"/ports/{port['id']}").json()["port"]
    assert shown["binding:vif_type"] == "unbound" and shown["binding:host_id"] == ""
    # a chosen address, then the same address again, one outside the subnet, one on no subnet
    chosen = osc_demo(cloud, "port", "create", "--network", net["id"], "--fixed-ip",
                      f"subnet={sub['id']},ip-address=10.10.0.50", unique("p"), fmt_json=True)
    assert "10.10.0.50" in str(chosen["fixed_ips"])
    body = {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.10.0.50"}]}}
    msg = neutron_error(demo("POST", "/ports", json=body), 409, "IpAddressAlreadyAllocated")
    assert "10.10.0.50" in msg and sub["id"] in msg
    body["port"]["fixed_ips"] = [{"subnet_id": sub["id"], "ip_address": "10.99.0.5"}]
    neutron_error(demo("POST", "/ports", json=body), 400, "InvalidIpForSubnet")
    body["port"]["fixed_ips"] = [{"ip_address": "10.99.0.5"}]
    neutron_error(demo("POST", "/ports", json=body), 400, "InvalidIpForNetwork")
    body["port"]["fixed_ips"] = [{"subnet_id": sub["id"], "ip_address": "10.10.0.255"}]
    neutron_error(demo("POST", "/ports", json=body), 400, "InvalidIpForSubnet")
    # the network and the subnet are kept by the ports; the DHCP port is not in the way
    neutron_error(demo("DELETE", f"/networks/{net['id']}"), 409, "NetworkInUse")
    neutron_error(demo("DELETE", f"/subnets/{sub['id']}"), 409, "SubnetInUse")
    osc_demo(cloud, "port", "delete", port["id"], chosen["id"])
    osc_demo(cloud, "network", "delete", net["id"])
    assert admin("GET", f"/ports?network_id={net['id']}").json()["ports"] == []


def test_mac_and_exhaustion_conflicts(cloud, demo):
    net, sub = make_net(cloud, cidr="10.11.0.0/29")  # .1 gateway, .2 dhcp, .3-.6 for ports
    made = [demo("POST", "/ports", json={"port": {"network_id": net["id"]}}) for _ in range(4)]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    assert sorted(ips(r.json()["port"])[0] for r in made) == [f"10.11.0.{i}" for i in range(3, 7)]
    msg = neutron_error(demo("POST", "/ports", json={"port": {"network_id": net["id"]}}), 409,
                        "IpAddressGenerationFailure")
    assert net["id"] in msg
    mac = made[0].json()["port"]["mac_address"]
    r = demo("POST", "/ports", json={"port": {"network_id": net["id"], "mac_address": mac,
                                                "fixed_ips": []}})
    neutron_error(r, 409, "MacAddressInUse")
    neutron_error(demo("POST", "/ports", json={"port": {"network_id": net["id"],
                                                         "mac_address": "nope"}}), 400)
    # freeing one address makes room again
    assert demo("DELETE", f"/ports/{made[1].json()['port']['id']}").status_code == 204
    again = demo("POST", "/ports", json={"port": {"network_id": net["id"]}})
    assert again.status_code == 201 and ips(again.json()["port"]) == ips(made[1].json()["port"])


def test_update_bulk_pairs_and_if_match(cloud, admin, demo):
    net, sub = make_net(cloud, cidr="10.12.0.0/24")
    r = demo("POST", "/ports", json={"ports": [{"network_id": net["id"], "name": "a"},
                                               {"network_id": net["id"], "name": "b"}]})
    assert r.status_code == 201, r.text
    a, b = r.json()["ports"]
    assert ips(a) != ips(b)
    # fixed_ips update: move to a chosen address
    r = demo("PUT", f"/ports/{a['id']}", json={"port": {"fixed_ips": [{"ip_address": "10.12.0.77"}]}})
    assert r.status_code == 200 and ips(r.json()["port"]) == ["10.12.0.77"], r.text
    assert r.json()["port"]["revision_number"] == 1
    # If-Match: a stale revision is refused, the current one passes
    h = {"If-Match": "revision_number=0"}
    r = demo("PUT", f"/ports/{a['id']}", json={"port": {"name": "x"}}, headers=h)
    neutron_error(r, 412, "RevisionNumberConstraintFailed")
    h = {"If-Match": "revision_number=1"}
    r = demo("PUT", f"/ports/{a['id']}", json={"port": {"name": "x"}}, headers=h)
    assert r.status_code == 200 and r.json()["port"]["name"] == "x"
    # allowed address pairs need port security
    pairs = [{"ip_address": "10.12.0.200"}]
    r = demo("PUT", f"/ports/{b['id']}", json={"port": {"allowed_address_pairs": pairs}})
    assert r.status_code == 200, r.text
    assert r.json()["port"]["allowed_address_pairs"] == [
        {"ip_address": "10.12.0.200", "mac_address": b["mac_address"]}]
    r = demo("PUT", f"/ports/{b['id']}", json={"port": {"port_security_enabled": False}})
    neutron_error(r, 409, "PortSecurityPortHasSecurityGroup")  # the default group came with it
    r = demo("PUT", f"/ports/{b['id']}", json={"port": {"port_security_enabled": False,
                                                          "security_groups": []}})
    neutron_error(r, 409, "AddressPairAndPortSecurityRequired")
    # binding is the admin's
    r = demo("PUT", f"/ports/{b['id']}", json={"port": {"binding:host_id": "h1"}})
    neutron_error(r, 403, "PolicyNotAuthorized")
    r = admin("PUT", f"/ports/{b['id']}", json={"port": {"binding:host_id": "h1"}})
    assert r.status_code == 200 and r.json()["port"]["binding:vif_type"] == "bridge", r.text
    # filters on the new attributes
    mine = demo("GET", f"/ports?network_id={net['id']}&device_owner=").json()["ports"]
    assert {p["id"] for p in mine} >= {a["id"], b["id"]}
    by_ip = demo("GET", f"/ports?fixed_ips=ip_address%3D10.12.0.77").json()["ports"]
    assert [p["id"] for p in by_ip] == [a["id"]], by_ip
    for p in (a, b):
        assert demo("DELETE", f"/ports/{p['id']}").status_code == 204
    neutron_error(demo("GET", f"/ports/{a['id']}"), 404, "PortNotFound")


def test_port_quota(cloud, admin, demo):
    net, _ = make_net(cloud, cidr="10.13.0.0/24")
    project = net["project_id"]
    used = len(admin("GET", f"/ports?project_id={project}").json()["ports"])
    assert admin("PUT", f"/quotas/{project}", json={"quota": {"port": used + 1}}).status_code == 200
    try:
        assert demo("POST", "/ports", json={"port": {"network_id": net["id"]}}).status_code == 201
        msg = neutron_error(demo("POST", "/ports", json={"port": {"network_id": net["id"]}}), 409,
                            "OverQuota")
        assert "port" in msg
    finally:
        admin("DELETE", f"/quotas/{project}")
