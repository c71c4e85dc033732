#!/usr/bin/env python3
"""Side-by-side table for bench/compute.sh (can be re-run on a results dir).

Usage: compare_compute.py OUT
  OUT/peer, OUT/kumo        ../shared/peer/bench-compute.sh --out of each side (summary.json,
                            run-N.json), same seq/count/concurrency
  OUT/kumo-large            kumo alone: --seq 0 --count LARGE (servers created, then deleted)
  OUT/peer/setup.txt, OUT/peer/setup-times.txt   the peer's setup times (info)
  OUT/kumo/ERROR            why the kumo side did not run (printed)

Prints one markdown table: figure, peer, kumo, ratio, target, result. The ratio is how many times
kumo is better: peer/kumo for times and memory, kumo/peer for rates. kumo-only figures get the
ratio to the peer's nearest figure, labelled (peer's N-server time scaled to LARGE servers; the
peer's RSS with N servers). A kumo phase with errors makes its figures FAIL. MB = 10^6 bytes.
Exit 1 when a target is missed, else 0 (also when only the peer ran).

Targets (issue "Compute", Performance): create -> ACTIVE p50 < 50 ms and p99 < 200 ms
(sequential); >= 50 servers/s with 16 clients; GET /servers/detail with 100 servers p50 < 10 ms;
1000 servers created and deleted in < 30 s; RSS of the whole kumo process with 1000 servers
< 150 MB.
"""
import json
import math
import os
import sys

SEQ_P50_MS = 50.0
SEQ_P99_MS = 200.0
RATE_MIN = 50.0
DETAIL_P50_MS = 10.0
LARGE_S = 30.0
LARGE_RSS_MB = 150.0
MIB_TO_MB = 1.048576


def load(out, side):
    try:
        return json.load(open(os.path.join(out, side, "summary.json")))
    except (OSError, ValueError):
        return None


def text(out, *path):
    try:
        return open(os.path.join(out, *path)).read()
    except OSError:
        return ""


def num(x):
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))


def fig(side, key, scale=1.0):
    v = (side or {}).get("summary", {}).get(key)
    return v * scale if num(v) else None


def errors(side):
    """{phase: errors} summed over the runs."""
    e = {}
    for r in (side or {}).get("runs", []):
        for ph in ("seq", "seq_cleanup", "conc", "detail", "delete"):
            if ph in r:
                e[ph] = e.get(ph, 0) + int(r[ph].get("errors", 0))
    return e


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.{nd}f}"


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    peer, kumo, large = load(out, "peer"), load(out, "kumo"), load(out, "kumo-large")
    pe, ke, le = errors(peer), errors(kumo), errors(large)
    args = (kumo or peer or {}).get("args", {})
    n, c, nseq = args.get("count", 100), args.get("concurrency", 16), args.get("seq", 20)
    nl = (large or {}).get("args", {}).get("count", 1000)
    for side_name, s in (("peer", peer), ("kumo", kumo)):
        if s and s.get("args", {}).get("count") != n:
            print(f"warning: the sides ran different --count: {side_name} "
                  f"{s['args'].get('count')} vs {n}", file=sys.stderr)
    failed = False
    rows = []

    def ratio(p, k, better):
        if not (num(p) and num(k)) or p <= 0 or k <= 0:
            return "-"
        return f"{(p / k if better == 'lower' else k / p):.1f}x"

    def judge(side, k, ok, bad_phases):
        """verdict for a kumo figure: '-' when that kumo part did not run, else PASS/FAIL"""
        nonlocal failed
        if not side:
            return "-"
        errs = errors(side)
        verdict = ("FAIL (no figure)" if k is None else
                   "FAIL (errors)" if any(errs.get(ph, 0) for ph in bad_phases) else
                   "FAIL" if not ok else "")
        if verdict:
            failed = True
            return verdict
        return "PASS"

    def row(what, p, k, better, target="", verdict="info", nd=1):
        rows.append((what, fmt(p, nd), fmt(k, nd), ratio(p, k, better), target, verdict))

    # (a) sequential create -> ACTIVE
    p, k = fig(peer, "seq_active_p50_s", 1e3), fig(kumo, "seq_active_p50_s", 1e3)
    row(f"create → ACTIVE p50, sequential ({nseq} servers), ms", p, k, "lower", f"< {SEQ_P50_MS:g} ms",
        judge(kumo, k, k is not None and k < SEQ_P50_MS, ("seq",)))
    p, k = fig(peer, "seq_active_p99_s", 1e3), fig(kumo, "seq_active_p99_s", 1e3)
    row("create → ACTIVE p99, sequential, ms", p, k, "lower", f"< {SEQ_P99_MS:g} ms",
        judge(kumo, k, k is not None and k < SEQ_P99_MS, ("seq",)))
    row("POST /servers p50 (answer 202), sequential, ms", fig(peer, "seq_post_p50_s", 1e3),
        fig(kumo, "seq_post_p50_s", 1e3), "lower")
    # (b) concurrent
    p, k = fig(peer, "conc_servers_per_s"), fig(kumo, "conc_servers_per_s")
    row(f"servers/s, {n} servers by {c} clients", p, k, "higher", f"≥ {RATE_MIN:g}/s",
        judge(kumo, k, k is not None and k >= RATE_MIN, ("conc",)), nd=2)
    row(f"all {n} ACTIVE after, s", fig(peer, "conc_all_active_s"), fig(kumo, "conc_all_active_s"), "lower", nd=2)
    row(f"create → ACTIVE p50 / p99 at {c} clients, ms",
        "/".join(fmt(fig(peer, x, 1e3), 0) for x in ("conc_active_p50_s", "conc_active_p99_s")) if peer else None,
        "/".join(fmt(fig(kumo, x, 1e3), 0) for x in ("conc_active_p50_s", "conc_active_p99_s")) if kumo else None,
        None)
    # (d) list
    p, k = fig(peer, "detail_p50_ms"), fig(kumo, "detail_p50_ms")
    listed = fig(kumo, "detail_servers_listed")
    row(f"GET /servers/detail p50 with {n} servers, ms", p, k, "lower", f"< {DETAIL_P50_MS:g} ms",
        judge(kumo, k, k is not None and k < DETAIL_P50_MS and (listed or 0) >= n, ("detail", "conc")), nd=2)
    row("GET /servers/detail p99, ms", fig(peer, "detail_p99_ms"), fig(kumo, "detail_p99_ms"), "lower", nd=2)
    # (c) delete
    row(f"delete all {n} (DELETE calls → none listed), s", fig(peer, "delete_all_gone_s"),
        fig(kumo, "delete_all_gone_s"), "lower", nd=2)
    # (e) memory
    row("RSS idle (before the run), MiB", fig(peer, "rss_idle_total_mib"), fig(kumo, "rss_idle_total_mib"), "lower")
    row(f"RSS peak while {n} servers are created, MiB", fig(peer, "rss_peak_during_conc_mib"),
        fig(kumo, "rss_peak_during_conc_mib"), "lower")
    row(f"RSS with {n} servers, MiB", fig(peer, "rss_with_servers_total_mib"),
        fig(kumo, "rss_with_servers_total_mib"), "lower")

    # kumo alone: LARGE servers
    if large:
        cr, de = fig(large, "conc_all_active_s"), fig(large, "delete_all_gone_s")
        k = cr + de if cr is not None and de is not None else None
        pc, pd = fig(peer, "conc_all_active_s"), fig(peer, "delete_all_gone_s")
        p = (pc + pd) * nl / n if pc is not None and pd is not None else None
        verdict = judge(large, k, k is not None and k < LARGE_S, ("conc", "delete"))
        rows.append((f"kumo: {nl} servers created ({c} clients) and deleted, s",
                     f"{fmt(p)} (×{nl / n:g} of its {n})" if p is not None else "-", fmt(k),
                     ratio(p, k, "lower"), f"< {LARGE_S:g} s", verdict))
        rows.append((f"kumo: … of which create, s / servers/s", "-",
                     f"{fmt(cr)} / {fmt(fig(large, 'conc_servers_per_s'))}" if large else "-", "-", "", "info"))
        rows.append((f"kumo: GET /servers/detail p50 with {nl} servers, ms", "-",
                     fmt(fig(large, "detail_p50_ms"), 2), "-", "", "info"))
        k = fig(large, "rss_with_servers_total_mib", MIB_TO_MB)
        p = fig(peer, "rss_with_servers_total_mib", MIB_TO_MB)
        rows.append((f"kumo: RSS of the kumo process with {nl} servers, MB",
                     f"{fmt(p)} (with its {n})" if p is not None else "-", fmt(k), ratio(p, k, "lower"),
                     f"< {LARGE_RSS_MB:g} MB",
                     judge(large, k, k is not None and k < LARGE_RSS_MB, ("conc",))))
        rows.append((f"kumo: RSS peak while {nl} servers are created, MB", "-",
                     fmt(fig(large, "rss_peak_during_conc_mib", MIB_TO_MB)), "-", "", "info"))

    # errors, per side and phase
    def errs_txt(s, e):
        if not s:
            return "-"
        return ", ".join(f"{ph} {v}" for ph, v in e.items() if v) or "0"
    rows.append(("errors (per phase, all runs)", errs_txt(peer, pe),
                 errs_txt(kumo, ke) + ("" if not large else f"; {nl}: " + errs_txt(large, le)), "", "0",
                 "-" if not (kumo or large) else ("PASS" if not any(ke.values()) and not any(le.values())
                                                  else "FAIL")))
    if rows[-1][-1] == "FAIL":
        failed = True

    head = ("figure", "peer", "kumo", "ratio", "target", "result")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(6)]
    print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |")
    print("|" + "|".join("-" * (w[i] + 2) for i in range(6)) + "|")
    for r in rows:
        print("| " + " | ".join(str(x).ljust(w[i]) for i, x in enumerate(r)) + " |")
    print()
    print("ratio: how many times kumo is better (peer/kumo for times and memory, kumo/peer for rates)")

    # the peer's memory per process tree, with the servers (info)
    if peer and peer.get("runs") and "mem_with_servers" in peer["runs"][0]:
        m = peer["runs"][0]["mem_with_servers"]
        parts = ", ".join(f"{k} {v['rss_mib']:.0f}" for k, v in m.items() if k != "TOTAL")
        print(f"peer RSS with {n} servers per process tree (MiB, run 0): {parts}")
        nova = sum(v["rss_mib"] for k, v in m.items() if k.startswith("nova-") or k == "placement")
        print(f"peer RSS of Nova + placement alone (no Keystone, Glance, MariaDB, RabbitMQ): {nova:.0f} MiB")
    for side_name, s in (("peer", peer), ("kumo", kumo), ("kumo-large", large)):
        if s and s.get("runs"):
            la = " / ".join(" ".join(r.get("loadavg_start", [])) for r in s["runs"])
            busy = text(out, side_name, "cpu_busy_before.txt").strip() or "?"
            print(f"{side_name}: {len(s['runs'])} run(s); machine {busy}% busy before; loadavg at start {la}")
    setup = text(out, "peer", "setup.txt").strip()
    if setup:
        print("peer setup:\n  " + setup.replace("\n", "\n  "))
    total = [l for l in text(out, "peer", "setup-times.txt").splitlines() if l.startswith("TOTAL")]
    if total:
        print("  " + total[0].strip() + " (nova.sh's own figure)")
    err = text(out, "kumo", "ERROR").strip()
    if err:
        print("kumo: NOT RUN: " + err)
    print("overall:", "FAIL" if failed else ("PASS" if kumo else "- (kumo not run)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
