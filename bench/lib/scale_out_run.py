#!/usr/bin/env python3
"""bench/scale_out.sh's runner: fake-driver boots through RabbitMQ + PostgreSQL with 10 compute
hosts in processes of their own, against the embedded mode (one process, SQLite, the in-process
bus, `[fake] hosts = 10`), the same load on both, in one run (issue #11, performance line).

  scale_out_run.py run --kumo BIN --work DIR --out OUT [--servers N] [--clients C]
                       [--hosts H] [--wait-quiet S] [--only scale-out|embedded]
  scale_out_run.py report OUT        re-print the table of a results dir

Sides (each started, measured, stopped before the next; every port free on loopback):
  scale-out  a private PostgreSQL and RabbitMQ (tests/e2e/dbservers.py); process A =
             `kumo serve api conductor scheduler network-agent volume metadata dashboard`; H (10) processes `kumo serve compute`, each
             its own `[DEFAULT] host` (compute-01..) and state dir, `[fake] hosts = 1`.
  embedded   `kumo serve all` (what `kumo up --foreground` runs): SQLite, the in-process bus,
             `[fake] hosts = H`.
Both: `[network] dataplane = none` (ports are made and bound through the network API, nothing is
wired), bcrypt cost 4, no quotas.

Load (the same on both): one flavor (tiny: 1 vCPU, 64 MiB, 1 GiB), one image (64 KiB raw, from
compute_fixture.py), one network with a /16 subnet. N servers (500) created by C (16)
closed-loop clients (POST /servers on that network, wait until ACTIVE or ERROR, next). One
poller reads GET /servers/detail?changes-since=<its previous poll - 1 s> back to back (at most
every 50 ms) and records when each server is first seen ACTIVE or ERROR; the clients wait on
what it saw. Figures: the time from the first POST to the last server ACTIVE and servers/s =
N / that time; create->ACTIVE per server (POST sent -> poll answer showing ACTIVE) p50/p90/max;
errors (a POST refused, a server in ERROR with its fault, a server not ACTIVE within --timeout);
the RSS (VmRSS, process tree) of every kumo process (and of PostgreSQL and RabbitMQ) idle, peak
during the creates, with the N servers and after the delete, sampled every second; the load
average at start and end. Then every server deleted (C clients) and the time until none is
listed. Per-phase times of a sample of boots from their instance actions (events).

Results: OUT/<side>/result.json, OUT/<side>/logs/ (each process's log), OUT/table.txt.
Exit: 0 when the scale-out side reaches --target (50) servers/s with no error, 1 when it does
not, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import dbservers  # noqa: E402  (tests/e2e/dbservers.py: private PostgreSQL and RabbitMQ)

PASSWORD = "secret"
SIDES = ("scale-out", "embedded")
POLL_MIN = 0.05
SINCE_MARGIN = 1.0
MICROVERSION = "2.37"


def log(msg: str) -> None:
    print(f"[scale_out.sh] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


# --- machine ---------------------------------------------------------------------------------

def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_busy_pct(seconds: float = 3) -> int:
    def read():
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return int(100 * ((t1 - t0) - (i1 - i0)) / (t1 - t0)) if t1 > t0 else 0


def wait_quiet(max_s: float, threshold: int = 25) -> int:
    """As bench/lib/common.sh's wait_quiet: until the CPU use over 3 s is < threshold % or max_s."""
    deadline = time.monotonic() + max_s
    while True:
        busy = cpu_busy_pct(3)
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        log(f"machine busy ({busy}% CPU over 3 s): waiting")


def tree_rss_kib(pid: int, field: str = "VmRSS:") -> int:
    """VmRSS (or, field "Pss:", the PSS) of pid and all its descendants (KiB)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            f = "status" if field == "VmRSS:" else "smaps_rollup"
            for line in Path(f"/proc/{p}/{f}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        todo.extend(kids.get(p, []))
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system, of the live processes and of the children they reaped) of pid
    and all its descendants, in seconds."""
    hz = os.sysconf("SC_CLK_TCK")
    kids: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                stats[int(d)] = f
                kids.setdefault(int(f[1]), []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        if q in stats:
            f = stats[q]  # fields from 3 (state): utime 14, stime 15, cutime 16, cstime 17
            total += sum(int(x) for x in f[11:15])
        todo.extend(kids.get(q, []))
    return total / hz


def machine_cpu() -> tuple[int, int]:
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(v), v[3] + v[4]


class RssSampler:
    """Every second: the RSS of each named process tree; keeps the last and the peak."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def sample(self) -> dict[str, int]:
        # kumo: RSS of each process; PostgreSQL's backends share its buffers: PSS of the tree
        return {n: tree_rss_kib(p, "VmRSS:" if n.startswith("kumo") else "Pss:") for n, p in self.pids.items()}

    def _run(self):
        while not self._stop.is_set():
            s = self.sample()
            for n, v in s.items():
                self.peak[n] = max(self.peak.get(n, 0), v)
            self.peak_total = max(self.peak_total, sum(v for n, v in s.items() if n.startswith("kumo")))
            self._stop.wait(1.0)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t:
            self._t.join(5)


# --- kumo processes --------------------------------------------------------------------------

class Proc:
    """One `kumo serve ROLE...` in the foreground, its output in STATE/serve.log; stopped by pid."""

    registry: list["Proc"] = []

    def __init__(self, kumo: str, name: str, state: Path, conf: str, roles: list[str], pidfile: Path,
                 listen: str | None = None):
        self.name, self.state = name, state
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        (state / "kumo.conf").write_text(conf)
        self.log = state / "serve.log"
        argv = [kumo, "serve", *roles, "--state-dir", str(state), "--config", str(state / "kumo.conf")]
        if listen:
            argv += ["--listen", listen]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["ADMIN_PASSWORD"] = PASSWORD
        self.proc = subprocess.Popen(argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        with pidfile.open("a") as f:  # for the shell's trap, should this runner die unannounced
            f.write(f"{self.proc.pid} kumo\n")
        Proc.registry.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_serving(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "kumo is serving" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited ({self.proc.returncode}):\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise SetupError(f"{self.name}: not serving within {timeout} s:\n{tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) still running 20 s after TERM: killing it")
            self.proc.kill()
            self.proc.wait(10)


def tail(path: Path, n: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def base_conf(hosts_fake: int, extra: str = "", default: str = "") -> str:
    return (f"# written by bench/scale_out.sh\n[DEFAULT]\n{default}"
            "[identity]\npassword_hash_rounds = 4\n"
            "[network]\ndataplane = none\nquota_port = -1\nquota_network = -1\nquota_subnet = -1\n"
            "[demo]\nguest_image = none\nnetwork = false\n"
            "[quota]\ninstances = -1\ncores = -1\nram = -1\n"
            f"[fake]\nhosts = {hosts_fake}\n{extra}")


# --- HTTP ------------------------------------------------------------------------------------

class Api:
    """A token for admin and the catalog's endpoints; one keep-alive connection per thread."""

    def __init__(self, base: str):
        self.base = base
        self._local = threading.local()
        st, hd, d = self.call("POST", base + "/identity/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}, auth=False)
        if st != 201:
            raise SetupError(f"token: {st} {str(d)[:300]}")
        self.token = hd["X-Subject-Token"]
        self.ep = {}
        for s in d["token"]["catalog"]:
            for e in s["endpoints"]:
                if e["interface"] == "public":
                    self.ep[s["type"]] = e["url"].rstrip("/")

    def _conn(self, netloc: str) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(netloc)
        if c is None:
            host, port = netloc.rsplit(":", 1)
            if not (host.startswith("127.") or host == "localhost"):
                raise SetupError(f"refusing a non-loopback URL: {netloc}")
            c = conns[netloc] = http.client.HTTPConnection(host, int(port), timeout=120)
        return c

    def call(self, method: str, url: str, body=None, auth: bool = True, headers: dict | None = None,
             retry: bool | None = None):
        u = urllib.parse.urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        h = {"Accept": "application/json", "X-OpenStack-Nova-API-Version": MICROVERSION}
        if auth:
            h["X-Auth-Token"] = self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if retry is None:
            retry = method in ("GET", "DELETE")
        for attempt in (0, 1):
            c = self._conn(u.netloc)
            try:
                c.request(method, path, body=data, headers=h)
                r = c.getresponse()
                raw = r.read()
                break
            except (OSError, http.client.HTTPException) as e:
                c.close()
                self._local.conns.pop(u.netloc, None)
                if attempt or not retry:
                    return 0, {}, repr(e)
        try:
            d = json.loads(raw) if raw else {}
        except ValueError:
            d = raw.decode(errors="replace")
        return r.status, r.headers, d

    def compute(self, method, path, body=None, **kw):
        return self.call(method, self.ep["compute"] + path, body, **kw)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(s: str | None) -> float | None:
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    f = int(k)
    return xs[f] if f + 1 >= len(xs) else xs[f] + (xs[f + 1] - xs[f]) * (k - f)


# --- fixture ---------------------------------------------------------------------------------

def fixture(base: str, api: Api, side_out: Path) -> dict:
    """Flavor tiny and image tiny-raw (compute_fixture.py, as compute.sh), one network + subnet."""
    r = subprocess.run([sys.executable, str(HERE / "compute_fixture.py"), base, PASSWORD, "tiny-raw", "tiny"],
                       capture_output=True, text=True, timeout=180)
    (side_out / "fixture.err").write_text(r.stderr)
    if r.returncode != 0 or not r.stdout.strip():
        raise SetupError(f"compute_fixture.py failed ({r.returncode}): {r.stderr[-800:]}")
    image = r.stdout.strip().splitlines()[-1]
    net = api.ep["network"]
    st, _, d = api.call("POST", net + "/v2.0/networks", {"network": {"name": "bench-net"}})
    if st != 201:
        raise SetupError(f"network create: {st} {str(d)[:300]}")
    net_id = d["network"]["id"]
    st, _, d = api.call("POST", net + "/v2.0/subnets", {"subnet": {
        "network_id": net_id, "name": "bench-subnet", "ip_version": 4, "cidr": "10.90.0.0/16"}})
    if st != 201:
        raise SetupError(f"subnet create: {st} {str(d)[:300]}")
    return {"image": image, "flavor": "tiny", "network": net_id}


# --- the load --------------------------------------------------------------------------------

class Poller:
    """GET /servers/detail?changes-since=... back to back: the first time each server is seen
    ACTIVE or ERROR (monotonic time of the answer), its fault when ERROR."""

    def __init__(self, api: Api):
        self.api = api
        self.final: dict[str, tuple[float, str, dict | None]] = {}
        self.cond = threading.Condition()
        self.polls = 0
        self.poll_errors = 0
        self.poll_s: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        since = None
        while not self._stop.is_set():
            t_wall, t0 = time.time(), time.monotonic()
            url: str | None = self.api.ep["compute"] + "/servers/detail"
            if since is not None:
                url += "?changes-since=" + urllib.parse.quote(iso(since - SINCE_MARGIN))
            seen = []
            ok = True
            while url:
                st, _, d = self.api.call("GET", url)
                if st != 200:
                    ok = False
                    break
                seen += d.get("servers", [])
                nxt = [lk["href"] for lk in d.get("servers_links", []) if lk.get("rel") == "next"]
                url = nxt[0] if nxt else None
            t1 = time.monotonic()
            self.polls += 1
            self.poll_s.append(t1 - t0)
            if not ok:
                self.poll_errors += 1
                time.sleep(0.2)
                continue
            since = t_wall
            with self.cond:
                for s in seen:
                    if s["id"] not in self.final and s.get("status") in ("ACTIVE", "ERROR"):
                        self.final[s["id"]] = (t1, s["status"], s.get("fault"))
                self.cond.notify_all()
            rest = POLL_MIN - (time.monotonic() - t0)
            if rest > 0:
                self._stop.wait(rest)

    def start(self):
        self._t.start()

    def stop(self):
        self._stop.set()
        self._t.join(30)

    def wait(self, sid: str, deadline: float):
        with self.cond:
            while sid not in self.final:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))
            return self.final[sid]


def create_load(api: Api, fx: dict, n: int, clients: int, timeout: float) -> dict:
    poller = Poller(api)
    poller.start()
    lock = threading.Lock()
    nxt = [0]
    recs: list[dict] = []
    errors: list[dict] = []

    def client():
        while True:
            with lock:
                k = nxt[0]
                if k >= n:
                    return
                nxt[0] += 1
            body = {"server": {"name": f"so-{k:05d}", "imageRef": fx["image"], "flavorRef": fx["flavor"],
                               "networks": [{"uuid": fx["network"]}]}}
            t0 = time.monotonic()
            st, _, d = api.compute("POST", "/servers", body)
            t_posted = time.monotonic()
            if st != 202:
                with lock:
                    errors.append({"server": body["server"]["name"], "what": f"POST {st}", "detail": str(d)[:500]})
                continue
            sid = d["server"]["id"]
            got = poller.wait(sid, t0 + timeout)
            rec = {"id": sid, "t_post": t0, "post_s": t_posted - t0}
            if got is None:
                rec["status"] = "TIMEOUT"
                with lock:
                    errors.append({"server": sid, "what": f"not ACTIVE within {timeout} s"})
            else:
                rec.update(t_final=got[0], status=got[1], active_s=got[0] - t0)
                if got[1] == "ERROR":
                    with lock:
                        errors.append({"server": sid, "what": "ERROR", "fault": got[2]})
            with lock:
                recs.append(rec)

    t_start = time.monotonic()
    ths = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    poller.stop()
    active = [r for r in recs if r["status"] == "ACTIVE"]
    t_last = max((r["t_final"] for r in active), default=time.monotonic())
    first_post = min((r["t_post"] for r in recs), default=t_start)
    wall = t_last - first_post
    lat = [r["active_s"] for r in active]
    posts = [r["post_s"] for r in recs]
    return {
        "servers": n, "clients": clients, "active": len(active), "errors": errors,
        "wall_s": wall, "servers_per_s": len(active) / wall if wall > 0 else 0,
        "create_active_s": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": max(lat, default=None)},
        "post_s": {"p50": pct(posts, 50), "p90": pct(posts, 90), "max": max(posts, default=None)},
        "polls": poller.polls, "poll_errors": poller.poll_errors,
        "poll_s": {"p50": pct(poller.poll_s, 50), "p90": pct(poller.poll_s, 90), "max": max(poller.poll_s, default=None)},
        "ids": [r["id"] for r in recs],
    }


def list_ids(api: Api) -> set[str] | None:
    ids: set[str] = set()
    url: str | None = api.ep["compute"] + "/servers"
    while url:
        st, _, d = api.call("GET", url)
        if st != 200:
            return None
        ids |= {s["id"] for s in d.get("servers", [])}
        nxt = [lk["href"] for lk in d.get("servers_links", []) if lk.get("rel") == "next"]
        url = nxt[0] if nxt else None
    return ids


def delete_all(api: Api, ids: list[str], clients: int, timeout: float) -> dict:
    lock = threading.Lock()
    todo = list(ids)
    errors: list[str] = []

    def client():
        while True:
            with lock:
                if not todo:
                    return
                sid = todo.pop()
            st, _, d = api.compute("DELETE", f"/servers/{sid}")
            if st not in (204, 404):
                with lock:
                    errors.append(f"DELETE {sid}: {st} {str(d)[:200]}")

    t0 = time.monotonic()
    ths = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    t_calls = time.monotonic() - t0
    want = set(ids)
    left = want
    while time.monotonic() - t0 < timeout:
        got = list_ids(api)
        if got is not None:
            left = want & got
            if not left:
                break
        time.sleep(0.1)
    return {"calls_s": t_calls, "gone_s": time.monotonic() - t0, "left": len(left), "errors": errors}


def busy_fraction(spans: list[tuple[float, float]]) -> tuple[float, int, float | None]:
    """The union of the [start, finish] spans over the time from the first start to the last
    finish, the most spans open at once, and the p50 of finish - max(start, previous finish)
    with the spans ordered by finish: for a stage that serves one at a time, its time per
    request (a stage that is the bottleneck is busy ~100% of the time, and the run's rate is
    1 / that time)."""
    if not spans:
        return 0.0, 0, None
    by_f = sorted(spans, key=lambda x: x[1])
    serial = [b - max(a, pb) for (a, b), (_, pb) in zip(by_f[1:], by_f[:-1])]
    spans = sorted(spans)
    covered, cur_s, cur_f = 0.0, spans[0][0], spans[0][1]
    for a, b in spans[1:]:
        if a > cur_f:
            covered += cur_f - cur_s
            cur_s, cur_f = a, b
        else:
            cur_f = max(cur_f, b)
    covered += cur_f - cur_s
    wall = max(b for _, b in spans) - spans[0][0]
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    depth = most = 0
    for _, d in edges:
        depth += d
        most = max(most, depth)
    return (covered / wall if wall > 0 else 1.0), most, pct(serial, 50)


def phase_sample(api: Api, ids: list[str], k: int = 500) -> dict:
    """Per-phase times of (up to k) boots from their instance actions' events, and how busy each
    stage was over the run (busy_fraction of its events' spans)."""
    if not ids:
        return {}
    pick = ids[:: max(1, len(ids) // k)][:k]
    per: dict[str, list[float]] = {}
    offs: dict[str, list[float]] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for sid in pick:
        st, _, d = api.compute("GET", f"/servers/{sid}/os-instance-actions")
        if st != 200 or not d.get("instanceActions"):
            continue
        act = next((a for a in d["instanceActions"] if a.get("action") == "create"), d["instanceActions"][-1])
        st, _, d = api.compute("GET", f"/servers/{sid}/os-instance-actions/{act['request_id']}",
                               headers={"X-OpenStack-Nova-API-Version": "2.51"})
        if st != 200:
            continue
        a = d["instanceAction"]
        t_act = parse_ts(a.get("start_time"))
        for e in a.get("events", []):
            s, f = parse_ts(e.get("start_time")), parse_ts(e.get("finish_time"))
            if s is not None and f is not None:
                per.setdefault(e["event"], []).append(f - s)
                spans.setdefault(e["event"], []).append((s, f))
            if s is not None and t_act is not None:
                offs.setdefault(e["event"], []).append(s - t_act)
    summ = lambda xs: {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90), "max": max(xs)}  # noqa: E731
    order = sorted(offs, key=lambda k: pct(offs[k], 50) or 0)
    return {"events": {k: {"start": summ(offs[k]), "took": summ(per.get(k, [0.0])),
                           "busy": busy_fraction(spans.get(k, []))} for k in order},
            "sampled": len(pick)}


PG_SETTINGS = ("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all",
               "pg_stat_statements.max=5000")


class PgStats:
    """PostgreSQL's own counts over the creates: transactions per database (pg_stat_database) and
    statements (pg_stat_statements: calls and execution time per database and per statement)."""

    def __init__(self, psql: list[str]):
        self.psql = psql
        self.ok = self.q("CREATE EXTENSION IF NOT EXISTS pg_stat_statements") is not None

    def q(self, sql: str) -> list[list[str]] | None:
        r = subprocess.run([*self.psql, "-d", "postgres", "-At", "-F", "\t", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            log(f"psql: {r.stderr.strip()[:300]}")
            return None
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def xacts(self) -> dict[str, int]:
        rows = self.q("SELECT datname, xact_commit + xact_rollback FROM pg_stat_database WHERE datname LIKE 'kumo_%'")
        return {r[0]: int(r[1]) for r in rows or []}

    def start(self) -> None:
        self.x0 = self.xacts()
        if self.ok:
            self.q("SELECT pg_stat_statements_reset()")

    def finish(self, out: Path) -> dict:
        x1 = self.xacts()
        res: dict = {"transactions": {k: x1[k] - self.x0.get(k, 0) for k in x1}}
        # How big an instance's row is, as text and as stored (compressed when PostgreSQL
        # toasts it): every build step rewrites it.
        r = subprocess.run([*self.psql, "-d", "kumo_compute", "-At", "-F", "\t", "-c",
                            "SELECT count(*), round(avg(octet_length(doc::text))), round(avg(pg_column_size(doc))) "
                            "FROM instances"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and r.stdout.strip():
            n, text, stored = (r.stdout.strip().split("\t") + ["", "", ""])[:3]
            res["instance_doc_bytes"] = {"rows": n, "text": text, "stored": stored}
        if self.ok:
            rows = self.q("SELECT d.datname, sum(s.calls), sum(s.total_exec_time) FROM pg_stat_statements s "
                          "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE 'kumo_%' GROUP BY 1")
            res["statements"] = {r[0]: {"calls": int(r[1]), "exec_ms": float(r[2])} for r in rows or []}
            top = self.q("SELECT d.datname, s.calls, round(s.total_exec_time::numeric, 1), "
                         "regexp_replace(left(s.query, 240), '\\s+', ' ', 'g') FROM pg_stat_statements s "
                         "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE 'kumo_%' "
                         "ORDER BY s.calls DESC LIMIT 60")
            (out / "pg_statements.txt").write_text(
                "database\tcalls\texec_ms\tstatement\n" + "".join("\t".join(r) + "\n" for r in top or []))
        return res


def run_load(side: str, base: str, pids: dict[str, int], args, side_out: Path, pg: PgStats | None = None) -> dict:
    api = Api(base)
    fx = fixture(base, api, side_out)
    log(f"{side}: fixture {fx}")
    sampler = RssSampler(pids)
    idle = sampler.sample()
    busy = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else cpu_busy_pct(3)
    la0 = loadavg()
    log(f"{side}: {args.servers} servers by {args.clients} clients (machine {busy}% busy before, "
        f"loadavg {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f})")
    if pg:
        pg.start()
    cpu0 = {n: tree_cpu_s(p) for n, p in pids.items()}
    me0, m0 = sum(os.times()[:2]), machine_cpu()
    with sampler:
        res = create_load(api, fx, args.servers, args.clients, args.timeout)
    cpu1 = {n: tree_cpu_s(p) for n, p in pids.items()}
    me1, m1 = sum(os.times()[:2]), machine_cpu()
    la1 = loadavg()
    pg_counts = pg.finish(side_out) if pg else None
    cpu = {n: cpu1[n] - cpu0[n] for n in pids}
    cpu["bench clients (this runner)"] = me1 - me0
    busy_during = 100 * ((m1[0] - m0[0]) - (m1[1] - m0[1])) / max(1, m1[0] - m0[0])
    with_servers = sampler.sample()
    log(f"{side}: {res['active']}/{args.servers} ACTIVE in {res['wall_s']:.2f} s = {res['servers_per_s']:.1f} "
        f"servers/s, {len(res['errors'])} errors, loadavg {la1[0]:.2f}")
    phases = phase_sample(api, res["ids"])
    dl = delete_all(api, res["ids"], args.clients, args.timeout)
    log(f"{side}: delete: calls {dl['calls_s']:.2f} s, none listed after {dl['gone_s']:.2f} s ({dl['left']} left)")
    after = sampler.sample()
    res.pop("ids")
    return {"side": side, "cpu_busy_before": busy, "loadavg_start": la0, "loadavg_end": la1,
            "fixture": fx, "create": res, "delete": dl, "phases": phases,
            "cpu_s_during_creates": cpu, "postgresql": pg_counts, "machine_busy_during_creates_pct": busy_during,
            "rss_kib": {"idle": idle, "peak": sampler.peak, "with_servers": with_servers, "after_delete": after,
                        "peak_kumo_total": sampler.peak_total}}


# --- the sides -------------------------------------------------------------------------------

def side_scale_out(args, work: Path, side_out: Path) -> dict:
    t0 = time.monotonic()
    procs: list[Proc] = []
    try:
        with dbservers.rabbitmq_server(prefix="kumo-bench-scale-mq-") as mq, \
                dbservers.postgres_server(prefix="kumo-bench-scale-pg-", max_connections=args.pg_max_connections,
                                          settings=PG_SETTINGS) as db:
            log(f"scale-out: RabbitMQ ({mq.started_s:.1f} s) and PostgreSQL ({db.started_s:.1f} s) up")
            with (args.work / "pids.txt").open("a") as f:
                f.write(f"{mq.pid} rabbitmq\n{db.pid} postgres\n")
            port = dbservers.free_port()
            base = f"http://127.0.0.1:{port}"
            common = (f"transport_url = {mq.url}\n", f"[database]\nconnection = {db.url}\n"
                      f"[service_user]\npassword = {PASSWORD}\n")
            # every role but compute, as before volume, metadata and dashboard were roles of their own
            roles = ["api", "conductor", "scheduler", "network-agent", "volume", "metadata", "dashboard"]
            metadata = (f"[metadata]\nlisten = 127.0.0.1:{dbservers.free_port()}\n"
                        f"[neutron]\nmetadata_proxy_shared_secret = {PASSWORD}\n")
            a = Proc(args.kumo, "api", work / "api", base_conf(1, common[1] + metadata, common[0]), roles,
                     args.work / "pids.txt", listen=f"127.0.0.1:{port}")
            procs.append(a)
            a.wait_serving()
            auth = f"auth_url = {base}/identity\n"
            for i in range(1, args.hosts + 1):
                h = f"compute-{i:02d}"
                procs.append(Proc(args.kumo, h, work / h,
                                  base_conf(1, common[1] + auth, common[0] + f"host = {h}\n"),
                                  ["compute"], args.work / "pids.txt"))
            for p in procs[1:]:
                p.wait_serving()
            setup_s = time.monotonic() - t0
            log(f"scale-out: 1 + {args.hosts} kumo processes serving ({setup_s:.1f} s from the start)")
            wait_hypervisors(base, args.hosts)
            pids = {f"kumo {p.name}": p.pid for p in procs}
            pids.update({"postgresql": db.pid, "rabbitmq": mq.pid})
            pg = PgStats(db.admin)
            r = run_load("scale-out", base, pids, args, side_out, pg)
            r["setup_s"] = setup_s
            r["roles_a"] = roles
            return r
    finally:
        for p in procs:
            p.stop()
        keep_logs(procs, side_out)


def side_embedded(args, work: Path, side_out: Path) -> dict:
    t0 = time.monotonic()
    procs: list[Proc] = []
    try:
        port = dbservers.free_port()
        base = f"http://127.0.0.1:{port}"
        p = Proc(args.kumo, "all", work / "embedded", base_conf(args.hosts), ["all"], args.work / "pids.txt",
                 listen=f"127.0.0.1:{port}")
        procs.append(p)
        p.wait_serving()
        setup_s = time.monotonic() - t0
        wait_hypervisors(base, args.hosts)
        r = run_load("embedded", base, {"kumo all": p.pid}, args, side_out)
        r["setup_s"] = setup_s
        return r
    finally:
        for p in procs:
            p.stop()
        keep_logs(procs, side_out)


def wait_hypervisors(base: str, n: int, timeout: float = 60) -> None:
    api = Api(base)
    deadline = time.monotonic() + timeout
    while True:
        st, _, d = api.compute("GET", "/os-hypervisors")
        got = len(d.get("hypervisors", [])) if st == 200 else 0
        if got >= n:
            return
        if time.monotonic() > deadline:
            raise SetupError(f"{got} hypervisors after {timeout} s, want {n}: {str(d)[:300]}")
        time.sleep(0.5)


def keep_logs(procs: list[Proc], side_out: Path) -> None:
    d = side_out / "logs"
    d.mkdir(parents=True, exist_ok=True)
    for p in procs:
        with contextlib.suppress(OSError):
            shutil.copy(p.log, d / f"{p.name}.log")
        logs = p.state / "logs"
        if logs.is_dir():
            shutil.copytree(logs, d / f"{p.name}-logs", dirs_exist_ok=True)


# --- report ----------------------------------------------------------------------------------

def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.0f}"


def report(out: Path, target: float) -> int:
    res = {}
    for side in SIDES:
        f = out / side / "result.json"
        if f.exists():
            res[side] = json.loads(f.read_text())
        elif (out / side / "ERROR").exists():
            res[side] = {"error": (out / side / "ERROR").read_text().strip()}
    lines = []
    so, em = res.get("scale-out", {}), res.get("embedded", {})

    def g(r, *path):
        for k in path:
            if isinstance(r, list) and isinstance(k, int) and k < len(r):
                r = r[k]
            elif isinstance(r, dict) and k in r:
                r = r[k]
            else:
                return None
        return r

    def kumo_total(r, which):
        d = g(r, "rss_kib", which) or {}
        v = [x for k, x in d.items() if k.startswith("kumo")]
        return sum(v) if v else None

    def ratio(a, b, fmt="{:.2f}x"):
        return fmt.format(a / b) if a and b else "-"

    n = g(so, "create", "servers") or g(em, "create", "servers")
    c = g(so, "create", "clients") or g(em, "create", "clients")
    sps_so, sps_em = g(so, "create", "servers_per_s"), g(em, "create", "servers_per_s")
    err_so = len(g(so, "create", "errors") or []) if "create" in so else None
    err_em = len(g(em, "create", "errors") or []) if "create" in em else None
    verdict = "FAIL (no figure)"
    if sps_so is not None:
        verdict = "PASS" if sps_so >= target and not err_so else "FAIL"
    rows = [
        ("figure", "scale-out", "embedded", "ratio (scale-out/embedded)", f"target"),
        (f"servers/s, {n} servers by {c} clients", f"{sps_so:.1f}" if sps_so is not None else "-",
         f"{sps_em:.1f}" if sps_em is not None else "-", ratio(sps_so, sps_em), f">= {target:g}/s: {verdict}"),
        ("first POST -> last ACTIVE (s)", f"{g(so, 'create', 'wall_s'):.2f}" if "create" in so else "-",
         f"{g(em, 'create', 'wall_s'):.2f}" if "create" in em else "-", "", ""),
        ("create -> ACTIVE p50 (ms)", ms(g(so, "create", "create_active_s", "p50")),
         ms(g(em, "create", "create_active_s", "p50")),
         ratio(g(so, "create", "create_active_s", "p50"), g(em, "create", "create_active_s", "p50")), ""),
        ("create -> ACTIVE p90 (ms)", ms(g(so, "create", "create_active_s", "p90")),
         ms(g(em, "create", "create_active_s", "p90")),
         ratio(g(so, "create", "create_active_s", "p90"), g(em, "create", "create_active_s", "p90")), ""),
        ("POST /servers p50 (ms)", ms(g(so, "create", "post_s", "p50")), ms(g(em, "create", "post_s", "p50")), "", ""),
        ("errors (POST refused, ERROR, timeout)", str(err_so) if err_so is not None else "-",
         str(err_em) if err_em is not None else "-", "", "0"),
        ("delete all: DELETE calls (s)", f"{g(so, 'delete', 'calls_s'):.2f}" if "delete" in so else "-",
         f"{g(em, 'delete', 'calls_s'):.2f}" if "delete" in em else "-", "", ""),
        ("delete all: until none listed (s)", f"{g(so, 'delete', 'gone_s'):.2f}" if "delete" in so else "-",
         f"{g(em, 'delete', 'gone_s'):.2f}" if "delete" in em else "-",
         ratio(g(so, "delete", "gone_s"), g(em, "delete", "gone_s")), ""),
        ("RSS of kumo, sum of processes, idle (MiB)", mib(kumo_total(so, "idle")), mib(kumo_total(em, "idle")),
         ratio(kumo_total(so, "idle"), kumo_total(em, "idle")), ""),
        (f"RSS of kumo, sum, with {n} servers (MiB)", mib(kumo_total(so, "with_servers")),
         mib(kumo_total(em, "with_servers")), ratio(kumo_total(so, "with_servers"), kumo_total(em, "with_servers")), ""),
        ("RSS of kumo, sum, peak during creates (MiB)", mib(g(so, "rss_kib", "peak_kumo_total")),
         mib(g(em, "rss_kib", "peak_kumo_total")), "", ""),
        ("load average at start / end", "{:.2f} / {:.2f}".format(g(so, "loadavg_start", 0), g(so, "loadavg_end", 0))
         if "loadavg_start" in so else "-",
         "{:.2f} / {:.2f}".format(g(em, "loadavg_start", 0), g(em, "loadavg_end", 0)) if "loadavg_start" in em else "-",
         "", ""),
        ("machine CPU use over 3 s before (%)", str(g(so, "cpu_busy_before")) if "cpu_busy_before" in so else "-",
         str(g(em, "cpu_busy_before")) if "cpu_busy_before" in em else "-", "", "< 25"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    fmt = lambda r: "| " + " | ".join(x.ljust(w[i]) for i, x in enumerate(r)) + " |"  # noqa: E731
    lines.append(fmt(rows[0]))
    lines.append("| " + " | ".join("-" * w[i] for i in range(5)) + " |")
    lines += [fmt(r) for r in rows[1:]]
    for side, r in res.items():
        if "error" in r:
            lines.append(f"\n{side}: SETUP ERROR: {r['error']}")
            continue
        lines.append(f"\n{side}: RSS per kumo process (PostgreSQL, RabbitMQ: PSS of the process tree), MiB "
                     f"(idle / peak / with {n} servers / after delete):")
        rk = r["rss_kib"]
        for name in rk["idle"]:
            lines.append(f"  {name:<20} {mib(rk['idle'].get(name)):>7} {mib(rk['peak'].get(name)):>7} "
                         f"{mib(rk['with_servers'].get(name)):>7} {mib(rk['after_delete'].get(name)):>7}")
        cr = r["create"]
        if "cpu_s_during_creates" in r:
            cpu = r["cpu_s_during_creates"]
            nn = max(1, cr["active"])
            kumo_cpu = sum(v for k, v in cpu.items() if k.startswith("kumo"))
            parts = [f"{k} {1000 * v / nn:.1f}" for k, v in cpu.items() if not k.startswith("kumo ")
                     or k in ("kumo api", "kumo all")]
            if len([k for k in cpu if k.startswith("kumo compute")]):
                cc = sum(v for k, v in cpu.items() if k.startswith("kumo compute"))
                parts.insert(1, f"kumo compute-* (all) {1000 * cc / nn:.1f}")
            total = sum(cpu.values())
            lines.append(f"  CPU time per server during the creates (ms): {', '.join(parts)}; total {1000 * total / nn:.1f} "
                         f"(kumo {1000 * kumo_cpu / nn:.1f}); the machine was "
                         f"{r['machine_busy_during_creates_pct']:.0f}% busy (of {os.cpu_count()} CPUs)")
        pgc = r.get("postgresql")
        if pgc:
            nn = max(1, cr["active"])
            st = pgc.get("statements", {})
            lines.append("  PostgreSQL per server during the creates (transactions / statements / statement ms), per "
                         "database: " + ", ".join(
                             f"{k.removeprefix('kumo_')} {v / nn:.1f} / {st.get(k, {}).get('calls', 0) / nn:.1f} / "
                             f"{st.get(k, {}).get('exec_ms', 0) / nn:.2f}"
                             for k, v in sorted(pgc["transactions"].items(), key=lambda kv: -kv[1]) if v))
        lines.append(f"  poller: {cr['polls']} GET /servers/detail?changes-since (p50 {ms(cr['poll_s']['p50'])} ms, "
                     f"p90 {ms(cr['poll_s']['p90'])} ms), {cr['poll_errors']} failed; setup {r.get('setup_s', 0):.1f} s")
        ph = r.get("phases", {})
        if ph.get("events"):
            lines.append(f"  per-phase times of {ph['sampled']} boots (instance action events; ms p50 p90), and the "
                         "share of the run each stage had one open or more, most open at once, and the time per "
                         "event were the stage one at a time (ms p50):")
            lines.append(f"    {'event':<42} {'starts after the action':>24} {'takes':>14} {'busy':>6} {'most':>5} "
                         f"{'serial':>7}")
            for k, v in ph["events"].items():
                b = v.get("busy", [0, 0, None])
                lines.append(f"    {k:<42} {ms(v['start']['p50']):>15} {ms(v['start']['p90']):>8} "
                             f"{ms(v['took']['p50']):>6} {ms(v['took']['p90']):>7} {100 * b[0]:>5.0f}% {b[1]:>5} "
                             f"{ms(b[2] if len(b) > 2 else None):>7}")
        for e in cr["errors"][:10]:
            lines.append(f"  ERROR {json.dumps(e)[:400]}")
        if len(cr["errors"]) > 10:
            lines.append(f"  ... {len(cr['errors']) - 10} more errors in {out / side / 'result.json'}")
        if r["delete"]["errors"] or r["delete"]["left"]:
            lines.append(f"  delete: {r['delete']['left']} still listed, errors {r['delete']['errors'][:3]}")
    text = "\n".join(lines)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    if sps_so is None:
        return 2
    return 0 if verdict == "PASS" else 1


# --- main ------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kumo", required=True)
    r.add_argument("--work", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--servers", type=int, default=500)
    r.add_argument("--clients", type=int, default=16)
    r.add_argument("--hosts", type=int, default=10)
    r.add_argument("--wait-quiet", type=float, default=0)
    r.add_argument("--timeout", type=float, default=300, help="per server, and for the delete")
    r.add_argument("--target", type=float, default=50)
    r.add_argument("--only", choices=SIDES)
    r.add_argument("--pg-max-connections", type=int, default=400)
    p = sub.add_parser("report")
    p.add_argument("out", type=Path)
    p.add_argument("--target", type=float, default=50)
    args = ap.parse_args()
    if args.cmd == "report":
        return report(args.out, args.target)

    # TERM (the shell's trap, `kill`) unwinds like Ctrl-C: every `finally` stops what it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    for side in SIDES:
        if args.only and side != args.only:
            continue
        side_out = args.out / side
        side_out.mkdir(parents=True, exist_ok=True)
        work = args.work / side
        work.mkdir(parents=True, exist_ok=True)
        try:
            r = (side_scale_out if side == "scale-out" else side_embedded)(args, work, side_out)
            (side_out / "result.json").write_text(json.dumps(r, indent=1) + "\n")
        except SetupError as e:
            log(f"{side}: SETUP ERROR: {e}")
            (side_out / "ERROR").write_text(str(e) + "\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return report(args.out, args.target)


if __name__ == "__main__":
    sys.exit(main())
