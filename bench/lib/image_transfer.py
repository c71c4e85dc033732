#!/usr/bin/env python3
"""Helpers of bench/image.sh (Python standard library only; loopback only).

  image_transfer.py fill URL TOKEN N            create N images (metadata only) for the list scenario
  image_transfer.py transfer URL TOKEN PID DIR GIB RUNS OUT.json [STOREDIR]
      1 GiB-class transfers against `cp` on the same disk, interleaved run by run:
        cp          cp SRC DST                     then fsync(DST)
        upload      PUT .../file, body sent with sendfile(2) (the server writes and flushes its copy)
        hash_floor  `openssl dgst -md5` and `-sha512` of SRC in parallel: the least time any server
                    computing Glance's checksum and os_hash_value needs for that data
        cp_stored   cp STOREDIR/<image id> DST then fsync(DST): copying the image's stored data file
                    itself, what a download does (timed after the download)
        download    GET .../file into DST through a 4 MiB page-aligned buffer written with O_DIRECT
                    (as kumo's store writes), then fsync(DST)
      The client is this script over a raw socket, so that the client's own copying (curl writes
      16 KiB at a time) is not what is measured.
      Every run starts after a full `sync`, so each one finds the same clean page cache; times
      include the flush (the data is on disk when the clock stops, on both sides). The figures
      without the flush are kept too. While a transfer runs the server's RSS is sampled every
      20 ms: `rss_growth_mb` = peak - before.
"""
from __future__ import annotations

import http.client
import json
import mmap
import os
import socket
import statistics as st
import subprocess
import sys
import threading
import time
import urllib.parse


def conn_for(url: str) -> tuple[http.client.HTTPConnection, str]:
    u = urllib.parse.urlsplit(url)
    assert u.hostname in ("127.0.0.1", "localhost"), f"refusing non-loopback {url}"
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120), u.path.rstrip("/")


def fill(url: str, token: str, n: int) -> None:
    c, base = conn_for(url)
    h = {"X-Auth-Token": token, "Content-Type": "application/json", "Connection": "keep-alive"}
    for i in range(n):
        body = json.dumps({"name": f"bench-list-{i:04d}", "disk_format": "raw", "container_format": "bare",
                           "visibility": "private", "tags": ["bench-list"], "k": str(i)})
        c.request("POST", base + "/v2/images", body=body, headers=h)
        r = c.getresponse()
        r.read()
        if r.status != 201:
            sys.exit(f"create answered {r.status}")
        if r.getheader("Connection", "").lower() == "close":
            c.close()
            c, base = conn_for(url)


def tree(pid: int) -> list[int]:
    """pid and its descendants (uWSGI workers for the peer)."""
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
        kids = {}
        for line in out.splitlines():
            p, pp = line.split()
            kids.setdefault(int(pp), []).append(int(p))
        i = 0
        while i < len(pids):
            pids += kids.get(pids[i], [])
            i += 1
    except (OSError, ValueError):
        pass
    return pids


def rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pids, self.stop, self.peak = tree(pid), threading.Event(), 0
        self.before = rss_kib(self.pids)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pids))
            time.sleep(0.02)

    def growth_mb(self) -> float:
        self.stop.set()
        self.join()
        return max(0, self.peak - self.before) * 1024 / 1e6


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def api(url: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    c, base = conn_for(url)
    h = {"X-Auth-Token": token, "Content-Type": "application/json"}
    c.request(method, base + path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        sys.exit(f"{method} {path} answered {r.status}: {data[:300]!r}")
    return json.loads(data) if data else {}


def raw_request(url: str, method: str, path: str, headers: dict) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=300)
    lines = [f"{method} {u.path.rstrip('/')}{path} HTTP/1.1", f"Host: {u.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_head(f) -> tuple[int, dict]:
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline().decode().strip()
        if not line:
            return status, headers
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()


def put_file(url: str, token: str, image_id: str, src: str) -> int:
    size = os.path.getsize(src)
    sock = raw_request(url, "PUT", f"/v2/images/{image_id}/file",
                       {"X-Auth-Token": token, "Content-Type": "application/octet-stream",
                        "Content-Length": str(size)})
    with open(src, "rb") as f:
        sock.sendfile(f)
    status, _ = read_head(sock.makefile("rb"))
    sock.close()
    return status


def get_file(url: str, token: str, image_id: str, dst: str, direct: bool = True) -> int:
    """GET the data into dst. direct: write with O_DIRECT through an aligned buffer, as kumo's
    store does (on this kind of VM, filling fresh page cache from user space costs ~3 s/GiB,
    which would measure the client, not the server); the tail is written buffered."""
    sock = raw_request(url, "GET", f"/v2/images/{image_id}/file", {"X-Auth-Token": token})
    f = sock.makefile("rb", buffering=0)
    status, _ = read_head_raw(sock)
    size = 4 << 20
    buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
    view = memoryview(buf)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (getattr(os, "O_DIRECT", 0) if direct else 0)
    fd = os.open(dst, flags, 0o644)
    fill = 0
    try:
        while True:
            n = sock.recv_into(view[fill:], size - fill)
            if not n:
                break
            fill += n
            if fill == size:
                os.write(fd, view[:size])
                fill = 0
        if fill:
            os.close(fd)
            fd = os.open(dst, os.O_WRONLY | os.O_APPEND)
            os.write(fd, view[:fill])
    finally:
        os.close(fd)
        view.release()
        buf.close()
        f.close()
        sock.close()
    return status


def read_head_raw(sock) -> tuple[int, dict]:
    """Read the response head byte by byte (the body stays in the socket for recv_into)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        c = sock.recv(1)
        if not c:
            break
        data += c
    lines = data.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers


def transfer(url, token, pid, workdir, gib, runs, out, storedir=None):
    src = os.path.join(workdir, "src.bin")
    size = int(float(gib) * (1 << 30))
    if not os.path.exists(src) or os.path.getsize(src) != size:
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 24)
                f.write(os.urandom(n))
                left -= n
    res = {k: [] for k in ("cp", "cp_nosync", "upload", "download", "download_nosync",
                           "upload_rss_mb", "download_rss_mb", "hash_floor", "cp_stored")}
    for _ in range(int(runs)):
        # What any Glance-compatible upload must spend: md5 and sha512 of the data, here with
        # OpenSSL's assembly, the two in parallel (one core each).
        t0 = time.monotonic()
        procs = [subprocess.Popen(["openssl", "dgst", f"-{a}", src], stdout=subprocess.DEVNULL)
                 for a in ("md5", "sha512")]
        for p in procs:
            p.wait()
        res["hash_floor"].append(time.monotonic() - t0)
        # cp
        subprocess.run(["sync"], check=True)
        dst = os.path.join(workdir, "cp.bin")
        t0 = time.monotonic()
        subprocess.run(["cp", src, dst], check=True)
        t1 = time.monotonic()
        fsync_path(dst)
        t2 = time.monotonic()
        res["cp_nosync"].append(t1 - t0)
        res["cp"].append(t2 - t0)
        os.unlink(dst)
        # upload
        img = api(url, token, "POST", "/v2/images",
                  {"name": "bench-transfer", "disk_format": "raw", "container_format": "bare"})
        subprocess.run(["sync"], check=True)
        s = RssSampler(pid)
        s.start()
        t0 = time.monotonic()
        code = put_file(url, token, img["id"], src)
        t1 = time.monotonic()
        res["upload_rss_mb"].append(s.growth_mb())
        if code != 204:
            sys.exit(f"upload answered {code}")
        res["upload"].append(t1 - t0)
        # download
        subprocess.run(["sync"], check=True)
        dst = os.path.join(workdir, "dl.bin")
        s = RssSampler(pid)
        s.start()
        t0 = time.monotonic()
        code = get_file(url, token, img["id"], dst)
        t1 = time.monotonic()
        fsync_path(dst)
        t2 = time.monotonic()
        res["download_rss_mb"].append(s.growth_mb())
        if code != 200 or os.path.getsize(dst) != size:
            sys.exit(f"download answered {code}")
        res["download_nosync"].append(t1 - t0)
        res["download"].append(t2 - t0)
        os.unlink(dst)
        if storedir:
            subprocess.run(["sync"], check=True)
            t0 = time.monotonic()
            subprocess.run(["cp", os.path.join(storedir, img["id"]), dst], check=True)
            fsync_path(dst)
            res["cp_stored"].append(time.monotonic() - t0)
            os.unlink(dst)
        api(url, token, "DELETE", f"/v2/images/{img['id']}")
    mib = size / (1 << 20)
    summary = {"size_mib": mib, "runs": int(runs)}
    for k, v in res.items():
        if not v:
            continue
        if k.endswith("_mb"):
            summary[k] = max(v)
        else:
            summary[k + "_s"] = st.median(v)
            summary[k + "_mibps"] = mib / st.median(v)
    summary["raw"] = res
    json.dump(summary, open(out, "w"), indent=1)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()
                      if k != "raw"}))


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "fill":
        fill(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) in (9, 10) and sys.argv[1] == "transfer":
        transfer(*sys.argv[2:4], int(sys.argv[4]), *sys.argv[5:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
