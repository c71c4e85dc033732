"""A real cloud-init guest on kumo: the Debian 12 image of tools/cloud-image/build.sh
(docs/cloud-image.md), booted by the QEMU driver, configures itself with cloud-init as on
OpenStack, and SSH with the key pair checks the result from inside:

- a server on a DHCP network (no config drive): cloud-init's OpenStack datasource (the metadata
  service at 169.254.169.254, reached with init-local's ephemeral DHCP lease), the host name,
  the key of the `debian` user, a `#!/bin/sh` user_data script run once per instance as root;
  reached with `kumo ssh` through the network's DHCP namespace;
- a server with `--config-drive true` on a subnet without DHCP behind a router: cloud-init's
  ConfigDrive datasource and the static address, routes and DNS server of network_data.json
  on its interface; reached by SSH to its floating IP from the outside-world namespace.

Both boot at once (TCG: ~1.5-2.5 min to cloud-init's "finished"). Slow: KUMO_SKIP_SLOW=1 skips it
(run_tests.sh runs it; CI never sets that). The first run builds the image (debootstrap, ~3-4
min, cached in ~/.cache/kumo/images). Traffic only between namespaces this test's kumo made.
Root, QEMU, ip, nft, dnsmasq and genisoimage needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from cloudlib import unique
from computelib import wait_server
from guestlib import cloud_image, guest_cloud, needs_qemu_guest, ssh_keypair, wait_for_console
from netlib import NetApi
from test_network_guests import in_ns

pytestmark = [
    pytest.mark.kumo_only("kumo's QEMU driver, metadata service and config drive with cloud-init"),
    pytest.mark.skipif(os.environ.get("KUMO_SKIP_SLOW") == "1",
                       reason="slow (a Debian guest on TCG): KUMO_SKIP_SLOW=1"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and debootstrap need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "genisoimage")),
                       reason="ip, nft, dnsmasq and genisoimage are needed"),
]

CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n"
        "[quota]\ninstances = 20\ncores = 40\nram = -1\n")

# cloud-init's last console line: "Cloud-init v. 22.4.2 finished at <date>. Datasource <ds>.  Up N seconds"
FINISHED = re.compile(r"Cloud-init v\. \S+ finished at .*Datasource (\S+).*Up ([0-9.]+) seconds")
# Two Debian guests at once on TCG (2 host cores shared with the rest of the machine).
BOOT_TIMEOUT = 360

# A per-instance script: cloud-init runs a user_data that starts with #! once per instance
# (scripts-user), as root; the marker says which instance it ran for.
USER_DATA = """#!/bin/sh
marker="kumo-user-data: uid $(id -u) on $(hostname) for $(cat /var/lib/cloud/data/instance-id)"
echo "$marker" > /var/lib/kumo-user-data
echo "$marker"
"""

# What the checks read in the guest, one section each (sudo: cloud-init query and status.json
# details are root's; `debian` has passwordless sudo from the image's cloud.cfg.d).
PROBE = ("echo '== hostname'; hostname; "
         "echo '== status'; cloud-init status; "
         "echo '== status.json'; cat /run/cloud-init/status.json; "
         # one query (each cloud-init command is seconds of Python start-up on TCG)
         "sudo cloud-init query --format '== cloud_name\n{{ v1.cloud_name }}\n"
         "== platform\n{{ v1.platform }}\n== subplatform\n{{ v1.subplatform }}\n"
         "== instance_id\n{{ v1.instance_id }}\n'; "
         "echo '== authorized_keys'; cat ~/.ssh/authorized_keys; "
         "echo '== user_data'; cat /var/lib/kumo-user-data; "
         "echo '== addr'; ip -4 -o addr show scope global; "
         "echo '== route'; ip -4 route show default; "
         "echo '== eni'; cat /etc/network/interfaces.d/50-cloud-init; "
         "echo '== resolv.conf'; cat /etc/resolv.conf; "
         "echo '== end'")


def sections(out: str) -> dict[str, str]:
    """PROBE's output split at its `== name` lines."""
    parts: dict[str, str] = {}
    name = None
    for line in out.splitlines():
        if line.startswith("== "):
            name = line[3:].strip()
            parts[name] = ""
        elif name is not None:
            parts[name] += line + "\n"
    assert "end" in parts, f"the probe did not run to its end:\n{out}"
    return {k: v.strip() for k, v in parts.items()}


def ssh_debian(ns: str, key: str, ip: str, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return in_ns(ns, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                 "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"debian@{ip}", command,
                 timeout=timeout)


@pytest.fixture(scope="module")
def cc():
    # cloud-init's Python needs ~512 MB; the image's disk is 2 GiB
    with guest_cloud(CONF, cloud_image(), ("--property", "os_distro=debian", "--property", "os_version=12"),
                     flavor_ram=768, flavor_disk=2) as c:
        yield c

def hostname_of(c, server_id: str) -> str:
    return c.compute("GET", f"/servers/{server_id}", version="2.3").json()["server"][
        "OS-EXT-SRV-ATTR:hostname"]


def check_common(p: dict[str, str], server_id: str, hostname: str, pubkey: str, datasource: str,
                 platform: str, subplatform: str):
    """What both guests must show: cloud-init done without errors by `datasource` (its cloud
    name and platform `platform`, its source `subplatform`), the host name, the key pair in
    debian's authorized_keys, the per-instance script's marker."""
    assert p["status"] == "status: done", p["status"]
    status = json.loads(p["status.json"])["v1"]
    assert status["datasource"].startswith(datasource), status["datasource"]
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        assert status[stage]["errors"] == [], (stage, status[stage])
    assert p["cloud_name"] == platform, p["cloud_name"]
    assert p["platform"] == platform, p["platform"]
    assert p["subplatform"].startswith(subplatform), p["subplatform"]
    assert p["instance_id"] == server_id, p["instance_id"]
    assert p["hostname"] == hostname, (p["hostname"], hostname)
    assert pubkey in p["authorized_keys"].splitlines(), p["authorized_keys"]
    assert p["user_data"] == f"kumo-user-data: uid 0 on {hostname} for {server_id}", p["user_data"]


def test_cloud_init_configures_a_debian_guest(cc, request):
    c = cc
    key, keypair = ssh_keypair(c, request)
    with open(key + ".pub") as f:
        pubkey = f.read().strip()
    ud = key + "-user_data"
    with open(ud, "w") as f:
        f.write(USER_DATA)

    # (a) a DHCP network: the metadata service
    dnet = c.osc("network", "create", unique("dhcp"), fmt_json=True)
    c.osc("subnet", "create", "--network", dnet["id"], "--subnet-range", "10.60.0.0/24",
          unique("dhcp-sub"))
    # (b) a network without DHCP behind a router with a floating IP: the config drive
    public = c.osc("network", "create", "--external", unique("public"), fmt_json=True)
    c.osc("subnet", "create", "--network", public["id"], "--subnet-range", "172.24.4.0/24",
          "--no-dhcp", "--gateway", "172.24.4.1", unique("public-sub"))
    snet = c.osc("network", "create", unique("static"), fmt_json=True)
    ssub = c.osc("subnet", "create", "--network", snet["id"], "--subnet-range", "10.70.0.0/24",
                 "--no-dhcp", "--dns-nameserver", "10.70.0.53", unique("static-sub"), fmt_json=True)
    router = c.osc("router", "create", unique("router"), fmt_json=True)
    c.osc("router", "set", "--external-gateway", public["id"], router["id"])
    c.osc("router", "add", "subnet", router["id"], ssub["id"])
    project = c.osc("token", "issue", fmt_json=True)["project_id"]
    groups = c.osc("security", "group", "list", "--project", project, fmt_json=True)
    default = next(g for g in groups if g["Name"] == "default")["ID"]
    c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", default)

    # both at once: each takes minutes on TCG
    t0 = time.monotonic()
    s1 = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network",
               dnet["id"], "--key-name", keypair, "--user-data", ud, unique("ci-md"), fmt_json=True)
    s2 = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network",
               snet["id"], "--key-name", keypair, "--user-data", ud, "--config-drive", "true",
               unique("ci-cd"), fmt_json=True)
    s1 = wait_server(c, s1["id"], "ACTIVE", timeout=180)
    s2 = wait_server(c, s2["id"], "ACTIVE", timeout=180)
    h1, h2 = hostname_of(c, s1["id"]), hostname_of(c, s2["id"])
    admin = NetApi(c, c.admin_token)
    ip2 = admin("GET", f"/ports?device_id={s2['id']}").json()["ports"][0]["fixed_ips"][0]["ip_address"]

    # cloud-init's output is on the serial console (`openstack console log show`): its stages,
    # the user_data script's line, the datasource in its last line
    logs = {}
    for s, h, ds in ((s1, h1, "DataSourceOpenStack"), (s2, h2, "DataSourceConfigDrive")):
        text = wait_for_console(c, s["id"], "finished at", timeout=BOOT_TIMEOUT, interval=3)
        m = FINISHED.search(text)
        assert m, text[-3000:]
        assert m.group(1).startswith(ds), m.group(0)
        assert f"kumo-user-data: uid 0 on {h} for {s['id']}" in text, text[-3000:]
        assert "running 'init-local'" in text and "running 'modules:final'" in text
        logs[s["id"]] = text
        print(f"{s['name']}: cloud-init finished {m.group(2)} s after the guest's kernel started,"
              f" {time.monotonic() - t0:.0f} s after both creates ({m.group(1)})")

    # (a) through the DHCP namespace (`kumo ssh`, no floating IP)
    r = subprocess.run([c._driver.bin, "--state-dir", str(c.state_dir), "ssh", s1["id"], "-l", "debian",
                        "-i", key, "--", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"via namespace {c.prefix}qdhcp-{dnet['id']}" in r.stderr, r.stderr
    p = sections(r.stdout)
    print(f"(a) probed over SSH after {time.monotonic() - t0:.0f} s")
    check_common(p, s1["id"], h1, pubkey, "DataSourceOpenStack", "openstack",
                 "metadata (http://169.254.169.254")
    assert "inet dhcp" in p["eni"], p["eni"]  # network_data.json: ipv4_dhcp

    # (b) the static address from network_data.json, reached through the floating IP
    fip = c.osc("floating", "ip", "create", public["id"], fmt_json=True)["floating_ip_address"]
    c.osc("server", "add", "floating", "ip", s2["id"], fip)
    ext_ns = f"{c.prefix}kumo-ext"
    out = None
    for _ in range(10):  # the NAT rules follow the association within a pass
        out = ssh_debian(ext_ns, key, fip, PROBE)
        if out.returncode == 0:
            break
        time.sleep(1)
    assert out is not None and out.returncode == 0, (
        (out.stderr if out else "no ssh") + "\nthe guest's network as cloud-init printed it:\n"
        + "\n".join(line for line in logs[s2["id"]].splitlines() if "ci-info: |" in line))
    p = sections(out.stdout)
    check_common(p, s2["id"], h2, pubkey, "DataSourceConfigDrive", "configdrive", "config-disk (/dev/vd")
    assert re.search(rf"inet {re.escape(ip2)}/24 ", p["addr"]), p["addr"]
    assert "dynamic" not in p["addr"], p["addr"]  # no lease: the subnet has no DHCP
    assert p["route"].startswith("default via 10.70.0.1 "), p["route"]
    assert "inet static" in p["eni"] and f"address {ip2}/24" in p["eni"], p["eni"]
    assert "dns-nameservers 10.70.0.53" in p["eni"], p["eni"]
    assert "nameserver 10.70.0.53" in p["resolv.conf"].splitlines(), p["resolv.conf"]
    print(f"test body took {time.monotonic() - t0:.0f} s")
