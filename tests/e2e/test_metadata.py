"""The metadata service at 169.254.169.254 as a guest sees it.

A server on the fake driver still gets its port wired (tap on the network's bridge, DHCP in
the network's qdhcp namespace, where kumo serves the metadata); a stand-in guest namespace of
the test, plugged into the bridge with the port's MAC, takes the port's address by DHCP, the
route to 169.254.169.254 from DHCP option 121, and reads Nova's OpenStack and EC2 trees as that
server: meta_data.json (uuid, name, hostname, key, meta, project), user_data, network_data.json,
the EC2 leaves, the password it posts once. Any other address learns nothing (404), and
10 000 requests leave kumo's memory where it was.

Root only (namespaces); everything carries the test kumo's namespace prefix."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from cloudlib import KumoDriver, unique
from computelib import wait_server
from netlib import NetApi, osc_demo
from test_network_dataplane import StandIn, sh

pytestmark = [
    pytest.mark.kumo_only("kumo's metadata service in its network namespaces"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "busybox")),
                       reason="ip, nft, dnsmasq and busybox are needed"),
]

MD = "http://169.254.169.254"


@pytest.fixture(scope="module")
def md_cloud():
    driver = KumoDriver()
    cloud = driver.start(extra_conf="[metadata]\ndhcp_domain = example.test\n")
    yield cloud, driver
    driver.stop(cloud)


def fetch(ns: str, paths: list[str], method: str = "GET", body: str | None = None,
          timeout: float = 5) -> list[tuple[int, str]]:
    """(status, body) of each path, fetched from inside namespace `ns` (status 0: no answer)."""
    code = textwrap.dedent(f"""
        import json, sys, urllib.request, urllib.error
        out = []
        for p in {paths!r}:
            req = urllib.request.Request("{MD}" + p, method={method!r},
                                         data={body!r}.encode() if {body!r} is not None else None)
            try:
                with urllib.request.urlopen(req, timeout={timeout}) as r:
                    out.append([r.status, r.read().decode()])
            except urllib.error.HTTPError as e:
                out.append([e.code, e.read().decode()])
            except Exception as e:
                out.append([0, str(e)])
        print(json.dumps(out))
    """)
    r = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def dhcp_with_routes(guest: StandIn) -> str:
    """udhcpc in the stand-in, applying option 121 routes like a cloud image does."""
    script = f"/tmp/{guest.ns}-md.sh"
    with open(script, "w") as f:
        f.write('#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr add "$ip/$mask" dev "$interface"\n'
                'set -- $staticroutes\nwhile [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev '
                '"$interface"; shift 2; done\nexit 0\n')
    os.chmod(script, 0o755)
    try:
        sh("ip", "netns", "exec", guest.ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
           "-T", "1", "-O", "staticroutes", "-s", script)
    finally:
        os.unlink(script)
    addrs = json.loads(sh("ip", "-n", guest.ns, "-j", "-4", "addr", "show", "eth0"))
    return addrs[0]["addr_info"][0]["local"] if addrs and addrs[0]["addr_info"] else ""


def test_a_guest_reads_its_own_metadata_and_nothing_else(md_cloud, tmp_path):
    cloud, driver = md_cloud
    prefix = driver.netns_prefix
    admin = NetApi(cloud, cloud.admin_token)
    net = cloud.osc("network", "create", unique("md"), fmt_json=True)
    cloud.osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.30.0.0/24",
              "--dns-nameserver", "10.30.0.53", unique("md-sub"))
    pub = tmp_path / "key.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx4mC0v0xkE7kfx4TFCN9Hg2cOvq0sB8X0c5Jv1kQ0R test@kumo\n")
    keyname = unique("mdkey")
    cloud.osc("keypair", "create", "--public-key", str(pub), keyname)
    user_data = tmp_path / "ud.sh"
    user_data.write_text("#!/bin/sh\necho hello from user_data\n")
    flavor = cloud.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                       fmt_json=True)["id"]
    image = cloud.osc("image", "create", "--disk-format", "raw", "--container-format", "bare",
                      unique("img"), fmt_json=True)["id"]
    name = unique("Web_Server")
    s = cloud.osc("server", "create", "--image", image, "--flavor", flavor, "--network", net["id"],
                  "--key-name", keyname, "--user-data", str(user_data), "--property", "role=web",
                  name, fmt_json=True)
    server = wait_server(cloud, s["id"], "ACTIVE", timeout=60)
    port = admin("GET", f"/ports?device_id={server['id']}").json()["ports"][0]
    assert port["status"] == "ACTIVE", port
    hostname = cloud.compute("GET", f"/servers/{server['id']}", version="2.3").json()[
        "server"]["OS-EXT-SRV-ATTR:hostname"]

    host_ns = f"{prefix}kumo-host"
    dhcp_ns = f"{prefix}qdhcp-{net['id']}"
    guest = StandIn(host_ns, "brq" + net["id"][:11], port["mac_address"])
    try:
        ip = dhcp_with_routes(guest)
        assert ip == port["fixed_ips"][0]["ip_address"], (ip, port["fixed_ips"])
        route = sh("ip", "-n", guest.ns, "route", "get", "169.254.169.254")
        assert "via 10.30.0." in route, f"no DHCP route to the metadata service: {route}"

        got = dict(zip(
            ["root", "os", "latest", "md", "ud", "nd", "ec2ip", "ec2host", "ec2key", "keys", "old", "vd2"],
            fetch(guest.ns, ["/", "/openstack", "/openstack/latest", "/openstack/latest/meta_data.json",
                             "/openstack/latest/user_data", "/openstack/latest/network_data.json",
                             "/latest/meta-data/local-ipv4", "/2009-04-04/meta-data/hostname",
                             "/latest/meta-data/public-keys/0/openssh-key",
                             "/latest/meta-data/public-keys/", "/openstack/2012-08-10/meta_data.json",
                             "/openstack/latest/vendor_data2.json"])))
        assert all(status == 200 for status, _ in got.values()), got
        assert got["root"][1].splitlines()[-1] == "latest" and "2009-04-04" in got["root"][1]
        assert got["os"][1].splitlines()[0] == "2012-08-10" and got["os"][1].endswith("latest")
        assert "user_data" in got["latest"][1] and "network_data.json" in got["latest"][1]
        md = json.loads(got["md"][1])
        assert md["uuid"] == server["id"]
        assert md["name"] == name
        assert md["hostname"] == f"{hostname}.example.test"
        assert md["public_keys"] == {keyname: pub.read_text()}, md["public_keys"]
        assert md["keys"][0]["type"] == "ssh" and md["keys"][0]["name"] == keyname
        assert md["meta"] == {"role": "web"}
        assert md["project_id"] == server["tenant_id"]
        assert md["availability_zone"] == "nova" and md["launch_index"] == 0
        assert len(base64.b64decode(md["random_seed"])) == 512
        assert got["ud"][1] == user_data.read_text()
        nd = json.loads(got["nd"][1])
        assert nd["links"][0]["ethernet_mac_address"] == port["mac_address"]
        assert nd["networks"][0]["type"] == "ipv4_dhcp" and nd["networks"][0]["network_id"] == net["id"]
        assert nd["services"] == [{"type": "dns", "address": "10.30.0.53"}]
        assert got["ec2ip"][1] == ip
        assert got["ec2host"][1] == f"{hostname}.example.test"
        assert got["ec2key"][1] == pub.read_text()
        assert got["keys"][1] == f"0={keyname}"
        assert "project_id" not in json.loads(got["old"][1])
        assert json.loads(got["vd2"][1]) == {"static": {}}
        for status, _ in fetch(guest.ns, ["/openstack/latest/nothing", "/openstack/2099-01-01/meta_data.json",
                                          "/latest/meta-data/nothing"]):
            assert status == 404

        # the password a guest posts: kept once (409 after), at most 256 bytes (400)
        assert fetch(guest.ns, ["/openstack/latest/password"], "POST", "x" * 300)[0][0] == 400
        assert fetch(guest.ns, ["/openstack/latest/password"], "POST", "encrypted-pw")[0][0] == 200
        assert fetch(guest.ns, ["/openstack/latest/password"], "POST", "again")[0][0] == 409
        assert fetch(guest.ns, ["/openstack/latest/password"])[0] == (200, "encrypted-pw")
        # the owner reads it through the compute API (nova get-password), and clears it
        pw = cloud.compute("GET", f"/servers/{server['id']}/os-server-password")
        assert pw.status_code == 200 and pw.json() == {"password": "encrypted-pw"}, pw.text
        assert cloud.compute("DELETE", f"/servers/{server['id']}/os-server-password").status_code == 204
        assert cloud.compute("GET", f"/servers/{server['id']}/os-server-password").json() == {"password": ""}
        assert fetch(guest.ns, ["/openstack/latest/password"], "POST", "again")[0][0] == 200
        assert cloud.compute("GET", "/servers/00000000-0000-4000-8000-000000000000/os-server-password"
                             ).status_code == 404

        # the DHCP namespace's own address is no instance's: 404
        status, _ = fetch(dhcp_ns, ["/openstack/latest/meta_data.json"])[0]
        assert status == 404

        # another source address on the network (the stand-in's veth is not a filtered tap,
        # so it gets through; a guest's tap drops it: crates/dataplane/tests/filter_root.rs):
        # no port holds it, so it learns nothing
        sh("ip", "-n", guest.ns, "addr", "add", "10.30.0.99/24", "dev", "eth0")
        code = textwrap.dedent("""
            import http.client, socket
            c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5,
                                           source_address=("10.30.0.99", 0))
            c.request("GET", "/openstack/latest/meta_data.json")
            print(c.getresponse().status)
        """)
        spoof = subprocess.run(["ip", "netns", "exec", guest.ns, "python3", "-c", code],
                               capture_output=True, text=True, timeout=30)
        assert spoof.stdout.strip() == "404", (spoof.stdout, spoof.stderr)
        sh("ip", "-n", guest.ns, "addr", "del", "10.30.0.99/24", "dev", "eth0")

        # 10 000 requests (new connections, 8 at a time): all answered, no memory kept
        pid = driver.pid
        before = rss_kib(pid)
        flood = textwrap.dedent(f"""
            import concurrent.futures, http.client, sys
            def one(i):
                c = http.client.HTTPConnection("169.254.169.254", 80, timeout=10)
                c.request("GET", "/openstack/latest/meta_data.json" if i % 2 else "/latest/meta-data/hostname")
                r = c.getresponse(); r.read(); c.close()
                return r.status
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                codes = list(ex.map(one, range(10000)))
            bad = [c for c in codes if c != 200]
            print(len(codes), len(bad))
            sys.exit(1 if bad else 0)
        """)
        t0 = time.monotonic()
        r = subprocess.run(["ip", "netns", "exec", guest.ns, "python3", "-c", flood],
                           capture_output=True, text=True, timeout=600)
        took = time.monotonic() - t0
        assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
        after = rss_kib(pid)
        print(f"10000 metadata requests in {took:.1f} s; kumo RSS {before} -> {after} KiB")
        assert after - before < 30 * 1024, f"kumo grew by {(after - before) // 1024} MiB over 10000 requests"
        # still serving afterwards
        assert fetch(guest.ns, ["/openstack/latest/meta_data.json"])[0][0] == 200
    finally:
        guest.remove()
    cloud.compute("DELETE", f"/servers/{server['id']}")


def test_demo_key_pair_is_made_once(md_cloud):
    """`kumo up --demo` gives the demo user a key pair `demo-key` whose private half is
    STATE/demo-key (what `kumo ssh` logs in with); a restart keeps both."""
    cloud, driver = md_cloud
    private = cloud.state_dir / "demo-key"
    assert private.exists() and (private.stat().st_mode & 0o077) == 0
    keys = osc_demo(cloud, "keypair", "list", fmt_json=True)
    assert [k["Name"] for k in keys] == ["demo-key"], keys
    public = (cloud.state_dir / "demo-key.pub").read_text().split()[1]
    shown = osc_demo(cloud, "keypair", "show", "--public-key", "demo-key")
    assert public in shown
    before = private.read_text()
    cloud.restart()
    assert private.read_text() == before
    assert [k["Name"] for k in osc_demo(cloud, "keypair", "list", fmt_json=True)] == ["demo-key"]


def test_user_data_over_64_kib_is_refused(md_cloud, tmp_path):
    """Nova's limit: 65535 characters of base64 user_data; above, 400 at create (raw API and
    the CLI), and no server is made."""
    cloud, _ = md_cloud
    before = len(cloud.compute("GET", "/servers", params={"all_tenants": 1}).json()["servers"])
    big = base64.b64encode(b"x" * 49152).decode()  # 65536 characters
    r = cloud.compute("POST", "/servers", json={"server": {
        "name": unique("big"), "imageRef": "00000000-0000-4000-8000-000000000000",
        "flavorRef": "1", "networks": "none", "user_data": big}})
    assert r.status_code == 400, r.text
    assert "user_data" in r.json()["badRequest"]["message"], r.text
    ud = tmp_path / "big"
    ud.write_bytes(b"x" * 49152)
    image = cloud.osc("image", "create", "--disk-format", "raw", "--container-format", "bare",
                      unique("img"), fmt_json=True)["id"]
    flavor = cloud.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1",
                       unique("f"), fmt_json=True)["id"]
    err = cloud.osc_fail("server", "create", "--image", image, "--flavor", flavor,
                         "--user-data", str(ud), "--nic", "none", unique("big"))
    assert "400" in err and "is not a 'base64' string or is too long" in err, err[-300:]
    assert len(cloud.compute("GET", "/servers", params={"all_tenants": 1}).json()["servers"]) == before
