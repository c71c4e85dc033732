"""Port interfaces of servers (Nova's os-interface and the multinic actions), as Nova over
Neutron: `server add network/port`, `server remove port/network`, `server add/remove fixed
ip`, `port list --server`, `server show` addresses and `server event list` through the CLI;
Nova's status codes, bodies and errors over raw HTTP.

Two kumos of their own: one with the fake compute driver and `[network] dataplane = none`
(ports go ACTIVE when bound) for the API's semantics, and, when QEMU is there and we are root,
one with the QEMU driver and the network data plane for one real kumo-tiny guest: a NIC
hot-plugged on a second network gets its address by DHCP and answers a ping from that
network's DHCP namespace until it is unplugged. kumo only."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from cloudlib import start_kumo, unique
from computelib import MAXV, make_qcow2, nova_error, server, wait_gone, wait_server
from guestlib import kumo_tiny_image, needs_qemu_guest, wait_for_console
from netlib import NetApi

pytestmark = pytest.mark.kumo_only("the compute and network services are kumo's")

CONF = "[fake]\nhosts = 1\n[network]\ndataplane = none\n[DEFAULT]\nvif_plugging_timeout = 20\n"
MISSING = "3df201cf-2451-44f2-8d25-a4ca826fc1f3"


def wait_until(check, timeout: float, step: float = 0.1):
    """check()'s first truthy value within `timeout` s, else None."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


@pytest.fixture(scope="module")
def cc():
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        src = make_qcow2(c.workdir / "tiny.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format",
                           "bare", "--public", unique("cirros"), fmt_json=True)["id"]
        auth = c.cloud_auth("kumo")
        c.demo_token = c.login(auth["username"], auth["password"], project=auth["project_name"])
        c.net_demo = NetApi(c, c.demo_token)
        c.net_admin = NetApi(c, c.admin_token)
        c.net_a = make_net(c, "10.30.0.0/24")
        c.net_b = make_net(c, "10.31.0.0/24")
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
    net["subnet"] = r.json()["subnet"]
    return net


def demo(c, *args, fmt_json=False):
    return c.osc(*args, cloud="kumo", fmt_json=fmt_json)


def boot(c, net_id: str) -> str:
    s = demo(c, "server", "create", "--image", c.image_id, "--flavor", "m1.nano", "--network", net_id, "--wait",
             unique("vm"), fmt_json=True)
    return s["id"]


def ports_of(c, sid: str) -> list[dict]:
    return c.net_admin("GET", f"/ports?device_id={sid}").json()["ports"]


def port(c, pid: str) -> dict | None:
    r = c.net_admin("GET", f"/ports/{pid}")
    return r.json()["port"] if r.status_code == 200 else None


def iface(c, sid: str, version: str = MAXV, token: str | None = None, **body):
    return c.compute("POST", f"/servers/{sid}/os-interface", json={"interfaceAttachment": body}, version=version,
                     token=c.demo_token if token is None else token)


def addresses(c, sid: str) -> dict:
    return server(c, sid)["addresses"]


def events(c, sid: str) -> list[str]:
    return [a["Action"] for a in demo(c, "server", "event", "list", sid, fmt_json=True)]


def delete_server(c, sid: str):
    c.compute("DELETE", f"/servers/{sid}")
    wait_gone(c, sid)


# ------------------------------------------------------------------ the CLI's commands
def test_add_network_then_remove_port_makes_and_deletes_a_port(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    try:
        (boot_port,) = ports_of(c, sid)
        demo(c, "server", "add", "network", sid, c.net_b["id"])
        ports = ports_of(c, sid)
        assert len(ports) == 2, ports
        (new,) = [p for p in ports if p["id"] != boot_port["id"]]
        assert new["network_id"] == c.net_b["id"] and new["device_owner"] == "compute:nova", new
        assert new["binding:host_id"] and new["status"] == "ACTIVE", new
        ip = new["fixed_ips"][0]["ip_address"]
        assert addresses(c, sid)[c.net_b["name"]] == [
            {"addr": ip, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": new["mac_address"]}]
        listed = demo(c, "port", "list", "--server", sid, fmt_json=True)
        assert {p["ID"] for p in listed} == {boot_port["id"], new["id"]}, listed
        shown = demo(c, "server", "show", sid, fmt_json=True)
        assert ip in str(shown["addresses"]), shown
        assert "attach_interface" in events(c, sid)

        demo(c, "server", "remove", "port", sid, new["id"])
        # compute made it: deleted with the detach (202, then the host's work)
        assert wait_until(lambda: port(c, new["id"]) is None, 10), port(c, new["id"])
        assert wait_until(lambda: c.net_b["name"] not in addresses(c, sid), 10), addresses(c, sid)
        assert [p["id"] for p in ports_of(c, sid)] == [boot_port["id"]]
        assert "detach_interface" in events(c, sid)
        s = server(c, sid)
        assert s["status"] == "ACTIVE" and "fault" not in s, s
    finally:
        delete_server(c, sid)


def test_a_users_port_is_unbound_and_kept_and_remove_network_takes_all_ports(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    r = c.net_demo("POST", "/ports", json={"port": {"network_id": c.net_b["id"], "name": unique("mine")}})
    assert r.status_code == 201, r.text
    mine = r.json()["port"]
    try:
        demo(c, "server", "add", "port", sid, mine["id"])
        p = port(c, mine["id"])
        assert p["device_id"] == sid and p["device_owner"] == "compute:nova", p
        assert p["binding:host_id"] and p["status"] == "ACTIVE", p
        assert mine["fixed_ips"][0]["ip_address"] in str(addresses(c, sid)[c.net_b["name"]])
        # the attachment as Nova shows it, with the tag from 2.70
        r = c.compute("GET", f"/servers/{sid}/os-interface/{mine['id']}", version="2.70", token=c.demo_token)
        assert r.status_code == 200, r.text
        att = r.json()["interfaceAttachment"]
        assert att == {"net_id": c.net_b["id"], "port_id": mine["id"], "mac_addr": mine["mac_address"],
                       "port_state": "ACTIVE", "fixed_ips": p["fixed_ips"], "tag": None}, att

        demo(c, "server", "remove", "port", sid, mine["id"])
        kept = wait_until(lambda: (p := port(c, mine["id"])) and p["device_id"] == "" and p, 10)
        assert kept, port(c, mine["id"])
        assert kept["device_owner"] == "" and kept["binding:host_id"] == "", kept
        assert wait_until(lambda: c.net_b["name"] not in addresses(c, sid), 10)

        # remove network: every port of the server on that network goes
        demo(c, "server", "add", "network", sid, c.net_b["id"])
        demo(c, "server", "add", "network", sid, c.net_b["id"])
        assert len([p for p in ports_of(c, sid) if p["network_id"] == c.net_b["id"]]) == 2
        demo(c, "server", "remove", "network", sid, c.net_b["id"])
        assert wait_until(lambda: all(p["network_id"] != c.net_b["id"] for p in ports_of(c, sid)), 10), \
            ports_of(c, sid)
        assert wait_until(lambda: c.net_b["name"] not in addresses(c, sid), 10)
    finally:
        delete_server(c, sid)
        c.net_demo("DELETE", f"/ports/{mine['id']}")


def test_add_and_remove_fixed_ip(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    try:
        # OSC's "server add fixed ip" attaches a port with that address (os-interface)
        att = demo(c, "server", "add", "fixed", "ip", "--fixed-ip-address", "10.31.0.77", sid, c.net_b["id"],
                   fmt_json=True)
        assert "10.31.0.77" in str(att["Fixed IPs"]), att
        assert "10.31.0.77" in str(addresses(c, sid)[c.net_b["name"]])
        # "server remove fixed ip" is the removeFixedIp action, gone at 2.44: the SDK asks for
        # the highest common microversion unless told, and Nova (so kumo) answers 404 there
        err = c.osc_fail("server", "remove", "fixed", "ip", sid, "10.31.0.77", cloud="kumo")
        assert "404" in err, err
        demo(c, "--os-compute-api-version", "2.43", "server", "remove", "fixed", "ip", sid, "10.31.0.77")
        assert wait_until(lambda: "10.31.0.77" not in str(addresses(c, sid)), 10), addresses(c, sid)
        (on_b,) = [p for p in ports_of(c, sid) if p["network_id"] == c.net_b["id"]]
        assert on_b["fixed_ips"] == [], on_b

        # addFixedIp: one more address on the server's port on that network
        r = c.compute("POST", f"/servers/{sid}/action", json={"addFixedIp": {"networkId": c.net_a["id"]}},
                      version="2.43", token=c.demo_token)
        assert r.status_code == 202, r.text
        got = wait_until(lambda: len(addresses(c, sid)[c.net_a["name"]]) == 2 and addresses(c, sid), 10)
        assert got, addresses(c, sid)
        extra = got[c.net_a["name"]][1]["addr"]
        r = c.compute("POST", f"/servers/{sid}/action", json={"removeFixedIp": {"address": extra}},
                      version="2.43", token=c.demo_token)
        assert r.status_code == 202, r.text
        assert wait_until(lambda: len(addresses(c, sid)[c.net_a["name"]]) == 1, 10), addresses(c, sid)
        # an address or a network the server does not have: 400
        msg = nova_error(c.compute("POST", f"/servers/{sid}/action", json={"removeFixedIp": {"address": extra}},
                                   version="2.43", token=c.demo_token), 400)
        assert msg == f"Instance {sid} does not have fixed IP '{extra}'.", msg
        msg = nova_error(c.compute("POST", f"/servers/{sid}/action", json={"addFixedIp": {"networkId": MISSING}},
                                   version="2.43", token=c.demo_token), 400)
        assert msg == f"Network could not be found for instance {sid}.", msg
        nova_error(c.compute("POST", f"/servers/{sid}/action", json={"removeFixedIp": {"address": "nope"}},
                             version="2.43", token=c.demo_token), 400)
        nova_error(c.compute("POST", f"/servers/{sid}/action", json={"addFixedIp": {}}, version="2.43",
                             token=c.demo_token), 400)
        # removed at 2.44
        for body in ({"addFixedIp": {"networkId": c.net_a["id"]}}, {"removeFixedIp": {"address": "10.30.0.9"}}):
            nova_error(c.compute("POST", f"/servers/{sid}/action", json=body, version="2.44", token=c.demo_token),
                       404)
    finally:
        delete_server(c, sid)


# ------------------------------------------------------------------ Nova's API, raw
def test_attach_by_network_answers_200_with_the_attachment_and_tags_from_2_49(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    try:
        r = iface(c, sid, version="2.49", net_id=c.net_b["id"], fixed_ips=[{"ip_address": "10.31.0.40"}], tag="data")
        assert r.status_code == 200, r.text
        att = r.json()["interfaceAttachment"]
        assert set(att) == {"net_id", "port_id", "mac_addr", "port_state", "fixed_ips"}, att
        assert att["net_id"] == c.net_b["id"] and att["port_state"] == "ACTIVE", att
        assert att["fixed_ips"] == [{"subnet_id": c.net_b["subnet"]["id"], "ip_address": "10.31.0.40"}], att
        pid = att["port_id"]
        # the list and show, with the tag from 2.70 only
        r = c.compute("GET", f"/servers/{sid}/os-interface", version="2.70", token=c.demo_token)
        assert r.status_code == 200, r.text
        by_port = {a["port_id"]: a for a in r.json()["interfaceAttachments"]}
        assert set(by_port) == {p["id"] for p in ports_of(c, sid)} and len(by_port) == 2, by_port
        assert by_port[pid]["tag"] == "data", by_port
        assert all("tag" in a for a in by_port.values())
        r = c.compute("GET", f"/servers/{sid}/os-interface", version="2.69", token=c.demo_token)
        assert all("tag" not in a for a in r.json()["interfaceAttachments"]), r.text
        r = c.compute("GET", f"/servers/{sid}/os-interface/{pid}", version="2.70", token=c.demo_token)
        assert r.json()["interfaceAttachment"]["tag"] == "data", r.text
        # the same address again: 409 (Nova's FixedIpAlreadyInUse)
        msg = nova_error(iface(c, sid, net_id=c.net_b["id"], fixed_ips=[{"ip_address": "10.31.0.40"}]), 409)
        assert msg == f"Fixed IP address 10.31.0.40 is already in use on instance {sid}.", msg
        r = c.compute("DELETE", f"/servers/{sid}/os-interface/{pid}", token=c.demo_token)
        assert r.status_code == 202 and r.text == "", r.text
        assert wait_until(lambda: port(c, pid) is None, 10)
        # a port no longer attached: 404 for show and delete
        msg = nova_error(c.compute("GET", f"/servers/{sid}/os-interface/{pid}", token=c.demo_token), 404)
        assert msg == f"Port id {pid} could not be found.", msg
        msg = nova_error(c.compute("DELETE", f"/servers/{sid}/os-interface/{pid}", token=c.demo_token), 404)
        assert msg == f"Port {pid} is not attached", msg
    finally:
        delete_server(c, sid)


def test_errors_are_novas(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    other = boot(c, c.net_a["id"])
    try:
        # unknown server
        for method, path in (("GET", f"/servers/{MISSING}/os-interface"), ("POST", f"/servers/{MISSING}/os-interface"),
                             ("GET", f"/servers/{MISSING}/os-interface/{MISSING}"),
                             ("DELETE", f"/servers/{MISSING}/os-interface/{MISSING}")):
            kw = {"json": {"interfaceAttachment": {"net_id": c.net_b["id"]}}} if method == "POST" else {}
            msg = nova_error(c.compute(method, path, token=c.demo_token, **kw), 404)
            assert msg == f"Instance {MISSING} could not be found.", (method, path, msg)
        # unknown network and port: 404
        msg = nova_error(iface(c, sid, net_id=MISSING), 404)
        assert msg == f"Network {MISSING} could not be found.", msg
        msg = nova_error(iface(c, sid, port_id=MISSING), 404)
        assert msg == f"Port id {MISSING} could not be found.", msg
        # both, or an address without a network: 400
        msg = nova_error(iface(c, sid, net_id=c.net_b["id"], port_id=MISSING), 400)
        assert msg == "Must not input both network_id and port_id", msg
        msg = nova_error(iface(c, sid, fixed_ips=[{"ip_address": "10.31.0.5"}]), 400)
        assert msg == "Must input network_id when request IP address", msg
        # schema: not a uuid, unknown keys, tag before 2.49, a bad address
        assert "is not a 'uuid'" in nova_error(iface(c, sid, net_id="nope"), 400)
        assert "'colour' was unexpected" in nova_error(iface(c, sid, net_id=c.net_b["id"], colour=1), 400)
        assert "'tag' was unexpected" in nova_error(iface(c, sid, version="2.48", net_id=c.net_b["id"], tag="t"),
                                                    400)
        nova_error(iface(c, sid, net_id=c.net_b["id"], fixed_ips=[{"ip_address": "10.31.0.300"}]), 400)
        nova_error(iface(c, sid, net_id=c.net_b["id"], fixed_ips=[]), 400)
        nova_error(c.compute("POST", f"/servers/{sid}/os-interface", json={"interfaceAttachment": {}, "x": 1},
                             token=c.demo_token), 400)
        # neither: the project's one network, but it has two
        msg = nova_error(iface(c, sid), 400)
        assert msg == ("More than one possible network found. Specify network ID(s) to select which one(s) "
                       "to connect to."), msg
        # a port another server uses: 409; and it is not this server's
        theirs = ports_of(c, other)[0]["id"]
        msg = nova_error(iface(c, sid, port_id=theirs), 409)
        assert msg == f"Port {theirs} is still in use.", msg
        msg = nova_error(c.compute("GET", f"/servers/{sid}/os-interface/{theirs}", token=c.demo_token), 404)
        assert msg == f"Instance {sid} does not have a port with id {theirs}", msg
        nova_error(c.compute("DELETE", f"/servers/{sid}/os-interface/{theirs}", token=c.demo_token), 404)
        # nothing of the refused attaches stayed behind
        assert len(ports_of(c, sid)) == 1, ports_of(c, sid)
        assert not [p for p in c.net_admin("GET", f"/ports?network_id={c.net_b['id']}").json()["ports"]
                    if p["device_owner"].startswith("compute:")]

        # vm_state: suspended is not allowed (ACTIVE, PAUSED, STOPPED are)
        demo(c, "server", "suspend", sid)
        wait_server(c, sid, "SUSPENDED")
        msg = nova_error(iface(c, sid, net_id=c.net_b["id"]), 409)
        assert msg == f"Cannot 'attach_interface' instance {sid} while it is in vm_state suspended", msg
        boot_port = ports_of(c, sid)[0]["id"]
        msg = nova_error(c.compute("DELETE", f"/servers/{sid}/os-interface/{boot_port}", token=c.demo_token), 409)
        assert msg == f"Cannot 'detach_interface' instance {sid} while it is in vm_state suspended", msg
        demo(c, "server", "resume", sid)
        wait_server(c, sid)
        # locked (by its owner): 409 for the owner
        demo(c, "server", "lock", sid)
        msg = nova_error(iface(c, sid, net_id=c.net_b["id"]), 409)
        assert msg == f"Instance {sid} is locked", msg
        demo(c, "server", "unlock", sid)
    finally:
        delete_server(c, sid)
        delete_server(c, other)


def test_attach_to_a_stopped_and_a_paused_server(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    try:
        for action, status in (("stop", "SHUTOFF"), ("pause", "PAUSED")):
            if action == "pause":
                demo(c, "server", "start", sid)
                wait_server(c, sid)
            demo(c, "server", action, sid)
            wait_server(c, sid, status)
            r = iface(c, sid, net_id=c.net_b["id"])
            assert r.status_code == 200, (status, r.text)
            pid = r.json()["interfaceAttachment"]["port_id"]
            assert port(c, pid)["binding:host_id"], port(c, pid)
            r = c.compute("DELETE", f"/servers/{sid}/os-interface/{pid}", token=c.demo_token)
            assert r.status_code == 202, r.text
            assert wait_until(lambda: port(c, pid) is None, 10)
            assert server(c, sid)["status"] == status
    finally:
        delete_server(c, sid)


def test_delete_of_a_server_deletes_attached_ports_and_keeps_users(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    r = c.net_demo("POST", "/ports", json={"port": {"network_id": c.net_b["id"]}})
    mine = r.json()["port"]
    try:
        made = iface(c, sid, net_id=c.net_b["id"]).json()["interfaceAttachment"]["port_id"]
        assert iface(c, sid, port_id=mine["id"]).status_code == 200
        delete_server(c, sid)
        assert port(c, made) is None
        kept = port(c, mine["id"])
        assert kept is not None and kept["device_id"] == "", kept
    finally:
        c.net_demo("DELETE", f"/ports/{mine['id']}")


def test_shelve_offload_unbinds_the_ports_and_unshelve_binds_them_again(cc):
    c = cc
    sid = boot(c, c.net_a["id"])
    r = c.net_demo("POST", "/ports", json={"port": {"network_id": c.net_b["id"]}})
    mine = r.json()["port"]
    try:
        r = iface(c, sid, version="2.49", port_id=mine["id"], tag="mine")
        assert r.status_code == 200, r.text
        before = addresses(c, sid)
        host = server(c, sid)["OS-EXT-SRV-ATTR:host"]
        demo(c, "server", "shelve", sid)
        wait_server(c, sid, "SHELVED_OFFLOADED", timeout=60)
        ports = ports_of(c, sid)
        assert len(ports) == 2, ports
        for p in ports:
            # still the server's, bound nowhere (Nova's unbind_ports(detach=False))
            assert p["device_id"] == sid and p["binding:host_id"] == "", p
            assert p["status"] == "DOWN", p
        demo(c, "server", "unshelve", sid)
        s = wait_server(c, sid, "ACTIVE", timeout=60)
        assert s["addresses"] == before, (s["addresses"], before)
        for p in ports_of(c, sid):
            assert p["binding:host_id"] == s["OS-EXT-SRV-ATTR:host"] == host and p["status"] == "ACTIVE", p
        r = c.compute("GET", f"/servers/{sid}/os-interface/{mine['id']}", version="2.70", token=c.demo_token)
        assert r.json()["interfaceAttachment"]["tag"] == "mine", r.text
        # still the user's port: kept when the server goes
        delete_server(c, sid)
        kept = port(c, mine["id"])
        assert kept is not None and kept["device_id"] == "", kept
    finally:
        c.compute("DELETE", f"/servers/{sid}")
        c.net_demo("DELETE", f"/ports/{mine['id']}")


# ------------------------------------------------------------------ one real guest
GUEST_CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n"
              "[quota]\ninstances = 20\ncores = 40\nram = -1\n")


def in_ns(ns: str, *argv, timeout=20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout)


def pings(ns: str, ip: str, wait: int = 1) -> bool:
    return in_ns(ns, "ping", "-c", "1", "-W", str(wait), ip).returncode == 0


@needs_qemu_guest
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")),
                    reason="ip, nft and dnsmasq are needed")
def test_a_real_guest_gets_a_hot_plugged_nic_by_dhcp_and_loses_it():
    image = kumo_tiny_image()
    c = start_kumo(GUEST_CONF)
    try:
        prefix = c._driver.netns_prefix
        image_id = c.osc("image", "create", "--file", str(image), "--disk-format", "qcow2", "--container-format",
                         "bare", "--public", unique("kumo-tiny"), fmt_json=True)["id"]
        flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "192", "--disk", "1", unique("tiny"),
                       fmt_json=True)["id"]
        nets = []
        for cidr in ("10.40.0.0/24", "10.41.0.0/24"):
            net = c.osc("network", "create", unique("hp"), fmt_json=True)
            c.osc("subnet", "create", "--network", net["id"], "--subnet-range", cidr, unique("hp-sub"))
            nets.append(net)
        # the admin project's default group lets ICMP in (the DHCP namespace pings the guest)
        project = c.osc("token", "issue", fmt_json=True)["project_id"]
        groups = c.osc("security", "group", "list", "--project", project, fmt_json=True)
        default = next(g for g in groups if g["Name"] == "default")["ID"]
        c.osc("security", "group", "rule", "create", "--protocol", "icmp", default)

        s = c.osc("server", "create", "--image", image_id, "--flavor", flavor, "--network", nets[0]["id"],
                  unique("hp"), fmt_json=True)
        sid = s["id"]
        wait_server(c, sid, "ACTIVE", timeout=120)
        (p0,) = ports_of_admin(c, sid)
        ip0 = p0["fixed_ips"][0]["ip_address"]
        wait_for_console(c, sid, f"eth0 {ip0} by DHCP", timeout=90)

        def cycle(attach: list[str], n: int) -> dict:
            """Attach with `server add ...`, check the guest's DHCP and a ping; returns the port."""
            c.osc("server", "add", *attach)
            new = [p for p in ports_of_admin(c, sid) if p["id"] != p0["id"]]
            assert len(new) == 1, new
            p = new[0]
            assert p["status"] == "ACTIVE" and p["binding:host_id"], p
            ip = p["fixed_ips"][0]["ip_address"]
            wait_for_console(c, sid, f"eth1 {ip} by DHCP", timeout=60, count=n)
            ns = f"{prefix}qdhcp-{nets[1]['id']}"
            assert wait_until(lambda: pings(ns, ip), 20), f"{ip} does not answer from {ns}"
            assert ip in str(server(c, sid)["addresses"][nets[1]["name"]])
            return p

        def unplug(p: dict):
            ip = p["fixed_ips"][0]["ip_address"]
            ns = f"{prefix}qdhcp-{nets[1]['id']}"
            c.osc("server", "remove", "port", sid, p["id"])
            assert wait_until(lambda: not pings(ns, ip), 20), f"{ip} still answers after the detach"
            assert wait_until(lambda: nets[1]["name"] not in server(c, sid)["addresses"], 20)
            assert pings(f"{prefix}qdhcp-{nets[0]['id']}", ip0), "the boot NIC stopped answering"

        # a port compute makes: deleted with the detach
        made = cycle(["network", sid, nets[1]["id"]], 1)
        unplug(made)
        assert wait_until(lambda: admin_get(c, f"/ports/{made['id']}").status_code == 404, 10)
        wait_for_console(c, sid, "eth1 removed", timeout=20)
        # the user's port: unbound and kept
        mine = c.osc("port", "create", "--network", nets[1]["id"], unique("mine"), fmt_json=True)
        got = cycle(["port", sid, mine["id"]], 2)
        assert got["id"] == mine["id"]
        unplug(got)
        kept = wait_until(lambda: (r := admin_get(c, f"/ports/{mine['id']}").json()["port"])["device_id"] == ""
                          and r, 10)
        assert kept and kept["binding:host_id"] == "", kept
        acts = [a["Action"] for a in c.osc("server", "event", "list", sid, fmt_json=True)]
        assert acts.count("attach_interface") == 2 and acts.count("detach_interface") == 2, acts
        c.compute("DELETE", f"/servers/{sid}")
        wait_gone(c, sid, timeout=60)
    finally:
        c.stop()


def admin_get(c, path: str):
    return NetApi(c, c.admin_token)("GET", path)


def ports_of_admin(c, sid: str) -> list[dict]:
    return admin_get(c, f"/ports?device_id={sid}").json()["ports"]
