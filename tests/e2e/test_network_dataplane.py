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
    assert l[tap]["master"] == bridge and l[bridge]["mtu"] == net["mtu"] == 1450, l[bridge]
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


# A router solicitation from eth0 and the first router advertisement's fields, as JSON.
RA_PROBE = r"""
import json, socket, struct, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.settimeout(10)
idx = socket.if_nametoindex("eth0")
for _ in range(50):  # until the link-local address has passed duplicate address detection
    try:
        s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, idx))
        break
    except OSError:
        time.sleep(0.1)
while True:
    data, addr = s.recvfrom(4096)
    if data[0] == 134:
        break
out = {"router": addr[0].split("%")[0], "managed": bool(data[5] & 0x80),
       "other": bool(data[5] & 0x40), "prefixes": [], "mtu": None, "rdnss": []}
opts, i = data[16:], 0
while i + 2 <= len(opts) and opts[i + 1]:
    t, n = opts[i], opts[i + 1] * 8
    o = opts[i:i + n]
    if t == 3:
        out["prefixes"].append([socket.inet_ntop(socket.AF_INET6, o[16:32]) + "/" + str(o[2]),
                                bool(o[3] & 0x40)])
    elif t == 5:
        out["mtu"] = struct.unpack("!I", o[4:8])[0]
    elif t == 25:
        out["rdnss"] += [socket.inet_ntop(socket.AF_INET6, o[j:j + 16]) for j in range(8, n, 16)]
    i += n
print(json.dumps(out))
"""

# One DHCPv6 exchange from eth0 (a Solicit for an address, or an Information-Request for
# options) with the client's DUID-LL made of MAC; prints the answer's type, IA_NA addresses and
# DNS servers as JSON.
DHCPV6_PROBE = r"""
import json, socket, struct, sys
kind, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
opt = lambda code, data: struct.pack("!HH", code, len(data)) + data
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind(("::", 546))
s.settimeout(5)
body = opt(1, struct.pack("!HH", 3, 1) + mac) + opt(8, b"\0\0") + opt(6, struct.pack("!H", 23))
if kind == "solicit":
    msg = bytes([1]) + b"\x12\x34\x56" + body + opt(3, struct.pack("!III", 1, 0, 0))
else:
    msg = bytes([11]) + b"\x65\x43\x21" + body
s.sendto(msg, ("ff02::1:2", 547, 0, socket.if_nametoindex("eth0")))
data, _ = s.recvfrom(4096)
out = {"type": data[0], "addresses": [], "dns": []}
def walk(buf):
    i = 0
    while i + 4 <= len(buf):
        code, n = struct.unpack("!HH", buf[i:i + 4])
        yield code, buf[i + 4:i + 4 + n]
        i += 4 + n
for code, val in walk(data[4:]):
    if code == 3:
        out["addresses"] += [socket.inet_ntop(socket.AF_INET6, v[:16]) for c, v in walk(val[12:]) if c == 5]
    elif code == 23:
        out["dns"] += [socket.inet_ntop(socket.AF_INET6, val[j:j + 16]) for j in range(0, len(val), 16)]
print(json.dumps(out))
"""


def test_ipv6_router_advertisements_slaac_and_dhcpv6(net_cloud):
    """IPv6 subnets on a router: radvd in the router's namespace advertises them as Neutron's
    L3 agent does (SLAAC and stateless prefixes autonomous, M and O flags, RDNSS, MTU), a
    stand-in guest makes the SLAAC addresses its port has and a default route via the router,
    dnsmasq hands out the port's DHCPv6-stateful address and the DNS servers; radvd survives
    a kill -9 unchanged and goes with the last IPv6 interface."""
    cloud, driver = net_cloud
    prefix = driver.netns_prefix
    admin = NetApi(cloud, cloud.admin_token)
    net = admin("POST", "/networks", json={"network": {"name": unique("v6")}}).json()["network"]
    v4 = admin("POST", "/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.40.0.0/24"}}).json()["subnet"]
    subs = {}
    for key, cidr, mode in (("a", "fd00:a::/64", "slaac"), ("b", "fd00:b::/64", "dhcpv6-stateful"),
                            ("c", "fd00:c::/64", "dhcpv6-stateless")):
        r = admin("POST", "/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": 6, "cidr": cidr, "ipv6_ra_mode": mode,
            "ipv6_address_mode": mode, "dns_nameservers": ["fd00:53::53"]}})
        assert r.status_code == 201, r.text
        subs[key] = r.json()["subnet"]
    router = admin("POST", "/routers", json={"router": {"name": unique("r6")}}).json()["router"]
    for sub in (v4, *subs.values()):
        r = admin("PUT", f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]})
        assert r.status_code == 200, r.text
    port = admin("POST", "/ports", json={"port": {
        "network_id": net["id"], "device_owner": "compute:nova", "device_id": "srv-v6",
        "binding:host_id": "here", "port_security_enabled": False}}).json()["port"]
    assert wait_status(admin, port["id"], "ACTIVE")["status"] == "ACTIVE"
    ip_on = {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}
    rns = f"{prefix}qrouter-{router['id']}"
    # radvd and its privilege-separation child, nothing else
    radvd = sorted(sh("ip", "netns", "pids", rns).split())
    assert 1 <= len(radvd) <= 2 and all("radvd" in open(f"/proc/{p}/cmdline").read() for p in radvd), radvd
    guest = StandIn(f"{prefix}kumo-host", "brq" + net["id"][:11], port["mac_address"])
    try:
        ra = json.loads(sh("ip", "netns", "exec", guest.ns, "python3", "-c", RA_PROBE))
        assert ra["managed"] and ra["other"], ra
        assert ra["prefixes"] == [["fd00:a::/64", True], ["fd00:b::/64", False],
                                  ["fd00:c::/64", True]], ra
        assert ra["rdnss"] == ["fd00:53::53"] and ra["mtu"] == net["mtu"], ra
        assert ra["router"].startswith("fe80::"), ra
        # SLAAC: the guest's own addresses are the ones its port has (EUI-64 of its MAC)
        want = {ip_on[subs["a"]["id"]], ip_on[subs["c"]["id"]]}
        def global_v6() -> set:
            got = json.loads(sh("ip", "-n", guest.ns, "-j", "-6", "addr", "show", "eth0"))
            return {a["local"] for a in got[0]["addr_info"] if a.get("scope") == "global"}
        deadline = time.monotonic() + 15
        while not want <= global_v6() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert want <= global_v6(), (want, global_v6())
        routes = sh("ip", "-n", guest.ns, "-6", "route", "show", "default")
        assert f"via {ra['router']}" in routes, routes
        sh("ip", "netns", "exec", guest.ns, "ping", "-6", "-c", "1", "-W", "3", subs["a"]["gateway_ip"])
        # DHCPv6: the stateful subnet's address of the port; the DNS servers by
        # information-request
        adv = json.loads(sh("ip", "netns", "exec", guest.ns, "python3", "-c", DHCPV6_PROBE,
                            "solicit", port["mac_address"]))
        assert adv["type"] == 2 and adv["addresses"] == [ip_on[subs["b"]["id"]]], adv
        reply = json.loads(sh("ip", "netns", "exec", guest.ns, "python3", "-c", DHCPV6_PROBE,
                              "info", port["mac_address"]))
        assert reply["type"] == 7 and reply["dns"] == ["fd00:53::53"], reply
    finally:
        guest.remove()

    # kill -9 and up: the same radvd
    cloud.kill9_and_up()
    time.sleep(1.5)
    assert sorted(sh("ip", "netns", "pids", rns).split()) == radvd
    # without IPv6 interfaces the router advertises nothing: radvd stops
    for sub in subs.values():
        r = admin("PUT", f"/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while sh("ip", "netns", "pids", rns).split() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sh("ip", "netns", "pids", rns).split() == []
    admin("DELETE", f"/ports/{port['id']}")


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
