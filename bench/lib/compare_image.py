#!/usr/bin/env python3
"""Side-by-side table for bench/image.sh.

Usage: compare_image.py OUT   (OUT/peer and/or OUT/kumo hold bench-image.sh's bench.txt and oha
JSON files, list1000.c1.rN.json and transfer.json)

Prints one table: per scenario the peer, kumo, kumo/peer ratio, the target and PASS/FAIL (or
"info" where issue 4 sets no target). Exit 1 when a target is missed, else 0.
Targets (issue 4, Performance): upload and download of 1 GiB at >= 80 % of cp's speed on the same
disk, RSS growth < 20 MB during the transfer; image list of 1000 images with limit 20: p50 < 5 ms.
"""
import glob
import json
import os
import re
import statistics as st
import sys

CP_FRACTION = 0.80
RSS_GROWTH_MB = 20.0
LIST_P50_MS = 5.0


def oha(d, name):
    """{conc: (median req/s, median p50 ms, ok, errors)} over the runs of scenario `name`."""
    rows = {}
    for f in glob.glob(os.path.join(d, f"{name}.c*.r*.json")):
        m = re.match(r".+\.c(\d+)\.r(\d+)\.json$", f)
        try:
            data = json.load(open(f))
        except (OSError, ValueError):
            continue
        codes = data.get("statusCodeDistribution", {}) or {}
        ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
        bad = sum(v for k, v in codes.items() if not str(k).startswith("2"))
        bad += sum((data.get("errorDistribution") or {}).values())
        lp = data.get("latencyPercentiles", {}) or {}
        rows.setdefault(int(m.group(1)), []).append(
            ((data.get("summary") or {}).get("requestsPerSec") or 0.0, (lp.get("p50") or 0) * 1e3, ok, bad))
    return {c: (st.median(x[0] for x in v), st.median(x[1] for x in v), sum(x[2] for x in v),
                sum(x[3] for x in v)) for c, v in rows.items()}


def ops(d):
    """bench-image.sh's op table: {op: (p50 ms, MiB/s)}."""
    out = {}
    try:
        text = open(os.path.join(d, "bench.txt")).read()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"(create|upload|download)\s+\d+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    m = re.search(r"rss_idle_mib=(\S+) rss_after_load_mib=(\S+)", text)
    if m:
        out["rss"] = (m.group(1), m.group(2))
    return out


def load(out, side):
    d = os.path.join(out, side)
    if not os.path.isdir(d):
        return None
    t = None
    try:
        t = json.load(open(os.path.join(d, "transfer.json")))
    except (OSError, ValueError):
        pass
    return {"list": oha(d, "image_list"), "list1000": oha(d, "list1000"), "ops": ops(d), "transfer": t}


def main():
    out = sys.argv[1]
    peer, kumo = load(out, "peer"), load(out, "kumo")
    failed = False
    rows = []

    def fmt(x, nd=1):
        return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    def add(what, p, k, ratio, target, verdict):
        rows.append((what, fmt(p), fmt(k), "-" if ratio is None else f"{ratio:.2f}x", target, verdict))

    # 10 MiB cycle of bench-image.sh (no target: side by side)
    for op in ("create", "upload", "download"):
        p = (peer or {}).get("ops", {}).get(op)
        k = (kumo or {}).get("ops", {}).get(op)
        pv, kv = (p[0] if p else None), (k[0] if k else None)
        add(f"{op} 10 MiB, p50 ms" if op != "create" else "create, p50 ms", pv, kv,
            (pv / kv) if pv and kv else None, "(speed-up)", "info")
    for c in sorted(set((peer or {}).get("list", {})) | set((kumo or {}).get("list", {}))):
        p = (peer or {}).get("list", {}).get(c)
        k = (kumo or {}).get("list", {}).get(c)
        add(f"image_list c{c}, req/s", p and p[0], k and k[0], (k[0] / p[0]) if p and k and p[0] else None,
            "(ratio)", "info")
    p = (peer or {}).get("list1000", {}).get(1)
    k = (kumo or {}).get("list1000", {}).get(1)
    if p or k:
        add("list 1000 images limit 20, req/s", p and p[0], k and k[0],
            (k[0] / p[0]) if p and k and p[0] else None, "(ratio)", "info")
        verdict = "-"
        if k:
            ok = k[1] < LIST_P50_MS and k[3] == 0
            verdict = "PASS" if ok else "FAIL"
            failed |= not ok
        add("list 1000 images limit 20, p50 ms", p and round(p[1], 2), k and round(k[1], 2), None,
            f"< {LIST_P50_MS:g} ms", verdict)
    for side_name, side in (("peer", peer), ("kumo", kumo)):
        t = (side or {}).get("transfer")
        if not t:
            continue
        for op in ("upload", "download"):
            # The download copies the image's stored data: its cp is of that file.
            base_key = "cp_stored_mibps" if op == "download" and "cp_stored_mibps" in t else "cp_mibps"
            cp = t[base_key]
            frac = t[f"{op}_mibps"] / cp
            verdict = "info"
            if side_name == "kumo":
                ok = frac >= CP_FRACTION
                verdict = "PASS" if ok else "FAIL"
                failed |= not ok
            what = "cp of the stored file" if base_key == "cp_stored_mibps" else "cp"
            rows.append((f"{side_name}: {op} {t['size_mib'] / 1024:g} GiB, MiB/s ({what} + fsync: {cp:.0f})",
                         "", f"{t[f'{op}_mibps']:.0f}", f"{frac:.2f} of cp", f">= {CP_FRACTION:.2f} of cp",
                         verdict))
            growth = t[f"{op}_rss_mb"]
            verdict = "info"
            if side_name == "kumo":
                ok = growth < RSS_GROWTH_MB
                verdict = "PASS" if ok else "FAIL"
                failed |= not ok
            rows.append((f"{side_name}: RSS growth during {op}, MB", "", f"{growth:.1f}", "",
                         f"< {RSS_GROWTH_MB:g} MB", verdict))
        if "hash_floor_s" in t:
            rows.append((f"{side_name}: md5+sha512 alone (openssl, 2 cores), MiB/s", "",
                         f"{t['hash_floor_mibps']:.0f}", f"{t['upload_mibps'] / t['hash_floor_mibps']:.2f} of it",
                         "", "info"))
        if "cp_stored_mibps" in t:
            rows.append((f"{side_name}: cp of the uploaded file + fsync, MiB/s", "", f"{t['cp_mibps']:.0f}",
                         f"download {t['download_mibps'] / t['cp_mibps']:.2f} of it", "", "info"))
        rows.append((f"{side_name}: without flush: cp / upload / download, MiB/s", "",
                     f"{t['size_mib'] / t['cp_nosync_s']:.0f} / {t['size_mib'] / t['upload_s']:.0f} / "
                     f"{t['size_mib'] / t['download_nosync_s']:.0f}", "", "", "info"))
    for side_name, side in (("peer", peer), ("kumo", kumo)):
        r = (side or {}).get("ops", {}).get("rss")
        if r:
            rows.append((f"{side_name}: RSS idle / after load, MiB", "", f"{r[0]} / {r[1]}", "", "", "info"))
    w = [max(len(str(r[i])) for r in rows + [("what", "peer", "kumo", "ratio", "target", "result")])
         for i in range(6)]
    head = ("what", "peer", "kumo", "ratio", "target", "result")
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)))
    print("overall:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
