"""`[network] external_access = host`: the external network's gateway address lives in the
namespace kumo runs in (devstack's br-ex), so that namespace reaches floating IPs directly,
without the `kumo-ext` namespace, and `kumo ssh` logs in from there.

The "host" is a namespace this test makes (`kth<hex>-host`): kumo, the CLI and every packet of
the test run inside it (the test's thread enters it with setns), so the machine's root
namespace is never touched. Root, QEMU, ip, nft, dnsmasq needed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time

import pytest

from cloudlib import unique
from computelib import wait_server
from guestlib import guest_cloud, kumo_tiny_image, needs_qemu_guest, ssh_keypair, wait_for_console
from netlib import in_namespace, routed_network

pytestmark = [
    pytest.mark.kumo_only("kumo's network data plane with real guests"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "ssh")),
                       reason="ip, nft, dnsmasq and ssh are needed"),
]

CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n"
        "[network]\nexternal_access = host\n")

def ext_links() -> dict[str, list[str]]:
    """The `ext…` links of the current namespace with their IPv4 addresses."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    return {l["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in l.get("addr_info", [])
                          if a.get("family") == "inet"]
            for l in json.loads(out.stdout) if l["ifname"].startswith("ext")}


def pings(ip: str, count: int = 1, wait: int = 2) -> bool:
    return subprocess.run(["ping", "-c", str(count), "-W", str(wait), ip],
                          capture_output=True).returncode == 0


def wait_until(check, timeout: float, step: float = 0.2) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(step)
    return None


@pytest.fixture(scope="module")
def host_ns():
    ns = f"kth{secrets.token_hex(3)}-host"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_floating_ip_reached_from_the_host_namespace(host_ns, request):
    with in_namespace(host_ns), guest_cloud(CONF, kumo_tiny_image()) as c:
        assert ext_links() == {}, "the test's host namespace starts without kumo's links"
        topo = routed_network(c)
        public, net, router = topo.public, topo.net, topo.router
        key, keypair = ssh_keypair(c, request)
        s = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network",
                  net["id"], "--key-name", keypair, unique("g"), fmt_json=True)
        s = wait_server(c, s["id"], "ACTIVE", timeout=120)
        fip = c.osc("floating", "ip", "create", public["id"], fmt_json=True)["floating_ip_address"]
        c.osc("server", "add", "floating", "ip", s["id"], fip)

        # the host holds the external gateway; there is no outside-world namespace
        links = ext_links()
        assert list(links.values()) == [["172.24.4.1/24"]], links
        assert not os.path.exists(f"/run/netns/{c.prefix}kumo-ext")
        took = wait_until(lambda: pings(fip), 30)
        assert took is not None, f"floating IP {fip} does not answer from the host namespace"

        # SSH straight from the host, and `kumo ssh` (no namespace to go through)
        wait_for_console(c, s["id"], "dropbear listening on port 22", timeout=90)
        out = subprocess.run(["ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
                              "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                              "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"kumo@{fip}",
                              "/bin/ping -c 2 -W 3 172.24.4.1 >/dev/null && echo HOST-OK"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "HOST-OK" in out.stdout, (out.stdout, out.stderr)
        r = subprocess.run([c._driver.bin, "--state-dir", str(c.state_dir), "ssh", s["id"],
                            "-i", key, "--", "hostname"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "via this host" in r.stderr, r.stderr

        # kill -9 and up: still reached, one link, still no outside-world namespace
        c.kill9_and_up()
        assert pings(fip, count=3)
        time.sleep(2)
        assert list(ext_links().values()) == [["172.24.4.1/24"]]
        assert not os.path.exists(f"/run/netns/{c.prefix}kumo-ext")

        # the router loses its gateway: the host's link goes with the external network's bridge
        c.osc("server", "remove", "floating", "ip", s["id"], fip)
        c.osc("router", "unset", "--external-gateway", router["id"])
        assert wait_until(lambda: ext_links() == {}, 10) is not None, ext_links()
    # kumo stopped and its namespaces removed: nothing of it is left in the host namespace
    with in_namespace(host_ns):
        assert ext_links() == {}
