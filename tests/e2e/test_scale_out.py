"""Scale-out on one machine (DESIGN §2, issue #11): the same binary as separate processes, one per
role set, sharing a private RabbitMQ node (`[DEFAULT] transport_url`) and a throwaway PostgreSQL
(`[database] connection`) from tests/e2e/dbservers.py. Process A runs `kumo serve api conductor
scheduler` (no compute agent); B and C run `kumo serve compute`, each a fake-driver host named by
its `[DEFAULT] host`, reporting to placement through A's public API as `[service_user]`. Through
the real `openstack` CLI: both hosts' services are up and both are hypervisors; servers land on
both; `kill -9` of C makes its nova-compute down after service_down_time and new boots go to B;
C's servers are evacuated to B (a host that is up refuses with 409); when C starts again it
removes the guests evacuated away and completes their migrations. Every process is stopped by
its PID, also on failure. kumo only (needs root to start the database server as its user)."""

from __future__ import annotations

import os
import secrets
import time

import pytest

from cloudlib import Cloud, free_port, unique
from computelib import make_qcow2, wait_server
from dbservers import postgres_bin, postgres_server, rabbitmq_bin, rabbitmq_server
from netlib import control_namespace, enter_namespace
from scalelib import CONTROLLER_ROLES, metadata_conf, Proc, cloud_of, split_processes

pytestmark = [
    pytest.mark.kumo_only("kumo serve ROLE..."),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting the database server as its user needs root"),
]

DOWN_TIME = 6  # [DEFAULT] service_down_time of every process (report_interval 1)


def conf(mq_url: str, db_url: str, password: str, extra: str = "", default: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq_url}\nreport_interval = 1\nservice_down_time = {DOWN_TIME}\n{default}"
            f"[database]\nconnection = {db_url}\n[service_user]\npassword = {password}\n{extra}"
            "[identity]\npassword_hash_rounds = 4\n[network]\ndataplane = none\n[compute]\nnetwork_hook = none\n"
            "[demo]\nguest_image = none\nnetwork = false\n")


def services(c: Cloud) -> dict[str, dict]:
    return {s["Host"]: s for s in c.osc("compute", "service", "list", "--service", "nova-compute", fmt_json=True)}


def wait_state(c: Cloud, host: str, state: str, timeout: float) -> float:
    t0 = time.monotonic()
    while (got := services(c).get(host, {}).get("State")) != state:
        assert time.monotonic() - t0 < timeout, f"{host}'s nova-compute not {state} within {timeout} s: {got}"
        time.sleep(0.5)
    return time.monotonic() - t0


def host_of(c: Cloud, sid: str) -> str:
    return c.compute("GET", f"/servers/{sid}", version="2.72").json()["server"]["OS-EXT-SRV-ATTR:host"]


def test_roles_in_separate_processes():
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    t_start = time.monotonic()
    with split_processes("kumo-e2e-scale-") as (work, procs):
        with rabbitmq_server() as mq, postgres_server() as db:
            password = secrets.token_hex(12)
            # a split process refuses what other hosts could not share, saying what to set
            sqlite = Proc("refuse-sqlite", work, conf(mq.url, "sqlite://$state_dir/db/$service.sqlite", password),
                          ["compute"])
            procs.append(sqlite)
            assert sqlite.proc.wait(30) != 0
            assert "[database] connection" in sqlite.log.read_text(), sqlite.log.read_text()
            nobus = Proc("refuse-bus", work, conf("", db.url, password), ["compute"])
            procs.append(nobus)
            assert nobus.proc.wait(30) != 0
            assert "[DEFAULT] transport_url" in nobus.log.read_text(), nobus.log.read_text()

            port = free_port()
            a = Proc("api", work, conf(mq.url, db.url, password), ["api", "conductor", "scheduler"],
                     listen=f"127.0.0.1:{port}")
            procs.append(a)
            a.wait_log("kumo is serving")
            c = cloud_of(a, port, work)
            auth = f"[service_user]\nauth_url = http://127.0.0.1:{port}/identity\n"
            hb, hc = unique("hostb"), unique("hostc")
            b = Proc(hb, work, conf(mq.url, db.url, password, auth, f"host = {hb}\n"), ["compute"])
            cc = Proc(hc, work, conf(mq.url, db.url, password, auth, f"host = {hc}\n"), ["compute"])
            procs += [b, cc]
            b.wait_log("kumo is serving")
            cc.wait_log("kumo is serving")
            print(f"three processes serving {time.monotonic() - t_start:.1f} s after the start")

            # both hosts are up, with no compute agent in A
            svcs = services(c)
            assert {hb, hc} <= set(svcs), svcs
            assert svcs[hb]["State"] == svcs[hc]["State"] == "up", svcs
            all_svcs = c.osc("compute", "service", "list", fmt_json=True)
            assert {s["Binary"] for s in all_svcs if s["Host"] not in (hb, hc)} == {"nova-conductor",
                                                                                    "nova-scheduler"}, all_svcs
            hyps = {h["Hypervisor Hostname"]: h for h in c.osc("hypervisor", "list", fmt_json=True)}
            assert {hb, hc} <= set(hyps), hyps
            # each host's resource provider, reported over the public placement API
            rps = {r["name"] for r in c.placement("GET", "/resource_providers").json()["resource_providers"]}
            assert {hb, hc} <= rps, rps

            img = c.osc("image", "create", "--file", make_qcow2(work / "tiny.qcow2"), "--disk-format", "qcow2",
                        "--container-format", "bare", "--public", unique("img"), fmt_json=True)
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           fmt_json=True)
            group = c.osc("server", "group", "create", "--policy", "soft-anti-affinity", unique("g"), fmt_json=True)
            name = unique("spread")
            c.osc("server", "create", "--image", img["id"], "--flavor", flavor["id"], "--nic", "none", "--hint",
                  f"group={group['id']}", "--min", "4", "--max", "4", name)
            servers = [s["ID"] for s in c.osc("server", "list", "--name", name, fmt_json=True)]
            assert len(servers) == 4
            for sid in servers:
                wait_server(c, sid, "ACTIVE", timeout=60)
            on = {sid: host_of(c, sid) for sid in servers}
            assert set(on.values()) == {hb, hc}, on
            on_c = [sid for sid, h in on.items() if h == hc]
            assert cc.guests() == set(on_c), (cc.guests(), on_c)

            # kill -9 C: its service goes down once service_down_time passes without a heartbeat
            cc.kill9()
            took = wait_state(c, hc, "down", DOWN_TIME + 8)
            print(f"{hc} down {took:.1f} s after kill -9 (service_down_time {DOWN_TIME})")
            assert services(c)[hb]["State"] == "up"
            late = unique("late")
            c.osc("server", "create", "--image", img["id"], "--flavor", flavor["id"], "--nic", "none",
                  "--min", "2", "--max", "2", late)
            late_ids = [s["ID"] for s in c.osc("server", "list", "--name", late, fmt_json=True)]
            for sid in late_ids:
                wait_server(c, sid, "ACTIVE", timeout=60)
                assert host_of(c, sid) == hb

            # forced_down across processes: B forced down is down at once, and back up
            b_id = services(c)[hb]["ID"]
            r = c.compute("PUT", f"/os-services/{b_id}", version="2.53", json={"forced_down": True})
            assert r.status_code == 200 and r.json()["service"]["state"] == "down", r.text
            r = c.compute("PUT", f"/os-services/{b_id}", version="2.53", json={"forced_down": False})
            assert r.status_code == 200 and r.json()["service"]["state"] == "up", r.text

            # evacuate: refused while the source host's service is up, and for a bad body
            on_b = [sid for sid, h in on.items() if h == hb]
            r = c.compute("POST", f"/servers/{on_b[0]}/action", version="2.29", json={"evacuate": {}})
            assert r.status_code == 409 and "still in use" in r.text, r.text
            r = c.compute("POST", f"/servers/{on_c[0]}/action", version="2.29",
                          json={"evacuate": {"onSharedStorage": False}})
            assert r.status_code == 400, r.text
            r = c.compute("POST", f"/servers/{on_c[0]}/action", version="2.29",
                          json={"evacuate": {"host": hc}})
            assert r.status_code == 400, r.text
            # C's servers rebuilt on B by the real CLI, their allocations moved there
            t0 = time.monotonic()
            for sid in on_c:
                # (no --wait: this osc waits for 'ACTIVE' against a lowercased status, forever)
                c.osc("--os-compute-api-version", "2.29", "server", "evacuate", sid)
            for sid in on_c:
                wait_server(c, sid, "ACTIVE", timeout=30)
                assert host_of(c, sid) == hb
            print(f"{len(on_c)} servers evacuated from {hc} to {hb} in {time.monotonic() - t0:.1f} s")
            rp_b = {r["name"]: r["uuid"] for r in
                    c.placement("GET", "/resource_providers").json()["resource_providers"]}[hb]
            for sid in on_c:
                allocs = c.placement("GET", f"/allocations/{sid}").json()["allocations"]
                assert list(allocs) == [rp_b], allocs
                actions = c.osc("server", "event", "list", sid, fmt_json=True)
                assert "evacuate" in {a["Action"] for a in actions}, actions
            migs = c.compute("GET", "/os-migrations", version="2.59").json()["migrations"]
            evac = {m["instance_uuid"]: m for m in migs if m["migration_type"] == "evacuation"}
            assert set(evac) == set(on_c), migs
            assert {(m["source_compute"], m["dest_compute"], m["status"]) for m in evac.values()} == {
                (hc, hb, "done")}, evac

            # C starts again: it is up, its evacuated guests are gone, the migrations completed
            assert cc.guests() == set(on_c)
            cc.start()
            cc.wait_log("kumo is serving")
            wait_state(c, hc, "up", 15)
            assert cc.guests() == set(), cc.guests()
            migs = c.compute("GET", "/os-migrations", version="2.59").json()["migrations"]
            assert {m["status"] for m in migs if m["instance_uuid"] in on_c} == {"completed"}, migs
            c.osc("server", "delete", "--wait", *servers, *late_ids, timeout=120)


def test_broker_restart_during_concurrent_boots():
    """RabbitMQ restarted while 50 servers build (requests sent by 10 clients, each build held
    1.5 s in the fake driver so that many are in flight): every server ends ACTIVE, or ERROR
    with a fault, none is left building; a boot asked for after the broker is back is ACTIVE
    within 10 s."""
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.monotonic()
    ns = f"kt{secrets.token_hex(3)}ctl"
    # the broker, PostgreSQL, kumo and the clients on the loopback of a namespace of their own
    with control_namespace(ns), split_processes("kumo-e2e-broker-") as (work, procs):
        with rabbitmq_server() as mq, postgres_server() as db:
            password = secrets.token_hex(12)
            port = free_port()
            fake = "[fake]\nspawn_delay_ms = 1500\n[quota]\ninstances = -1\ncores = -1\nram = -1\n"
            a = Proc("api", work, conf(mq.url, db.url, password, fake + metadata_conf()),
                     CONTROLLER_ROLES, listen=f"127.0.0.1:{port}")
            procs.append(a)
            a.wait_log("kumo is serving")
            c = cloud_of(a, port, work)
            auth = f"[service_user]\nauth_url = http://127.0.0.1:{port}/identity\n"
            for h in (unique("hostb"), unique("hostc")):
                procs.append(Proc(h, work, conf(mq.url, db.url, password, auth + fake, f"host = {h}\n"),
                                  ["compute"]))
            for p in procs[1:]:
                p.wait_log("kumo is serving")
            img = c.osc("image", "create", "--file", make_qcow2(work / "tiny.qcow2"), "--disk-format", "qcow2",
                        "--container-format", "bare", "--public", unique("img"), fmt_json=True)
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           fmt_json=True)
            token = c.admin_token

            def create(i: int) -> str:
                body = {"server": {"name": f"burst-{i}", "imageRef": img["id"], "flavorRef": flavor["id"],
                                   "networks": "none"}}
                r = c.compute("POST", "/servers", token=token, version="2.37", json=body)
                assert r.status_code == 202, r.text
                return r.json()["server"]["id"]

            with ThreadPoolExecutor(10, initializer=enter_namespace, initargs=(ns,)) as pool:
                first = list(pool.map(create, range(25)))
                # the broker goes away with builds in flight and requests still coming
                later = pool.submit(lambda: list(pool.map(create, range(25, 50))))
                back = mq.restart(2.0)
                ids = first + later.result()
            print(f"broker back {back - t_start:.1f} s after the start; 50 requests accepted")

            # every build ends, none stuck
            deadline = time.monotonic() + 120
            states: dict[str, dict] = {}
            while time.monotonic() < deadline:
                states = {s["id"]: s for s in c.compute("GET", "/servers/detail", token=token, version="2.37",
                                                          params={"all_tenants": 1}).json()["servers"]
                          if s["id"] in ids}
                if len(states) == 50 and all(s["status"] in ("ACTIVE", "ERROR") and
                                             s.get("OS-EXT-STS:task_state") is None for s in states.values()):
                    break
                time.sleep(0.5)
            stuck = {sid: (s["status"], s.get("OS-EXT-STS:task_state")) for sid, s in states.items()
                     if s["status"] not in ("ACTIVE", "ERROR") or s.get("OS-EXT-STS:task_state") is not None}
            assert len(states) == 50 and not stuck, f"builds left unfinished 120 s after the restart: {stuck}"
            errors = [s for s in states.values() if s["status"] == "ERROR"]
            for s in errors:
                assert s.get("fault", {}).get("message"), f"server {s['id']} in ERROR without a fault: {s}"
            settled = time.monotonic() - back
            print(f"50 builds: {50 - len(errors)} ACTIVE, {len(errors)} ERROR, all settled {settled:.1f} s "
                  f"after the broker was back; faults: {sorted({s['fault']['message'] for s in errors})}")

            # recovery: a new boot goes through
            probe = create(99)
            wait_server(c, probe, "ACTIVE", timeout=10)
            print(f"a new boot ACTIVE {time.monotonic() - back:.1f} s after the broker was back")
