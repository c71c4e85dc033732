"""Routers and floating IPs of the network service through the real `openstack` CLI and raw HTTP:
the external gateway, interfaces by subnet and by port, extra routes, floating IPs associated and
disassociated, and Neutron's conflicts (RouterInUse, interface in use by a floating IP, network
not external, unreachable external network), quotas. kumo only."""

from __future__ import annotations

import json

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


@pytest.fixture(scope="module")
def public(cloud):
    """An external network (admin's) with a 172.24.60.0/24 subnet without DHCP."""
    net = cloud.osc("network", "create", "--external", unique("public"), fmt_json=True)
    sub = cloud.osc("subnet", "create", "--network", net["id"], "--subnet-range", "172.24.60.0/24",
                    "--no-dhcp", unique("public-sub"), fmt_json=True)
    return net, sub


def make_net(cloud, cidr):
    net = osc_demo(cloud, "network", "create", unique("l3net"), fmt_json=True)
    sub = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-range", cidr,
                   unique("l3sub"), fmt_json=True)
    return net, sub


def gw_info(router) -> dict:
    g = router["external_gateway_info"]
    return json.loads(g) if isinstance(g, str) else g


def test_router_gateway_interfaces_routes(cloud, admin, demo, public):
    ext, ext_sub = public
    name = unique("router")
    r = osc_demo(cloud, "router", "create", name, fmt_json=True)
    assert r["status"] == "ACTIVE" and not r["external_gateway_info"]
    osc_demo(cloud, "router", "set", "--external-gateway", ext["id"], name)
    shown = demo("GET", f"/routers/{r['id']}").json()["router"]
    g = shown["external_gateway_info"]
    assert g["network_id"] == ext["id"] and g["enable_snat"] is True, g
    gw_ip = g["external_fixed_ips"][0]["ip_address"]
    assert gw_ip.startswith("172.24.60.") and g["external_fixed_ips"][0]["subnet_id"] == ext_sub["id"]
    # the gateway port is the admin's to see, owned by no project
    gw_ports = admin("GET", f"/ports?device_id={r['id']}&device_owner=network:router_gateway").json()["ports"]
    assert len(gw_ports) == 1 and gw_ports[0]["project_id"] == "", gw_ports

    net1, sub1 = make_net(cloud, "10.60.1.0/24")
    osc_demo(cloud, "router", "add", "subnet", name, sub1["id"])
    net2, sub2 = make_net(cloud, "10.60.2.0/24")
    port = osc_demo(cloud, "port", "create", "--network", net2["id"], unique("rport"), fmt_json=True)
    osc_demo(cloud, "router", "add", "port", name, port["id"])
    ifaces = demo("GET", f"/ports?device_id={r['id']}&device_owner=network:router_interface").json()["ports"]
    assert {p["network_id"] for p in ifaces} == {net1["id"], net2["id"]}, ifaces
    by_subnet = [p for p in ifaces if p["network_id"] == net1["id"]][0]
    assert by_subnet["fixed_ips"] == [{"subnet_id": sub1["id"], "ip_address": "10.60.1.1"}]
    # the same subnet twice, an overlapping one: 400 BadRequest
    body = {"subnet_id": sub1["id"]}
    msg = neutron_error(demo("PUT", f"/routers/{r['id']}/add_router_interface", json=body), 400, "BadRequest")
    assert msg == f"Bad router request: Router already has a port on subnet {sub1['id']}.", msg
    _, overlap = make_net(cloud, "10.60.1.0/24")
    msg = neutron_error(demo("PUT", f"/routers/{r['id']}/add_router_interface",
                             json={"subnet_id": overlap["id"]}), 400, "BadRequest")
    assert "overlaps with cidr 10.60.1.0/24" in msg, msg
    # an attached port is taken; the port API may not delete it; its subnet is in use
    neutron_error(demo("PUT", f"/routers/{r['id']}/add_router_interface", json={"port_id": port["id"]}),
                  409, "PortInUse")
    neutron_error(demo("DELETE", f"/ports/{port['id']}"), 409)
    neutron_error(demo("DELETE", f"/subnets/{sub1['id']}"), 409, "SubnetInUse")
    # a router with interfaces cannot go
    msg = neutron_error(demo("DELETE", f"/routers/{r['id']}"), 409, "RouterInUse")
    assert msg.startswith(f"Router {r['id']} has ports still attached"), msg

    # extra routes: nexthop on an attached subnet
    osc_demo(cloud, "router", "set", "--route", "destination=192.168.60.0/24,gateway=10.60.1.10", name)
    shown = osc_demo(cloud, "router", "show", name, fmt_json=True)
    assert "192.168.60.0/24" in json.dumps(shown["routes"]), shown["routes"]
    bad = {"router": {"routes": [{"destination": "192.168.61.0/24", "nexthop": "10.99.0.1"}]}}
    msg = neutron_error(demo("PUT", f"/routers/{r['id']}", json=bad), 400, "InvalidRoutes")
    assert msg.endswith("the nexthop is not connected with router"), msg
    atomic = {"router": {"routes": [{"destination": "192.168.62.0/24", "nexthop": "10.60.2.20"}]}}
    rr = demo("PUT", f"/routers/{r['id']}/add_extraroutes", json=atomic)
    assert rr.status_code == 200 and len(rr.json()["router"]["routes"]) == 2, rr.text
    neutron_error(demo("PUT", f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": sub1["id"]}),
                  409, "RouterInterfaceInUseByRoute")
    osc_demo(cloud, "router", "set", "--no-route", name)
    assert demo("GET", f"/routers/{r['id']}").json()["router"]["routes"] == []

    # listing and removal
    assert r["id"] in {x["ID"] for x in osc_demo(cloud, "router", "list", fmt_json=True)}
    osc_demo(cloud, "router", "remove", "subnet", name, sub1["id"])
    neutron_error(demo("PUT", f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": sub1["id"]}),
                  404, "RouterInterfaceNotFoundForSubnet")
    osc_demo(cloud, "router", "remove", "port", name, port["id"])
    neutron_error(demo("GET", f"/ports/{port['id']}"), 404, "PortNotFound")
    osc_demo(cloud, "router", "delete", name)
    neutron_error(demo("GET", f"/routers/{r['id']}"), 404, "RouterNotFound")
    assert admin("GET", f"/ports?device_id={r['id']}").json()["ports"] == []
    for n in (net1, net2):
        osc_demo(cloud, "network", "delete", n["id"])


def test_gateway_errors(cloud, demo, public):
    r = demo("POST", "/routers", json={"router": {"name": unique("r")}}).json()["router"]
    missing = "6f1c2f5e-0d8b-4a4e-9d39-1f1f2b3c4d5e"
    body = {"router": {"external_gateway_info": {"network_id": missing}}}
    neutron_error(demo("PUT", f"/routers/{r['id']}", json=body), 404, "NetworkNotFound")
    net, _ = make_net(cloud, "10.61.0.0/24")
    body = {"router": {"external_gateway_info": {"network_id": net["id"]}}}
    msg = neutron_error(demo("PUT", f"/routers/{r['id']}", json=body), 400, "BadRequest")
    assert msg == f"Bad router request: Network {net['id']} is not an external network.", msg
    # enable_snat is the admin's (Neutron's policy)
    body = {"router": {"external_gateway_info": {"network_id": public[0]["id"], "enable_snat": False}}}
    neutron_error(demo("PUT", f"/routers/{r['id']}", json=body), 403, "PolicyNotAuthorized")
    neutron_error(demo("PUT", f"/routers/{r['id']}/add_router_interface", json={}), 400, "BadRequest")
    assert demo("DELETE", f"/routers/{r['id']}").status_code == 204
    osc_demo(cloud, "network", "delete", net["id"])


def test_floating_ips(cloud, admin, demo, public):
    ext, _ = public
    net, sub = make_net(cloud, "10.62.0.0/24")
    vm = osc_demo(cloud, "port", "create", "--network", net["id"], unique("vm"), fmt_json=True)
    # not external: 400; unreachable: 404
    msg = neutron_error(demo("POST", "/floatingips", json={"floatingip": {"floating_network_id": net["id"]}}),
                        400, "BadRequest")
    assert msg == f"Bad floatingip request: Network {net['id']} is not a valid external network.", msg
    body = {"floatingip": {"floating_network_id": ext["id"], "port_id": vm["id"]}}
    neutron_error(demo("POST", "/floatingips", json=body), 404, "ExternalGatewayForFloatingIPNotFound")

    fip = osc_demo(cloud, "floating", "ip", "create", ext["id"], fmt_json=True)
    assert fip["status"] == "DOWN" and fip["floating_ip_address"].startswith("172.24.60.")
    assert not fip["port_id"]
    router = osc_demo(cloud, "router", "create", unique("fr"), fmt_json=True)
    osc_demo(cloud, "router", "set", "--external-gateway", ext["id"], router["id"])
    osc_demo(cloud, "router", "add", "subnet", router["id"], sub["id"])
    osc_demo(cloud, "floating", "ip", "set", "--port", vm["id"], fip["id"])
    shown = demo("GET", f"/floatingips/{fip['id']}").json()["floatingip"]
    assert shown["port_id"] == vm["id"] and shown["router_id"] == router["id"], shown
    assert shown["fixed_ip_address"] == "10.62.0.3" and shown["status"] == "ACTIVE", shown
    # the router's interface and gateway are needed now
    msg = neutron_error(demo("PUT", f"/routers/{router['id']}/remove_router_interface",
                             json={"subnet_id": sub["id"]}), 409, "RouterInterfaceInUseByFloatingIP")
    assert sub["id"] in msg and router["id"] in msg
    neutron_error(demo("PUT", f"/routers/{router['id']}", json={"router": {"external_gateway_info": {}}}),
                  409, "RouterExternalGatewayInUseByFloatingIp")
    # the address the floating IP maps to stays on the port (Neutron's 400); adding one is fine
    err = cloud.osc_fail("port", "set", "--no-fixed-ip", "--fixed-ip", "ip-address=10.62.0.40", vm["id"],
                         cloud="kumo")
    assert "associated to a floating ip" in err, err
    body = {"port": {"fixed_ips": [{"ip_address": "10.62.0.41"}]}}
    msg = neutron_error(demo("PUT", f"/ports/{vm['id']}", json=body), 400, "BadRequest")
    assert msg == (f"Bad port request: Cannot update the fixed_ips of the port {vm['id']}, because its "
                   "original fixed_ip has been associated to a floating ip."), msg
    kept = demo("GET", f"/ports/{vm['id']}").json()["port"]["fixed_ips"]
    assert [f["ip_address"] for f in kept] == ["10.62.0.3"], kept
    both = {"port": {"fixed_ips": [{"ip_address": "10.62.0.3"}, {"ip_address": "10.62.0.42"}]}}
    r = demo("PUT", f"/ports/{vm['id']}", json=both)
    assert r.status_code == 200, r.text
    r = demo("PUT", f"/ports/{vm['id']}", json={"port": {"fixed_ips": [{"ip_address": "10.62.0.3"}]}})
    assert r.status_code == 200, r.text
    # 10.62.0.41 was never taken: the refused update left no allocation behind
    probe = demo("POST", "/ports", json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.62.0.41"}]}})
    assert probe.status_code == 201, probe.text
    demo("DELETE", f"/ports/{probe.json()['port']['id']}")
    # filters
    found = demo("GET", f"/floatingips?port_id={vm['id']}").json()["floatingips"]
    assert [f["id"] for f in found] == [fip["id"]]
    osc_demo(cloud, "floating", "ip", "unset", "--port", fip["id"])
    shown = demo("GET", f"/floatingips/{fip['id']}").json()["floatingip"]
    assert shown["port_id"] is None and shown["router_id"] is None and shown["status"] == "DOWN"
    # associate again, then delete the port: the floating IP is disassociated
    r = demo("PUT", f"/floatingips/{fip['id']}", json={"floatingip": {"port_id": vm["id"]}})
    assert r.status_code == 200 and r.json()["floatingip"]["status"] == "ACTIVE", r.text
    osc_demo(cloud, "port", "delete", vm["id"])
    shown = demo("GET", f"/floatingips/{fip['id']}").json()["floatingip"]
    assert shown["port_id"] is None and shown["fixed_ip_address"] is None
    # the floating IP's port keeps the external network
    neutron_error(admin("DELETE", f"/networks/{ext['id']}"), 409, "NetworkInUse")
    osc_demo(cloud, "floating", "ip", "delete", fip["id"])
    neutron_error(demo("GET", f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    osc_demo(cloud, "router", "remove", "subnet", router["id"], sub["id"])
    osc_demo(cloud, "router", "delete", router["id"])
    osc_demo(cloud, "network", "delete", net["id"])


def test_l3_quotas_and_discovery(cloud, admin, demo, public):
    r = demo("POST", "/routers", json={"router": {"name": unique("q")}})
    assert r.status_code == 201, r.text
    project = r.json()["router"]["project_id"]
    q = admin("GET", f"/quotas/{project}").json()["quota"]
    assert q["router"] == 10 and q["floatingip"] == 50, q
    used = len(admin("GET", f"/routers?project_id={project}").json()["routers"])
    assert admin("PUT", f"/quotas/{project}", json={"quota": {"router": used, "floatingip": 0}}).status_code == 200
    try:
        msg = neutron_error(demo("POST", "/routers", json={"router": {}}), 409, "OverQuota")
        assert "router" in msg
        body = {"floatingip": {"floating_network_id": public[0]["id"]}}
        neutron_error(demo("POST", "/floatingips", json=body), 409, "OverQuota")
    finally:
        admin("DELETE", f"/quotas/{project}")
    assert demo("DELETE", f"/routers/{r.json()['router']['id']}").status_code == 204
    aliases = {e["alias"] for e in demo("GET", "/extensions").json()["extensions"]}
    assert {"router", "ext-gw-mode", "extraroute", "extraroute-atomic"} <= aliases
    names = {x["name"] for x in demo("GET", "/").json()["resources"]}
    assert {"router", "floatingip"} <= names
