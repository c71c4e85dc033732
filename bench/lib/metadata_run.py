#!/usr/bin/env python3
"""bench/metadata.sh's driver: the metadata service as a guest sees it, timed from inside a
stand-in guest namespace, against a kumo started by metadata.sh (fake compute driver, data
plane on). Standard library + requests.

  metadata_run.py run BASE PASSWORD PREFIX STANDIN_NS VETH KUMO_PID OUT N DRIVE_JSON
      server + stand-in + DHCP, then the timed requests; writes OUT/summary.json, OUT/table.txt
  metadata_run.py client N UUID HOSTNAME     (inside the stand-in namespace: prints JSON)
  metadata_run.py report OUT                 re-prints the table of OUT/summary.json

The stand-in follows tests/e2e/test_metadata.py: a namespace with a veth whose other end sits on
the network's bridge in kumo's host namespace (a tap has no carrier without QEMU), the port's
MAC, busybox udhcpc applying the option 121 routes as a cloud image does."""

from __future__ import annotations

import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MD_HOST = "169.254.169.254"
META_DATA = "/openstack/latest/meta_data.json"
HOSTNAME = "/latest/meta-data/hostname"
MV = {"OpenStack-API-Version": "compute 2.72", "X-OpenStack-Nova-API-Version": "2.72"}
TARGET_MD_MS = 2.0
TARGET_DRIVE_MS = 100.0
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx4mC0v0xkE7kfx4TFCN9Hg2cOvq0sB8X0c5Jv1kQ0R bench@kumo\n"


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sh(*argv, check=True) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def user_data_4k() -> bytes:
    text = "#cloud-config\npackages: [nginx]\nruncmd:\n"
    n = 0
    while len(text) < 4096:
        text += f"  - echo 'line {n} of the bench user_data' >> /var/log/ud\n"
        n += 1
    return text[:4096].encode()


# ------------------------------------------------------------------ inside the stand-in
def timed_gets(path: str, n: int, keep_alive: bool, expect: str) -> dict:
    """n sequential GETs of path (after 20 untimed ones); ms each, client side."""
    conn = http.client.HTTPConnection(MD_HOST, 80, timeout=10) if keep_alive else None
    times, bad, reconnects, first, size = [], 0, 0, "", 0
    for i in range(n + 20):
        c = conn or http.client.HTTPConnection(MD_HOST, 80, timeout=10)
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t0) * 1000
        if not keep_alive:
            c.close()
        elif r.will_close:
            reconnects += 1  # the server closed: the next request would open a new connection
        if i == 0:
            first, size = body.decode(errors="replace")[:200], len(body)
        if i >= 20:
            times.append(dt)
            if r.status != 200 or expect not in body.decode(errors="replace"):
                bad += 1
    if conn:
        conn.close()
    return {"ms": [round(t, 4) for t in times], "bad": bad, "server_closed": reconnects, "first": first,
            "bytes": size}


def client(n: int, uuid: str, hostname: str) -> None:
    out = {}
    for key, path, expect in (("meta_data", META_DATA, uuid), ("hostname", HOSTNAME, hostname)):
        out[f"{key}_keepalive"] = timed_gets(path, n, True, expect)
        out[f"{key}_newconn"] = timed_gets(path, n, False, expect)
    print(json.dumps(out))


# ------------------------------------------------------------------ setup, from the host
class Api:
    def __init__(self, base, password):
        import requests
        self.s = requests.Session()
        r = self.s.post(base + "/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}, timeout=30)
        r.raise_for_status()
        self.s.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]
        self.base = base

    def call(self, method, service, path, ok=(200, 201, 202, 204), **kw):
        r = self.s.request(method, f"{self.base}/{service}{path}", timeout=60, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} /{service}{path}: {r.status_code} {r.text[:500]}")
        return r


def make_server(api: Api) -> dict:
    """A network + subnet, a key pair, an image, a flavor and a server with user_data on it."""
    net = api.call("POST", "network/v2.0", "/networks", json={"network": {"name": "bench-md"}}).json()["network"]
    api.call("POST", "network/v2.0", "/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.77.0.0/24", "name": "bench-md-sub",
        "dns_nameservers": ["10.77.0.53"]}})
    api.call("POST", "compute/v2.1", "/os-keypairs", headers=MV,
             json={"keypair": {"name": "bench-md-key", "public_key": PUBLIC_KEY}})
    api.call("POST", "compute/v2.1", "/flavors", headers=MV, json={"flavor": {
        "name": "bench-md", "id": "bench-md", "ram": 64, "vcpus": 1, "disk": 1}})
    img = api.call("POST", "image/v2", "/images", json={
        "name": "bench-md", "disk_format": "raw", "container_format": "bare"}).json()["id"]
    api.call("PUT", "image/v2", f"/images/{img}/file", data=b"\0" * 65536,
             headers={"Content-Type": "application/octet-stream"})
    ud = user_data_4k()
    t0 = time.perf_counter()
    sid = api.call("POST", "compute/v2.1", "/servers", headers=MV, json={"server": {
        "name": "bench-md-server", "imageRef": img, "flavorRef": "bench-md",
        "key_name": "bench-md-key", "user_data": base64.b64encode(ud).decode(),
        "metadata": {"role": "web"}, "networks": [{"uuid": net["id"]}]}}).json()["server"]["id"]
    deadline = time.monotonic() + 120
    while True:
        s = api.call("GET", "compute/v2.1", f"/servers/{sid}", headers=MV).json()["server"]
        if s["status"] == "ACTIVE":
            break
        if s["status"] == "ERROR" or time.monotonic() > deadline:
            raise RuntimeError(f"server {sid} is {s['status']}: {s.get('fault')}")
        time.sleep(0.05)
    active_s = time.perf_counter() - t0
    while True:
        port = api.call("GET", "network/v2.0", f"/ports?device_id={sid}").json()["ports"][0]
        if port["status"] == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port['id']} still {port['status']}")
        time.sleep(0.05)
    v23 = {"OpenStack-API-Version": "compute 2.3", "X-OpenStack-Nova-API-Version": "2.3"}
    hostname = api.call("GET", "compute/v2.1", f"/servers/{sid}", headers=v23).json()[
        "server"]["OS-EXT-SRV-ATTR:hostname"]
    return {"server": sid, "network": net["id"], "mac": port["mac_address"],
            "ip": port["fixed_ips"][0]["ip_address"], "hostname": hostname,
            "create_to_active_s": active_s, "user_data_bytes": len(ud)}


def plug_stand_in(host_ns: str, bridge: str, ns: str, veth: str, mac: str) -> None:
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", host_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "-n", host_ns, "link", "set", veth, "master", bridge, "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def dhcp_with_routes(ns: str) -> str:
    """busybox udhcpc in the stand-in, applying option 121 routes like a cloud image does."""
    fd, script = tempfile.mkstemp(prefix=f"{ns}-", suffix=".sh")
    with os.fdopen(fd, "w") as f:
        f.write('#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr add "$ip/$mask" dev "$interface"\n'
                'set -- $staticroutes\nwhile [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev '
                '"$interface"; shift 2; done\nexit 0\n')
    os.chmod(script, 0o755)
    try:
        sh("ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
           "-T", "1", "-O", "staticroutes", "-s", script)
    finally:
        os.unlink(script)
    addrs = json.loads(sh("ip", "-n", ns, "-j", "-4", "addr", "show", "eth0"))
    return addrs[0]["addr_info"][0]["local"] if addrs and addrs[0]["addr_info"] else ""


def stats(xs) -> dict:
    return {"p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99), "max": max(xs),
            "mean": statistics.fmean(xs), "n": len(xs)}


def run(base, password, prefix, ns, veth, kumo_pid, out_dir, n, drive_json) -> int:
    out = Path(out_dir)
    load_start = loadavg()
    api = Api(base, password)
    srv = make_server(api)
    print(f"  server {srv['server']} ACTIVE in {srv['create_to_active_s']:.2f} s, port {srv['mac']} "
          f"{srv['ip']}", file=sys.stderr)
    host_ns = f"{prefix}kumo-host"
    plug_stand_in(host_ns, "brq" + srv["network"][:11], ns, veth, srv["mac"])
    try:
        ip = dhcp_with_routes(ns)
        if ip != srv["ip"]:
            raise RuntimeError(f"the stand-in got {ip!r} by DHCP, the port holds {srv['ip']}")
        route = " ".join(sh("ip", "-n", ns, "route", "get", MD_HOST).split())
        if " via " not in route:
            raise RuntimeError(f"no DHCP (option 121) route to {MD_HOST}: {route}")
        print(f"  stand-in {ns}: {ip} by DHCP, {route}", file=sys.stderr)
        rss_before = rss_kib(kumo_pid)
        load_measure = loadavg()
        t0 = time.monotonic()
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                            "client", str(n), srv["server"], srv["hostname"]],
                           capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"client in {ns} failed: {r.stderr[-2000:]}")
        rss_after = rss_kib(kumo_pid)
    finally:
        sh("ip", "-n", host_ns, "link", "del", veth, check=False)
        sh("ip", "netns", "del", ns, check=False)
    raw = json.loads(r.stdout)
    (out / "latencies.json").write_text(json.dumps(raw))
    drive = json.loads(Path(drive_json).read_text()) if drive_json and Path(drive_json).is_file() else {}
    summary = {
        "requests_per_series": n,
        "client": "Python http.client inside the stand-in namespace (its own overhead included)",
        "server": srv,
        "route": route,
        "series": {k: {**stats(v["ms"]), "bad": v["bad"], "server_closed": v["server_closed"],
                       "answer_bytes": v["bytes"]}
                   for k, v in raw.items()},
        "series_seconds": took,
        "hostname_answer": raw["hostname_keepalive"]["first"],
        "kumo_rss_kib": {"before": rss_before, "after": rss_after},
        "config_drive": drive,
        "peer": "none: no Nova/Neutron metadata peer in ../shared/peer",
        "loadavg_start": load_start, "loadavg_measure": load_measure, "loadavg_end": loadavg(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return report(out_dir)


def report(out_dir) -> int:
    out = Path(out_dir)
    s = json.loads((out / "summary.json").read_text())
    rows = []
    for key, label in (("meta_data_keepalive", f"GET {META_DATA}, one keep-alive connection"),
                       ("meta_data_newconn", f"GET {META_DATA}, a new connection each"),
                       ("hostname_keepalive", f"GET {HOSTNAME}, one keep-alive connection"),
                       ("hostname_newconn", f"GET {HOSTNAME}, a new connection each")):
        x = s["series"][key]
        target = f"p50 < {TARGET_MD_MS:g} ms" if key.startswith("meta_data") else "-"
        ok = (x["p50"] < TARGET_MD_MS or not key.startswith("meta_data")) and x["bad"] == 0
        note = f" ({x['answer_bytes']} B answer)"
        note += f" ({x['bad']} bad answers)" if x["bad"] else ""
        if key.endswith("keepalive") and x["server_closed"]:
            note += f" (server closed {x['server_closed']} times)"
        rows.append((label + note, x["n"], f"{x['p50']:.3f}", f"{x['p90']:.3f}", f"{x['p99']:.3f}",
                     target, ok))
    for fmt, d in sorted(s["config_drive"].items()):
        rows.append((f"config drive built, {fmt} ({d['files']} files, {d['image_bytes'] // 1024} KiB; "
                     f"rendering {d['render_p50_ms']:.2f} ms of it)", d["runs"], f"{d['p50_ms']:.1f}",
                     f"{d['p90_ms']:.1f}", f"max {d['max_ms']:.1f}", f"p50 < {TARGET_DRIVE_MS:g} ms",
                     d["p50_ms"] < TARGET_DRIVE_MS))
    lines = ["| figure | n | p50 ms | p90 ms | p99 ms | target | |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} | {f} | {'PASS' if ok else 'FAIL'} |"
              for a, b, c, d, e, f, ok in rows]
    rss = s["kumo_rss_kib"]
    total = sum(x["n"] for x in s["series"].values())
    lines.append(f"\nkumo RSS {rss['before'] / 1024:.1f} MiB before, {rss['after'] / 1024:.1f} MiB after "
                 f"{total} metadata requests (+{(rss['after'] - rss['before']) / 1024:.1f} MiB, "
                 f"{s['series_seconds']:.1f} s); hostname answers `{s['hostname_answer']}`")
    if not s["config_drive"]:
        lines.append("config drive: not measured (no figures from config_drive_bench)")
    lines.append(f"load average {s['loadavg_start']} at start, {s['loadavg_measure']} before the requests, "
                 f"{s['loadavg_end']} at the end; client: {s['client']}; route: {s['route']}")
    lines.append("no Nova/Neutron metadata peer in ../shared/peer: kumo's figures alone")
    table = "\n".join(lines)
    (out / "table.txt").write_text(table + "\n")
    print(table)
    return 0 if all(r[-1] for r in rows) and s["config_drive"] else 1


def main(argv) -> int:
    if len(argv) >= 4 and argv[0] == "client":
        client(int(argv[1]), argv[2], argv[3])
        return 0
    if len(argv) == 2 and argv[0] == "report":
        return report(argv[1])
    if len(argv) == 10 and argv[0] == "run":
        base, password, prefix, ns, veth, pid, out, n, drive = argv[1:]
        return run(base, password, prefix, ns, veth, int(pid), out, int(n), drive)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
