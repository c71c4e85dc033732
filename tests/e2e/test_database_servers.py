"""Every service on a database server instead of SQLite (DESIGN §2: `[database] connection` per
service, the same migrations on all three engines): a throwaway PostgreSQL, then MariaDB
(tests/e2e/dbservers.py), one database per service, and kumo on them with the fake compute
driver. Through the real `openstack` CLI: identity (project, user, role), an image upload, a
flavor, a network with a subnet and a port, a volume, a server booted and the volume attached to
it, quotas counted by the database; then `kill -9` and `kumo up`: all of it is still there, and
deletes work. And the scale-out shape on one host: PostgreSQL for the databases and a private
RabbitMQ node as the bus between the compute roles (`[DEFAULT] transport_url`): 12 servers booted
at once over 3 fake hosts all go ACTIVE, survive a `kill -9` + up, and are deleted. kumo only
(needs root to start the servers as their own users)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from cloudlib import start_kumo, unique
from computelib import make_qcow2, wait_server
from dbservers import (mariadb_bin, mariadb_server, postgres_bin, postgres_server, rabbitmq_bin,
                       rabbitmq_server)

pytestmark = [
    pytest.mark.kumo_only("kumo's database settings"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting the database servers as their users needs root"),
]

CONF = "[fake]\nhosts = 1\n[network]\ndataplane = none\n[database]\nconnection = {url}\n"
SERVERS = {"postgresql": (postgres_server, postgres_bin), "mariadb": (mariadb_server, mariadb_bin)}


def wait_volume(c, vid: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (got := c.osc("volume", "show", vid, "-c", "status", "-f", "value").strip()) != status:
        assert time.monotonic() < deadline, f"volume {vid} not {status}: {got}"
        time.sleep(0.2)


@pytest.mark.parametrize("engine", list(SERVERS))
def test_services_on_a_database_server(engine):
    start, installed = SERVERS[engine]
    if installed() is None:
        pytest.fail(f"{engine} is not installed: run_tests.sh installs it (tests/lib/common.sh)")
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    with start() as db:
        print(f"{engine} accepted connections {db.started_s:.1f} s after its start")
        t0 = time.monotonic()
        c = start_kumo(CONF.format(url=db.url))
        print(f"kumo up on {engine} (migrations included): {time.monotonic() - t0:.1f} s")
        try:
            # the state dir holds no SQLite database: everything is on the server
            assert not list((c.state_dir / "db").glob("*.sqlite")) if (c.state_dir / "db").exists() else True

            proj = c.osc("project", "create", unique("p"), fmt_json=True)
            user = c.osc("user", "create", "--password", "pw-123456", "--project", proj["id"], unique("u"),
                         fmt_json=True)
            c.osc("role", "add", "--user", user["id"], "--project", proj["id"], "member")
            assigned = c.osc("role", "assignment", "list", "--user", user["id"], "--names", fmt_json=True)
            assert [a["Role"] for a in assigned] == ["member"], assigned
            # names are case sensitive, as on Keystone's SQLite and PostgreSQL
            c.osc("project", "create", proj["name"].upper())

            img = c.osc("image", "create", "--file", make_qcow2(c.workdir / "tiny.qcow2"), "--disk-format",
                        "qcow2", "--container-format", "bare", "--public", unique("img"), fmt_json=True)
            assert img["status"] == "active", img
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           fmt_json=True)
            net = c.osc("network", "create", unique("n"), fmt_json=True)
            sub = c.osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.77.0.0/24",
                        unique("s"), fmt_json=True)
            port = c.osc("port", "create", "--network", net["id"], unique("port"), fmt_json=True)
            assert port["fixed_ips"][0]["subnet_id"] == sub["id"], port

            vol = c.osc("volume", "create", "--size", "1", unique("v"), fmt_json=True)
            wait_volume(c, vol["id"], "available")
            srv = c.osc("server", "create", "--image", img["id"], "--flavor", flavor["id"], "--nic",
                        f"net-id={net['id']}", unique("vm"), fmt_json=True)
            wait_server(c, srv["id"], "ACTIVE", timeout=60)
            c.osc("server", "add", "volume", srv["id"], vol["id"])
            wait_volume(c, vol["id"], "in-use")
            # quota usage is counted by the database (SUM/COUNT casts on each engine)
            limits = c.compute("GET", "/limits").json()["limits"]["absolute"]
            assert limits["totalInstancesUsed"] == 1 and limits["totalCoresUsed"] == 1, limits
            assert limits["totalRAMUsed"] == 64, limits

            c.kill9_and_up()
            assert c.osc("server", "show", srv["id"], "-c", "status", "-f", "value").strip() == "ACTIVE"
            assert [a["Volume ID"] for a in c.osc("server", "volume", "list", srv["id"], fmt_json=True)] == [
                vol["id"]]
            assert c.osc("port", "show", port["id"], fmt_json=True)["fixed_ips"] == port["fixed_ips"]
            assert c.osc("image", "show", img["id"], fmt_json=True)["checksum"] == img["checksum"]
            assert user["id"] in {u["ID"] for u in c.osc("user", "list", "--project", proj["id"], fmt_json=True)}

            c.osc("server", "remove", "volume", srv["id"], vol["id"])
            wait_volume(c, vol["id"], "available")
            c.osc("server", "delete", "--wait", srv["id"])
            c.osc("volume", "delete", vol["id"])
            c.osc("port", "delete", port["id"])
            c.osc("network", "delete", net["id"])
            c.osc("image", "delete", img["id"])
            assert srv["id"] not in {s["ID"] for s in c.osc("server", "list", fmt_json=True)}
        except BaseException:
            print(c.log_tail(80))
            raise
        finally:
            c.stop()


def test_compute_roles_over_rabbitmq_on_postgresql():
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    with rabbitmq_server() as mq, postgres_server() as db:
        print(f"rabbitmq took connections {mq.started_s:.1f} s after its start")
        c = start_kumo("[fake]\nhosts = 3\n[network]\ndataplane = none\n[compute]\nnetwork_hook = none\n"
                       f"[quota]\ninstances = 50\ncores = 100\n"
                       f"[DEFAULT]\ntransport_url = {mq.url}\n[database]\nconnection = {db.url}\n")
        try:
            assert "compute roles talk over RabbitMQ" in (c.state_dir / "logs" / "kumo.log").read_text()
            img = c.osc("image", "create", "--file", make_qcow2(c.workdir / "tiny.qcow2"), "--disk-format",
                        "qcow2", "--container-format", "bare", "--public", unique("img"), fmt_json=True)
            name = unique("mq")
            t0 = time.monotonic()
            c.osc("server", "create", "--image", img["id"], "--flavor", "m1.nano", "--nic", "none",
                  "--min", "12", "--max", "12", name)
            deadline = time.monotonic() + 120
            while True:
                servers = [s for s in c.osc("server", "list", "--name", name, fmt_json=True)]
                states = sorted(s["Status"] for s in servers)
                if len(servers) == 12 and states == ["ACTIVE"] * 12:
                    break
                assert "ERROR" not in states, states
                assert time.monotonic() < deadline, f"not all ACTIVE: {states}"
                time.sleep(0.5)
            took = time.monotonic() - t0
            print(f"12 fake-driver boots over RabbitMQ + PostgreSQL: {took:.1f} s")
            hosts = {c.osc("server", "show", s["ID"], fmt_json=True)["OS-EXT-SRV-ATTR:host"] for s in servers}
            assert len(hosts) >= 2, hosts  # spread by the weighers over the fake hosts
            c.kill9_and_up()
            assert sorted(s["Status"] for s in c.osc("server", "list", "--name", name, fmt_json=True)) == [
                "ACTIVE"] * 12
            c.osc("server", "delete", "--wait", *[s["ID"] for s in servers], timeout=180)
            assert c.osc("server", "list", "--name", name, fmt_json=True) == []
        except BaseException:
            print(c.log_tail(80))
            raise
        finally:
            c.stop()
