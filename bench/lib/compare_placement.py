#!/usr/bin/env python3
"""Side-by-side table for bench/placement.sh.

Usage: compare_placement.py OUT [PROVIDERS] [LARGE]   (OUT/peer and/or OUT/kumo hold
bench-placement.sh results, OUT/kumo-large kumo's alloc_candidates over LARGE providers)

Prints one table (scenario x concurrency: peer req/s, kumo req/s, ratio, target, PASS/FAIL),
then kumo's latency over LARGE providers against its target. Exit 1 when a target is missed.
Targets: issue 4 (Performance).
"""
import glob
import json
import os
import re
import statistics as st
import sys

RATE_TARGETS = {"alloc_candidates": 10.0}   # kumo/peer req/s, every concurrency
LARGE_P50_MS_MAX = 5.0                     # alloc_candidates over LARGE providers, one client


def load(d):
    """{(scenario, conc): (median req/s, min, max, runs, ok, errors, p50 ms, p99 ms)}, or None."""
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
    out = {}
    for k, v in rows.items():
        rps = [x[0] for x in v]
        out[k] = (st.median(rps), min(rps), max(rps), len(v), sum(x[1] for x in v), sum(x[2] for x in v),
                  st.median(x[3] for x in v), st.median(x[4] for x in v))
    return out


def text(d, name):
    try:
        return open(os.path.join(d, name)).read()
    except OSError:
        return ""


def main():
    out = sys.argv[1]
    providers = sys.argv[2] if len(sys.argv) > 2 else "100"
    large = sys.argv[3] if len(sys.argv) > 3 else "1000"
    peer, kumo = load(os.path.join(out, "peer")), load(os.path.join(out, "kumo"))
    big = load(os.path.join(out, "kumo-large"))
    if not peer and not kumo:
        print("no results in " + out)
        return 2
    failed = False
    fmt = "{:<20}{:>5}{:>12}{:>12}{:>10}{:>10}{:>10}{:>9}  {}"
    print()
    print(f"== placement: the real placement (peer) vs kumo, {providers} providers, microversion 1.39; "
          "req/s = median over runs")
    print(fmt.format("scenario", "conc", "peer req/s", "kumo req/s", "peer p50", "kumo p50", "ratio", "target",
                     "result"))
    keys = sorted(set((peer or {}).keys()) | set((kumo or {}).keys()),
                  key=lambda k: (0 if k[0] in RATE_TARGETS else 1, k[0], k[1]))
    for k in keys:
        p = (peer or {}).get(k)
        q = (kumo or {}).get(k)
        target = RATE_TARGETS.get(k[0])
        ratio = q[0] / p[0] if p and q and p[0] > 0 else None
        notes = [f"{n} had {s[5]} errors: figure invalid" for n, s in (("peer", p), ("kumo", q)) if s and s[5]]
        if ratio is None or target is None:
            result = "(info)" if target is None else "-"
        elif notes:
            result, failed = "FAIL", True
        elif ratio >= target:
            result = "PASS"
        else:
            result, failed = "FAIL", True
        print(fmt.format(k[0], k[1], f"{p[0]:.1f}" if p else "-", f"{q[0]:.1f}" if q else "-",
                         f"{p[6]:.2f}ms" if p else "-", f"{q[6]:.2f}ms" if q else "-",
                         f"{ratio:.1f}x" if ratio else "-", f">={target:g}x" if target else "",
                         " ".join([result] + notes)))
    if big:
        print()
        count = text(os.path.join(out, "kumo-large"), "candidates.txt").strip() or "?"
        print(f"== kumo, alloc_candidates over {large} providers ({count} candidates per answer)")
        line = "{:<8}{:>12}{:>11}{:>11}{:>12}  {}"
        print(line.format("conc", "req/s", "p50", "p99", "target", "result"))
        for (name, c), v in sorted(big.items(), key=lambda kv: kv[0][1]):
            if v[5]:
                res, failed = f"FAIL ({v[5]} errors)", True
            elif c == 1:
                res = "PASS" if v[6] < LARGE_P50_MS_MAX else "FAIL"
                failed |= res == "FAIL"
            else:
                res = "(info: clients share the 2 cores with the server)"
            print(line.format(c, f"{v[0]:.1f}", f"{v[6]:.2f}ms", f"{v[7]:.2f}ms",
                              f"p50<{LARGE_P50_MS_MAX:g}ms" if c == 1 else "", res))
    elif kumo:
        print(f"no {large}-provider figures (OUT/kumo-large missing)")
        failed = True
    print()
    for name in ("peer", "kumo"):
        m = re.search(r"rss_idle_mib=(\S+) rss_after_load_mib=(\S+)", text(os.path.join(out, name), "bench.txt"))
        if m:
            print(f"  {name}: idle RSS {m.group(1)} MiB, after load {m.group(2)} MiB (info)")
        busy = text(os.path.join(out, name), "cpu_busy_before.txt").split()
        if busy:
            warn = "  WARNING: something else was running; figures unreliable" if int(busy[0]) >= 25 else ""
            print(f"  machine CPU use in the 3 s before the {name} side: {busy[0]}%{warn}")
    print(f"  loadavg at the end: {' '.join(open('/proc/loadavg').read().split()[:3])} nproc={os.cpu_count()}")
    if not (peer and kumo):
        print("  (only one side measured: ratios not judged)")
    print("RESULT: " + ("FAIL (some target missed)" if failed else ("PASS" if peer and kumo else "n/a")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
