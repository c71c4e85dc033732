"""Servers with ports: the compute service over the network service's API (fake compute driver,
`[network] dataplane = none`), as Nova over Neutron: the API checks the requested networks and
ports with the caller's token, a build makes (or takes) the ports, binds them to its host and
waits for `network-vif-plugged`, `addresses` comes from the ports, delete removes the ports
Nova made and unbinds the caller's. kumo's network agent (here without a data plane) marks a
bound port ACTIVE and sends network-vif-plugged; without it a build waits (and with
`vif_plugging_timeout` over, fails as Nova's). kumo only."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from cloudlib import start_kumo, unique
from computelib import MAXV, make_qcow2, nova_error, server, wait_gone, wait_server
from netlib import NetApi

pytestmark = pytest.mark.kumo_only("the compute and network services are kumo's")

# Short waits for vif-plugged: a build whose events never come fails in seconds, not minutes.
CONF = "[fake]\nhosts = 1\n[network]\ndataplane = none\n[DEFAULT]\nvif_plugging_timeout = 20\n"


@pytest.fixture(scope="module")
def cc():
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        src = make_qcow2(c.workdir / "tiny.qcow2")
        img = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                    "--public", unique("cirros"), fmt_json=True)
        c.image_id = img["id"]
        flavors = {f["Name"]: f["ID"] for f in c.osc("flavor", "list", fmt_json=True)}
        c.nano = flavors["m1.nano"]
        auth = c.cloud_auth("kumo")
        c.demo_token = c.login(auth["username"], auth["password"], project=auth["project_name"])
        c.net_demo = NetApi(c, c.demo_token)
        c.net_admin = NetApi(c, c.admin_token)
        yield c
    finally:
        c.stop()


def make_net(c, cidr: str) -> dict:
    r = c.net_demo("POST", "/networks", json={"network": {"name": unique("net")}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]
    r = c.net_demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": 4,
                                                       "name": unique("sub")}})
    assert r.status_code == 201, r.text
    return net


@pytest.fixture(scope="module")
def net(cc):
    """The demo project's one network (the auto tests add and remove a second one)."""
    return make_net(cc, "10.20.0.0/24")


def create(c, networks, version=MAXV, **extra):
    body = {"server": {"name": unique("vm"), "imageRef": c.image_id, "flavorRef": c.nano, **extra}}
    if networks is not None:
        body["server"]["networks"] = networks
    return c.compute("POST", "/servers", json=body, version=version, token=c.demo_token)


def ports_of(c, sid: str) -> list[dict]:
    return c.net_admin("GET", f"/ports?device_id={sid}").json()["ports"]


def delete(c, sid: str):
    c.compute("DELETE", f"/servers/{sid}")
    wait_gone(c, sid)


# ------------------------------------------------------------------ the API's checks
def test_unknown_network_is_400(cc, net):
    missing = "3df201cf-2451-44f2-8d25-a4ca826fc1f3"
    msg = nova_error(create(cc, [{"uuid": missing}]), 400)
    assert msg == f"Network {missing} could not be found.", msg


def test_unknown_port_is_400_and_port_in_use_409(cc, net):
    missing = "3df201cf-2451-44f2-8d25-a4ca826fc1f4"
    msg = nova_error(create(cc, [{"port": missing}]), 400)
    assert msg == f"Port id {missing} could not be found.", msg
    r = cc.net_demo("POST", "/ports", json={"port": {"network_id": net["id"], "device_id": "someone-else"}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    try:
        msg = nova_error(create(cc, [{"port": port["id"]}]), 409)
        assert msg == f"Port {port['id']} is still in use.", msg
    finally:
        cc.net_demo("DELETE", f"/ports/{port['id']}")


def test_auto_with_two_networks_is_409_and_none_makes_no_port(cc, net):
    other = make_net(cc, "10.21.0.0/24")
    try:
        msg = nova_error(create(cc, "auto"), 409)
        assert msg == "Multiple possible networks found, use a Network ID to be more specific.", msg
        # Before 2.37 (no networks given) too.
        nova_error(create(cc, None, version="2.36"), 409)
    finally:
        assert cc.net_demo("DELETE", f"/networks/{other['id']}").status_code == 204
    r = create(cc, "none")
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        s = wait_server(cc, sid)
        assert s["addresses"] == {}, s
        assert ports_of(cc, sid) == []
    finally:
        delete(cc, sid)


# ------------------------------------------------------------------ builds with ports
def test_server_on_a_network_gets_a_bound_port_deleted_with_it(cc, net):
    name = unique("vm")
    s = cc.osc("server", "create", "--image", cc.image_id, "--flavor", "m1.nano", "--network", net["id"], "--wait",
               name, cloud="kumo", fmt_json=True)
    sid = s["id"]
    try:
        (port,) = ports_of(cc, sid)
        assert port["device_owner"] == "compute:nova", port
        assert port["binding:host_id"] and port["binding:vif_type"] == "bridge", port
        assert port["status"] == "ACTIVE", "the network agent wired the port (network-vif-plugged)"
        shown = server(cc, sid)
        addr = port["fixed_ips"][0]["ip_address"]
        assert shown["addresses"] == {net["name"]: [{"addr": addr, "version": 4, "OS-EXT-IPS:type": "fixed",
                                                      "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}]}, shown
        # the demo user sees the address too, through the CLI
        osc = cc.osc("server", "show", sid, cloud="kumo", fmt_json=True)
        assert addr in str(osc["addresses"]), osc
        # Nova's ips API: by label, version and addr only; an unknown label is 404
        ips = cc.compute("GET", f"/servers/{sid}/ips")
        assert ips.status_code == 200, ips.text
        assert ips.json() == {"addresses": {net["name"]: [{"version": 4, "addr": addr}]}}, ips.text
        one = cc.compute("GET", f"/servers/{sid}/ips/{net['name']}")
        assert one.json() == {net["name"]: [{"version": 4, "addr": addr}]}, one.text
        missing = cc.compute("GET", f"/servers/{sid}/ips/no-such-network")
        assert missing.status_code == 404
        assert missing.json()["itemNotFound"]["message"] == "Instance is not a member of specified network"
    finally:
        delete(cc, sid)
    assert ports_of(cc, sid) == []
    assert cc.net_admin("GET", f"/ports/{port['id']}").status_code == 404


def test_users_port_is_kept_and_unbound_on_delete(cc, net):
    r = cc.net_demo("POST", "/ports", json={"port": {"network_id": net["id"], "name": unique("mine")}})
    assert r.status_code == 201, r.text
    mine = r.json()["port"]
    try:
        r = create(cc, [{"port": mine["id"]}])
        assert r.status_code == 202, r.text
        sid = r.json()["server"]["id"]
        wait_server(cc, sid)
        shown = cc.net_admin("GET", f"/ports/{mine['id']}").json()["port"]
        assert shown["device_id"] == sid and shown["device_owner"] == "compute:nova", shown
        assert shown["binding:host_id"], shown
        addr = mine["fixed_ips"][0]["ip_address"]
        assert addr in str(server(cc, sid)["addresses"])
        delete(cc, sid)
        kept = cc.net_admin("GET", f"/ports/{mine['id']}").json()["port"]
        assert kept["device_id"] == "" and kept["device_owner"] == "" and kept["binding:host_id"] == "", kept
    finally:
        cc.net_demo("DELETE", f"/ports/{mine['id']}")


def wait_bound_port(c, sid: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ps = ports_of(c, sid)
        if ps and ps[0]["binding:host_id"]:
            return ps[0]
        time.sleep(0.05)
    raise AssertionError(f"no bound port for server {sid} after {timeout} s")


def test_build_waits_for_network_vif_plugged(cc, net):
    """The build spawns only once network-vif-plugged for its port has come (here sent as the
    network service would, through os-server-external-events), with the tag = the port id."""
    r = create(cc, [{"uuid": net["id"]}])
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        port = wait_bound_port(cc, sid)
        time.sleep(1)
        s = server(cc, sid)
        # Whoever else sends it (the network agent once it is here), the build is waiting or done.
        if s["status"] == "BUILD":
            assert s["OS-EXT-STS:task_state"] == "networking", s
            # a plug event of another port does not wake it
            other = {"name": "network-vif-plugged", "server_uuid": sid, "tag": "not-my-port"}
            r = cc.compute("POST", "/os-server-external-events", json={"events": [other]})
            assert r.status_code == 200, r.text
            time.sleep(0.5)
            assert server(cc, sid)["OS-EXT-STS:task_state"] == "networking"
            ev = {"name": "network-vif-plugged", "server_uuid": sid, "tag": port["id"], "status": "completed"}
            r = cc.compute("POST", "/os-server-external-events", json={"events": [ev]})
            assert r.status_code == 200, r.text
        s = wait_server(cc, sid, timeout=15)
        addr = port["fixed_ips"][0]["ip_address"]
        assert s["addresses"] == {net["name"]: [{"addr": addr, "version": 4, "OS-EXT-IPS:type": "fixed",
                                                  "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}]}, s
        assert port["device_owner"] == "compute:nova" and port["binding:host_id"] == s["OS-EXT-SRV-ATTR:host"]
    finally:
        delete(cc, sid)
    assert cc.net_admin("GET", f"/ports/{port['id']}").status_code == 404


def test_ports_are_made_bound_and_cleaned_up_when_the_plug_event_never_comes(cc, net):
    """Whether or not the network agent sends network-vif-plugged, the build's port is made by
    the caller (device_owner compute:nova), bound to the build's host, and gone with the server."""
    r = create(cc, [{"uuid": net["id"]}])
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        port = wait_bound_port(cc, sid)
        assert port["device_owner"] == "compute:nova" and port["binding:vif_type"] == "bridge", port
        s = wait_server(cc, sid, status=("ACTIVE", "ERROR"), timeout=60)
        if s["status"] == "ERROR":
            # No agent: the build fails as Nova's with vif_plugging_is_fatal, naming the port.
            assert "Virtual Interface creation failed" in s["fault"]["message"], s["fault"]
            assert port["id"] in s["fault"]["message"], s["fault"]
            assert ports_of(cc, sid) == [], "a failed build's ports are deleted"
    finally:
        delete(cc, sid)
    assert ports_of(cc, sid) == []


def test_auto_without_a_network_gets_the_auto_allocated_topology(cc):
    """`networks: auto` in a project without a network: 400 while the cloud cannot auto-allocate
    (Nova's dry run), then, with a default external network and a default subnet pool, the build
    gets the project's auto-allocated network (made with the caller's token) and a port on it."""
    project = cc.create_project(unique("auto"))
    password = "secret-" + unique("pw")
    user = cc.create_user(unique("auto-user"), password)
    for role in ("member", "reader"):
        cc.grant(role, project_id=project["id"], user_id=user["id"])
    token = cc.login(user["name"], password, project=project["name"])
    body = {"server": {"name": unique("vm"), "imageRef": cc.image_id, "flavorRef": cc.nano, "networks": "auto"}}
    msg = nova_error(cc.compute("POST", "/servers", json=body, version=MAXV, token=token), 400)
    assert msg == f"Unable to automatically allocate a network for project {project['id']}", msg
    admin = cc.net_admin
    ext = admin("POST", "/networks", json={"network": {"name": unique("ext"), "router:external": True,
                                                       "is_default": True}}).json()["network"]
    admin("POST", "/subnets", json={"subnet": {"network_id": ext["id"], "ip_version": 4, "cidr": "172.24.80.0/24",
                                               "enable_dhcp": False}})
    pool = admin("POST", "/subnetpools", json={"subnetpool": {
        "name": unique("pool"), "prefixes": ["10.180.0.0/16"], "default_prefixlen": 26, "shared": True,
        "is_default": True}}).json()["subnetpool"]
    sid = None
    user_net = NetApi(cc, token)
    try:
        r = cc.compute("POST", "/servers", json=body, version=MAXV, token=token)
        assert r.status_code == 202, r.text
        sid = r.json()["server"]["id"]
        s = wait_server(cc, sid)
        (net,) = user_net("GET", f"/networks?project_id={project['id']}").json()["networks"]
        assert net["name"] == "auto_allocated_network" and net["project_id"] == project["id"], net
        (port,) = ports_of(cc, sid)
        assert port["network_id"] == net["id"] and port["fixed_ips"][0]["ip_address"].startswith("10.180.0."), port
        assert list(s["addresses"]) == ["auto_allocated_network"], s
    finally:
        if sid:
            delete(cc, sid)
        assert user_net("DELETE", f"/auto-allocated-topology/{project['id']}").status_code == 204
        admin("DELETE", f"/subnetpools/{pool['id']}")
        admin("DELETE", f"/networks/{ext['id']}")
        cc.delete("users", user["id"])
        cc.delete("projects", project["id"])
