"""Real guests on real networks: kumo-tiny servers (QEMU, TCG here) on a private network get
their ports' addresses by DHCP (and their IPv6 SLAAC addresses from the router's
advertisements), answer from the DHCP namespace, reach and are reached from the
"outside world" namespace through a router (floating IP), security group rules open and
close TCP 22 within 2 s, two projects' overlapping 10.0.0.0/24 networks stay apart, and a
kill -9 of kumo neither cuts a guest off nor duplicates anything.

Every packet goes between namespaces this test's kumo made (its namespace prefix is unique,
removed at stop); the root namespace is never used. Root, QEMU, ip, nft, dnsmasq needed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from cloudlib import unique
from computelib import wait_server
from guestlib import guest_cloud, kumo_tiny_image, needs_qemu_guest, ssh_keypair, wait_for_console
from netlib import NetApi

pytestmark = [
    pytest.mark.kumo_only("kumo's network data plane with real guests"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")),
                       reason="ip, nft and dnsmasq are needed"),
]

CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n"
        "[quota]\ninstances = 20\ncores = 40\nram = -1\n")


def in_ns(ns: str, *argv, timeout=20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout)


def pings(ns: str, ip: str, count: int = 1, wait: int = 2) -> bool:
    return in_ns(ns, "ping", "-c", str(count), "-W", str(wait), ip).returncode == 0


def tcp_open(ns: str, ip: str, port: int, timeout: float = 1.5) -> bool:
    """A TCP handshake with ip:port from inside namespace `ns`."""
    code = (f"import socket,sys\ns=socket.socket()\ns.settimeout({timeout})\n"
            f"sys.exit(0 if s.connect_ex(('{ip}',{port}))==0 else 1)")
    return in_ns(ns, "python3", "-c", code).returncode == 0


def ssh(ns: str, key: str, ip: str, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """`command` run in the guest at `ip` as user kumo over SSH from inside namespace `ns`."""
    return in_ns(ns, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                 "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"kumo@{ip}", command,
                 timeout=timeout)


def wait_until(check, timeout: float, step: float = 0.2) -> float | None:
    """Seconds until check() held, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(step)
    return None


@pytest.fixture(scope="module")
def nc():
    with guest_cloud(CONF, kumo_tiny_image()) as c:
        # the outside world: an external network whose gateway kumo-ext holds
        c.public = c.osc("network", "create", "--external", unique("public"), fmt_json=True)
        c.osc("subnet", "create", "--network", c.public["id"], "--subnet-range", "172.24.4.0/24",
              "--no-dhcp", "--gateway", "172.24.4.1", unique("public-sub"))
        yield c

def private_network(c, name: str, cidr: str = "10.0.0.0/24", project_args=()) -> tuple[dict, dict]:
    net = c.osc("network", "create", *project_args, name, fmt_json=True)
    sub = c.osc("subnet", "create", *project_args, "--network", net["id"], "--subnet-range", cidr,
                name + "-sub", fmt_json=True)
    return net, sub


def boot(c, name: str, net_id: str, key_name: str | None = None) -> dict:
    extra = ("--key-name", key_name) if key_name else ()
    s = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network", net_id,
              *extra, name, fmt_json=True)
    return wait_server(c, s["id"], "ACTIVE", timeout=120)


def port_of(c, server_id: str) -> dict:
    admin = NetApi(c, c.admin_token)
    ports = admin("GET", f"/ports?device_id={server_id}").json()["ports"]
    assert len(ports) == 1, ports
    return ports[0]


def test_guests_dhcp_router_floating_ip_and_security_groups(nc, request):
    c = nc
    net, sub = private_network(c, unique("private"))
    router = c.osc("router", "create", unique("router"), fmt_json=True)
    c.osc("router", "set", "--external-gateway", c.public["id"], router["id"])
    c.osc("router", "add", "subnet", router["id"], sub["id"])
    # the admin project's default group: ICMP from anywhere (TCP 22 comes below)
    sg = c.osc("security", "group", "list", "--project", c.osc("token", "issue", fmt_json=True)
               ["project_id"], fmt_json=True)
    default = next(g for g in sg if g["Name"] == "default")["ID"]
    c.osc("security", "group", "rule", "create", "--protocol", "icmp", default)
    c.osc("security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol", "ipv6-icmp",
          default)
    # an IPv6 SLAAC subnet beside the IPv4 one: the router advertises it, the guests make their
    # addresses themselves (their ports' EUI-64 addresses)
    sub6 = c.osc("subnet", "create", "--network", net["id"], "--ip-version", "6",
                 "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
                 "--subnet-range", "fd00:10::/64", unique("private6"), fmt_json=True)
    c.osc("router", "add", "subnet", router["id"], sub6["id"])

    # a key pair the guests install from the metadata service (169.254.169.254, served from
    # the network's DHCP namespace), so the outside world can log in over the floating IP
    key, keypair = ssh_keypair(c, request)

    s1 = boot(c, unique("g1"), net["id"], key_name=keypair)
    s2 = boot(c, unique("g2"), net["id"], key_name=keypair)
    p1, p2 = port_of(c, s1["id"]), port_of(c, s2["id"])
    assert p1["status"] == "ACTIVE" and p1["binding:vif_type"] == "bridge", p1
    ip1, ip2 = p1["fixed_ips"][0]["ip_address"], p2["fixed_ips"][0]["ip_address"]
    # each guest says on its console which address DHCP gave it: its port's
    for s, ip in ((s1, ip1), (s2, ip2)):
        text = wait_for_console(c, s["id"], f"eth0 {ip} by DHCP", timeout=60)
        assert f"kumo-tiny: eth0 {ip} by DHCP" in text

    dhcp_ns = f"{c.prefix}qdhcp-{net['id']}"
    assert wait_until(lambda: pings(dhcp_ns, ip1) and pings(dhcp_ns, ip2), 20) is not None
    router_ns = f"{c.prefix}qrouter-{router['id']}"
    for p in (p1, p2):
        v6 = next(f["ip_address"] for f in p["fixed_ips"] if f["subnet_id"] == sub6["id"])
        took = wait_until(lambda: pings(router_ns, v6), 30)
        assert took is not None, f"guest's SLAAC address {v6} does not answer from {router_ns}"

    # a floating IP: the outside world reaches the guest, TCP 22 only once a rule allows it
    fip = c.osc("floating", "ip", "create", c.public["id"], fmt_json=True)
    fip_ip = fip["floating_ip_address"]
    c.osc("server", "add", "floating", "ip", s1["id"], fip_ip)
    ext_ns = f"{c.prefix}kumo-ext"
    took = wait_until(lambda: pings(ext_ns, fip_ip), 20)
    assert took is not None, f"floating IP {fip_ip} does not answer from {ext_ns}"
    # the guests read their metadata (host name and key) from the metadata service
    for s in (s1, s2):
        text = wait_for_console(c, s["id"], "dropbear listening on port 22", timeout=90)
        assert "metadata from metadata service: hostname" in text and "1 key(s)" in text, text
    assert not tcp_open(ext_ns, fip_ip, 22), "TCP 22 open before any rule allowed it"
    rule = c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
                 default, fmt_json=True)
    opened = wait_until(lambda: tcp_open(ext_ns, fip_ip, 22), 5)
    assert opened is not None and opened < 2, f"TCP 22 not open 2 s after the rule ({opened})"
    c.osc("security", "group", "rule", "delete", rule["id"])
    closed = wait_until(lambda: not tcp_open(ext_ns, fip_ip, 22, timeout=0.5), 5)
    assert closed is not None and closed < 2, f"TCP 22 still open 2 s after the rule went ({closed})"
    c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", default)
    assert wait_until(lambda: tcp_open(ext_ns, fip_ip, 22), 2) is not None

    # SSH from the outside world to the floating IP with the key pair; from inside the guest:
    # its host name is its server's, the other guest answers a ping on the private network,
    # and the outside world's gateway (which has no route back to 10.0.0.0/24) answers
    # through the router's SNAT
    hostname = c.compute("GET", f"/servers/{s1['id']}", version="2.3").json()[
        "server"]["OS-EXT-SRV-ATTR:hostname"]
    # (/bin/ping by path: busybox's shell runs applets in-process, bypassing the set-uid copy)
    out = ssh(ext_ns, key, fip_ip,
              f"hostname; /bin/ping -c 2 -W 3 {ip2} >/dev/null && echo PEER-OK; "
              f"/bin/ping -c 2 -W 3 172.24.4.1 >/dev/null && echo OUTSIDE-OK")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == hostname, (lines, hostname)
    assert "PEER-OK" in lines, f"guest {ip1} cannot ping guest {ip2}: {out.stdout}"
    assert "OUTSIDE-OK" in lines, f"guest cannot reach the outside through SNAT: {out.stdout}"
    # `kumo ssh`: the floating IP through the outside namespace, or (s2 has none) the fixed IP
    # through the network's DHCP namespace
    for server, want in ((s1, hostname), (s2, None)):
        r = subprocess.run([c._driver.bin, "--state-dir", str(c.state_dir), "ssh", server["id"],
                            "-i", key, "--", "hostname"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        via = f"via namespace {ext_ns}" if want else f"via namespace {dhcp_ns}"
        assert via in r.stderr, r.stderr
        if want:
            assert r.stdout.strip() == want
        else:
            assert r.stdout.strip() == c.compute("GET", f"/servers/{s2['id']}", version="2.3").json()[
                "server"]["OS-EXT-SRV-ATTR:hostname"]
    # a wrong key is refused
    other = key + "-other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    assert ssh(ext_ns, other, fip_ip, "true").returncode != 0

    # kill -9: the guests keep answering meanwhile and after; nothing is made twice
    before = sorted(n for n in os.listdir("/run/netns") if n.startswith(c.prefix))
    c.kill9_and_up()
    assert pings(ext_ns, fip_ip, count=3)
    time.sleep(2)
    after = sorted(n for n in os.listdir("/run/netns") if n.startswith(c.prefix))
    assert after == before
    assert pings(ext_ns, fip_ip) and pings(dhcp_ns, ip2)

    # disassociating cuts the outside world off
    c.osc("server", "remove", "floating", "ip", s1["id"], fip_ip)
    assert wait_until(lambda: not pings(ext_ns, fip_ip, wait=1), 5) is not None


def test_overlapping_networks_of_two_projects_stay_apart(nc):
    c = nc
    projects = []
    nets = []
    for i in range(2):
        p = c.create_project(unique(f"overlap{i}"))
        projects.append(p)
        net, _ = private_network(c, unique(f"ov{i}"), project_args=("--project", p["id"]))
        nets.append(net)
    # a guest on the first network; on the second only its DHCP port
    s = boot(c, unique("ov-guest"), nets[0]["id"])
    ip = port_of(c, s["id"])["fixed_ips"][0]["ip_address"]
    other_ip = "10.0.0.200"
    assert other_ip != ip
    # the second network is built only when a guest uses it: boot one there too
    s2 = boot(c, unique("ov-guest2"), nets[1]["id"])
    ip2 = port_of(c, s2["id"])["fixed_ips"][0]["ip_address"]
    ns0 = f"{c.prefix}qdhcp-{nets[0]['id']}"
    ns1 = f"{c.prefix}qdhcp-{nets[1]['id']}"
    assert wait_until(lambda: os.path.exists(f"/run/netns/{ns1}"), 20) is not None
    # both networks hand out the same addresses, and each namespace sees only its own guest
    assert ip == ip2, (ip, ip2)
    mac0 = port_of(c, s["id"])["mac_address"]
    mac1 = port_of(c, s2["id"])["mac_address"]
    assert wait_until(lambda: pings(ns0, ip), 30) is not None
    assert wait_until(lambda: pings(ns1, ip2), 30) is not None
    for ns, mac, other in ((ns0, mac0, mac1), (ns1, mac1, mac0)):
        neigh = in_ns(ns, "ip", "neigh", "show", ip).stdout.lower()
        assert mac in neigh and other not in neigh, (ns, neigh)
    for s_ in (s, s2):
        c.compute("DELETE", f"/servers/{s_['id']}")
