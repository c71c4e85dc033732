#!/usr/bin/env python3
"""bench/network.sh's driver: port create latency, server create -> DHCP lease on the guest's
console (real kumo-tiny guests), against a kumo started by network.sh. Standard library +
requests. Prints a table and writes OUT/summary.json."""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

import requests

MV = {"OpenStack-API-Version": "compute 2.72", "X-OpenStack-Nova-API-Version": "2.72"}


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


class Api:
    def __init__(self, base, password):
        self.s = requests.Session()
        r = self.s.post(base + "/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}, timeout=30)
        r.raise_for_status()
        self.s.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]
        self.base = base

    def net(self, method, path, **kw):
        return self.s.request(method, self.base + "/network/v2.0" + path, timeout=60, **kw)

    def nova(self, method, path, **kw):
        return self.s.request(method, self.base + "/compute/v2.1" + path, headers=MV, timeout=60, **kw)


def port_create(api: Api, n: int):
    net = api.net("POST", "/networks", json={"network": {"name": "bench-ports"}}).json()["network"]
    api.net("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                 "cidr": "10.99.0.0/20"}}).raise_for_status()
    times, ids = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = api.net("POST", "/ports", json={"port": {"network_id": net["id"]}})
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        ids.append(r.json()["port"]["id"])
    for i in ids:
        api.net("DELETE", f"/ports/{i}")
    api.net("DELETE", f"/networks/{net['id']}")
    return times


def dhcp_runs(api: Api, image_id: str, flavor: str, net_id: str, runs: int, timeout: float):
    """create -> ACTIVE and create -> 'eth0 <port ip> by DHCP' on the console, one guest at a time."""
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        r = api.nova("POST", "/servers", json={"server": {
            "name": f"bench-dhcp-{i}", "imageRef": image_id, "flavorRef": flavor,
            "networks": [{"uuid": net_id}]}})
        r.raise_for_status()
        sid = r.json()["server"]["id"]
        active = dhcp = None
        ip = None
        try:
            while time.perf_counter() - t0 < timeout:
                if active is None:
                    s = api.nova("GET", f"/servers/{sid}").json()["server"]
                    if s["status"] == "ACTIVE":
                        active = time.perf_counter() - t0
                        ip = next(a["addr"] for addrs in s["addresses"].values() for a in addrs)
                    elif s["status"] == "ERROR":
                        raise RuntimeError(f"server {sid} ERROR: {s.get('fault')}")
                else:
                    text = api.nova("POST", f"/servers/{sid}/action",
                                    json={"os-getConsoleOutput": {}}).json().get("output", "")
                    if re.search(rf"kumo-tiny: eth0 {re.escape(ip)} by DHCP", text):
                        dhcp = time.perf_counter() - t0
                        break
                time.sleep(0.05 if active is None else 0.1)
        finally:
            api.nova("DELETE", f"/servers/{sid}")
            deadline = time.time() + 60
            while api.nova("GET", f"/servers/{sid}").status_code != 404 and time.time() < deadline:
                time.sleep(0.2)
        if dhcp is None:
            raise RuntimeError(f"run {i}: no DHCP line on the console within {timeout} s")
        out.append({"active_s": active, "dhcp_s": dhcp})
        print(f"  run {i}: ACTIVE {active:.2f} s, DHCP lease {dhcp:.2f} s", file=sys.stderr)
    return out


def main():
    base, password, image_id, net_id, out_dir = sys.argv[1:6]
    runs = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    api = Api(base, password)
    flavor = "bench-net"
    if api.nova("GET", f"/flavors/{flavor}").status_code != 200:
        api.nova("POST", "/flavors", json={"flavor": {"name": flavor, "id": flavor, "ram": 192,
                                                       "vcpus": 1, "disk": 1}}).raise_for_status()
    load0 = loadavg()
    ports = port_create(api, 200)
    print(f"  port create: p50 {pct(ports, 50):.2f} ms (200 sequential)", file=sys.stderr)
    guests = dhcp_runs(api, image_id, flavor, net_id, runs, 120)
    dh = [g["dhcp_s"] for g in guests]
    ac = [g["active_s"] for g in guests]
    summary = {
        "port_create_ms": {"p50": pct(ports, 50), "p90": pct(ports, 90), "n": len(ports)},
        "create_to_active_s": {"p50": pct(ac, 50), "p90": pct(ac, 90), "n": len(ac)},
        "create_to_dhcp_s": {"p50": pct(dh, 50), "p90": pct(dh, 90), "n": len(dh)},
        "loadavg_start": load0, "loadavg_end": loadavg(),
    }
    Path(out_dir, "summary.json").write_text(json.dumps(summary, indent=2))
    rows = [
        ("port create (API, client side)", f"{pct(ports, 50):.2f} ms", f"{pct(ports, 90):.2f} ms", "< 10 ms",
         pct(ports, 50) < 10),
        ("server create -> ACTIVE (with port, vif-plugged)", f"{pct(ac, 50):.2f} s", f"{pct(ac, 90):.2f} s",
         "-", True),
        ("server create -> guest has its IP by DHCP", f"{pct(dh, 50):.2f} s", f"{pct(dh, 90):.2f} s", "< 8 s",
         pct(dh, 50) < 8),
    ]
    lines = ["| figure | p50 | p90 | target | |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} | {'PASS' if ok else 'FAIL'} |" for a, b, c, d, ok in rows]
    lines.append(f"\nload average {load0} -> {summary['loadavg_end']}; {len(dh)} guests, one at a time; "
                 "no Neutron peer in ../shared/peer: kumo's figures alone")
    table = "\n".join(lines)
    Path(out_dir, "table.txt").write_text(table + "\n")
    print(table)
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
