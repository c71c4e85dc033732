#!/usr/bin/env python3
"""bench/volume.sh's client: volume and snapshot create/delete latencies (standard library only)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.error
import urllib.request


def call(method: str, url: str, token: str | None = None, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None), r.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None), e.headers


def wait(url: str, token: str, key: str, want: str | None, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        st, body, _ = call("GET", url, token)
        if want is None and st == 404:
            return
        if want is not None and st == 200:
            s = body[key]["status"]
            if s == want:
                return
            if s.startswith("error"):
                raise SystemExit(f"{url}: {s}")
        time.sleep(0.002)
    raise SystemExit(f"{url}: not {want or 'gone'} in {deadline_s} s")


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "p50_ms": round(statistics.median(xs), 2),
            "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 2), "max_ms": round(xs[-1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--size-gib", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": a.password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    st, tok, h = call("POST", a.base + "/identity/v3/auth/tokens", body=auth)
    assert st == 201, st
    token = h["X-Subject-Token"]
    project = tok["token"]["project"]["id"]
    v3 = a.base + "/volume/v3"
    # the default quota (10 volumes) would stop the run
    st, body, _ = call("PUT", f"{v3}/os-quota-sets/{project}", token,
                       {"quota_set": {"volumes": -1, "gigabytes": -1, "snapshots": -1}})
    assert st == 200, (st, body)
    results: dict[str, dict] = {}

    create, delete, ids = [], [], []
    for i in range(a.count):
        t0 = time.monotonic()
        st, body, _ = call("POST", v3 + "/volumes", token, {"volume": {"size": a.size_gib, "name": f"b{i}"}})
        assert st == 202, (st, body)
        vid = body["volume"]["id"]
        wait(f"{v3}/volumes/{vid}", token, "volume", "available")
        create.append((time.monotonic() - t0) * 1000)
        ids.append(vid)
    results["volume create -> available"] = stats(create)

    snap, snap_del = [], []
    for i in range(min(a.count, 10)):
        t0 = time.monotonic()
        st, body, _ = call("POST", v3 + "/snapshots", token, {"snapshot": {"volume_id": ids[0], "name": f"s{i}"}})
        assert st == 202, (st, body)
        sid = body["snapshot"]["id"]
        wait(f"{v3}/snapshots/{sid}", token, "snapshot", "available")
        snap.append((time.monotonic() - t0) * 1000)
        t0 = time.monotonic()
        st, _, _ = call("DELETE", f"{v3}/snapshots/{sid}", token)
        assert st == 202, st
        wait(f"{v3}/snapshots/{sid}", token, "snapshot", None)
        snap_del.append((time.monotonic() - t0) * 1000)
    results["snapshot create -> available"] = stats(snap)
    results["snapshot delete -> 404"] = stats(snap_del)

    for vid in ids:
        t0 = time.monotonic()
        st, _, _ = call("DELETE", f"{v3}/volumes/{vid}", token)
        assert st == 202, st
        wait(f"{v3}/volumes/{vid}", token, "volume", None)
        delete.append((time.monotonic() - t0) * 1000)
    results["volume delete -> 404"] = stats(delete)

    summary = {"size_gib": a.size_gib, "backend": "file (qcow2)", "results": results,
               "target": {"volume create -> available p50_ms": 50}}
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{'step':32} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
    for k, r in results.items():
        print(f"{k:32} {r['n']:>4} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['max_ms']:>8}")


if __name__ == "__main__":
    main()
