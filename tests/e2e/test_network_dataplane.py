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

from cloudlib import KumoDriver, pid_alive, unique
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
            f.write('#!/bin/sh\nif [ "$1" = bound ]; then ip addr add "$ip/$mask" dev "$interface"\n'
                    '[ -n "$router" ] && ip route replace default via "$router"; fi\nexit 0\n')
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
    # nothing is built for a network without bound guests: not even the host namespace
    assert not os.path.exists(f"/run/netns/{prefix}qdhcp-{net['id']}")
    assert not os.path.exists(f"/run/netns/{prefix}kumo-host")
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


def test_router_snat_and_floating_ip_reach_the_outside_world(net_cloud):
    """A stand-in guest behind a router: its traffic leaves with the router's gateway address
    (SNAT); once a floating IP is associated, the outside world reaches it there and it leaves
    with the floating IP; the outside-world namespace holds the external gateway."""
    cloud, driver = net_cloud
    prefix = driver.netns_prefix
    admin = NetApi(cloud, cloud.admin_token)
    ext = admin("POST", "/networks", json={"network": {"name": unique("ext"), "router:external": True}}
                ).json()["network"]
    admin("POST", "/subnets", json={"subnet": {"network_id": ext["id"], "ip_version": 4,
                                              "cidr": "172.24.9.0/24", "enable_dhcp": False}})
    net = admin("POST", "/networks", json={"network": {"name": unique("in")}}).json()["network"]
    sub = admin("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                    "cidr": "10.30.0.0/24"}}).json()["subnet"]
    router = admin("POST", "/routers", json={"router": {
        "name": unique("r"), "external_gateway_info": {"network_id": ext["id"]}}}).json()["router"]
    gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    r = admin("PUT", f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 200, r.text
    port = admin("POST", "/ports", json={"port": {
        "network_id": net["id"], "device_owner": "compute:nova", "device_id": "srv-r",
        "binding:host_id": "here", "port_security_enabled": False}}).json()["port"]
    assert wait_status(admin, port["id"], "ACTIVE")["status"] == "ACTIVE"
    host_ns, ext_ns = f"{prefix}kumo-host", f"{prefix}kumo-ext"
    rns = f"{prefix}qrouter-{router['id']}"
    assert os.path.exists(f"/run/netns/{rns}") and os.path.exists(f"/run/netns/{ext_ns}")
    guest = StandIn(host_ns, "brq" + net["id"][:11], port["mac_address"])
    try:
        assert guest.dhcp() == port["fixed_ips"][0]["ip_address"]
        sh("ip", "netns", "exec", guest.ns, "ping", "-c", "1", "-W", "2", "172.24.9.1")
        # who does the outside world see? a one-shot UDP listener in the outside namespace
        def seen_source() -> str:
            code = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                    "s.bind(('172.24.9.1',9999))\ns.settimeout(5)\nprint(s.recvfrom(64)[1][0])")
            listener = subprocess.Popen(["ip", "netns", "exec", ext_ns, "python3", "-c", code],
                                        stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            sh("ip", "netns", "exec", guest.ns, "python3", "-c",
               "import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
               ".sendto(b'x',('172.24.9.1',9999))")
            out, _ = listener.communicate(timeout=10)
            return out.strip()
        assert seen_source() == gw_ip
        fip = admin("POST", "/floatingips", json={"floatingip": {
            "floating_network_id": ext["id"], "port_id": port["id"]}}).json()["floatingip"]
        fip_ip = fip["floating_ip_address"]
        deadline = time.monotonic() + 5
        while subprocess.run(["ip", "netns", "exec", ext_ns, "ping", "-c", "1", "-W", "1", fip_ip],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, f"floating IP {fip_ip} unreachable from {ext_ns}"
        assert seen_source() == fip_ip
        # disassociated: unreachable again
        admin("PUT", f"/floatingips/{fip['id']}", json={"floatingip": {"port_id": None}})
        deadline = time.monotonic() + 5
        while subprocess.run(["ip", "netns", "exec", ext_ns, "ping", "-c", "1", "-W", "1", fip_ip],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "floating IP still answers after disassociation"
        admin("DELETE", f"/floatingips/{fip['id']}")
    finally:
        guest.remove()
    admin("PUT", f"/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]})
    admin("DELETE", f"/ports/{port['id']}")
    deadline = time.monotonic() + 5
    while os.path.exists(f"/run/netns/{rns}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/run/netns/{rns}")


def test_down_purge_removes_the_data_plane():
    """`kumo down --purge` removes kumo's namespaces (bridges, taps, dnsmasqs) and its runtime
    files; a plain `kumo down` leaves the data plane (and guests) running."""
    driver = KumoDriver()
    cloud = driver.start()
    prefix = driver.netns_prefix
    try:
        admin = NetApi(cloud, cloud.admin_token)
        net = admin("POST", "/networks", json={"network": {"name": unique("pg")}}).json()["network"]
        admin("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                  "cidr": "10.40.0.0/24"}})
        port = admin("POST", "/ports", json={"port": {"network_id": net["id"], "device_owner": "compute:nova",
                                                      "device_id": "srv-p", "binding:host_id": "here"}}).json()["port"]
        assert wait_status(admin, port["id"], "ACTIVE")["status"] == "ACTIVE"
        mine = lambda: sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))  # noqa: E731
        assert mine() == sorted([f"{prefix}kumo-host", f"{prefix}qdhcp-{net['id']}"])
        dnsmasq = sh("ip", "netns", "pids", f"{prefix}qdhcp-{net['id']}").split()
        driver.kumo(cloud, "down")
        assert mine(), "a plain kumo down keeps the data plane"
        out = driver.kumo(cloud, "down", "--purge").stdout
        assert "removed the network data plane" in out, out
        assert mine() == [] and not os.path.exists(f"/run/kumo/{prefix}network")
        assert not any(pid_alive(int(p)) for p in dnsmasq), dnsmasq
    finally:
        driver.stop(cloud)
