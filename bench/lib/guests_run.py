#!/usr/bin/env python3
"""Real guests under kumo's QEMU driver against a QEMU started by hand (bench/guests.sh).

Usage:
  guests_run.py run --base URL --password PW --image FILE --state-dir DIR --work DIR --out DIR
                    [--runs N] [--timeout S]
  guests_run.py report OUT            # re-print the table of a results dir; exit 0/1 as the bench

`run` (kumo already up on BASE with compute_driver = qemu, state dir DIR):
  1. token (admin), the image FILE uploaded (qcow2, public), flavor bench-guest (1 vCPU, 192 MiB,
     1 GiB; m1.nano's size) made with POST /flavors;
  2. one warm-up guest (fills instances/_base: its create -> ACTIVE is the "cold base" figure);
     its QEMU command line (/proc/PID/cmdline) is kept as the model of the hand-started QEMU;
     it is then stopped, not deleted, until the end: the driver removes a base image as soon as
     no instance disk uses it, so without it every create would fetch the base again;
  3. N rounds, each: a kumo guest, then a hand-started QEMU (never at the same time):
     kumo: POST /servers (microversion 2.37, networks none), GET every 20 ms until ACTIVE,
     os-getConsoleOutput (length 50) every 100 ms until "kumo-tiny: ready"; meanwhile a thread
     reads instances/<uuid>/console.log every 10 ms (when the marker reached the file) and the
     QEMU's start time (/proc/PID/stat) gives create -> QEMU exec; after the marker: RSS and PSS
     of the QEMU and kumo's RSS (before the create and now); DELETE, wait for 404 and the QEMU gone.
     hand: kumo's command line with its own dir (fresh qcow2 overlay on kumo's _base file, same
     format and size), without -daemonize/-S/-pidfile; from exec to the marker in the serial file
     (polled every 10 ms); RSS/PSS; then SIGTERM (SIGKILL after 10 s).
  Hand-started pids go to WORK/hand-pids ("PID TAG" lines; TAG is in their command line) so the
  shell's trap can kill them if this script dies. Results: OUT/runs.json, OUT/summary.json,
  OUT/table.txt, OUT/hand-cmdline.txt.
Exit (run and report): 0 all targets met, 1 a target missed or a run failed, 2 setup error.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path

import requests

MARKER = "kumo-tiny: ready"
MV = {"X-OpenStack-Nova-API-Version": "2.37", "OpenStack-API-Version": "compute 2.37"}
TARGETS = {  # figure -> (limit ms, label)
    "create_active": (1500.0, "< 1.5 s"),
    "create_marker": (6000.0, "< 6 s"),
    "overhead": (300.0, "< 300 ms"),
}
CLK = os.sysconf("SC_CLK_TCK")


class SetupError(Exception):
    pass


def log(msg):
    print("[guests_run] " + msg, file=sys.stderr, flush=True)


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ------------------------------------------------------------------ processes
def proc_alive(pid):
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def proc_cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def proc_start_boottime(pid):
    """The process's start, in CLOCK_BOOTTIME seconds (1/CLK_TCK resolution)."""
    st = Path(f"/proc/{pid}/stat").read_text()
    return int(st.rsplit(")", 1)[1].split()[19]) / CLK


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def status_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def pss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def kumo_qemu_pid(state_dir: Path, sid: str):
    """The pid in instances/<sid>/qemu.pid if that process runs this instance."""
    try:
        pid = int((state_dir / "instances" / sid / "qemu.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if sid.encode() in b" ".join(proc_cmdline(pid)) and proc_alive(pid):
        return pid
    return None


# ------------------------------------------------------------------ API
class Api:
    def __init__(self, base, password):
        self.s = requests.Session()
        r = self.s.post(base + "/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}, timeout=30)
        if r.status_code != 201:
            raise SetupError(f"token: {r.status_code} {r.text[:200]}")
        self.s.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]
        cat = r.json()["token"].get("catalog", [])

        def ep(t):
            for s in cat:
                if s.get("type") == t:
                    for e in s["endpoints"]:
                        if e["interface"] == "public":
                            return e["url"].rstrip("/")
            raise SetupError(f"no {t} endpoint in the catalog")
        self.nova, self.glance = ep("compute"), ep("image")

    def c(self, method, path, **kw):
        h = dict(MV)
        h.update(kw.pop("headers", {}))
        return self.s.request(method, self.nova + path, headers=h, timeout=60, **kw)


def setup_objects(api: Api, image: Path):
    r = api.c("GET", "/flavors/bench-guest")
    if r.status_code != 200:
        r = api.c("POST", "/flavors", json={"flavor": {
            "name": "bench-guest", "id": "bench-guest", "ram": 192, "vcpus": 1, "disk": 1}})
        if r.status_code != 200:
            raise SetupError(f"POST /flavors: {r.status_code} {r.text[:300]}")
    r = api.s.post(api.glance + "/v2/images", json={
        "name": "kumo-tiny", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public"}, timeout=30)
    if r.status_code != 201:
        raise SetupError(f"POST /v2/images: {r.status_code} {r.text[:300]}")
    iid = r.json()["id"]
    with open(image, "rb") as f:
        r = api.s.put(f"{api.glance}/v2/images/{iid}/file", data=f, timeout=120,
                      headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 204:
        raise SetupError(f"PUT image data: {r.status_code} {r.text[:300]}")
    deadline = time.monotonic() + 60
    while api.s.get(f"{api.glance}/v2/images/{iid}", timeout=30).json().get("status") != "active":
        if time.monotonic() > deadline:
            raise SetupError(f"image {iid} not active")
        time.sleep(0.1)
    return iid


# ------------------------------------------------------------------ one kumo guest
class FileWatch(threading.Thread):
    """Polls FILE every 10 ms; .t = monotonic time the marker was first seen in it. Also
    records the QEMU pid (checked) and its start (monotonic) for instance SID."""

    def __init__(self, state_dir: Path, sid: str):
        super().__init__(daemon=True)
        self.state_dir, self.sid = state_dir, sid
        self.file = state_dir / "instances" / sid / "console.log"
        self.t = None
        self.pid = None
        self.qemu_start = None
        self.stop_ev = threading.Event()

    def run(self):
        off, buf = 0, b""
        while not self.stop_ev.is_set():
            if self.pid is None:
                pid = kumo_qemu_pid(self.state_dir, self.sid)
                if pid:
                    self.pid = pid
                    try:  # boottime -> monotonic (both tick together; offset sampled now)
                        self.qemu_start = proc_start_boottime(pid) - boottime() + time.monotonic()
                    except OSError:
                        pass
            try:
                with open(self.file, "rb") as f:
                    f.seek(off)
                    data = f.read()
                if data:
                    off += len(data)
                    buf = (buf + data)[-4096:]
                    if MARKER.encode() in buf:
                        self.t = time.monotonic()
                        return
            except OSError:
                pass
            time.sleep(0.01)


def kumo_guest(api: Api, state_dir: Path, image_id: str, name: str, timeout: float, kumo_pid: int):
    rec = {"name": name, "loadavg": loadavg()}
    kumo_before = rss_kib(kumo_pid)
    t0 = time.monotonic()
    r = api.c("POST", "/servers", json={"server": {
        "name": name, "imageRef": image_id, "flavorRef": "bench-guest", "networks": "none"}})
    t_post = time.monotonic()
    if r.status_code != 202:
        raise RuntimeError(f"POST /servers: {r.status_code} {r.text[:300]}")
    sid = r.json()["server"]["id"]
    rec["id"] = sid
    watch = FileWatch(state_dir, sid)
    watch.start()
    try:
        rec["post_ms"] = (t_post - t0) * 1e3
        while True:
            s = api.c("GET", f"/servers/{sid}").json()["server"]
            if s["status"] == "ACTIVE":
                rec["create_active_ms"] = (time.monotonic() - t0) * 1e3
                break
            if s["status"] == "ERROR":
                raise RuntimeError(f"{sid} ERROR: {s.get('fault')}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{sid} not ACTIVE after {timeout} s (status {s['status']})")
            time.sleep(0.02)
        text = ""
        while True:
            r = api.c("POST", f"/servers/{sid}/action", json={"os-getConsoleOutput": {"length": 50}})
            text = r.json().get("output", "") if r.status_code == 200 else ""
            if MARKER in text:
                rec["create_marker_ms"] = (time.monotonic() - t0) * 1e3
                break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{sid}: no marker after {timeout} s; console tail:\n{text[-1500:]}")
            time.sleep(0.1)
        watch.join(2)
        if watch.t:
            rec["create_marker_file_ms"] = (watch.t - t0) * 1e3
        if watch.qemu_start:
            rec["create_qemu_exec_ms"] = (watch.qemu_start - t0) * 1e3
            if watch.t:
                rec["qemu_exec_marker_file_ms"] = (watch.t - watch.qemu_start) * 1e3
        pid = watch.pid or kumo_qemu_pid(state_dir, sid)
        if pid:
            rec["qemu_pid"] = pid
            rec["qemu_rss_kib"] = rss_kib(pid)
            rec["qemu_pss_kib"] = pss_kib(pid)
            rec["qemu_rss_anon_kib"] = status_kib(pid, "RssAnon")
            rec["qemu_rss_file_kib"] = status_kib(pid, "RssFile")
        rec["kumo_rss_before_kib"] = kumo_before
        rec["kumo_rss_guest_kib"] = rss_kib(kumo_pid)
        rec["kumo_rss_growth_kib"] = rec["kumo_rss_guest_kib"] - kumo_before
    finally:
        watch.stop_ev.set()
        rec["delete_s"] = delete_guest(api, state_dir, sid, watch.pid)
    return rec


def delete_guest(api: Api, state_dir: Path, sid: str, pid=None):
    """DELETE, then wait for 404 and the QEMU gone (killed by pid after 60 s)."""
    pid = pid or kumo_qemu_pid(state_dir, sid)
    t0 = time.monotonic()
    api.c("DELETE", f"/servers/{sid}")
    while time.monotonic() - t0 < 60:
        gone = api.c("GET", f"/servers/{sid}").status_code == 404
        if gone and not (pid and proc_alive(pid)):
            return time.monotonic() - t0
        time.sleep(0.05)
    if pid and proc_alive(pid) and sid.encode() in b" ".join(proc_cmdline(pid)):
        log(f"{sid}: QEMU {pid} still alive 60 s after DELETE; killing it")
        os.kill(pid, signal.SIGKILL)
    raise RuntimeError(f"{sid}: not gone 60 s after DELETE")


def hold_phase(api: Api, state_dir: Path, image_id: str, k: int, timeout: float, kumo_pid: int):
    """K guests created together and kept running until all show the marker: kumo's RSS before
    and with them, and their QEMUs' RSS/PSS; then all deleted (QEMUs gone)."""
    before = rss_kib(kumo_pid)
    sids = []
    t0 = time.monotonic()
    try:
        for n in range(k):
            r = api.c("POST", "/servers", json={"server": {
                "name": f"hold-{n}", "imageRef": image_id, "flavorRef": "bench-guest", "networks": "none"}})
            if r.status_code != 202:
                raise RuntimeError(f"POST /servers: {r.status_code} {r.text[:300]}")
            sids.append(r.json()["server"]["id"])
        left = set(sids)
        while left:
            for sid in list(left):
                s = api.c("GET", f"/servers/{sid}").json()["server"]
                if s["status"] == "ERROR":
                    raise RuntimeError(f"{sid} ERROR: {s.get('fault')}")
                if s["status"] != "ACTIVE":
                    continue
                r = api.c("POST", f"/servers/{sid}/action", json={"os-getConsoleOutput": {"length": 50}})
                if r.status_code == 200 and MARKER in r.json().get("output", ""):
                    left.discard(sid)
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"hold: no marker on {sorted(left)} after {timeout} s")
            time.sleep(0.2)
        all_marker = (time.monotonic() - t0) * 1e3
        time.sleep(1)
        pids = [kumo_qemu_pid(state_dir, sid) for sid in sids]
        return {"guests": k, "all_marker_ms": all_marker, "kumo_rss_before_kib": before,
                "kumo_rss_with_kib": rss_kib(kumo_pid),
                "qemu_rss_kib": [rss_kib(p) for p in pids if p],
                "qemu_pss_kib": [pss_kib(p) for p in pids if p]}
    finally:
        for sid in sids:
            api.c("DELETE", f"/servers/{sid}")
        for sid in sids:
            delete_guest(api, state_dir, sid)


# ------------------------------------------------------------------ the hand-started QEMU
def hand_argv(model: list[str], sid: str, inst_dir: Path, hand_dir: Path, hand_uuid: str):
    """kumo's QEMU command line for instance SID, moved to HAND_DIR with HAND_UUID, run in the
    foreground and not paused."""
    out, i = [], 0
    while i < len(model):
        a = model[i]
        if a in ("-daemonize", "-S"):
            i += 1
            continue
        if a == "-pidfile":
            i += 2
            continue
        a = a.replace(str(inst_dir), str(hand_dir)).replace(sid, hand_uuid)
        out.append(a)
        i += 1
    return out


def hand_guest(argv: list[str], hand_dir: Path, backing: str, backing_fmt: str, size: int,
               pids_file: Path, timeout: float):
    rec = {"loadavg": loadavg()}
    hand_dir.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", backing,
                    str(hand_dir / "disk"), str(size)], check=True)
    console = hand_dir / "console.log"
    with open(hand_dir / "qemu.err", "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             start_new_session=True)
    with open(pids_file, "a") as f:
        f.write(f"{p.pid} {hand_dir}\n")
    try:
        off, buf = 0, b""
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"hand-started QEMU exited {p.returncode}: "
                                   f"{(hand_dir / 'qemu.err').read_text()[-800:]}")
            try:
                with open(console, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                data = b""
            if data:
                off += len(data)
                buf = (buf + data)[-4096:]
                if MARKER.encode() in buf:
                    rec["exec_marker_ms"] = (time.monotonic() - t0) * 1e3
                    break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"hand-started QEMU: no marker after {timeout} s")
            time.sleep(0.01)
        rec["qemu_rss_kib"] = rss_kib(p.pid)
        rec["qemu_pss_kib"] = pss_kib(p.pid)
        rec["qemu_rss_anon_kib"] = status_kib(p.pid, "RssAnon")
        rec["qemu_rss_file_kib"] = status_kib(p.pid, "RssFile")
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return rec


# ------------------------------------------------------------------ run
def cmd_run(a):
    state_dir, work, out = Path(a.state_dir), Path(a.work), Path(a.out)
    kumo_pid = int((state_dir / "kumo.pid").read_text().split()[0])
    pids_file = work / "hand-pids"
    try:
        api = Api(a.base, a.password)
        iid = setup_objects(api, Path(a.image))
    except (SetupError, requests.RequestException, OSError) as e:
        log(f"setup failed: {e}")
        return 2
    res = {"runs": a.runs, "image": a.image, "loadavg_start": loadavg(), "kumo": [], "hand": [],
           "errors": [], "kumo_rss_idle_kib": rss_kib(kumo_pid)}
    try:
        hv = api.c("GET", "/os-hypervisors/detail").json()["hypervisors"][0]
        ci = hv.get("cpu_info")
        ci = json.loads(ci) if isinstance(ci, str) else (ci or {})
        res["accel"] = ci.get("accel", "?")
        res["hypervisor"] = f"{hv.get('hypervisor_type')} {hv.get('hypervisor_version')}"
    except (requests.RequestException, ValueError, KeyError, IndexError) as e:
        res["accel"] = f"? ({e})"
    # warm-up: cold base cache; keep the QEMU's command line and disk layout as the model
    log("warm-up guest (cold base image cache)")
    model = None

    def grab_model(sid):
        nonlocal model
        pid = kumo_qemu_pid(state_dir, sid)
        if pid and model is None:
            model = [x.decode() for x in proc_cmdline(pid) if x]
    try:
        t0 = time.monotonic()
        r = api.c("POST", "/servers", json={"server": {
            "name": "warmup", "imageRef": iid, "flavorRef": "bench-guest", "networks": "none"}})
        if r.status_code != 202:
            raise RuntimeError(f"POST /servers: {r.status_code} {r.text[:300]}")
        wsid = r.json()["server"]["id"]
        while True:
            s = api.c("GET", f"/servers/{wsid}").json()["server"]
            if s["status"] == "ACTIVE":
                res["cold_create_active_ms"] = (time.monotonic() - t0) * 1e3
                break
            if s["status"] == "ERROR" or time.monotonic() - t0 > a.timeout:
                raise RuntimeError(f"warm-up {wsid}: {s['status']} {s.get('fault')}")
            time.sleep(0.02)
        grab_model(wsid)
        inst = state_dir / "instances" / wsid
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(inst / "disk")],
                                         capture_output=True, text=True, check=True).stdout)
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        backing_fmt = info.get("backing-filename-format", "qcow2")
        size = info["virtual-size"]
        # the warm-up's own marker (not counted)
        while True:
            r = api.c("POST", f"/servers/{wsid}/action", json={"os-getConsoleOutput": {"length": 50}})
            if r.status_code == 200 and MARKER in r.json().get("output", ""):
                res["cold_create_marker_ms"] = (time.monotonic() - t0) * 1e3
                break
            if time.monotonic() - t0 > a.timeout:
                raise RuntimeError(f"warm-up {wsid}: no marker")
            time.sleep(0.1)
        # The driver deletes a base image as soon as no instance's disk uses it (on every
        # destroy), so a deleted warm-up would leave every later create a cold one. The warm-up
        # is stopped instead (no QEMU; its disk keeps the base in use) and deleted at the end.
        wpid = kumo_qemu_pid(state_dir, wsid)
        r = api.c("POST", f"/servers/{wsid}/action", json={"os-stop": None})
        if r.status_code != 202:
            raise RuntimeError(f"warm-up os-stop: {r.status_code} {r.text[:200]}")
        while True:
            s = api.c("GET", f"/servers/{wsid}").json()["server"]
            if s["status"] == "SHUTOFF" and not (wpid and proc_alive(wpid)):
                break
            if time.monotonic() - t0 > a.timeout + 120:
                raise RuntimeError(f"warm-up {wsid}: not SHUTOFF ({s['status']})")
            time.sleep(0.1)
        res["base_holder"] = wsid
        if not model or not backing:
            raise RuntimeError(f"warm-up: no QEMU command line ({model!r}) or backing file ({backing!r})")
    except (RuntimeError, requests.RequestException, subprocess.CalledProcessError) as e:
        log(f"warm-up failed: {e}")
        res["errors"].append(f"warm-up: {e}")
        (out / "summary.json").write_text(json.dumps(res, indent=1))
        return 2
    hand_uuid0 = str(uuidlib.uuid4())
    model_argv = hand_argv(model, wsid, inst, work / "hand-MODEL", hand_uuid0)
    (out / "kumo-cmdline.txt").write_text(" ".join(model) + "\n")
    (out / "hand-cmdline.txt").write_text(" ".join(model_argv) + "\n")
    res.update(backing=backing, backing_fmt=backing_fmt, disk_size=size)
    log(f"warm-up: create -> ACTIVE {res['cold_create_active_ms']:.0f} ms (cold base); "
        f"model command line in {out}/kumo-cmdline.txt")

    for n in range(1, a.runs + 1):
        try:
            b0 = os.stat(backing)
        except OSError:
            b0 = None
        try:
            rec = kumo_guest(api, state_dir, iid, f"bench-{n}", a.timeout, kumo_pid)
            try:
                b1 = os.stat(backing)
                rec["base_warm"] = bool(b0) and (b0.st_ino, b0.st_mtime_ns) == (b1.st_ino, b1.st_mtime_ns)
            except OSError:
                rec["base_warm"] = False
            res["kumo"].append(rec)
            log(f"run {n}/{a.runs} kumo: ACTIVE {rec['create_active_ms']:.0f} ms, marker "
                f"{rec['create_marker_ms']:.0f} ms (in file {rec.get('create_marker_file_ms', 0):.0f}, "
                f"QEMU exec at {rec.get('create_qemu_exec_ms', 0):.0f}), QEMU RSS "
                f"{rec.get('qemu_rss_kib', 0) / 1024:.1f} MiB, loadavg {rec['loadavg']}")
        except (RuntimeError, requests.RequestException) as e:
            log(f"run {n} kumo: {e}")
            res["errors"].append(f"kumo run {n}: {e}")
        try:
            hu = str(uuidlib.uuid4())
            hd = work / f"hand-{n}"
            argv = hand_argv(model, wsid, inst, hd, hu)
            rec = hand_guest(argv, hd, backing, backing_fmt, size, pids_file, a.timeout)
            res["hand"].append(rec)
            log(f"run {n}/{a.runs} hand: marker {rec['exec_marker_ms']:.0f} ms, QEMU RSS "
                f"{rec['qemu_rss_kib'] / 1024:.1f} MiB")
        except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
            log(f"run {n} hand: {e}")
            res["errors"].append(f"hand run {n}: {e}")
        (out / "runs.json").write_text(json.dumps({"kumo": res["kumo"], "hand": res["hand"]}, indent=1))
    if a.hold > 0:
        try:
            res["hold"] = hold_phase(api, state_dir, iid, a.hold, a.timeout * 2, kumo_pid)
            h = res["hold"]
            log(f"hold: {a.hold} guests at once, kumo RSS {h['kumo_rss_before_kib'] / 1024:.1f} -> "
                f"{h['kumo_rss_with_kib'] / 1024:.1f} MiB")
        except (RuntimeError, requests.RequestException) as e:
            log(f"hold phase: {e}")
            res["errors"].append(f"hold phase: {e}")
    try:
        delete_guest(api, state_dir, wsid)
    except (RuntimeError, requests.RequestException) as e:
        res["errors"].append(f"deleting the warm-up (base holder): {e}")
    res["loadavg_end"] = loadavg()
    res["kumo_rss_end_kib"] = rss_kib(kumo_pid)
    (out / "summary.json").write_text(json.dumps(res, indent=1))
    return report(out)


# ------------------------------------------------------------------ table
def pct(xs, q):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def report(out: Path):
    res = json.loads((out / "summary.json").read_text())
    K, H = res["kumo"], res["hand"]
    rows = []
    ok = not res["errors"] and len(K) == res["runs"] and len(H) == res["runs"]

    def col(recs, key, scale=1.0):
        return [r[key] * scale for r in recs if r.get(key) is not None]

    def line(label, xs, unit, target=None, fmt="{:.0f}"):
        nonlocal ok
        if not xs:
            rows.append((label, "-", "-", "-", "-", target[1] if target else "", "FAIL" if target else ""))
            if target:
                ok = False
            return
        p50 = statistics.median(xs)
        res_ = ""
        if target:
            res_ = "PASS" if p50 < target[0] else "FAIL"
            ok = ok and res_ == "PASS"
        f = lambda v: fmt.format(v) + unit
        rows.append((label, f(p50), f(pct(xs, 0.9)), f(min(xs)), f(max(xs)),
                     target[1] if target else "(info)", res_))

    ca, cm = col(K, "create_active_ms"), col(K, "create_marker_ms")
    hm = col(H, "exec_marker_ms")
    line("kumo create -> ACTIVE", ca, " ms", TARGETS["create_active"])
    line("kumo create -> marker (API, 100 ms polls)", cm, " ms", TARGETS["create_marker"])
    line("hand-started QEMU exec -> marker (file)", hm, " ms")
    # overhead: p50 minus p50 (per-figure columns: the same on each run's pair, for spread)
    if cm and hm:
        ov = statistics.median(cm) - statistics.median(hm)
        res_ = "PASS" if ov < TARGETS["overhead"][0] else "FAIL"
        ok = ok and res_ == "PASS"
        pairs = [k["create_marker_ms"] - h["exec_marker_ms"] for k, h in zip(K, H)
                 if "create_marker_ms" in k and "exec_marker_ms" in h]
        rows.append(("kumo overhead (p50 marker - hand p50)", f"{ov:.0f} ms",
                     f"{pct(pairs, 0.9):.0f} ms*" if pairs else "-",
                     f"{min(pairs):.0f} ms*" if pairs else "-", f"{max(pairs):.0f} ms*" if pairs else "-",
                     TARGETS["overhead"][1], res_))
    else:
        rows.append(("kumo overhead (p50 marker - hand p50)", "-", "-", "-", "-", TARGETS["overhead"][1], "FAIL"))
        ok = False
    line("  kumo create -> marker in console.log (10 ms)", col(K, "create_marker_file_ms"), " ms")
    line("  kumo create -> QEMU exec (/proc start, 10 ms)", col(K, "create_qemu_exec_ms"), " ms")
    line("  kumo QEMU exec -> marker in console.log", col(K, "qemu_exec_marker_file_ms"), " ms")
    line("  kumo POST /servers (202)", col(K, "post_ms"), " ms", fmt="{:.1f}")
    mib = 1 / 1024
    line("QEMU RSS after marker, kumo's (192 MiB guest)", col(K, "qemu_rss_kib", mib), " MiB", fmt="{:.1f}")
    line("QEMU PSS after marker, kumo's", col(K, "qemu_pss_kib", mib), " MiB", fmt="{:.1f}")
    line("QEMU RSS after marker, hand-started", col(H, "qemu_rss_kib", mib), " MiB", fmt="{:.1f}")
    line("QEMU PSS after marker, hand-started", col(H, "qemu_pss_kib", mib), " MiB", fmt="{:.1f}")
    line("  of which anon (guest RAM + TCG code buffer), kumo's", col(K, "qemu_rss_anon_kib", mib), " MiB", fmt="{:.1f}")
    line("  of which file (QEMU binary, libraries, ROMs), kumo's", col(K, "qemu_rss_file_kib", mib), " MiB", fmt="{:.1f}")
    line("kumo RSS growth, one guest running vs none", col(K, "kumo_rss_growth_kib", mib), " MiB", fmt="{:.2f}")
    line("kumo RSS before each create", col(K, "kumo_rss_before_kib", mib), " MiB", fmt="{:.1f}")

    w = [max(len(r[i]) for r in rows + [("figure", "p50", "p90", "min", "max", "target", "result")])
         for i in range(7)]
    hdr = ("figure", "p50", "p90", "min", "max", "target", "result")
    lines = [f"Real guests: kumo (compute_driver = qemu, accel {res.get('accel', '?')}) vs a hand-started QEMU, {res['runs']} runs each "
             f"(interleaved), kumo-tiny, 1 vCPU / 192 MiB",
             f"loadavg at start {res['loadavg_start']}, at end {res.get('loadavg_end', '?')}; "
             f"runs' loadavg (1 min): "
             + " ".join(r["loadavg"].split()[0] for r in K),
             f"cold base (warm-up guest, empty _base): create -> ACTIVE "
             f"{res.get('cold_create_active_ms', 0):.0f} ms, -> marker {res.get('cold_create_marker_ms', 0):.0f} ms",
             "", "  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)),
             "  ".join("-" * w[i] for i in range(7))]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    h = res.get("hold")
    if h:
        g = (h["kumo_rss_with_kib"] - h["kumo_rss_before_kib"]) / 1024
        lines.append(f"{h['guests']} guests at once (all at the marker after {h['all_marker_ms'] / 1000:.1f} s): "
                     f"kumo RSS {h['kumo_rss_before_kib'] / 1024:.1f} -> {h['kumo_rss_with_kib'] / 1024:.1f} MiB "
                     f"= {g / h['guests']:+.2f} MiB per guest; their QEMUs' RSS "
                     + ", ".join(f"{x / 1024:.1f}" for x in h["qemu_rss_kib"]) + " MiB, PSS "
                     + ", ".join(f"{x / 1024:.1f}" for x in h["qemu_pss_kib"] if x) + " MiB")
    cold = [i + 1 for i, r in enumerate(K) if not r.get("base_warm", True)]
    lines.append("base image warm (same _base file before and after) on every kumo run" if not cold
                 else f"WARNING: base image fetched again on runs {cold}")
    lines.append("* per-round pairs (kumo run i - hand run i), for the spread only")
    lines.append(f"kumo RSS idle {res['kumo_rss_idle_kib'] / 1024:.1f} MiB before the warm-up, "
                 f"{res.get('kumo_rss_end_kib', 0) / 1024:.1f} MiB after all runs")
    for e in res["errors"]:
        lines.append("ERROR: " + e.splitlines()[0])
    lines.append("result: " + ("PASS (all targets met)" if ok else "FAIL"))
    text = "\n".join(lines) + "\n"
    (out / "table.txt").write_text(text)
    print(text, end="")
    return 0 if ok else 1


def main():
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for k in ("base", "password", "image", "state-dir", "work", "out"):
        r.add_argument("--" + k, required=True)
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--timeout", type=float, default=120)
    r.add_argument("--hold", type=int, default=3)
    q = sub.add_parser("report")
    q.add_argument("out")
    a = p.parse_args()
    if a.cmd == "report":
        sys.exit(report(Path(a.out)))
    sys.exit(cmd_run(a))


if __name__ == "__main__":
    main()
