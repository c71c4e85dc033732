"""bench/dashboard.sh's measuring half: N servers, a browser-like login, R timed GETs of the
instances page, and the login page's first-paint weight. Standard library only."""

from __future__ import annotations

import argparse
import gzip
import http.cookiejar
import json
import re
import statistics
import time
import urllib.parse
import urllib.request


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def api(base: str, method: str, path: str, token: str | None = None, body: dict | None = None,
        headers: dict | None = None, data: bytes | None = None):
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["X-Auth-Token"] = token
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=payload, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
        return r.status, r.headers, (json.loads(raw) if raw and "json" in r.headers.get(
            "Content-Type", "") else raw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--servers", type=int, default=200)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base = a.base

    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": a.password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    _, h, _ = api(base, "POST", "/identity/v3/auth/tokens", body=auth)
    token = h["X-Subject-Token"]
    _, _, img = api(base, "POST", "/image/v2/images", token, {
        "name": "bench-tiny", "disk_format": "qcow2", "container_format": "bare", "visibility": "public"})
    with open(a.image, "rb") as f:
        api(base, "PUT", f"/image/v2/images/{img['id']}/file", token, data=f.read(),
            headers={"Content-Type": "application/octet-stream"})
    _, _, fl = api(base, "POST", "/compute/v2.1/flavors", token, {"flavor": {
        "name": "bench.nano", "ram": 64, "vcpus": 1, "disk": 1}})
    flavor = fl["flavor"]["id"]
    t0 = time.monotonic()
    api(base, "POST", "/compute/v2.1/servers", token, {"server": {
        "name": "bench", "imageRef": img["id"], "flavorRef": flavor, "networks": "none",
        "min_count": a.servers, "max_count": a.servers}},
        headers={"OpenStack-API-Version": "compute 2.37"})
    deadline = time.monotonic() + 600
    while True:
        _, _, lst = api(base, "GET", "/compute/v2.1/servers?status=ACTIVE&limit=1000", token)
        if len(lst["servers"]) >= a.servers:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(lst['servers'])} of {a.servers} servers ACTIVE after 600 s")
        time.sleep(1)
    boot_s = time.monotonic() - t0

    # the browser: cookie jar, login page (CSRF token), login form
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(base + "/dashboard/login", timeout=30).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf_token": csrf, "domain": "Default", "username": "admin",
                                   "password": a.password}).encode()
    browser.open(base + "/dashboard/login", data=form, timeout=30).read()

    url = base + "/dashboard/project/instances"
    html = browser.open(url, timeout=60).read().decode()  # warm-up (and the check below)
    rows = len(re.findall(r'<tr id="row-', html))
    times = []
    for _ in range(a.runs):
        t = time.monotonic()
        body = browser.open(url, timeout=60).read()
        times.append(time.monotonic() - t)
    page_kib = len(body) / 1024

    # first paint of the login page: HTML + linked scripts and stylesheets, as transferred
    def fetch(path: str) -> tuple[int, str]:
        req = urllib.request.Request(urllib.parse.urljoin(base + "/dashboard/login", path),
                                     headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            text = gzip.decompress(raw) if r.headers.get("Content-Encoding") == "gzip" else raw
            return len(raw), text.decode(errors="replace")
    n, login_html = fetch("/dashboard/login")
    assets = re.findall(r'<(?:script[^>]+src|link[^>]+href)="([^"]+)"', login_html)
    sizes = {"/dashboard/login": n}
    for asset in assets:
        sizes[asset] = fetch(asset)[0]
    first_paint_kib = sum(sizes.values()) / 1024

    s = {"servers": a.servers, "boot_all_active_s": boot_s, "rows_seen": rows, "runs": a.runs,
         "instances_page_s": times, "p50_ms": 1000 * pct(times, 50), "p90_ms": 1000 * pct(times, 90),
         "max_ms": 1000 * max(times), "mean_ms": 1000 * statistics.mean(times), "page_kib": page_kib,
         "login_first_paint_bytes": sizes, "login_first_paint_kib": first_paint_kib}
    with open(a.out, "w") as f:
        json.dump(s, f, indent=2)
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| {a.servers} fake-driver servers ACTIVE (one request) | {boot_s:.1f} s | |")
    print(f"| instances page with {a.servers} instances ({rows} rows seen, {page_kib:.0f} KiB), "
          f"p50 (p90, max) of {a.runs} | {s['p50_ms']:.0f} ms ({s['p90_ms']:.0f} ms, {s['max_ms']:.0f} ms)"
          f" | p50 < 100 ms |")
    print(f"| login page first paint: HTML + {len(assets)} assets, as transferred | "
          f"{first_paint_kib:.0f} KiB | < 200 KB |")
    if rows < a.servers:
        raise SystemExit(f"the instances page shows {rows} of {a.servers} servers")


if __name__ == "__main__":
    main()
