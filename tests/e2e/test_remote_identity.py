"""A second API host without identity (issue #11, DESIGN §2 "remote (`GET /v3/auth/tokens`, cached
until expiry or revocation)"): process A = `kumo serve api conductor scheduler compute` (identity,
the fake driver), process D = `kumo serve api volume dashboard` with `[keystone_authtoken] auth_url` = A's identity,
both on one private RabbitMQ and one throwaway PostgreSQL (tests/e2e/dbservers.py). Through the
real `openstack` CLI with clouds.yaml's `*_endpoint_override` at D and identity at A: D serves
compute, network, image and volume with A's tokens (a server booted through D is ACTIVE and listed
by both); D has no identity (`/identity/v3`, `/v3` 404); D serves the dashboard, A (without the volume and
dashboard roles) answers 404 on `/dashboard` and `/volume`; a missing or garbage token is 401 as on A;
20 requests with one token cost A one validation (A's request log); a revoked token and a token
whose role was removed are refused by D within 2 s (identity's change fanned out on the bus); with
A stopped (SIGSTOP), D still serves a cached token and answers 503 for a new one within its
`http_request_timeout`. Every process is stopped by its PID, also on failure. kumo only."""

from __future__ import annotations

import os
import re
import secrets
import signal
import statistics
import subprocess
import time
import urllib.parse

import pytest
import requests
import yaml

from cloudlib import Cloud, free_port, unique
from computelib import make_qcow2, wait_server
from dbservers import postgres_bin, postgres_server, rabbitmq_bin, rabbitmq_server
from scalelib import Proc, Stub, cloud_of, split_processes

pytestmark = [
    pytest.mark.kumo_only("kumo serve api with [keystone_authtoken]"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting the database server as its user needs root"),
]

TIMEOUT = 2  # D's [keystone_authtoken] http_request_timeout


def conf(mq_url: str, db_url: str, password: str, extra: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq_url}\nreport_interval = 1\n"
            f"[database]\nconnection = {db_url}\n[service_user]\npassword = {password}\n{extra}"
            "[identity]\npassword_hash_rounds = 4\n[network]\ndataplane = none\n[compute]\nnetwork_hook = none\n"
            "[demo]\nguest_image = none\nnetwork = false\n")


def validations(a: Proc) -> int:
    """GET /identity/v3/auth/tokens requests in A's log (its request log line per request)."""
    return len(re.findall(r"method=GET path=/identity/v3/auth/tokens status=", a.log_text()))


def settled_validations(a: Proc) -> int:
    """The count once A's log has caught up (it is written asynchronously)."""
    last, t0 = validations(a), time.monotonic()
    while time.monotonic() - t0 < 0.5:
        time.sleep(0.1)
        now = validations(a)
        if now != last:
            last, t0 = now, time.monotonic()
    return last


def databases_of(db, pid: int) -> set[str]:
    """The databases process `pid` has sessions on: its TCP connections to the server (ss), matched
    by client port with the server's pg_stat_activity."""
    port = urllib.parse.urlsplit(db.url.replace("$service", "x")).port
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                         check=True, capture_output=True, text=True).stdout
    ports = [line.split()[2].rsplit(":", 1)[1] for line in out.splitlines() if f"pid={pid}," in line]
    if not ports:
        return set()
    rows = subprocess.run([*db.admin, "-At", "-c", "SELECT DISTINCT datname FROM pg_stat_activity WHERE client_port IN "
                           f"({','.join(ports)})"], check=True, capture_output=True, text=True).stdout
    return {line.strip() for line in rows.splitlines() if line.strip()}


def flavors(base: str, token: str | None, timeout: float = 10) -> requests.Response:
    h = {"Accept": "application/json"}
    if token is not None:
        h["X-Auth-Token"] = token
    return requests.get(f"{base}/compute/v2.1/flavors", headers=h, timeout=timeout)


def refused_within(base: str, token: str, limit: float) -> float:
    """Seconds until D answers 401 for `token` (asserts it does within `limit`)."""
    t0 = time.monotonic()
    while (r := flavors(base, token)).status_code != 401:
        assert r.status_code == 200, r.text[:300]
        assert time.monotonic() - t0 < limit, f"{base} still accepts the token after {limit} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def p50_ms(base: str, token: str, n: int = 50) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert flavors(base, token).status_code == 200
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def test_second_api_host_validates_tokens_at_the_first():
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    t_start = time.monotonic()
    with split_processes("kumo-e2e-remote-auth-") as (work, procs):
        with rabbitmq_server() as mq, postgres_server() as db:
            password = secrets.token_hex(12)
            pa, pd = free_port(), free_port()
            a_url, d_url = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pd}"
            remote = f"[keystone_authtoken]\nauth_url = {a_url}/identity\nhttp_request_timeout = {TIMEOUT}\n"

            # identity must run where every role runs: `kumo serve all` with the option refuses
            allin = Proc("refuse-all", work, conf(mq.url, db.url, password, remote), ["all"])
            procs.append(allin)
            assert allin.proc.wait(30) != 0
            assert "[keystone_authtoken] auth_url" in allin.log.read_text(), allin.log.read_text()

            a = Proc("api", work, conf(mq.url, db.url, password), ["api", "conductor", "scheduler", "compute"],
                     listen=f"127.0.0.1:{pa}")
            procs.append(a)
            a.wait_log("kumo is serving")
            # D runs volume and the dashboard too (the api role alone serves neither any more)
            d = Proc("second", work, conf(mq.url, db.url, password, remote), ["api", "volume", "dashboard"],
                     listen=f"127.0.0.1:{pd}")
            procs.append(d)
            d.wait_log("kumo is serving")
            print(f"A and D serving {time.monotonic() - t_start:.1f} s after the start")
            # D's sessions on the database server: the other services' databases, not identity's
            on_a, on_d = databases_of(db, a.pid), databases_of(db, d.pid)
            assert "kumo_identity" in on_a and "kumo_compute" in on_d, (on_a, on_d)
            assert "kumo_identity" not in on_d, on_d

            # the CLI: identity at A, every other service at D
            c = cloud_of(a, pa, work)
            clouds = yaml.safe_load((a.state / "clouds.yaml").read_text())
            at_d = dict(clouds["clouds"]["kumo-admin"])
            at_d.update({
                "compute_endpoint_override": f"{d_url}/compute/v2.1",
                "network_endpoint_override": f"{d_url}/network",
                "image_endpoint_override": f"{d_url}/image",
                "block_storage_endpoint_override": f"{d_url}/volume/v3",
                "volume_endpoint_override": f"{d_url}/volume/v3",
            })
            clouds["clouds"]["kumo-d"] = at_d
            (work / "clouds.yaml").write_text(yaml.safe_dump(clouds))
            c = Cloud(target="kumo", workdir=work, state_dir=a.state, clouds_yaml=work / "clouds.yaml",
                      _driver=Stub())
            c.load_clouds_yaml()
            c.admin_password = (a.state / "admin-password").read_text().strip()

            # D has no identity of its own
            for path in ("/identity/v3", "/v3", "/identity/v3/auth/tokens"):
                assert requests.get(d_url + path, timeout=10).status_code == 404, path
            assert requests.get(a_url + "/identity/v3", timeout=10).status_code == 200
            # the dashboard is D's (logging in at A), A runs neither dashboard nor volume
            r = requests.get(d_url + "/dashboard/login", timeout=10)
            assert r.status_code == 200 and 'name="csrf_token"' in r.text, r.text[:300]
            assert requests.get(a_url + "/dashboard/login", timeout=10).status_code == 404
            assert requests.get(a_url + "/volume/v3", timeout=10).status_code == 404

            # D serves compute, network, image and volume with A's tokens
            t0 = time.monotonic()
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           cloud="kumo-d", fmt_json=True)["id"]
            net = c.osc("network", "create", unique("net"), cloud="kumo-d", fmt_json=True)["id"]
            c.osc("subnet", "create", "--network", net, "--subnet-range", "10.77.0.0/24", unique("sub"),
                  cloud="kumo-d")
            img = c.osc("image", "create", "--file", make_qcow2(work / "tiny.qcow2"), "--disk-format", "qcow2",
                        "--container-format", "bare", "--public", unique("img"), fmt_json=True)["id"]
            assert img in {i["ID"] for i in c.osc("image", "list", cloud="kumo-d", fmt_json=True)}
            name = unique("srv")
            sid = c.osc("server", "create", "--image", img, "--flavor", flavor, "--nic", f"net-id={net}",
                        name, cloud="kumo-d", fmt_json=True)["id"]
            wait_server(c, sid, "ACTIVE", timeout=60)
            for cloud in ("kumo-admin", "kumo-d"):
                listed = {s["ID"]: s["Status"] for s in c.osc("server", "list", cloud=cloud, fmt_json=True)}
                assert listed.get(sid) == "ACTIVE", (cloud, listed)
            vol = c.osc("volume", "create", "--size", "1", unique("vol"), cloud="kumo-d", fmt_json=True)["id"]
            deadline = time.monotonic() + 30
            while (st := c.osc("volume", "show", vol, cloud="kumo-d", fmt_json=True)["status"]) != "available":
                assert st in ("creating",) and time.monotonic() < deadline, st
                time.sleep(0.3)
            print(f"through D: flavor, network, image list, server ACTIVE, volume in {time.monotonic() - t0:.1f} s")

            # no token, a garbage token: 401 from D as from A (the same body)
            assert flavors(d_url, None).status_code == 401
            garbage = "gAAAAAB" + secrets.token_urlsafe(120)
            ra, rd = flavors(a_url, garbage), flavors(d_url, garbage)
            assert (ra.status_code, rd.status_code) == (401, 401), (ra.text, rd.text)
            assert ra.json() == rd.json(), (ra.json(), rd.json())

            # 20 requests with one new token: one validation at A; the latency with it cached
            tok = c.login("admin", c.admin_password, project="admin")
            before = settled_validations(a)
            t1 = time.perf_counter()
            assert flavors(d_url, tok).status_code == 200
            first_ms = (time.perf_counter() - t1) * 1000
            for _ in range(19):
                assert flavors(d_url, tok).status_code == 200
            assert settled_validations(a) - before == 1, "D asked A more than once for one token"
            cached_ms, local_ms = p50_ms(d_url, tok), p50_ms(a_url, tok)
            print(f"GET /compute/v2.1/flavors: D first (validated at A) {first_ms:.1f} ms, D cached p50 "
                  f"{cached_ms:.1f} ms, A (in-process) p50 {local_ms:.1f} ms")
            assert settled_validations(a) - before == 1

            # revoked at A: D refuses the cached token within 2 s
            assert flavors(d_url, tok).status_code == 200
            r = c.http("DELETE", "/auth/tokens", token=c.admin_token, headers={"X-Subject-Token": tok})
            assert r.status_code == 204, r.text
            print(f"revoked token refused by D after {refused_within(d_url, tok, 2.0):.2f} s")

            # a role removed at A: D refuses that user's cached token within 2 s
            uname, upw = unique("u"), secrets.token_hex(8)
            project = c.osc("project", "create", unique("p"), fmt_json=True)["id"]
            c.osc("user", "create", "--password", upw, uname)
            c.osc("role", "add", "--user", uname, "--project", project, "member")
            utok = c.login(uname, upw, project_id=project)
            assert flavors(d_url, utok).status_code == 200
            c.osc("role", "remove", "--user", uname, "--project", project, "member")
            print(f"token of a user whose role was removed refused by D after "
                  f"{refused_within(d_url, utok, 2.0):.2f} s")

            # A stopped: D serves what it cached, and a new token is 503 in bounded time
            cached = c.login("admin", c.admin_password, project="admin")
            fresh = c.login("admin", c.admin_password, project="admin")
            assert flavors(d_url, cached).status_code == 200
            os.kill(a.pid, signal.SIGSTOP)
            try:
                t1 = time.monotonic()
                assert flavors(d_url, cached).status_code == 200
                assert time.monotonic() - t1 < 1
                t1 = time.monotonic()
                r = flavors(d_url, fresh, timeout=TIMEOUT + 10)
                took = time.monotonic() - t1
                assert r.status_code == 503, r.text
                assert "identity service could not validate the token" in r.text, r.text
                assert took < TIMEOUT + 2, took
                print(f"A stopped: cached token served, a new one 503 after {took:.1f} s")
            finally:
                os.kill(a.pid, signal.SIGCONT)
            assert flavors(d_url, fresh).status_code == 200

            c.osc("server", "delete", "--wait", sid, cloud="kumo-d", timeout=60)
            c.osc("volume", "delete", vol, cloud="kumo-d")
            print(f"remote identity test: {time.monotonic() - t_start:.1f} s")
            # stopped before the broker and the database go
            for p in procs:
                p.stop()
