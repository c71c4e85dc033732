"""Three hosts on one machine, wired as a real cloud's (issue "Scale-out"): host A runs
`kumo serve api conductor scheduler network-agent volume metadata dashboard` (DHCP, routers,
metadata answered in A's namespaces, volumes), hosts B and C run
`kumo serve compute` with real kumo-tiny guests (QEMU; TCG here). Each host's data plane is a
namespace of its own (`<p>a-kumo-host`, ...) holding an underlay interface `ul0` on a shared
underlay bridge (10.250.0.0/24, in a namespace of its own); tenant networks are VXLAN between
the hosts' bridges, each host flooding to the endpoints its peers' Linux bridge agents
registered. The control plane lives in a namespace of the test's own (`<p>ctl`, loopback only:
netlib.control_namespace): RabbitMQ, the database server (tests/e2e/dbservers.py), the three kumo
processes and the CLI and HTTP clients of the test, which runs twice: every service's database on
PostgreSQL, then on MariaDB; each time the six databases are checked to be on that server, and
the processes' logs to hold no error.

Checked with the real CLI: the agents of every host are listed and alive; six servers of a
soft-anti-affinity group land three on B and three on C, their ports bound there (the host namespace in their
`binding:vif_details` is that host's); all guests take their addresses by DHCP from A and their
key from the metadata service on A, through the tunnels; A's DHCP namespace pings them all;
the outside world (A's `kumo-ext`) reaches a guest on C through a floating IP over SSH, and from
there the guests on B answer over the B-C tunnel. A volume of A is attached to a guest on B over
NBD (TLS-PSK), written by the guest and found in A's file, then detached (the export stops). A
guest on B is live-migrated to C under pings from A (its tmpfs marker survives); another is
cold-migrated to C (it boots there from the disk it had on B) and reverted. Then host C dies (its kumo and guests killed):
its nova-compute goes down and `openstack server evacuate` brings its guests up on B, their
ports bound and wired there, by DHCP from A again.

Every namespace carries this test's prefix and is removed at the end with the processes in it
(QEMU, dnsmasq) by PID, also on failure. Root, QEMU, ip, nft, dnsmasq, RabbitMQ, PostgreSQL and
MariaDB needed."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import shutil
import subprocess
import time

import pytest
import requests

from cloudlib import free_port, remove_namespaces, unique
from computelib import wait_server
from dbservers import (mariadb_bin, mariadb_server, postgres_bin, postgres_server, rabbitmq_bin, rabbitmq_server,
                       service_databases)
from guestlib import kumo_tiny_image, needs_qemu_guest, ssh_keypair, wait_for_console
from netlib import NetApi, control_namespace, routed_network
from scalelib import CONTROLLER_ROLES, metadata_conf, Proc, cloud_of, split_processes
from test_network_guests import pings, ssh, wait_until

pytestmark = [
    pytest.mark.kumo_only("kumo serve ROLE... with real guests on three hosts"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and the database server need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "bridge")),
                       reason="ip, bridge, nft and dnsmasq are needed"),
]

# user_data (run as root at every boot of kumo-tiny): user kumo may write the volumes hot-plugged
# later (the NBD block); a marker at sector 1800000 of the root disk (the cold migration's proof)
GUEST_USER_DATA = """#!/bin/sh
(while :; do chmod 666 /dev/vd[b-z] 2>/dev/null; sleep 0.2; done) </dev/null >/dev/null 2>&1 &
if dd if=/dev/vda bs=512 skip=1800000 count=1 2>/dev/null | grep -q KUMO-DISK-MARK; then
  echo "kumo-mark found"
else
  echo KUMO-DISK-MARK | dd of=/dev/vda bs=512 seek=1800000 conv=fsync 2>/dev/null && echo "kumo-mark written"
fi
"""
HOSTS = {"a": 1, "b": 2, "c": 3}  # host letter -> its underlay address 10.250.0.N
GUESTS = 6
DATABASES = {"postgresql": (postgres_server, postgres_bin, "postgresql://"),
             "mariadb": (mariadb_server, mariadb_bin, "mysql://")}


def ip(*argv: str):
    r = subprocess.run(["ip", *argv], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(argv)}: {r.stderr}"
    return r.stdout


def make_underlay(p: str):
    """`<p>ul` with bridge br0, and per host `<p>X-kumo-host` with `ul0` (10.250.0.N/24) on it.
    kumo keeps a host namespace it finds and never touches links not named as its own."""
    ul = f"{p}ul"
    ip("netns", "add", ul)
    ip("-n", ul, "link", "add", "br0", "type", "bridge")
    ip("-n", ul, "link", "set", "br0", "up")
    for x, n in HOSTS.items():
        hns = f"{p}{x}-kumo-host"
        ip("netns", "add", hns)
        ip("-n", hns, "link", "set", "lo", "up")
        ip("-n", ul, "link", "add", f"ul{x}", "type", "veth", "peer", "name", "ul0", "netns", hns)
        ip("-n", ul, "link", "set", f"ul{x}", "master", "br0", "up")
        ip("-n", hns, "addr", "add", f"10.250.0.{n}/24", "dev", "ul0")
        ip("-n", hns, "link", "set", "ul0", "up")


def host_conf(mq: str, db: str, password: str, p: str, x: str, extra: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq}\nreport_interval = 1\nservice_down_time = 6\n"
            f"compute_driver = qemu\nshutdown_timeout = 3\nhost = {p}host{x}\n"
            f"[database]\nconnection = {db}\n[service_user]\npassword = {password}\n{extra}"
            "[identity]\npassword_hash_rounds = 4\n"
            f"[network]\ndataplane = linux\nnamespace_prefix = {p}{x}-\nlocal_ip = 10.250.0.{HOSTS[x]}\n"
            "tunnel_interface = ul0\nagent_report_interval = 2\n"
            "[quota]\ninstances = 20\ncores = 40\nram = -1\n"
            "[demo]\nguest_image = none\nnetwork = false\n")


def assert_databases_on(db, work):
    """Every service's database is on `db`, with its tables and the kumo processes' sessions;
    no state dir holds a SQLite database."""
    found = service_databases(db)
    assert all(v["tables"] > 0 and v["sessions"] > 0 for v in found.values()), f"{db.kind}: {found}"
    assert not list(work.glob("*/db/*.sqlite")), list(work.glob("*/db/*.sqlite"))
    print(f"{db.kind}: every service's tables and sessions: {found}")


@pytest.mark.parametrize("engine", list(DATABASES))
def test_vxlan_between_three_hosts_with_real_guests(request, engine):
    db_server, db_bin, scheme = DATABASES[engine]
    if rabbitmq_bin() is None or db_bin() is None:
        pytest.fail(f"rabbitmq-server and {engine} are needed: run_tests.sh installs them (tests/lib/common.sh)")
    t_start = time.monotonic()
    p = f"kt{secrets.token_hex(3)}"
    try:
        with control_namespace(f"{p}ctl"), rabbitmq_server() as mq, db_server() as db:
            make_underlay(p)
            # inside the servers' block: the processes stop (and their logs are read) before them
            with split_processes("kumo-e2e-multihost-", no_errors=True) as (work, procs):
                assert db.url.startswith(scheme) and "$service" in db.url, db.url
                password = secrets.token_hex(12)
                port = free_port()
                a = Proc("hosta", work, host_conf(mq.url, db.url, password, p, "a", metadata_conf()),
                         CONTROLLER_ROLES, listen=f"127.0.0.1:{port}")
                procs.append(a)
                a.wait_log("kumo is serving")
                c = cloud_of(a, port, work)
                auth = f"[service_user]\nauth_url = http://127.0.0.1:{port}/identity\n"
                b = Proc("hostb", work, host_conf(mq.url, db.url, password, p, "b", auth), ["compute"])
                cc = Proc("hostc", work, host_conf(mq.url, db.url, password, p, "c", auth), ["compute"])
                procs += [b, cc]
                b.wait_log("kumo is serving")
                cc.wait_log("kumo is serving")
                assert_databases_on(db, work)
                print(f"three hosts serving {time.monotonic() - t_start:.1f} s after the start")

                # every host's agents registered and alive: a Linux bridge agent each (with its
                # tunnel endpoint), DHCP, L3 and metadata on A
                agents = c.osc("network", "agent", "list", fmt_json=True)
                have = {(x["Host"], x["Agent Type"]) for x in agents}
                ha, hb, hc = f"{p}hosta", f"{p}hostb", f"{p}hostc"
                want = {(h, "Linux bridge agent") for h in (ha, hb, hc)} | {
                    (ha, "DHCP agent"), (ha, "L3 agent"), (ha, "Metadata agent")}
                assert want <= have, agents
                assert all(x["Alive"] for x in agents), agents
                lb_b = next(x for x in agents if (x["Host"], x["Agent Type"]) == (hb, "Linux bridge agent"))
                shown = c.osc("network", "agent", "show", lb_b["ID"], fmt_json=True)
                assert shown["configuration"]["tunneling_ip"] == "10.250.0.2", shown
                assert shown["configuration"]["namespace"] == f"{p}b-kumo-host", shown

                # the cloud: an external network whose gateway is A's outside-world namespace, a
                # VXLAN tenant network behind a router on A, ICMP and SSH allowed
                topo = routed_network(c)
                public, net = topo.public, topo.net
                assert net["provider:network_type"] == "vxlan", net
                vni = net["provider:segmentation_id"]
                key, keypair = ssh_keypair(c, request)
                image = c.osc("image", "create", "--file", str(kumo_tiny_image()), "--disk-format", "qcow2",
                              "--container-format", "bare", "--public", unique("tiny"), fmt_json=True)
                flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "192", "--disk", "1",
                               unique("guest"), fmt_json=True)

                # six guests spread by (soft) anti-affinity: three on B, three on C
                group = c.osc("server", "group", "create", "--policy", "soft-anti-affinity", unique("g"),
                              fmt_json=True)
                # each guest's first boot writes a marker near the end of its root disk (as root,
                # from user_data); a boot that finds it there says so: a cold migration's proof
                # that the disk moved
                mark_script = work / "guest-user-data.sh"
                mark_script.write_text(GUEST_USER_DATA)
                ids = []
                for i in range(GUESTS):
                    s = c.osc("server", "create", "--image", image["id"], "--flavor", flavor["id"], "--network",
                              net["id"], "--key-name", keypair, "--hint", f"group={group['id']}",
                              "--user-data", str(mark_script),
                              unique(f"g{i}"), fmt_json=True)
                    ids.append(s["id"])
                servers = [wait_server(c, sid, "ACTIVE", timeout=240) for sid in ids]
                on: dict[str, list[dict]] = {hb: [], hc: []}
                for s in servers:
                    on.setdefault(c.compute("GET", f"/servers/{s['id']}", version="2.72").json()["server"][
                        "OS-EXT-SRV-ATTR:host"], []).append(s)
                assert sorted(len(v) for v in on.values()) == [GUESTS // 2, GUESTS // 2], on
                addr: dict[str, str] = {}
                neutron = NetApi(c, c.admin_token)
                for x, h in (("b", hb), ("c", hc)):
                    for s in on[h]:
                        port = neutron("GET", f"/ports?device_id={s['id']}").json()["ports"][0]
                        assert port["status"] == "ACTIVE" and port["binding:vif_type"] == "bridge", port
                        assert port["binding:vif_details"]["namespace"] == f"{p}{x}-kumo-host", port
                        addr[s["id"]] = port["fixed_ips"][0]["ip_address"]
                print(f"{GUESTS} guests ACTIVE on B and C {time.monotonic() - t_start:.1f} s after the start")

                # the tunnels: each compute host floods VNI `vni` to A and to the other compute host
                for x, peers in (("b", {"10.250.0.1", "10.250.0.3"}), ("c", {"10.250.0.1", "10.250.0.2"})):
                    fdb = subprocess.run(["bridge", "-n", f"{p}{x}-kumo-host", "fdb", "show", "dev", f"vxlan-{vni}"],
                                         capture_output=True, text=True).stdout
                    got = {w.split()[w.split().index("dst") + 1] for w in fdb.splitlines()
                           if w.startswith("00:00:00:00:00:00") and "dst" in w.split()}
                    assert got == peers, f"host {x}'s flood list for VNI {vni}: {fdb}"

                # DHCP from A reached every guest over the tunnels; A's DHCP namespace pings them
                for s in servers:
                    wait_for_console(c, s["id"], f"eth0 {addr[s['id']]} by DHCP", timeout=180)
                dhcp_ns = f"{p}a-qdhcp-{net['id']}"
                for s in servers:
                    assert wait_until(lambda: pings(dhcp_ns, addr[s["id"]]), 30) is not None, \
                        f"guest {addr[s['id']]} does not answer from {dhcp_ns}"

                # the outside world reaches a guest on C by its floating IP (router on A); from
                # there, the guests on B answer over the B-C tunnel
                on_c = on[hc][0]
                fip = c.osc("floating", "ip", "create", public["id"], fmt_json=True)["floating_ip_address"]
                c.osc("server", "add", "floating", "ip", on_c["id"], fip)
                ext_ns = f"{p}a-kumo-ext"
                assert wait_until(lambda: pings(ext_ns, fip), 30) is not None, f"{fip} does not answer from {ext_ns}"
                text = wait_for_console(c, on_c["id"], "dropbear listening on port 22", timeout=120)
                assert "1 key(s)" in text, text
                peers = [addr[s["id"]] for s in on[hb]]
                out = ssh(ext_ns, key, fip, "; ".join(f"/bin/ping -c 2 -W 3 {ip} >/dev/null && echo PEER-OK-{ip}"
                                                      for ip in peers))
                assert out.returncode == 0, out.stderr
                for ip in peers:
                    assert f"PEER-OK-{ip}" in out.stdout.split(), f"guest on C cannot ping {ip} on B: {out.stdout}"
                print(f"reachability checked {time.monotonic() - t_start:.1f} s after the start")

                # a volume of A attached to a guest on B: A's volume service exports it over NBD
                # (a qemu-storage-daemon in A's host namespace, on A's underlay address), the
                # guest writes a marker that lands in A's volume file, the detach stops the export
                t0 = time.monotonic()
                on_b = on[hb][0]
                vol = c.osc("volume", "create", "--size", "1", unique("nbd"), fmt_json=True)
                assert wait_until(lambda: c.osc("volume", "show", vol["id"], fmt_json=True)["status"]
                                  == "available", 60) is not None, vol
                c.osc("server", "add", "volume", on_b["id"], vol["id"])
                assert wait_until(lambda: c.osc("volume", "show", vol["id"], fmt_json=True)["status"]
                                  == "in-use", 60) is not None, c.osc("volume", "show", vol["id"], fmt_json=True)
                shown = c.osc("volume", "show", vol["id"], fmt_json=True)
                (va,) = shown["attachments"]
                assert va["server_id"] == on_b["id"] and va["host_name"] == hb, shown
                r = requests.get(f"{c.base_url}/volume/v3/{shown['os-vol-tenant-attr:tenant_id']}/attachments/"
                                 f"{va['attachment_id']}", timeout=30,
                                 headers={"X-Auth-Token": c.admin_token, "OpenStack-API-Version": "volume 3.27"})
                assert r.status_code == 200, r.text
                ci = r.json()["attachment"]["connection_info"]
                assert ci["driver_volume_type"] == "nbd", ci
                assert ci["data"]["host"] == "10.250.0.1" and ci["data"]["name"] == f"volume-{vol['id']}", ci
                nbd_port = ci["data"]["port"]
                # the export wants the TLS pre-shared key of the connection info: from B's namespace,
                # a client without it is refused
                assert ci["data"]["auth_method"] == "tls-psk" and len(ci["data"]["auth_password"]) == 64, ci
                plain = subprocess.run(["ip", "netns", "exec", f"{p}b-kumo-host", "qemu-img", "info",
                                        f"nbd://10.250.0.1:{nbd_port}/volume-{vol['id']}"], capture_output=True,
                                       text=True, timeout=30)
                assert plain.returncode != 0 and "TLS" in plain.stderr, plain
                a_host = f"{p}a-kumo-host"

                def listening() -> bool:
                    out = subprocess.run(["ip", "netns", "exec", a_host, "ss", "-Htln"], capture_output=True,
                                         text=True).stdout
                    return f"10.250.0.1:{nbd_port} " in out

                pid_file = a.state / "volume-exports" / f"{vol['id']}.pid"
                assert listening() and pid_file.exists(), f"no NBD export on 10.250.0.1:{nbd_port} in {a_host}"
                guest = addr[on_b["id"]]
                wait_for_console(c, on_b["id"], "dropbear listening on port 22", timeout=120)
                assert wait_until(lambda: "YES" in ssh(dhcp_ns, key, guest, "test -e /sys/block/vdb && echo YES")
                                  .stdout, 60) is not None, "the guest on B never saw vdb"
                out = ssh(dhcp_ns, key, guest, "cat /sys/block/vdb/size")
                assert out.returncode == 0 and int(out.stdout.strip()) * 512 == 1 << 30, out
                # the guest's mdev gives user kumo the new disk a moment after it appears
                assert wait_until(lambda: "rw" in ssh(dhcp_ns, key, guest, "test -w /dev/vdb && echo rw").stdout,
                                  10) is not None, "/dev/vdb never writable for the guest's user"
                marker = unique("kumo-nbd-marker")
                out = ssh(dhcp_ns, key, guest, f"echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync && sync "
                                                "&& dd if=/dev/vdb bs=512 count=1 2>/dev/null")
                assert out.returncode == 0 and marker in out.stdout, out
                c.osc("server", "remove", "volume", on_b["id"], vol["id"])
                assert wait_until(lambda: c.osc("volume", "show", vol["id"], fmt_json=True)["status"]
                                  == "available", 60) is not None, "volume not available after the detach"
                assert wait_until(lambda: not listening() and not pid_file.exists(), 10) is not None, \
                    f"the NBD export of {vol['id']} outlived its detach"
                # what the guest wrote is in A's volume file
                head = work / "nbd-head.raw"
                subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1",
                                f"if={a.state / 'volumes' / ('volume-' + vol['id'] + '.qcow2')}", f"of={head}"],
                               check=True, capture_output=True)
                assert marker.encode() in head.read_bytes(), head.read_bytes()[:80]
                c.osc("volume", "delete", vol["id"])
                print(f"NBD volume from A attached, written and detached on B in {time.monotonic() - t0:.1f} s")

                # live migration B -> C while the guest answers pings from A: its memory (a
                # marker in its tmpfs) arrives with it, its port is bound on C, placement holds
                # it on C only, and B has no copy left
                mig = on[hb][1]
                maddr = addr[mig["id"]]
                out = ssh(dhcp_ns, key, maddr, "echo live-$(cat /proc/sys/kernel/random/boot_id) > /tmp/mark; cat /tmp/mark")
                assert out.returncode == 0, out.stderr
                mark = out.stdout.strip()
                pinger = subprocess.Popen(["ip", "netns", "exec", dhcp_ns, "ping", "-n", "-i", "0.5", "-W", "1", maddr],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                try:
                    time.sleep(2)
                    t0 = time.monotonic()
                    c.osc("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", hc,
                          mig["id"])
                    deadline = t0 + 180
                    while True:
                        got = c.compute("GET", f"/servers/{mig['id']}", version="2.72").json()["server"]
                        if got["status"] != "MIGRATING" and got["OS-EXT-STS:task_state"] is None:
                            break
                        assert time.monotonic() < deadline, f"live migration not over in 180 s: {got['status']}"
                        time.sleep(0.3)
                    took = time.monotonic() - t0
                    time.sleep(3)
                finally:
                    pinger.send_signal(signal.SIGINT)
                    ping_out = pinger.communicate(timeout=15)[0]
                assert got["status"] == "ACTIVE" and got["OS-EXT-SRV-ATTR:host"] == hc, (got, ping_out)
                sent, received = (int(x) for x in
                                  re.search(r"(\d+) packets transmitted, (\d+) received", ping_out).groups())
                print(f"live migration B -> C took {took:.1f} s; pings every 0.5 s: {sent - received} of {sent} lost")
                assert sent - received <= 3, f"{sent - received} pings lost during the live migration:\n{ping_out}"
                out = ssh(dhcp_ns, key, maddr, "cat /tmp/mark")
                assert out.returncode == 0 and out.stdout.strip() == mark, \
                    f"the guest on C is not the one that ran on B (memory not migrated): {out.stdout!r} vs {mark!r}"
                migs = c.compute("GET", f"/os-migrations?instance_uuid={mig['id']}", version="2.23").json()["migrations"]
                assert [(m["migration_type"], m["status"], m["source_compute"], m["dest_compute"]) for m in migs] == \
                    [("live-migration", "completed", hb, hc)], migs
                port = neutron("GET", f"/ports?device_id={mig['id']}").json()["ports"][0]
                assert port["binding:host_id"] == hc and port["status"] == "ACTIVE", port
                assert port["binding:vif_details"]["namespace"] == f"{p}c-kumo-host", port
                assert "migrating_to" not in port["binding:profile"], port
                allocs = c.placement("GET", f"/allocations/{mig['id']}").json()["allocations"]
                rp_c = c.placement("GET", f"/resource_providers?name={hc}").json()["resource_providers"]
                assert list(allocs) == [rp_c[0]["uuid"]], (allocs, rp_c)
                left = [pid for pid in subprocess.run(["ip", "netns", "pids", f"{p}b-kumo-host"], capture_output=True,
                                                      text=True).stdout.split()
                        if mig["id"].encode() in open(f"/proc/{pid}/cmdline", "rb").read()]
                assert not left, f"a QEMU of the migrated guest still runs on B: {left}"
                on[hb].remove(mig)
                on[hc].append(mig)

                # cold migration B -> C: the guest stops, its disk moves, it boots on C from it (the
                # marker its first boot wrote is found) and waits in VERIFY_RESIZE; the revert runs
                # it on B again, from the disk it left there, its port bound on B, reachable
                cm = on[hb][-1]
                caddr = addr[cm["id"]]
                wait_for_console(c, cm["id"], "kumo-mark written", timeout=60)
                t0 = time.monotonic()
                c.osc("--os-compute-api-version", "2.56", "server", "migrate", "--host", hc, cm["id"])
                got = wait_server(c, cm["id"], "VERIFY_RESIZE", timeout=180)
                assert got["OS-EXT-SRV-ATTR:host"] == hc, got
                wait_for_console(c, cm["id"], "kumo-mark found", timeout=180)
                assert wait_until(lambda: pings(dhcp_ns, caddr), 90) is not None, f"{caddr} not reachable on C"
                print(f"cold migration B -> C: booted on C and reachable {time.monotonic() - t0:.1f} s after the request")
                port = neutron("GET", f"/ports?device_id={cm['id']}").json()["ports"][0]
                assert port["binding:host_id"] == hc and port["binding:vif_details"]["namespace"] == f"{p}c-kumo-host", port
                t0 = time.monotonic()
                c.osc("server", "migrate", "revert", cm["id"])
                got = wait_server(c, cm["id"], "ACTIVE", timeout=180)
                assert got["OS-EXT-SRV-ATTR:host"] == hb, got
                port = neutron("GET", f"/ports?device_id={cm['id']}").json()["ports"][0]
                assert port["binding:host_id"] == hb and port["status"] == "ACTIVE", port
                assert port["binding:vif_details"]["namespace"] == f"{p}b-kumo-host", port
                assert wait_until(lambda: pings(dhcp_ns, caddr), 90) is not None, f"{caddr} not reachable on B again"
                print(f"cold migration reverted: reachable on B {time.monotonic() - t0:.1f} s after the request")
                migs = c.compute("GET", f"/os-migrations?instance_uuid={cm['id']}", version="2.23").json()["migrations"]
                assert [(m["migration_type"], m["status"]) for m in migs] == [("migration", "reverted")], migs

                # host C dies (its kumo and its guests, killed by PID): its nova-compute goes down
                # and evacuate brings its guests up on B, wired there, by DHCP from A again
                cc.kill9()
                for pid in subprocess.run(["ip", "netns", "pids", f"{p}c-kumo-host"], capture_output=True,
                                          text=True).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                t0 = time.monotonic()
                while next(x["State"] for x in c.osc("compute", "service", "list", "--service", "nova-compute",
                                                     fmt_json=True) if x["Host"] == hc) != "down":
                    assert time.monotonic() - t0 < 30, f"{hc}'s nova-compute not down 30 s after its kumo died"
                    time.sleep(0.5)
                print(f"host C down after {time.monotonic() - t0:.1f} s")
                for s in on[hc]:
                    c.osc("--os-compute-api-version", "2.29", "server", "evacuate", s["id"])
                for s in on[hc]:
                    wait_server(c, s["id"], "ACTIVE", timeout=120)
                    got = c.compute("GET", f"/servers/{s['id']}", version="2.72").json()["server"]
                    assert got["OS-EXT-SRV-ATTR:host"] == hb, got
                    port = neutron("GET", f"/ports?device_id={s['id']}").json()["ports"][0]
                    assert port["binding:host_id"] == hb and port["status"] == "ACTIVE", port
                    assert port["binding:vif_details"]["namespace"] == f"{p}b-kumo-host", port
                    wait_for_console(c, s["id"], f"eth0 {addr[s['id']]} by DHCP", timeout=180)
                    assert wait_until(lambda: pings(dhcp_ns, addr[s["id"]]), 30) is not None, \
                        f"evacuated guest {addr[s['id']]} does not answer from {dhcp_ns}"
                print(f"C's guests evacuated to B and reachable {time.monotonic() - t0:.1f} s after C died")

                for sid in ids:
                    c.compute("DELETE", f"/servers/{sid}")
                deadline = time.monotonic() + 60
                while any(c.compute("GET", f"/servers/{sid}").status_code != 404 for sid in ids):
                    assert time.monotonic() < deadline, "servers not deleted within 60 s"
                    time.sleep(0.5)
    finally:
        for x in HOSTS:
            remove_namespaces(f"{p}{x}-")
        remove_namespaces(f"{p}ul")
