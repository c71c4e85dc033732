"""The volume, metadata and dashboard roles in processes of their own (issue #11), the way OpenStack
splits cinder-api+cinder-volume, nova-api-metadata and horizon from the API node. Five `kumo serve`
on one private RabbitMQ and one throwaway PostgreSQL (tests/e2e/dbservers.py), each with its own
state dir and listener:

- `api conductor scheduler compute network-agent`: identity, the fake driver, the network agent
  with the Linux data plane; its metadata listeners proxy to the metadata process
  (`[metadata] nova_metadata_host`/`_port`, `[neutron] metadata_proxy_shared_secret`);
- `volume`: Cinder's API and file backend, tokens validated at the api process, its endpoints
  registered in the catalog by itself;
- `metadata`: Nova's metadata API on `[metadata] listen`;
- `dashboard`: the web UI, logging in at the api process's identity.

Checked: each split process refuses a missing option with a message naming it; `openstack catalog
show volumev3` is the volume process's URL, also after the api process restarted; `openstack
volume create/list/show/delete` reach the volume process (its request log), the api process
answers 404 on `/volume` and `/dashboard`; an attached volume extended in the volume process
reaches the server's driver (`volume-extended` over compute's public API); the dashboard process logs in and shows the volume
(its volumes page calls the volume process through the catalog); a stand-in guest (a namespace of
the test on the server's port, as tests/e2e/test_metadata.py) reads its meta_data.json through
the proxy, and posts its password once (409 after); straight at the metadata process a signed request gets the answer, a forged or missing
signature 403, an unknown instance 404; with the metadata process stopped the proxy answers 502
(the only ERROR line in the logs); a volume from an image (the volume process calls image as
`cinder`); each process stops on SIGTERM.
Every process is stopped by its PID, every namespace removed, also on failure. kumo only, root."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time

import pytest
import requests

from cloudlib import free_port, remove_namespaces, unique
from computelib import make_qcow2, wait_server
from dbservers import postgres_bin, postgres_server, rabbitmq_bin, rabbitmq_server
from netlib import NetApi
from scalelib import Proc, cloud_of, log_errors, split_processes
from test_metadata import dhcp_with_routes, fetch
from test_network_dataplane import StandIn

pytestmark = [
    pytest.mark.kumo_only("kumo serve volume|metadata|dashboard"),
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and the database server need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq", "busybox")),
                       reason="ip, nft, dnsmasq and busybox are needed"),
]


def conf(mq_url: str, db_url: str, password: str, extra: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq_url}\nreport_interval = 1\n"
            f"[database]\nconnection = {db_url}\n[service_user]\npassword = {password}\n{extra}"
            "[identity]\npassword_hash_rounds = 4\n"
            "[demo]\nguest_image = none\nnetwork = false\n")


def sign(secret: str, instance_id: str) -> str:
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def refused(work, procs, name: str, text: str, roles: list[str], needle: str, listen: str | None = None):
    """A process of `roles` with config `text` exits at once, saying `needle`."""
    p = Proc(name, work, text, roles, listen=listen)
    procs.append(p)
    assert p.proc.wait(30) != 0, p.log_text()
    assert needle in p.log_text(), p.log_text()


def requests_to(p: Proc, path_part: str, since: int = 0) -> int:
    return len(re.findall(rf"path=\S*{re.escape(path_part)}\S* status=", p.log_text(since)))


def wait_volume(c, vol: str, status: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (st := c.osc("volume", "show", vol, fmt_json=True)["status"]) != status:
        assert time.monotonic() < deadline, f"volume {vol} {st}, not {status}, after {timeout} s"
        time.sleep(0.3)


def extend_events(c, sid: str) -> list[dict]:
    """The compute_extend_volume events of the server's extend_volume action."""
    for a in c.osc("server", "event", "list", sid, fmt_json=True):
        if a["Action"] == "extend_volume":
            ev = c.osc("server", "event", "show", sid, a["Request ID"], fmt_json=True)["events"]
            return [e for e in ev if e["event"] == "compute_extend_volume"]
    return []


def test_volume_metadata_and_dashboard_in_processes_of_their_own():
    if rabbitmq_bin() is None or postgres_bin() is None:
        pytest.fail("rabbitmq-server and postgresql are needed: run_tests.sh installs them (tests/lib/common.sh)")
    t_start = time.monotonic()
    prefix = f"kt{secrets.token_hex(3)}-"
    guest = None
    try:
        with rabbitmq_server() as mq, postgres_server() as db, \
                split_processes("kumo-e2e-split-roles-", no_errors=False) as (work, procs):
            password, secret = secrets.token_hex(12), secrets.token_hex(16)
            pa, pv, pm, pd = free_port(), free_port(), free_port(), free_port()
            a_url, v_url, m_url, d_url = (f"http://127.0.0.1:{p}" for p in (pa, pv, pm, pd))
            remote = f"[keystone_authtoken]\nauth_url = {a_url}/identity\n"
            shared = f"[neutron]\nmetadata_proxy_shared_secret = {secret}\n"

            # each split role names what it misses
            refused(work, procs, "refuse-md", conf(mq.url, db.url, password), ["metadata"],
                    "[neutron] metadata_proxy_shared_secret")
            refused(work, procs, "refuse-vol", conf(mq.url, db.url, password), ["volume"],
                    "[keystone_authtoken] auth_url")
            refused(work, procs, "refuse-dash", conf(mq.url, db.url, password), ["dashboard"],
                    "[keystone_authtoken] auth_url")
            # on every address, the volume process needs the URL clients reach it at for the catalog
            refused(work, procs, "refuse-vol-any", conf(mq.url, db.url, password, remote), ["volume"],
                    "[volume] public_endpoint", listen="0.0.0.0:0")
            refused(work, procs, "refuse-proxy", conf(mq.url, db.url, password),
                    ["api", "network-agent"], "[metadata] nova_metadata_host")

            api_extra = (f"[network]\ndataplane = linux\nnamespace_prefix = {prefix}\n"
                         f"[metadata]\nnova_metadata_host = 127.0.0.1\nnova_metadata_port = {pm}\n{shared}")
            a = Proc("api", work, conf(mq.url, db.url, password, api_extra),
                     ["api", "conductor", "scheduler", "compute", "network-agent"], listen=f"127.0.0.1:{pa}")
            procs.append(a)
            a.wait_log("kumo is serving")
            v = Proc("volume", work, conf(mq.url, db.url, password, remote), ["volume"], listen=f"127.0.0.1:{pv}")
            m = Proc("metadata", work, conf(mq.url, db.url, password, f"[metadata]\nlisten = 127.0.0.1:{pm}\n{shared}"),
                     ["metadata"])
            d = Proc("dashboard", work, conf(mq.url, db.url, password, remote), ["dashboard"],
                     listen=f"127.0.0.1:{pd}")
            procs += [v, m, d]
            for p in (v, m, d):
                p.wait_log("kumo is serving")
            print(f"four processes serving {time.monotonic() - t_start:.1f} s after the start")
            c = cloud_of(a, pa, work)

            # the catalog's volume endpoints are the volume process's
            want = f"{v_url}/volume/v3"
            for kind in ("volumev3", "block-storage"):
                eps = c.osc("catalog", "show", kind, fmt_json=True)["endpoints"]
                assert {(e["interface"], e["url"]) for e in eps} == {
                    (i, want) for i in ("public", "internal", "admin")}, (kind, eps)
            for path in ("/volume/v3", "/dashboard/login"):
                assert requests.get(a_url + path, timeout=10).status_code == 404, path

            # volumes through the catalog reach the volume process
            before, a_since = requests_to(v, "/volume/v3"), a.log.stat().st_size
            name = unique("vol")
            vol = c.osc("volume", "create", "--size", "1", name, fmt_json=True)["id"]
            wait_volume(c, vol, "available")
            assert vol in {x["ID"] for x in c.osc("volume", "list", fmt_json=True)}
            assert requests_to(v, "/volume/v3") - before >= 3, v.log_text()[-2000:]
            assert requests_to(a, "/volume/", a_since) == 0
            # a volume from an image: the volume process downloads it as `cinder` (image's
            # endpoint from that user's catalog)
            img = c.osc("image", "create", "--file", make_qcow2(work / "tiny.qcow2"), "--disk-format", "qcow2",
                        "--container-format", "bare", unique("img"), fmt_json=True)["id"]
            from_image = c.osc("volume", "create", "--size", "1", "--image", img, unique("from-img"),
                               fmt_json=True)["id"]
            wait_volume(c, from_image, "available")
            assert c.osc("volume", "show", from_image, fmt_json=True)["volume_image_metadata"]["image_id"] == img
            c.osc("volume", "delete", from_image)

            # the dashboard process: a login, then a logged-in page that lists the volume
            s = requests.Session()
            r = s.get(f"{d_url}/dashboard/login", timeout=10)
            assert r.status_code == 200, r.text[:300]
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
            r = s.post(f"{d_url}/dashboard/login", timeout=30, data={
                "csrf_token": csrf, "domain": "Default", "username": "admin", "password": c.admin_password})
            assert r.status_code == 200 and r.url.endswith("/dashboard/project/overview"), (r.url, r.text[:500])
            # the admin's volume is in project admin
            r = s.get(f"{d_url}/dashboard/project/volumes", timeout=30)
            assert r.status_code == 200 and name in r.text, r.text[:500]

            # the api process restarted: its bootstrap leaves volume's endpoints where they are
            since = a.log.stat().st_size
            a.stop()
            a.start()
            a.wait_log("kumo is serving", since=since)
            assert "volumev3" not in a.log_text(since), a.log_text(since)
            eps = c.osc("catalog", "show", "volumev3", fmt_json=True)["endpoints"]
            assert {e["url"] for e in eps} == {want}, eps
            c.osc("volume", "delete", vol)
            deadline = time.monotonic() + 30
            while vol in {x["ID"] for x in c.osc("volume", "list", fmt_json=True)}:
                assert time.monotonic() < deadline, "volume not deleted within 30 s"
                time.sleep(0.3)

            # metadata: a server's port on the fake driver is wired; a stand-in guest on it asks
            # 169.254.169.254, the api process's listener proxies to the metadata process
            net = c.osc("network", "create", unique("md"), fmt_json=True)
            c.osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.31.0.0/24", unique("md-sub"))
            flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", unique("f"),
                           fmt_json=True)["id"]
            image = c.osc("image", "create", "--disk-format", "raw", "--container-format", "bare", unique("img"),
                          fmt_json=True)["id"]
            srv = c.osc("server", "create", "--image", image, "--flavor", flavor, "--network", net["id"],
                        "--property", "role=split", unique("md-srv"), fmt_json=True)
            server = wait_server(c, srv["id"], "ACTIVE", timeout=60)
            port = NetApi(c, c.admin_token)("GET", f"/ports?device_id={server['id']}").json()["ports"][0]
            guest = StandIn(f"{prefix}kumo-host", "brq" + net["id"][:11], port["mac_address"])
            ip = dhcp_with_routes(guest)
            assert ip == port["fixed_ips"][0]["ip_address"], (ip, port["fixed_ips"])
            before = requests_to(m, "/openstack/latest/meta_data.json")
            t0 = time.monotonic()
            (status, body), = fetch(guest.ns, ["/openstack/latest/meta_data.json"])
            took = time.monotonic() - t0
            assert status == 200, body
            md = json.loads(body)
            assert md["uuid"] == server["id"] and md["meta"] == {"role": "split"}, md
            assert md["project_id"] == server["tenant_id"], md
            assert requests_to(m, "/openstack/latest/meta_data.json") - before == 1, m.log_text()[-2000:]
            (status, body), = fetch(guest.ns, ["/latest/meta-data/local-ipv4"])
            assert (status, body) == (200, ip)
            # the password a guest posts goes through the proxy to the metadata process, once
            secret_pw = "split-" + secrets.token_hex(8)
            assert fetch(guest.ns, ["/openstack/latest/password"], method="POST", body="x" * 300)[0][0] == 400
            assert fetch(guest.ns, ["/openstack/latest/password"], method="POST", body=secret_pw)[0][0] == 200
            assert fetch(guest.ns, ["/openstack/latest/password"]) == [(200, secret_pw)]
            assert fetch(guest.ns, ["/openstack/latest/password"], method="POST", body="again")[0][0] == 409
            print(f"meta_data.json through the proxy in {took:.2f} s (a python in the guest namespace included)")
            t0 = time.monotonic()
            got = fetch(guest.ns, ["/openstack/latest/meta_data.json"] * 200)
            took = time.monotonic() - t0
            assert all(status == 200 for status, _ in got), {st for st, _ in got}
            print(f"200 sequential GETs of meta_data.json through the proxy (a new connection each): "
                  f"{took:.2f} s, {took / 200 * 1000:.1f} ms each on average (a python start included)")

            # an attached volume grown in the volume process: it tells compute over HTTP
            # (`volume-extended`, as Cinder's user), and the server's driver grows the disk
            vol = c.osc("volume", "create", "--size", "1", unique("ext"), fmt_json=True)["id"]
            wait_volume(c, vol, "available")
            c.osc("server", "add", "volume", server["id"], vol)
            wait_volume(c, vol, "in-use")
            c.osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vol)
            deadline = time.monotonic() + 30
            while not (ev := extend_events(c, server["id"])) or ev[0].get("result") is None:
                assert time.monotonic() < deadline, f"no finished compute_extend_volume event: {ev}"
                time.sleep(0.3)
            assert ev[0]["result"] == "Success", ev
            assert "volume-extended sent to compute" in v.log_text(), v.log_text()[-2000:]
            assert requests_to(a, "/compute/v2.1/os-server-external-events") >= 1
            c.osc("server", "remove", "volume", server["id"], vol)
            wait_volume(c, vol, "available")
            c.osc("volume", "delete", vol)

            # straight at the metadata process: only a request signed with the secret is answered
            def ask(instance: str, signature: str | None, tenant: str = server["tenant_id"]):
                h = {"X-Instance-ID": instance, "X-Tenant-ID": tenant, "X-Forwarded-For": ip}
                if signature is not None:
                    h["X-Instance-ID-Signature"] = signature
                return requests.get(f"{m_url}/openstack/latest/meta_data.json", headers=h, timeout=10)
            r = ask(server["id"], sign(secret, server["id"]))
            assert r.status_code == 200 and r.json()["uuid"] == server["id"], r.text
            assert ask(server["id"], sign("forged", server["id"])).status_code == 403
            assert ask(server["id"], None).status_code == 403
            assert ask(server["id"], sign(secret, server["id"]), tenant="someone-else").status_code == 404
            nobody = "00000000-0000-4000-8000-000000000000"
            assert ask(nobody, sign(secret, nobody)).status_code == 404
            assert "Invalid proxy request signature" in ask(server["id"], "00").text

            # the metadata process gone: the proxy says so
            m.stop()
            (status, body), = fetch(guest.ns, ["/openstack/latest/meta_data.json"])
            assert status == 502 and "unreachable" in body, (status, body)

            c.osc("server", "delete", "--wait", server["id"], timeout=60)
            for p in procs:
                p.stop()
            # each stopped on SIGTERM, its pid file gone; the only ERROR is the proxy's 502 above
            for p in (a, v, m, d):
                assert p.proc.returncode == 0 and "kumo stopped" in p.log_text(), (p.name, p.proc.returncode)
                assert not (p.state / "kumo.pid").exists(), p.name
            errors = log_errors([a, v, m, d])
            assert list(errors) == ["api"] and all("metadata proxy" in e for e in errors["api"]), errors
            print(f"split roles test: {time.monotonic() - t_start:.1f} s")
    finally:
        if guest is not None:
            guest.remove()
        remove_namespaces(prefix)
