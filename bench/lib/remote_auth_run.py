#!/usr/bin/env python3
"""bench/remote_auth.sh's runner (standard library only): a private PostgreSQL and RabbitMQ
(tests/e2e/dbservers.py), A = `kumo serve api conductor scheduler`, D = `kumo serve api` with
`[keystone_authtoken] auth_url` = A's identity; then, on one keep-alive connection each:
GET /compute/v2.1/flavors on D with N fresh tokens (each one's first request: validated at A),
M times on D with one cached token, M times on A (in-process validation). p50/p90/max, and the
validations A served (its request log). Writes OUT/summary.json and prints a table."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import dbservers  # noqa: E402  (tests/e2e/dbservers.py: private PostgreSQL and RabbitMQ)


def log(msg: str) -> None:
    print(f"[remote_auth] {msg}", file=sys.stderr, flush=True)


class Proc:
    """One `kumo serve ROLE...` in the foreground; its pid appended to `pidfile` for the shell's trap."""

    def __init__(self, kumo: str, name: str, work: Path, conf: str, roles: list[str], listen: str):
        self.state = work / name
        self.state.mkdir(mode=0o700)
        (self.state / "kumo.conf").write_text(conf)
        self.log = self.state / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_") and k != "ADMIN_PASSWORD"}
        self.proc = subprocess.Popen(
            [kumo, "serve", *roles, "--state-dir", str(self.state), "--config", str(self.state / "kumo.conf"),
             "--listen", listen],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        with (work / "pids.txt").open("a") as f:
            f.write(f"{self.proc.pid} {name}\n")

    def wait_serving(self, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while "kumo is serving" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"kumo did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def conf(mq: str, db: str, password: str, extra: str = "") -> str:
    return (f"[DEFAULT]\ntransport_url = {mq}\n[database]\nconnection = {db}\n[service_user]\npassword = {password}\n"
            f"{extra}[identity]\npassword_hash_rounds = 4\n[network]\ndataplane = none\n[compute]\n"
            "network_hook = none\n[demo]\nguest_image = none\nnetwork = false\n")


def login(port: int, password: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    c.request("POST", "/identity/v3/auth/tokens?nocatalog", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    token = r.getheader("X-Subject-Token")
    c.close()
    return token


def timed_get(conn: http.client.HTTPConnection, token: str) -> float:
    t0 = time.perf_counter()
    conn.request("GET", "/compute/v2.1/flavors", headers={"X-Auth-Token": token, "Accept": "application/json"})
    r = conn.getresponse()
    r.read()
    ms = (time.perf_counter() - t0) * 1000
    assert r.status == 200, r.status
    return ms


def stats(xs: list[float]) -> dict:
    s = sorted(xs)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 2), "p90_ms": round(s[int(0.9 * (len(s) - 1))], 2),
            "max_ms": round(s[-1], 2)}


def validations(a: Proc) -> int:
    return len(re.findall(r"method=GET path=/identity/v3/auth/tokens status=", a.log.read_text(errors="replace")))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kumo", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    procs: list[Proc] = []
    with dbservers.rabbitmq_server() as mq, dbservers.postgres_server() as db:
        try:
            password = secrets.token_hex(12)
            pa, pd = dbservers.free_port(), dbservers.free_port()
            a = Proc(args.kumo, "a", args.work, conf(mq.url, db.url, password), ["api", "conductor", "scheduler"],
                     f"127.0.0.1:{pa}")
            procs.append(a)
            a.wait_serving()
            remote = f"[keystone_authtoken]\nauth_url = http://127.0.0.1:{pa}/identity\n"
            d = Proc(args.kumo, "d", args.work, conf(mq.url, db.url, password, remote), ["api"], f"127.0.0.1:{pd}")
            procs.append(d)
            d.wait_serving()
            admin_pw = (a.state / "admin-password").read_text().strip()
            log(f"A :{pa} and D :{pd} serving; {args.tokens} tokens, {args.requests} requests; "
                f"loadavg {os.getloadavg()[0]:.2f}")
            tokens = [login(pa, admin_pw) for _ in range(args.tokens)]
            on_a = http.client.HTTPConnection("127.0.0.1", pa, timeout=30)
            on_d = http.client.HTTPConnection("127.0.0.1", pd, timeout=30)
            timed_get(on_d, tokens[0])  # D's service-token login and connections, out of the figures
            before = validations(a)
            uncached = [timed_get(on_d, t) for t in tokens[1:]]
            cached = [timed_get(on_d, tokens[1]) for _ in range(args.requests)]
            local = [timed_get(on_a, tokens[1]) for _ in range(args.requests)]
            time.sleep(0.5)
            asked = validations(a) - before
            summary = {
                "d_uncached": stats(uncached), "d_cached": stats(cached), "a_in_process": stats(local),
                "validations_at_a": asked, "tokens": len(tokens) - 1, "loadavg": os.getloadavg()[0],
            }
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(f"{'GET /compute/v2.1/flavors':<40} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
            for label, key in (("D, token validated at A (uncached)", "d_uncached"),
                               ("D, token cached", "d_cached"), ("A, in-process validation", "a_in_process")):
                s = summary[key]
                print(f"{label:<40} {s['n']:>6} {s['p50_ms']:>8} {s['p90_ms']:>8} {s['max_ms']:>8}")
            print(f"validations at A: {asked} for {len(tokens) - 1} new tokens and {2 * args.requests} "
                  f"requests with a cached one")
            return 0 if asked == len(tokens) - 1 else 1
        finally:
            for p in procs:
                p.stop()


if __name__ == "__main__":
    sys.exit(main())
