"""kumo-tiny guests configure themselves the way cloud images do: host name, SSH key and a
`#!/bin/sh` user_data script from the metadata service on a DHCP network; and, with
`--config-drive true` on a network without DHCP, everything from the config drive (an ISO 9660
image labelled config-2) including the static address in network_data.json, after which SSH
with the key pair reaches the guest through its floating IP.

Traffic only between namespaces this test's kumo made. Root, QEMU, ip, nft, dnsmasq and
genisoimage needed."""

from __future__ import annotations

import os
import shutil

import pytest

from cloudlib import unique
from computelib import wait_server
from guestlib import guest_cloud, kumo_tiny_image, needs_qemu_guest, ssh_keypair, wait_for_console
from netlib import NetApi
from test_network_guests import ssh

pytestmark = [
    pytest.mark.kumo_only("kumo's metadata service and config drive with real guests"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "genisoimage")),
                       reason="ip, nft, dnsmasq and genisoimage are needed"),
]

CONF = "[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n[quota]\ninstances = 20\ncores = 40\nram = -1\n"

USER_DATA = '#!/bin/sh\necho "user_data says: uid $(id -u) on $(hostname)"\n'


@pytest.fixture(scope="module")
def gc():
    with guest_cloud(CONF, kumo_tiny_image()) as c:
        yield c

def hostname_of(c, server_id: str) -> str:
    return c.compute("GET", f"/servers/{server_id}", version="2.3").json()["server"][
        "OS-EXT-SRV-ATTR:hostname"]


def test_metadata_service_and_config_drive_configure_the_guest(gc, request):
    c = gc
    key, keypair = ssh_keypair(c, request)
    ud = key + "-user_data"
    with open(ud, "w") as f:
        f.write(USER_DATA)

    # a DHCP network: the metadata service
    dnet = c.osc("network", "create", unique("dhcp"), fmt_json=True)
    c.osc("subnet", "create", "--network", dnet["id"], "--subnet-range", "10.40.0.0/24",
          unique("dhcp-sub"))
    # a network without DHCP behind a router with a floating IP: the config drive
    public = c.osc("network", "create", "--external", unique("public"), fmt_json=True)
    c.osc("subnet", "create", "--network", public["id"], "--subnet-range", "172.24.4.0/24",
          "--no-dhcp", "--gateway", "172.24.4.1", unique("public-sub"))
    snet = c.osc("network", "create", unique("static"), fmt_json=True)
    ssub = c.osc("subnet", "create", "--network", snet["id"], "--subnet-range", "10.50.0.0/24",
                 "--no-dhcp", "--dns-nameserver", "10.50.0.53", unique("static-sub"), fmt_json=True)
    router = c.osc("router", "create", unique("router"), fmt_json=True)
    c.osc("router", "set", "--external-gateway", public["id"], router["id"])
    c.osc("router", "add", "subnet", router["id"], ssub["id"])
    project = c.osc("token", "issue", fmt_json=True)["project_id"]
    groups = c.osc("security", "group", "list", "--project", project, fmt_json=True)
    default = next(g for g in groups if g["Name"] == "default")["ID"]
    c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", default)

    md_name, cd_name = unique("md-guest"), unique("cd-guest")
    s1 = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network",
               dnet["id"], "--key-name", keypair, "--user-data", ud, md_name, fmt_json=True)
    s2 = c.osc("server", "create", "--image", c.image_id, "--flavor", c.flavor, "--network",
               snet["id"], "--key-name", keypair, "--user-data", ud, "--config-drive", "true",
               cd_name, fmt_json=True)
    s1 = wait_server(c, s1["id"], "ACTIVE", timeout=120)
    s2 = wait_server(c, s2["id"], "ACTIVE", timeout=120)
    assert c.compute("GET", f"/servers/{s2['id']}").json()["server"]["config_drive"] in ("True", True)

    # the metadata service: host name, one key, user_data run as root
    h1 = hostname_of(c, s1["id"])
    text = wait_for_console(c, s1["id"], "kumo-tiny: ready", timeout=120)
    assert f"metadata from metadata service: hostname {h1}, 1 key(s)" in text, text
    assert f"user_data says: uid 0 on {h1}" in text, text

    # the config drive: the same, and the static address from network_data.json
    admin = NetApi(c, c.admin_token)
    port = admin("GET", f"/ports?device_id={s2['id']}").json()["ports"][0]
    ip = port["fixed_ips"][0]["ip_address"]
    h2 = hostname_of(c, s2["id"])
    text = wait_for_console(c, s2["id"], "kumo-tiny: ready", timeout=120)
    assert "metadata from config drive" in text and f"hostname {h2}, 1 key(s)" in text, text
    assert f"eth0 {ip} static from network_data.json" in text, text
    assert f"user_data says: uid 0 on {h2}" in text, text

    fip = c.osc("floating", "ip", "create", public["id"], fmt_json=True)["floating_ip_address"]
    c.osc("server", "add", "floating", "ip", s2["id"], fip)
    ext_ns = f"{c.prefix}kumo-ext"
    out = None
    for _ in range(10):  # the NAT rules follow the association within a pass
        out = ssh(ext_ns, key, fip, "hostname; ip -4 -o addr show dev eth0; cat /etc/resolv.conf")
        if out.returncode == 0:
            break
    assert out is not None and out.returncode == 0, out.stderr if out else "no ssh"
    assert out.stdout.splitlines()[0] == h2, out.stdout
    assert f"inet {ip}/24" in out.stdout, out.stdout
    assert "nameserver 10.50.0.53" in out.stdout, out.stdout
