"""The network agent builds the data plane from the database: a bound guest port gets its tap
on the network's bridge in the host namespace, the network its qdhcp namespace with dnsmasq
serving the port's address (a stand-in guest namespace of the test's own gets it by DHCP),
the port goes ACTIVE; deletes remove what they made; a kill -9 and restart duplicates nothing.
Root only (namespaces); everything carries the test kumo's namespace prefix."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time

import pytest

from cloudlib import KumoDriver, unique
from netlib import NetApi

pytestmark = [
    pytest.mark.kumo_only("kumo's network data plane"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")),
                       reason="ip, nft and dnsmasq are needed"),
]


def sh(*argv, check=True) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv}: {r.stderr}")
    return r.stdout


def links(ns: str) -> dict:
    return {l["ifname"]: l for l in json.loads(sh("ip", "-n", ns, "-j", "link", "show") or "[]")}


@pytest.fixture(scope="module")
def net_cloud():
    driver = KumoDriver()
    cloud = driver.start(extra_conf="")
    yield cloud, driver
    driver.stop(cloud)


def wait_status(api: NetApi, port_id: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        p = api("GET", f"/ports/{port_id}").json()["port"]
        if p["status"] == status or time.monotonic() > deadline:
            return p
        time.sleep(0.1)


class StandIn:
    """A guest stand-in: a namespace of the test with a veth whose other end sits on the
    network's bridge in kumo's host namespace (a tap has no carrier without QEMU)."""

    def __init__(self, host_ns: str, bridge: str, mac: str):
        self.ns = f"kt{secrets.token_hex(3)}-guest"
        self.host_ns = host_ns
        self.veth = f"vg{secrets.token_hex(3)}"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", host_ns, "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
           "netns", self.ns)
        sh("ip", "-n", host_ns, "link", "set", self.veth, "master", bridge, "up")
        sh("ip", "-n", self.ns, "link", "set", "eth0", "address", mac, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")

    def dhcp(self) -> str:
        """Run busybox udhcpc once and return the address it got."""
        script = f"/tmp/{self.ns}.sh"
        with open(script, "w") as f:
            f.write('#!/bin/sh\n[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"\nexit 0\n')
        os.chmod(script, 0o755)
        try:
            sh("ip", "netns", "exec", self.ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
               "-T", "1", "-s", script)
            addrs = json.loads(sh("ip", "-n", self.ns, "-j", "-4", "addr", "show", "eth0"))
            return addrs[0]["addr_info"][0]["local"] if addrs and addrs[0]["addr_info"] else ""
        finally:
            os.unlink(script)

    def remove(self):
        sh("ip", "-n", self.host_ns, "link", "del", self.veth, check=False)
        sh("ip", "netns", "del", self.ns, check=False)


def test_bound_port_is_wired_and_served_by_dhcp(net_cloud):
    cloud, driver = net_cloud
    prefix = driver.netns_prefix
    admin = NetApi(cloud, cloud.admin_token)
    net = admin("POST", "/networks", json={"network": {"name": unique("dp")}}).json()["network"]
    sub = admin("POST", "/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.20.0.0/24"}}).json()["subnet"]
    r = admin("POST", "/ports", json={"port": {
        "network_id": net["id"], "device_owner": "compute:nova", "device_id": "srv-1"}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    # nothing is built for a network without bound guests
    assert not os.path.exists(f"/run/netns/{prefix}qdhcp-{net['id']}")
    t0 = time.monotonic()
    r = admin("PUT", f"/ports/{port['id']}", json={"port": {"binding:host_id": "here"}})
    assert r.status_code == 200, r.text
    p = wait_status(admin, port["id"], "ACTIVE")
    took = time.monotonic() - t0
    assert p["status"] == "ACTIVE", p
    host_ns = f"{prefix}kumo-host"
    bridge = "brq" + net["id"][:11]
    tap = "tap" + port["id"][:11]
    l = links(host_ns)
    assert l[tap]["master"] == bridge and l[bridge]["mtu"] == 1500, l[tap]
    dhcp_ns = f"{prefix}qdhcp-{net['id']}"
    assert os.path.exists(f"/run/netns/{dhcp_ns}")
    dnsmasq = sh("ip", "netns", "pids", dhcp_ns).split()
    assert len(dnsmasq) == 1, dnsmasq
    print(f"bind → ACTIVE {took * 1000:.0f} ms")

    guest = StandIn(host_ns, bridge, port["mac_address"])
    try:
        got = guest.dhcp()
        assert got == port["fixed_ips"][0]["ip_address"], (got, port["fixed_ips"])
        # the DHCP port answers pings on the network
        dhcp_ip = [f["ip_address"] for f in admin("GET", f"/ports?network_id={net['id']}&device_owner=network:dhcp")
                   .json()["ports"][0]["fixed_ips"]][0]
        sh("ip", "netns", "exec", guest.ns, "ping", "-c", "1", "-W", "2", dhcp_ip)
    finally:
        guest.remove()

    # kill -9 and up: the same dnsmasq, the same tap, nothing doubled
    tap_index = links(host_ns)[tap]["ifindex"]
    cloud.kill9_and_up()
    time.sleep(1.5)
    assert sh("ip", "netns", "pids", dhcp_ns).split() == dnsmasq
    assert links(host_ns)[tap]["ifindex"] == tap_index
    assert [n for n in os.listdir("/run/netns") if n.startswith(prefix)].count(dhcp_ns) == 1

    # unbinding downs the port and removes its tap; deleting the network removes the namespace
    admin("PUT", f"/ports/{port['id']}", json={"port": {"binding:host_id": ""}})
    assert wait_status(admin, port["id"], "DOWN")["status"] == "DOWN"
    deadline = time.monotonic() + 5
    while tap in links(host_ns) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tap not in links(host_ns)
    assert admin("DELETE", f"/ports/{port['id']}").status_code == 204
    assert admin("DELETE", f"/networks/{net['id']}").status_code == 204
    deadline = time.monotonic() + 5
    while os.path.exists(f"/run/netns/{dhcp_ns}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/run/netns/{dhcp_ns}")
    assert bridge not in links(host_ns)
