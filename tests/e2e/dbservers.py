"""Throwaway servers for tests: Debian's PostgreSQL and MariaDB (each database server started as
its unprivileged system user) and RabbitMQ (a private node with its own epmd), each in a temp dir
of its own, on free loopback ports, stopped by PID (also on failure) and removed. For the
databases `url` is an oslo-style `[database] connection` template with `$service`, and every
service's database is created empty before kumo starts; for RabbitMQ it is a `transport_url`."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("identity", "compute", "image", "network", "volume", "placement")


@dataclass
class DbServer:
    kind: str
    url: str          # `[database] connection` template with $service
    pid: int
    started_s: float  # from the start command to accepting connections
    admin: list[str]  # the server's own client as its superuser (argv; add `-c SQL` / `-e SQL`)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no server on port {port} within {timeout} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # both servers shut down cleanly on TERM
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def mariadb_bin() -> str | None:
    return shutil.which("mariadbd") or shutil.which("mysqld")


def _as_user(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _own(user: str, *paths: Path) -> None:
    """As root, hand `paths` to the server's system user (it refuses to run as root)."""
    if os.geteuid() == 0:
        for p in paths:
            shutil.chown(p, user, user)


def _wait_sql(client: list[str]) -> None:
    """The port accepts TCP a moment before the server accepts logins: wait for `SELECT 1`."""
    for _ in range(50):
        if subprocess.run([*client, "SELECT 1"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


@contextlib.contextmanager
def postgres_server(prefix: str = "kumo-pg-", max_connections: int = 200, settings: tuple[str, ...] = ()):
    """`settings`: more `-c NAME=VALUE` for the server."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    proc = None
    try:
        work.chmod(0o755)
        data, sock, log = work / "data", work / "sock", work / "postgres.log"
        for d in (data, sock):
            d.mkdir()
        log.touch()
        _own("postgres", work, data, sock, log)
        subprocess.run([*_as_user("postgres"), str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        port = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*_as_user("postgres"), str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-k", str(sock), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", f"max_connections={max_connections}", *[a for kv in settings for a in ("-c", kv)]],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(port, proc, log)
        psql = [str(bindir.parent / "bin" / "psql") if (bindir / "psql").exists() else "psql",
                "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
        _wait_sql([*psql, "-c"])
        started = time.monotonic() - t0
        for svc in SERVICES:
            subprocess.run([*psql, "-c", f"CREATE DATABASE kumo_{svc}"], check=True, capture_output=True)
        yield DbServer("postgresql", f"postgresql://postgres@127.0.0.1:{port}/kumo_$service", proc.pid, started,
                       psql)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def mariadb_server(prefix: str = "kumo-mariadb-"):
    mariadbd = mariadb_bin()
    if mariadbd is None:
        raise RuntimeError("MariaDB is not installed (Debian package mariadb-server)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    proc = None
    try:
        work.chmod(0o755)
        data, log = work / "data", work / "mariadb.log"
        data.mkdir()
        log.touch()
        user = "mysql" if os.geteuid() == 0 else os.environ.get("USER", "")
        _own("mysql", work, data, log)
        subprocess.run(["mariadb-install-db", f"--user={user}", f"--datadir={data}", "--auth-root-authentication-method=normal",
                        "--skip-test-db", "--no-defaults"],
                       check=True, capture_output=True, text=True, timeout=180)
        port = free_port()
        sock = work / "mysqld.sock"
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--user={user}", f"--datadir={data}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={sock}", f"--pid-file={work / 'mysqld.pid'}",
             "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--max-connections=300",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(port, proc, log)
        client = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot"]
        _wait_sql([*client, "-e"])
        started = time.monotonic() - t0
        sql = "CREATE USER 'kumo'@'127.0.0.1' IDENTIFIED BY 'kumo-db-pass';"
        for svc in SERVICES:
            sql += f"CREATE DATABASE kumo_{svc}; GRANT ALL ON kumo_{svc}.* TO 'kumo'@'127.0.0.1';"
        subprocess.run([*client, "-e", sql], check=True, capture_output=True, text=True)
        yield DbServer("mariadb", f"mysql://kumo:kumo-db-pass@127.0.0.1:{port}/kumo_$service", proc.pid, started,
                       client)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def service_databases(db: DbServer) -> dict[str, dict[str, int]]:
    """What the server holds of each service's database `kumo_<service>`, asked through its own
    client: {service: {"tables": N, "sessions": M}}, M the client sessions on that database now
    (the kumo processes' pools; the query's own session is on no kumo database)."""
    def rows(sql: str, *argv: str) -> list[list[str]]:
        out = subprocess.run([*db.admin, *argv, sql], check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    found = {svc: {"tables": 0, "sessions": 0} for svc in SERVICES}
    if db.kind == "postgresql":
        for svc in SERVICES:
            n = rows("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                     "-d", f"kumo_{svc}", "-At", "-c")
            found[svc]["tables"] = int(n[0][0])
        sessions = rows("SELECT datname, count(*) FROM pg_stat_activity WHERE datname LIKE 'kumo_%' GROUP BY 1",
                        "-At", "-F", "\t", "-c")
    elif db.kind == "mariadb":
        for name, n in rows("SELECT table_schema, count(*) FROM information_schema.tables "
                            "WHERE table_schema LIKE 'kumo_%' GROUP BY 1", "-N", "-B", "-e"):
            if name.removeprefix("kumo_") in found:
                found[name.removeprefix("kumo_")]["tables"] = int(n)
        sessions = rows("SELECT db, count(*) FROM information_schema.processlist WHERE db LIKE 'kumo_%' GROUP BY 1",
                        "-N", "-B", "-e")
    else:
        raise ValueError(f"not a database server: {db.kind}")
    for name, n in sessions:
        if name.removeprefix("kumo_") in found:
            found[name.removeprefix("kumo_")]["sessions"] = int(n)
    return found


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def rabbitmq_bin() -> str | None:
    path = os.environ.get("KUMO_RABBITMQ_SERVER", RABBITMQ_SERVER)
    return path if os.path.exists(path) and shutil.which("epmd") else None


def _stop_group(proc: subprocess.Popen) -> None:
    """TERM the broker's process group (the script runs beam.smp as a child: a clean stop), KILL
    it if it lingers, and wait until the whole group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def rabbitmq_server(prefix: str = "kumo-rabbitmq-"):
    """A private broker on a free loopback port. The DbServer it yields has `restart(down_s)`:
    a clean stop, `down_s` seconds without a broker, the same broker (port, data) again;
    it returns the monotonic time at which the broker takes logins again."""
    server = rabbitmq_bin()
    if server is None:
        raise RuntimeError("RabbitMQ is not installed (Debian package rabbitmq-server)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    epmd = proc = None
    try:
        port, dist_port, epmd_port = free_port(), free_port(), free_port()
        (work / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\n")
        (work / "enabled_plugins").write_text("[].\n")
        log = work / "server.out"
        # an epmd of our own, in the foreground, so it is ours to stop
        epmd = subprocess.Popen(["epmd", "-port", str(epmd_port)], env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "LANG": "C.UTF-8",
               "RABBITMQ_NODENAME": f"kumo-e2e-{os.getpid()}-{port}@localhost",
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port),
               "RABBITMQ_DIST_PORT": str(dist_port), "ERL_EPMD_PORT": str(epmd_port),
               "ERL_EPMD_ADDRESS": "127.0.0.1",
               "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
               "RABBITMQ_MNESIA_BASE": str(work / "mnesia"), "RABBITMQ_LOG_BASE": str(work / "log"),
               "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
               "RABBITMQ_PLUGINS_EXPAND_DIR": str(work / "plugins-expand")}

        def start() -> subprocess.Popen:
            p = subprocess.Popen([server], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            _wait_port(port, p, log, timeout=120)
            time.sleep(0.5)  # the listener opens a moment before the broker takes logins
            return p

        t0 = time.monotonic()
        proc = start()
        srv = DbServer("rabbitmq", f"rabbit://guest:guest@127.0.0.1:{port}/", proc.pid,
                       time.monotonic() - t0, [])

        def restart(down_s: float = 0.0) -> float:
            nonlocal proc
            assert proc is not None
            _stop_group(proc)
            proc = None
            time.sleep(down_s)
            proc = start()
            srv.pid = proc.pid
            return time.monotonic()

        srv.restart = restart  # type: ignore[attr-defined]
        yield srv
    finally:
        if proc is not None:
            _stop_group(proc)
        if epmd is not None:
            _stop(epmd)
        shutil.rmtree(work, ignore_errors=True)
