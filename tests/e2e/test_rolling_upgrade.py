"""Rolling upgrade (issue #11): two builds of kumo side by side on one RabbitMQ and one PostgreSQL.
Build N is KUMO_BIN; build N+1 is KUMO_NEXT_BIN (`cargo build --features compute/rpc-next`, built
by run_tests.sh as target/ci/kumo-next): its BuildAndRun is 1.1 with the scheduler's node and its
service version is one more (crates/compute/src/rpc.rs). Process A runs `kumo serve api conductor
scheduler`, B and C `kumo serve compute` (fake driver), all in a network namespace of the test's
own, each process stopped by its PID.

1. A and B at N, C at N+1: servers spread by anti-affinity go ACTIVE on both; C serves 1.0
   messages (the new field absent); the database holds each service's version.
2. A upgraded to N+1 (stopped, started from N+1 on its state dir), B still at N: the conductor
   caps BuildAndRun at 1.0 (the oldest nova-compute is at service version 1) and writes it
   without the field for both hosts; B at N builds (it would refuse 1.1).
3. B upgraded: its record says version 2, the conductor's cap rises to 1.1 and both hosts get
   BuildAndRun 1.1 with their node. The servers of the earlier phases are still ACTIVE, every
   service is up, and no log has an ERROR."""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import pytest

from cloudlib import Cloud, free_port, unique
from computelib import make_qcow2, wait_server
from dbservers import DbServer, postgres_bin, postgres_server, rabbitmq_bin, rabbitmq_server
from netlib import control_namespace
from scalelib import Proc, cloud_of, split_processes

pytestmark = [
    pytest.mark.kumo_only("kumo serve ROLE... from two builds"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting the database server as its user needs root"),
]


def conf(mq_url: str, db_url: str, password: str, extra: str = "", default: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq_url}\nreport_interval = 1\nservice_down_time = 6\n{default}"
            f"[database]\nconnection = {db_url}\n[service_user]\npassword = {password}\n{extra}"
            "[identity]\npassword_hash_rounds = 4\n[network]\ndataplane = none\n[compute]\nnetwork_hook = none\n"
            "[demo]\nguest_image = none\nnetwork = false\n")


def next_bin() -> str:
    """Build N+1. run_tests.sh always sets KUMO_NEXT_BIN (a failed build leaves no file there, and
    this test then fails); a local run without it skips, saying how to build it."""
    path = os.environ.get("KUMO_NEXT_BIN")
    if not path:
        pytest.skip("KUMO_NEXT_BIN is not set: cargo build --profile ci --workspace --bins "
                    "--features compute/rpc-next, then copy target/ci/kumo to target/ci/kumo-next")
    assert os.access(path, os.X_OK), f"KUMO_NEXT_BIN={path} is not an executable (did its build fail?)"
    return path


def service_versions(db: DbServer) -> dict[tuple[str, str], int]:
    """(host, binary) -> services.version, read on the database server with its own client (the
    API has no version: Nova's os-services shows none)."""
    out = subprocess.run([*db.admin, "-d", "kumo_compute", "-At", "-F", "\t", "-c",
                          'SELECT host, "binary", version FROM services'],
                         check=True, capture_output=True, text=True).stdout
    return {(h, b): int(v) for h, b, v in (line.split("\t") for line in out.splitlines() if line.strip())}


def host_of(c: Cloud, sid: str) -> str:
    return c.compute("GET", f"/servers/{sid}", version="2.72").json()["server"]["OS-EXT-SRV-ATTR:host"]


def boot_pair(c: Cloud, img: str, flavor: str, hosts: set[str]) -> dict[str, str]:
    """Two servers in a new anti-affinity group, ACTIVE: {server id: host}, one on each host."""
    group = c.osc("server", "group", "create", "--policy", "anti-affinity", unique("g"), fmt_json=True)
    name = unique("up")
    c.osc("server", "create", "--image", img, "--flavor", flavor, "--nic", "none", "--hint",
          f"group={group['id']}", "--min", "2", "--max", "2", name)
    ids = [s["ID"] for s in c.osc("server", "list", "--name", name, fmt_json=True)]
    assert len(ids) == 2, ids
    for sid in ids:
        wait_server(c, sid, "ACTIVE", timeout=60)
    on = {sid: host_of(c, sid) for sid in ids}
    assert set(on.values()) == hosts, on
    return on


def test_rolling_upgrade_between_two_builds():
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    nxt = next_bin()
    t_start = time.monotonic()
    ns = f"kt{secrets.token_hex(3)}upg"
    with control_namespace(ns), split_processes("kumo-e2e-upgrade-", no_errors=True) as (work, procs):
        with rabbitmq_server() as mq, postgres_server() as db:
            password = secrets.token_hex(12)
            port = free_port()
            a = Proc("api", work, conf(mq.url, db.url, password), ["api", "conductor", "scheduler"],
                     listen=f"127.0.0.1:{port}")
            procs.append(a)
            a.wait_log("kumo is serving")
            c = cloud_of(a, port, work)
            auth = f"[service_user]\nauth_url = http://127.0.0.1:{port}/identity\n"
            hb, hc = unique("hostb"), unique("hostc")
            b = Proc(hb, work, conf(mq.url, db.url, password, auth, f"host = {hb}\n"), ["compute"])
            cc = Proc(hc, work, conf(mq.url, db.url, password, auth, f"host = {hc}\n"), ["compute"], bin=nxt)
            procs += [b, cc]
            b.wait_log("kumo is serving")
            cc.wait_log("kumo is serving")
            print(f"A and B at N, C at N+1: serving {time.monotonic() - t_start:.1f} s after the start")

            v = service_versions(db)
            control = {binary: ver for (host, binary), ver in v.items() if host not in (hb, hc)}
            assert control == {"nova-conductor": 1, "nova-scheduler": 1}, v
            assert (v[(hb, "nova-compute")], v[(hc, "nova-compute")]) == (1, 2), v

            img = c.osc("image", "create", "--file", make_qcow2(work / "tiny.qcow2"), "--disk-format", "qcow2",
                        "--container-format", "bare", "--public", unique("img"), fmt_json=True)["id"]
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           fmt_json=True)["id"]

            # 1. the conductor at N sends 1.0; C at N+1 serves it, the new field absent
            first = boot_pair(c, img, flavor, {hb, hc})
            for sid, host in first.items():
                p = b if host == hb else cc
                tail = ": no node (a 1.0 sender)" if p is cc else ""
                p.wait_log(f"serving build_and_run_instance 1.0 on {host} for instance {sid}{tail}", 10)
            assert "build_and_run_instance 1.1" not in b.log_text() + cc.log_text()

            # 2. the control plane first: A from N+1, B still at N -> the cap is 1.0 for everyone
            since_a = a.restart_with(nxt)
            a.wait_log("kumo is serving", since=since_a)
            v = service_versions(db)
            assert {ver for (host, _), ver in v.items() if host not in (hb, hc)} == {2}, v
            second = boot_pair(c, img, flavor, {hb, hc})
            a.wait_log("compute RPC version cap 1.0 (oldest nova-compute at service version 1", 10, since=since_a)
            for sid, host in second.items():
                a.wait_log(f"sending build_and_run_instance 1.0 to compute.{host} (this code speaks 1.1, "
                           "the version cap is 1.0)", 10, since=since_a)
                p = b if host == hb else cc
                tail = ": no node (a 1.0 sender)" if p is cc else ""
                p.wait_log(f"serving build_and_run_instance 1.0 on {host} for instance {sid}{tail}", 10)
            assert "build_and_run_instance 1.1" not in b.log_text() + cc.log_text()

            # 3. B from N+1 on its state dir: every compute at version 2, the cap rises to 1.1
            since_b = b.restart_with(nxt)
            b.wait_log("kumo is serving", since=since_b)
            assert service_versions(db)[(hb, "nova-compute")] == 2
            time.sleep(1.5)  # the conductor reads the versions again after report_interval (1 s)
            t_up = time.monotonic()
            third = boot_pair(c, img, flavor, {hb, hc})
            a.wait_log("compute RPC version cap 1.1 (oldest nova-compute at service version 2", 10, since=since_a)
            print(f"B upgraded; the next boots ACTIVE {time.monotonic() - t_up:.1f} s later")
            for sid, host in third.items():
                p = b if host == hb else cc
                p.wait_log(f"serving build_and_run_instance 1.1 on {host} for instance {sid}: node {host}", 10)

            # the servers of every phase are still there and ACTIVE; every service is up
            everything = {**first, **second, **third}
            for sid, host in everything.items():
                assert wait_server(c, sid, "ACTIVE", timeout=5)["OS-EXT-SRV-ATTR:host"] == host
            assert b.guests() == {sid for sid, h in everything.items() if h == hb}
            assert cc.guests() == {sid for sid, h in everything.items() if h == hc}
            states = {(s["Host"], s["Binary"]): s["State"] for s in c.osc("compute", "service", "list", fmt_json=True)}
            assert set(states.values()) == {"up"} and len(states) == 4, states
            c.osc("server", "delete", "--wait", *everything, timeout=120)
            print(f"rolling upgrade test: {time.monotonic() - t_start:.1f} s")
            # stopped before the broker and the database go, so their logs stay free of errors
            for p in procs:
                p.stop()
