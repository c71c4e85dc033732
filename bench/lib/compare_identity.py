#!/usr/bin/env python3
"""Side-by-side table for bench/identity.sh.

Usage: compare_identity.py OUT   (OUT/peer and/or OUT/kumo hold bench-identity.sh results:
the oha JSON files NAME.cC.rR.json, bench.txt and start.log)

Prints one table (scenario x concurrency: peer req/s, kumo req/s, ratio, target, PASS/FAIL),
idle RSS of both and their ratio, cold start of both. Exit 1 when a target is missed, else 0.
Targets: issue 3 (Performance).
"""
import glob
import json
import os
import re
import statistics as st
import sys

# scenario -> minimum kumo/peer ratio of req/s (at every concurrency)
RATE_TARGETS = {"token_issue": 2.0, "token_validate": 20.0, "project_list": 10.0}
MEM_RATIO_TARGET = 5.0      # peer idle RSS / kumo idle RSS
KUMO_COLD_MS_MAX = 3000     # kumo up -> first 200 on GET /v3
KUMO_RSS_MB_MAX = 60.0      # idle RSS, megabytes (10^6 bytes)


def load_side(d):
    """Return {"rates": {(scenario, conc): (median req/s, min, max, runs, ok, errors, p50, p99)},
    "rss_idle": MiB|None, "rss_load": MiB|None, "cold_ms": int|None, "server_ms": int|None}"""
    if not os.path.isdir(d):
        return None
    rows = {}
    for f in sorted(glob.glob(os.path.join(d, "*.json"))):
        m = re.match(r"(.+)\.c(\d+)\.r(\d+)\.json$", os.path.basename(f))
        if not m:
            continue
        try:
            data = json.load(open(f))
        except (OSError, ValueError):
            continue
        s = data.get("summary", {})
        lp = data.get("latencyPercentiles", {}) or {}
        codes = data.get("statusCodeDistribution", {}) or {}
        ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
        bad = sum(v for k, v in codes.items() if not str(k).startswith("2"))
        bad += sum((data.get("errorDistribution") or {}).values())
        rows.setdefault((m.group(1), int(m.group(2))), []).append(
            (s.get("requestsPerSec") or 0.0, ok, bad, (lp.get("p50") or 0) * 1e3, (lp.get("p99") or 0) * 1e3))
    rates = {}
    for k, v in rows.items():
        rps = [x[0] for x in v]
        rates[k] = (st.median(rps), min(rps), max(rps), len(v), sum(x[1] for x in v), sum(x[2] for x in v),
                    st.median(x[3] for x in v), st.median(x[4] for x in v))
    side = {"rates": rates, "rss_idle": None, "rss_load": None, "cold_ms": None, "server_ms": None}
    try:
        text = open(os.path.join(d, "bench.txt")).read()
    except OSError:
        text = ""
    m = re.search(r"rss_idle_mib=(\S+) rss_after_load_mib=(\S+) cold_start_ms=(\S+)", text)
    if m:
        def num(x, conv):
            try:
                return conv(x)
            except ValueError:
                return None
        side["rss_idle"], side["rss_load"], side["cold_ms"] = num(m.group(1), float), num(m.group(2), float), num(m.group(3), int)
    try:
        side["busy"] = int(open(os.path.join(d, "cpu_busy_before.txt")).read().split()[0])
    except (OSError, ValueError, IndexError):
        side["busy"] = None
    try:  # keystone.sh logs the server-only part of the start
        m = re.search(r"-> 200 after (\d+) ms from server launch", open(os.path.join(d, "start.log")).read())
        if m:
            side["server_ms"] = int(m.group(1))
    except OSError:
        pass
    return side


def main():
    out = sys.argv[1]
    peer, kumo = load_side(os.path.join(out, "peer")), load_side(os.path.join(out, "kumo"))
    if not peer and not kumo:
        print("no results in " + out)
        return 2
    failed = False
    fmt = "{:<16}{:>5}{:>12}{:>12}{:>9}{:>9}  {}"
    print()
    print("== identity: the real Keystone (peer) vs kumo, req/s = median over runs (min-max in the per-side tables)")
    print(fmt.format("scenario", "conc", "peer req/s", "kumo req/s", "ratio", "target", "result"))
    keys = sorted(set((peer or {}).get("rates", {}).keys()) | set((kumo or {}).get("rates", {}).keys()),
                  key=lambda k: (list(RATE_TARGETS).index(k[0]) if k[0] in RATE_TARGETS else 99, k[0], k[1]))
    for k in keys:
        p = peer["rates"].get(k) if peer else None
        q = kumo["rates"].get(k) if kumo else None
        target = RATE_TARGETS.get(k[0])
        ratio = q[0] / p[0] if p and q and p[0] > 0 else None
        notes = []
        for name, side in (("peer", p), ("kumo", q)):
            if side and side[5]:
                notes.append(f"{name} had {side[5]} errors: figure invalid")
        if ratio is None or target is None:
            result = "-"
        elif notes:
            result, failed = "FAIL", True
        elif ratio >= target:
            result = "PASS"
        else:
            result, failed = "FAIL", True
        print(fmt.format(k[0], k[1], f"{p[0]:.1f}" if p else "-", f"{q[0]:.1f}" if q else "-",
                         f"{ratio:.2f}x" if ratio else "-", f">={target:g}x" if target else "",
                         " ".join([result] + notes)))

    print()
    pr = peer and peer["rss_idle"]
    kr = kumo and kumo["rss_idle"]
    line = "{:<32}{:>20}{:>12}{:>9}{:>9}  {}"
    print(line.format("", "peer", "kumo", "ratio", "target", "result"))
    if pr and kr:
        ratio = pr / kr
        res = "PASS" if ratio >= MEM_RATIO_TARGET else "FAIL"
        failed |= res == "FAIL"
        print(line.format("idle RSS, MiB (peer/kumo)", f"{pr:.1f}", f"{kr:.1f}", f"{ratio:.1f}x", f">={MEM_RATIO_TARGET:g}x", res))
    else:
        print(line.format("idle RSS, MiB (peer/kumo)", f"{pr:.1f}" if pr else "-", f"{kr:.1f}" if kr else "-", "-", f">={MEM_RATIO_TARGET:g}x", "-"))
    if kumo:
        if kr:
            mb = kr * 1048576 / 1e6
            res = "PASS" if mb < KUMO_RSS_MB_MAX else "FAIL"
            failed |= res == "FAIL"
            print(line.format("kumo idle RSS, MB (10^6 B)", "", f"{mb:.1f}", "", f"<{KUMO_RSS_MB_MAX:g}", res))
        else:
            print(line.format("kumo idle RSS, MB (10^6 B)", "", "n/a", "", f"<{KUMO_RSS_MB_MAX:g}", "FAIL (not measured)"))
            failed = True
    pl = peer and peer["rss_load"]
    kl = kumo and kumo["rss_load"]
    print(line.format("RSS after load, MiB", f"{pl:.1f}" if pl else "-", f"{kl:.1f}" if kl else "-", "", "", "(info)"))
    pc = peer and peer["cold_ms"]
    kc = kumo and kumo["cold_ms"]
    pcs = f"{pc}" if pc is not None else "-"
    if peer and peer["server_ms"] is not None:
        pcs += f" (server {peer['server_ms']})"
    res = "-"
    if kumo:
        res = "PASS" if kc is not None and kc < KUMO_COLD_MS_MAX else "FAIL"
        failed |= res == "FAIL"
    print(line.format("cold start to GET /v3 200, ms", pcs, f"{kc}" if kc is not None else "-", "", f"<{KUMO_COLD_MS_MAX}", res))
    print("  peer cold start = keystone.sh start (db_sync + bootstrap + uWSGI); '(server N)' = uWSGI launch to first 200")
    print(f"  loadavg at the end: {' '.join(open('/proc/loadavg').read().split()[:3])} nproc={os.cpu_count()}")
    for name, side in (("peer", peer), ("kumo", kumo)):
        if side and side.get("busy") is not None:
            warn = "  WARNING: something else was running; figures unreliable" if side["busy"] >= 25 else ""
            print(f"  machine CPU use in the 3 s before the {name} side: {side['busy']}%{warn}")
    if not (peer and kumo):
        print("  (only one side measured: ratios not judged)")
    print("RESULT: " + ("FAIL (some target missed)" if failed else ("PASS" if peer and kumo else "n/a")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
