#!/usr/bin/env python3
"""bench/volume_attach.sh's driver: attach -> disk seen in a real kumo-tiny guest, detach ->
volume available, and sequential write throughput in the guest vs the host, against a kumo
started by volume_attach.sh. Standard library + requests. Prints a table and writes
OUT/summary.json.

usage: volume_run.py BASE PASSWORD KUMO_BIN STATE_DIR KEY OUT RUNS MIB"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

# kumo-tiny's SSH user is not root: its user_data (root, at boot) keeps hot-plugged disks writable.
USER_DATA = base64.b64encode(
    b"#!/bin/sh\n(while :; do chmod 666 /dev/vd[b-z] 2>/dev/null; sleep 0.2; done) </dev/null >/dev/null 2>&1 &\n"
).decode()
MV = {"OpenStack-API-Version": "compute 2.72", "X-OpenStack-Nova-API-Version": "2.72"}
VOL = {"OpenStack-API-Version": "volume 3.44"}


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


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
        self.project = r.json()["token"]["project"]["id"]
        cat = r.json()["token"]["catalog"]
        urls = {s["type"]: e["url"] for s in cat for e in s["endpoints"] if e["interface"] == "public"}
        url = urls.get("block-storage") or urls.get("volumev3")
        if not url:
            sys.exit("no volume service in the catalog")
        self.volume_url = url.rstrip("/")

    def nova(self, method, path, **kw):
        return self.s.request(method, self.base + "/compute/v2.1" + path, headers=MV, timeout=60, **kw)

    def net(self, method, path, **kw):
        return self.s.request(method, self.base + "/network/v2.0" + path, timeout=60, **kw)

    def cinder(self, method, path, **kw):
        return self.s.request(method, self.volume_url + path, headers=VOL, timeout=60, **kw)


def wait(check, timeout, step=0.1):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise SystemExit(f"timed out after {timeout} s")


def volume_status(api, vid):
    return api.cinder("GET", f"/volumes/{vid}").json()["volume"]["status"]


def main():
    base, password, kumo, state, key, out, runs, mib = sys.argv[1:9]
    runs, mib = int(runs), int(mib)
    out = Path(out)
    api = Api(base, password)
    pub = Path(key + ".pub").read_text().strip()
    api.nova("POST", "/os-keypairs", json={"keypair": {"name": "bench-vol", "public_key": pub}}).raise_for_status()
    groups = api.net("GET", f"/security-groups?project_id={api.project}&name=default").json()["security_groups"]
    api.net("POST", "/security-group-rules", json={"security_group_rule": {
        "security_group_id": groups[0]["id"], "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22}})
    img = api.s.get(base + "/image/v2/images?name=kumo-tiny").json()["images"][0]["id"]
    net = api.net("GET", "/networks?name=private").json()["networks"][0]["id"]
    flavors = api.nova("GET", "/flavors").json()["flavors"]
    flavor = next(f["id"] for f in flavors if f["name"] in ("m1.tiny", "m1.nano"))
    r = api.nova("POST", "/servers", json={"server": {"name": "bench-vol", "imageRef": img, "flavorRef": flavor,
                                                      "networks": [{"uuid": net}], "key_name": "bench-vol",
                                                      "user_data": USER_DATA}})
    r.raise_for_status()
    sid = r.json()["server"]["id"]

    def ssh(cmd, timeout=120):
        return subprocess.run([kumo, "--state-dir", state, "ssh", sid, "-i", key, "--", cmd],
                              capture_output=True, text=True, timeout=timeout)

    wait(lambda: api.nova("GET", f"/servers/{sid}").json()["server"]["status"] == "ACTIVE", 240, 0.5)
    wait(lambda: ssh("true", 30).returncode == 0, 180, 1)
    size_gb = max(1, (mib + 64) // 1024 + 1)
    vid = api.cinder("POST", "/volumes", json={"volume": {"size": size_gb, "name": "bench-vol"}}).json()["volume"]["id"]
    wait(lambda: volume_status(api, vid) == "available", 120)

    attach, detach = [], []
    for _ in range(runs):
        # the guest waits for the disk; its loop is running before the request goes
        waiter = subprocess.Popen([kumo, "--state-dir", state, "ssh", sid, "-i", key, "--",
                                   "echo started; while [ ! -e /sys/block/vdb ]; do sleep 0.05; done; echo seen"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert waiter.stdout.readline().strip() == "started"
        t0 = time.monotonic()
        r = api.nova("POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}})
        r.raise_for_status()
        line = waiter.stdout.readline().strip()
        attach.append(time.monotonic() - t0)
        waiter.wait(timeout=30)
        assert line == "seen", line
        wait(lambda: volume_status(api, vid) == "in-use", 30)
        t0 = time.monotonic()
        api.nova("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}").raise_for_status()
        wait(lambda: volume_status(api, vid) == "available", 60, 0.05)
        detach.append(time.monotonic() - t0)

    # throughput: the volume attached once more, written in the guest; the host on the state dir
    api.nova("POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}})
    wait(lambda: volume_status(api, vid) == "in-use", 60)
    wait(lambda: "Y" in ssh("test -w /dev/vdb && echo Y", 30).stdout, 60, 0.5)
    def guest_write(flags):
        r = ssh(f"s=$(cat /proc/uptime); dd if=/dev/zero of=/dev/vdb bs=1M count={mib} {flags} 2>&1 && "
                "e=$(cat /proc/uptime) && echo \"T $s $e\"", 600)
        m = re.search(r"T ([0-9.]+) \S+ ([0-9.]+)", r.stdout)
        return (mib / (float(m.group(2)) - float(m.group(1)))) if m else None, r.stdout.strip()

    # first pass allocates the volume's clusters (qcow2), second overwrites them; O_DIRECT in
    # the guest when its dd has it (no copy through the guest's page cache, which TCG makes
    # slow), else through the cache
    first, dd_out = guest_write("oflag=direct conv=fsync")
    flags = "oflag=direct conv=fsync"
    if first is None:
        flags = "conv=fsync"
        first, dd_out = guest_write(flags)
    second, _ = guest_write(flags)
    guest_mbs = max(first or 0, second or 0)
    scratch = Path(state) / "bench-write.raw"
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={scratch}", "bs=1M", f"count={mib}", "conv=fsync"],
                   capture_output=True, check=True)
    host_mbs = mib / (time.monotonic() - t0)
    scratch.unlink()
    api.nova("DELETE", f"/servers/{sid}")

    summary = {"runs": runs, "attach_s": attach, "detach_s": detach, "attach_p50": pct(attach, 50),
               "attach_p90": pct(attach, 90), "detach_p50": pct(detach, 50), "write_mib": mib,
               "guest_write_mib_s": guest_mbs, "host_write_mib_s": host_mbs,
               "guest_vs_host": guest_mbs / host_mbs, "guest_dd": dd_out, "guest_flags": flags,
               "guest_first_pass_mib_s": first, "guest_second_pass_mib_s": second}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| attach -> /sys/block/vdb in the guest, p50 (p90), {runs} runs | {pct(attach, 50):.2f} s"
          f" ({pct(attach, 90):.2f} s) | < 2 s |")
    print(f"| detach -> volume available, p50 | {pct(detach, 50):.2f} s | |")
    print(f"| sequential write {mib} MiB, guest (TCG) on the volume, dd {flags}: first pass (allocating)"
          f" / second | {first or 0:.0f} / {second or 0:.0f} MiB/s | |")
    print(f"| sequential write {mib} MiB, host on the same file system | {host_mbs:.0f} MiB/s | |")
    print(f"| guest / host: first pass (allocating), second pass | {100 * (first or 0) / host_mbs:.0f} %,"
          f" {100 * (second or 0) / host_mbs:.0f} % | >= 70 % |")


if __name__ == "__main__":
    main()
