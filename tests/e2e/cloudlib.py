"""Targets for kumo's end-to-end tests: a kumo started on a free port in a temp state dir, or the
real Keystone (the "peer", ../shared/peer/keystone.sh) for checking that the tests themselves
describe OpenStack's real behaviour.

Everything listens on 127.0.0.1 only; every process started here is stopped by its pid.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KUMO_CACHE_DIR", Path.home() / ".cache" / "kumo"))
HTTP_TIMEOUT = 30
OSC_TIMEOUT = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against the same peer) uses."""
    return f"e2e-{prefix}-{secrets.token_hex(4)}"


def osc_binary() -> str:
    cand = Path(sys.executable).parent / "openstack"
    if cand.exists():
        return str(cand)
    found = shutil.which("openstack")
    if not found:
        raise RuntimeError("the openstack CLI is not installed in this Python environment")
    return found


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes
        return "\n".join(text.splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class CommandError(AssertionError):
    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(
            f"command failed (exit {proc.returncode}): {' '.join(argv)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )


class OscZygote:
    """The client of osc_zygote.py: `openstack` CLI calls run in children forked from one Python process
    that imported openstackclient once (~1 s saved per call). KUMO_OSC_FORK=0 runs each call as a fresh
    process instead."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="kumo-e2e-osc-"))
        self.sock = self.dir / "zygote.sock"
        env = clean_env()
        env["PYTHONWARNINGS"] = "ignore"
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("osc_zygote.py")), str(self.sock)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        ready = self.proc.stdout.readline()
        if ready.strip() != b"ready":
            self.close()
            raise RuntimeError(f"osc_zygote.py did not start (said {ready!r})")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, argv: list[str], env: dict, cwd: str | Path | None, timeout: float, out: Path, err: Path) -> int:
        """Run one CLI call; its exit status (stdout and stderr are in OUT and ERR)."""
        req = {"argv": argv, "env": env, "cwd": str(cwd or os.getcwd()), "stdout": str(out), "stderr": str(err)}
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.sock))
            s.sendall(json.dumps(req).encode() + b"\n")
            f = s.makefile("rb")
            pid = None
            try:
                for line in f:
                    word, _, value = line.decode().strip().partition(" ")
                    if word == "pid":
                        pid = int(value)
                    elif word == "rc":
                        return int(value)
                    s.settimeout(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                raise subprocess.TimeoutExpired(argv, timeout) from None
        raise RuntimeError(f"the CLI child of osc_zygote.py ended without an exit status: {argv}")


def _netns_id() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


# One fork server per network namespace a thread of this process called the CLI from: a forked
# child is in its server's namespace, so a test whose thread moved into a namespace of its own
# (netlib.in_namespace) gets a server started there, whose children reach that loopback.
_ZYGOTES: dict[tuple[int, int], OscZygote] = {}
_ZYGOTES_LOCK = threading.Lock()


def osc_zygote() -> OscZygote | None:
    """The CLI fork server of this thread's network namespace, started on first use; None when
    turned off (KUMO_OSC_FORK=0)."""
    if os.environ.get("KUMO_OSC_FORK", "1") == "0":
        return None
    key = _netns_id()
    with _ZYGOTES_LOCK:
        zygote = _ZYGOTES.get(key)
        if zygote is None or zygote.proc.poll() is not None:
            zygote = _ZYGOTES[key] = OscZygote()
            atexit.register(zygote.close)
        return zygote


def close_osc_zygote():
    """Stop the fork server of this thread's network namespace, if it has one (before the
    thread leaves a namespace that is then deleted: the server would keep it alive)."""
    with _ZYGOTES_LOCK:
        zygote = _ZYGOTES.pop(_netns_id(), None)
    if zygote is not None:
        zygote.close()


def run(argv: list[str], *, env: dict | None = None, timeout: float = 120, cwd: str | Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    # output through files, not pipes: a server that a command leaves running in the background and
    # that keeps our stdout/stderr open must not make us wait for it
    zygote = osc_zygote() if argv and argv[0] == osc_binary() else None
    if zygote is not None:
        with tempfile.TemporaryDirectory(prefix="kumo-e2e-osc-call-") as d:
            out, err = Path(d) / "stdout", Path(d) / "stderr"
            rc = zygote.run(argv, dict(os.environ if env is None else env), cwd, timeout, out, err)
            proc = subprocess.CompletedProcess(argv, rc, out.read_bytes().decode(errors="replace") if out.exists() else "",
                                               err.read_bytes().decode(errors="replace") if err.exists() else "")
    else:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=err, timeout=timeout,
                                stdin=subprocess.DEVNULL).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))
    if check and proc.returncode != 0:
        raise CommandError(argv, proc)
    return proc


def clean_env() -> dict[str, str]:
    """The caller's environment without OS_* variables, so nothing leaks into the CLI's auth."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")}


@dataclass
class Cloud:
    """One running identity service and the ways to talk to it."""

    target: str  # "kumo" | "keystone-peer"
    workdir: Path  # temp dir of this run
    state_dir: Path  # kumo's state dir; the peer's --dir
    clouds_yaml: Path
    admin_password: str = ""
    auth_url: str = ""  # what clouds.yaml says (kumo: .../identity, peer: .../v3)
    base_url: str = ""  # http://127.0.0.1:PORT
    identity_url: str = ""  # .../v3 under auth_url
    port: int = 0
    region: str = "RegionOne"
    fernet_dir: Path | None = None
    _admin_token: str | None = field(default=None, repr=False)
    _roles: dict[str, str] = field(default_factory=dict, repr=False)
    _driver: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- configuration
    def load_clouds_yaml(self) -> dict:
        data = yaml.safe_load(self.clouds_yaml.read_text())
        clouds = data["clouds"]
        admin = clouds["kumo-admin"]
        self.auth_url = admin["auth"]["auth_url"].rstrip("/")
        parts = urllib.parse.urlsplit(self.auth_url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.port = parts.port or 80
        self.identity_url = self.auth_url if self.auth_url.endswith("/v3") else self.auth_url + "/v3"
        self.region = admin.get("region_name", "RegionOne")
        return clouds

    def cloud_auth(self, cloud: str) -> dict:
        return yaml.safe_load(self.clouds_yaml.read_text())["clouds"][cloud]["auth"]

    @property
    def supports_lifecycle(self) -> bool:
        return self._driver.supports_lifecycle

    # ---------------------------------------------------------------- the real openstack CLI
    def cli_env(self, extra: dict | None = None) -> dict[str, str]:
        env = clean_env()
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env.setdefault("PYTHONWARNINGS", "ignore")
        if extra:
            env.update(extra)
        return env

    def _osc_argv(self, args, cloud, fmt_json):
        argv = [osc_binary()]
        if cloud is not None:
            argv += ["--os-cloud", cloud]
        argv += [str(a) for a in args]
        if fmt_json:
            argv += ["-f", "json"]
        return argv

    def osc(self, *args, cloud: str | None = "kumo-admin", fmt_json: bool = False, env: dict | None = None,
            timeout: float = OSC_TIMEOUT):
        """Run `openstack --os-cloud CLOUD ARGS...`; parsed JSON with fmt_json, else stdout.
        Raises CommandError (with stderr) when the CLI fails."""
        argv = self._osc_argv(args, cloud, fmt_json)
        proc = run(argv, env=self.cli_env(env), timeout=timeout, cwd=self.workdir)
        if fmt_json:
            try:
                return json.loads(proc.stdout) if proc.stdout.strip() else None
            except json.JSONDecodeError as e:
                raise AssertionError(f"{' '.join(argv)} printed no JSON: {proc.stdout[:2000]!r}") from e
        return proc.stdout

    def password_auth_args(self, username: str, password: str, project: str | None = None) -> list[str]:
        """CLI options for logging in as someone who has no entry in clouds.yaml."""
        args = ["--os-auth-url", self.auth_url, "--os-identity-api-version", "3", "--os-region-name", self.region,
                "--os-auth-type", "password", "--os-username", username, "--os-password", password,
                "--os-user-domain-name", "Default"]
        if project:
            args += ["--os-project-name", project, "--os-project-domain-name", "Default"]
        return args

    def osc_as(self, username: str, password: str, *args, project: str | None = None, fmt_json: bool = False):
        """Run the CLI as USERNAME/PASSWORD (scoped to PROJECT if given)."""
        return self.osc(*self.password_auth_args(username, password, project), *args, cloud=None, fmt_json=fmt_json)

    def osc_run(self, *args, cloud: str | None = "kumo-admin", env: dict | None = None,
                timeout: float = OSC_TIMEOUT) -> subprocess.CompletedProcess:
        """Run the CLI and return the finished process whatever its exit status."""
        argv = self._osc_argv(args, cloud, False)
        return run(argv, env=self.cli_env(env), timeout=timeout, cwd=self.workdir, check=False)

    def osc_fail(self, *args, cloud: str | None = "kumo-admin", env: dict | None = None,
                 timeout: float = OSC_TIMEOUT) -> str:
        """Run the CLI expecting it to fail; returns stderr (+stdout)."""
        argv = self._osc_argv(args, cloud, False)
        proc = run(argv, env=self.cli_env(env), timeout=timeout, cwd=self.workdir, check=False)
        if proc.returncode == 0:
            raise AssertionError(f"expected failure, but succeeded: {' '.join(argv)}\n{proc.stdout[-2000:]}")
        return proc.stderr + proc.stdout

    # ---------------------------------------------------------------- raw HTTP
    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.identity_url + path

    def http(self, method: str, path: str, *, token: str | None = None, headers: dict | None = None,
             **kw) -> requests.Response:
        """One request to the identity API (path relative to .../v3, or a full URL)."""
        h = {}
        if token:
            h["X-Auth-Token"] = token
        h.update(headers or {})
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path), headers=h, **kw)

    def auth_body(self, username: str, password: str, *, project: str | None = None,
                  project_id: str | None = None, domain: str | None = None, user_domain: str = "default",
                  user_id: str | None = None) -> dict:
        user = {"id": user_id} if user_id else {"name": username, "domain": {"id": user_domain}}
        user["password"] = password
        body: dict = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
        if project_id:
            body["auth"]["scope"] = {"project": {"id": project_id}}
        elif project:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        elif domain:
            body["auth"]["scope"] = {"domain": {"id": domain}}
        return body

    def login(self, username: str, password: str, **scope) -> str:
        """POST /v3/auth/tokens with a password; returns the token (asserts 201)."""
        r = self.http("POST", "/auth/tokens", json=self.auth_body(username, password, **scope))
        assert r.status_code == 201, f"login {username}: {r.status_code} {r.text[:500]}"
        return r.headers["X-Subject-Token"]

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.login("admin", self.admin_password, project="admin")
        return self._admin_token

    def validate(self, subject: str, token: str | None = None) -> requests.Response:
        return self.http("GET", "/auth/tokens", token=token or self.admin_token,
                         headers={"X-Subject-Token": subject})

    # ---------------------------------------------------------------- admin helpers (raw API)
    def admin(self, method: str, path: str, expect: int | tuple = (200, 201, 204), **kw) -> Any:
        r = self.http(method, path, token=self.admin_token, **kw)
        ok = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:800]}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None

    def role_id(self, name: str) -> str:
        if name not in self._roles:
            roles = self.admin("GET", "/roles", params={"name": name})["roles"]
            assert roles, f"role {name} does not exist"
            self._roles[name] = roles[0]["id"]
        return self._roles[name]

    def create_project(self, name: str, domain_id: str = "default", **extra) -> dict:
        return self.admin("POST", "/projects", json={"project": {"name": name, "domain_id": domain_id, **extra}},
                          expect=201)["project"]

    def create_user(self, name: str, password: str, domain_id: str = "default", **extra) -> dict:
        body = {"user": {"name": name, "password": password, "domain_id": domain_id, **extra}}
        return self.admin("POST", "/users", json=body, expect=201)["user"]

    def grant(self, role: str, *, project_id: str, user_id: str | None = None, group_id: str | None = None):
        who = f"users/{user_id}" if user_id else f"groups/{group_id}"
        self.admin("PUT", f"/projects/{project_id}/{who}/roles/{self.role_id(role)}", expect=(201, 204))

    def delete(self, kind: str, ident: str):
        """Best-effort cleanup; 404 is fine."""
        if kind == "domains":  # a domain must be disabled before it can be deleted
            self.http("PATCH", f"/domains/{ident}", token=self.admin_token,
                      json={"domain": {"enabled": False}})
        r = self.http("DELETE", f"/{kind}/{ident}", token=self.admin_token)
        assert r.status_code in (204, 404), f"DELETE /{kind}/{ident}: {r.status_code} {r.text[:300]}"

    # ---------------------------------------------------------------- compute (raw API)
    @property
    def compute_url(self) -> str:
        return self.base_url + "/compute/v2.1"

    def compute(self, method: str, path: str, *, token: str | None = None, version: str | None = None,
                headers: dict | None = None, **kw) -> requests.Response:
        """One request to the compute API (path relative to .../compute/v2.1), as admin unless
        `token` is given ("" for none), at microversion `version` when given."""
        return self._service_request("compute", self.compute_url + path, method, token, version, headers, kw)

    # ---------------------------------------------------------------- placement (raw API)
    @property
    def placement_url(self) -> str:
        return self.base_url + "/placement"

    def placement(self, method: str, path: str, *, token: str | None = None, version: str | None = None,
                  headers: dict | None = None, **kw) -> requests.Response:
        """One request to the placement API (path relative to .../placement), as admin unless
        `token` is given ("" for none), at microversion `version` when given."""
        return self._service_request("placement", self.placement_url + path, method, token, version, headers, kw)

    def _service_request(self, service: str, url: str, method: str, token: str | None, version: str | None,
                         headers: dict | None, kw: dict) -> requests.Response:
        h = {"Accept": "application/json"}
        tok = self.admin_token if token is None else token
        if tok:
            h["X-Auth-Token"] = tok
        if version:
            h["OpenStack-API-Version"] = f"{service} {version}"
        h.update(headers or {})
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, url, headers=h, **kw)

    # ---------------------------------------------------------------- lifecycle (kumo; partly peer)
    def restart(self):
        self._driver.restart(self)

    def rotate_keys(self):
        self._driver.rotate_keys(self)

    def kill9_and_up(self):
        self._driver.kill9_and_up(self)

    def server_pid(self) -> int | None:
        return self._driver.server_pid(self)

    def log_tail(self, lines: int = 60) -> str:
        return self._driver.log_tail(self, lines)

    def stop(self):
        self._driver.stop(self)


# ==================================================================== kumo
class KumoDriver:
    supports_lifecycle = True
    name = "kumo"

    def __init__(self, extra_conf: str = ""):
        default_target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
        self.bin = os.environ.get("KUMO_BIN", str(Path(default_target) / "release" / "kumo"))
        self.pid: int | None = None
        self.last_up_output = ""
        self.extra_conf = extra_conf  # appended to kumo.conf (e.g. "[fake]\nhosts = 3")

    def kumo(self, cloud: Cloud, *args, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        env = clean_env()
        env.pop("ADMIN_PASSWORD", None)  # let kumo generate it and keep it in the state dir
        argv = [self.bin, *[str(a) for a in args], "--state-dir", str(cloud.state_dir)]
        return run(argv, env=env, timeout=timeout, cwd=cloud.workdir, check=check)

    def start(self, extra_conf: str = "") -> Cloud:
        """Start kumo; `extra_conf` is appended to its kumo.conf (e.g. "[fake]\nhosts = 3\n")."""
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError(f"kumo binary not found at {self.bin} (build with `cargo build --release` "
                               f"or set KUMO_BIN)")
        work = Path(tempfile.mkdtemp(prefix="kumo-e2e-"))
        state = work / "state"
        state.mkdir(mode=0o700)
        conf = state / "kumo.conf"
        extra = extra_conf + (f"\n{self.extra_conf}\n" if self.extra_conf else "")
        # no kumo-tiny demo image unless a test asks for one (it would show in every image list)
        demo = "" if "guest_image" in extra else "[demo]\nguest_image = none\n"
        # nor devstack's demo networks unless asked (they would show in every network list)
        if "[demo]" not in extra:
            demo += ("[demo]\n" if not demo else "") + "network = false\n"
        # every namespace this kumo's data plane makes carries a prefix of its own, removed by stop()
        self.netns_prefix = f"kt{secrets.token_hex(3)}-"
        net = "" if "namespace_prefix" in extra else f"[network]\nnamespace_prefix = {self.netns_prefix}\n"
        conf.write_text("# written by tests/e2e: cheap bcrypt for fast tests (kumo's default stays 12)\n"
                        "[identity]\npassword_hash_rounds = 4\n" + demo + net + extra)
        cloud = Cloud(target="kumo", workdir=work, state_dir=state, clouds_yaml=state / "clouds.yaml",
                      fernet_dir=state / "fernet-keys", _driver=self)
        try:
            self.up(cloud, "127.0.0.1:0")
        except BaseException:
            print(f"--- kumo.log (tail) ---\n{self.log_tail(cloud)}", file=sys.stderr)
            self.stop(cloud)
            raise
        return cloud

    def up(self, cloud: Cloud, listen: str):
        proc = self.kumo(cloud, "up", "--listen", listen, "--demo", "--config", cloud.state_dir / "kumo.conf",
                         timeout=120)
        self.last_up_output = proc.stdout + proc.stderr
        if not cloud.clouds_yaml.exists():
            raise RuntimeError(f"`kumo up` exited 0 but wrote no {cloud.clouds_yaml}; it printed:\n"
                               f"{self.last_up_output[-3000:]}")
        self.pid = self.server_pid(cloud)
        if self.pid is None:
            m = re.search(r"\(pid (\d+)\)", self.last_up_output)
            self.pid = int(m.group(1)) if m else None
        cloud.load_clouds_yaml()
        pw_file = cloud.state_dir / "admin-password"
        if pw_file.exists():
            cloud.admin_password = pw_file.read_text().strip()
        else:
            m = re.search(r"admin password: (\S+)", self.last_up_output)
            assert m, f"no admin password in {pw_file} nor in kumo up's output:\n{self.last_up_output}"
            cloud.admin_password = m.group(1)
        cloud._admin_token = None

    def server_pid(self, cloud: Cloud) -> int | None:
        try:
            return int((cloud.state_dir / "kumo.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def down(self, cloud: Cloud):
        pid = self.server_pid(cloud) or self.pid
        self.kumo(cloud, "down", timeout=60)
        if pid is not None:
            assert wait_gone(pid, 30), f"kumo pid {pid} still alive after `kumo down`"

    def restart(self, cloud: Cloud):
        self.down(cloud)
        self.up(cloud, f"127.0.0.1:{cloud.port}")

    def rotate_keys(self, cloud: Cloud):
        self.kumo(cloud, "fernet", "rotate", timeout=60)

    def kill9_and_up(self, cloud: Cloud):
        pid = self.server_pid(cloud)
        assert pid and pid_alive(pid), "kumo is not running"
        self._kill(pid)
        self.up(cloud, f"127.0.0.1:{cloud.port}")

    @staticmethod
    def is_kumo(pid: int) -> bool:
        """The process runs a binary named kumo* (the pid in a stale pid file could have been reused)."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = pid_cmdline(pid).split(" ")[0]
        return Path(exe).name.startswith("kumo")

    def _kill(self, pid: int):
        # by pid only, and only if it still is a kumo process
        if pid_alive(pid) and self.is_kumo(pid):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)
            # and until it is reaped: a zombie still answers kill(pid, 0) (seen here: ~1 s)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def log_tail(self, cloud: Cloud, lines: int = 60) -> str:
        return tail(cloud.state_dir / "logs" / "kumo.log", lines)

    def stop(self, cloud: Cloud):
        pids = {p for p in (self.server_pid(cloud), self.pid) if p}
        try:
            self.kumo(cloud, "down", timeout=60, check=False)
        except subprocess.TimeoutExpired:
            pass
        for pid in pids:
            if not wait_gone(pid, 10):
                self._kill(pid)
        remove_namespaces(getattr(self, "netns_prefix", None))
        if not os.environ.get("KUMO_E2E_KEEP"):
            shutil.rmtree(cloud.workdir, ignore_errors=True)


def remove_namespaces(prefix: str | None):
    """Delete the network namespaces named `prefix`* (a test kumo's data plane), first killing
    the processes inside them (dnsmasq, QEMU) by PID."""
    if not prefix or not prefix.startswith("kt"):
        return
    try:
        names = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except OSError:
        return
    for ns in names:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in out.stdout.split():
            if pid == str(os.getpid()):
                continue  # this process, its main thread still in a namespace it entered
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(f"/run/kumo/{prefix}network", ignore_errors=True)


# ==================================================================== the real Keystone
class PeerDriver:
    """The real Keystone via ../shared/peer/keystone.sh. Its venv is kept in
    ~/.cache/kumo/peer-e2e (made on first use: a few minutes); each run gets a fresh database,
    key repository and port in a temp dir whose keystone/venv links to that venv."""

    supports_lifecycle = False  # kill -9 / kumo's CLI; restart and key rotation work (see below)
    name = "keystone-peer"
    ADMIN_PASSWORD = "secret"

    def __init__(self):
        shared = Path(os.environ.get("KUMO_SHARED_DIR", REPO.parent / "shared"))
        self.script = Path(os.environ.get("KUMO_PEER_KEYSTONE", shared / "peer" / "keystone.sh"))
        self.venv_home = CACHE / "peer-e2e" / "keystone"
        self.memcached_port: int | None = None

    def env(self) -> dict:
        env = clean_env()
        env.pop("PYTHONPATH", None)
        env["ADMIN_PASSWORD"] = self.ADMIN_PASSWORD
        env.setdefault("KEYSTONE_PASSWORD_HASH_ROUNDS", "4")
        # keystone.sh would share memcached on the fixed port 11211 with any other peer on this machine,
        # and two keystones with different databases must not share a cache: own memcached, own port
        # (oslo.config reads OS_<GROUP>__<OPTION> from the environment)
        env["KEYSTONE_CACHE"] = "none"
        if self.memcached_port:
            env.update(OS_CACHE__ENABLED="true", OS_CACHE__BACKEND="dogpile.cache.memcached",
                       OS_CACHE__MEMCACHE_SERVERS=f"127.0.0.1:{self.memcached_port}")
        return env

    def start_memcached(self, cloud: Cloud):
        binary = shutil.which("memcached")
        if not binary:
            print("memcached not installed: the peer runs without its cache (apt-get install memcached)",
                  file=sys.stderr)
            return
        port = free_port()
        pidfile = cloud.workdir / "memcached.pid"
        run([binary, "-d", "-l", "127.0.0.1", "-p", str(port), "-m", "64", "-u", run(["id", "-un"]).stdout.strip(),
             "-P", str(pidfile)], timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.memcached_port = port

    def stop_memcached(self, cloud: Cloud):
        pidfile = cloud.workdir / "memcached.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid_alive(pid) and "memcached" in pid_cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 5):
                os.kill(pid, signal.SIGKILL)

    def script_cmd(self, cloud: Cloud, action: str, timeout: float):
        argv = ["bash", str(self.script), action, "--port", str(cloud.port), "--dir", str(cloud.state_dir)]
        # cwd = the temp dir: uWSGI puts its cwd on sys.path, so a stray *.py in e.g. /tmp could shadow
        # one of keystone's modules
        return run(argv, env=self.env(), timeout=timeout, cwd=cloud.workdir)

    def start(self) -> Cloud:
        if not self.script.exists():
            raise RuntimeError(f"peer script not found: {self.script}")
        work = Path(tempfile.mkdtemp(prefix="kumo-e2e-peer-"))
        state = work / "peer"
        (state / "keystone").mkdir(parents=True)
        self.venv_home.mkdir(parents=True, exist_ok=True)
        venv = self.venv_home / "venv"
        lock = open(self.venv_home / ".lock", "w")
        cloud = Cloud(target="keystone-peer", workdir=work, state_dir=state, clouds_yaml=work / "clouds.yaml",
                      fernet_dir=state / "keystone" / "fernet-keys", port=free_port(), _driver=self)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one venv install at a time
            if not (venv / "bin" / "python").exists():
                # made at its real path so that console scripts' #! lines point there, not into the temp dir
                run([os.environ.get("PYTHON", "python3"), "-m", "venv", str(venv)], timeout=300)
            (state / "keystone" / "venv").symlink_to(venv)
            self.start_memcached(cloud)
            self.script_cmd(cloud, "start", timeout=1800)
            fcntl.flock(lock, fcntl.LOCK_UN)
            cloud.admin_password = self.ADMIN_PASSWORD
            url = f"http://127.0.0.1:{cloud.port}/v3"
            self.write_clouds_yaml(cloud, url, demo_password=None)
            cloud.load_clouds_yaml()
            demo_password = "demo-" + secrets.token_hex(8)
            project = cloud.create_project("demo")
            user = cloud.create_user("demo", demo_password, default_project_id=project["id"])
            cloud.grant("member", project_id=project["id"], user_id=user["id"])
            self.write_clouds_yaml(cloud, url, demo_password=demo_password)
        except BaseException:
            print(f"--- keystone.log (tail) ---\n{self.log_tail(cloud)}", file=sys.stderr)
            self.stop(cloud)
            raise
        finally:
            lock.close()
        return cloud

    def write_clouds_yaml(self, cloud: Cloud, url: str, demo_password: str | None):
        def entry(user, password, project):
            return {"auth": {"auth_url": url, "username": user, "password": password, "project_name": project,
                             "user_domain_name": "Default", "project_domain_name": "Default"},
                    "region_name": "RegionOne", "identity_api_version": 3, "interface": "public"}
        clouds = {"kumo-admin": entry("admin", self.ADMIN_PASSWORD, "admin")}
        clouds["kumo"] = entry("demo", demo_password, "demo") if demo_password else clouds["kumo-admin"]
        cloud.clouds_yaml.write_text(yaml.safe_dump({"clouds": clouds}, sort_keys=False))
        cloud.clouds_yaml.chmod(0o600)

    def server_pid(self, cloud: Cloud) -> int | None:
        try:
            return int((cloud.state_dir / "keystone" / "keystone.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def restart(self, cloud: Cloud):
        self.script_cmd(cloud, "stop", timeout=120)
        self.script_cmd(cloud, "start", timeout=600)
        cloud._admin_token = None

    def rotate_keys(self, cloud: Cloud):
        kd = cloud.state_dir / "keystone"
        user = run(["id", "-un"]).stdout.strip()
        group = run(["id", "-gn"]).stdout.strip()
        run([str(kd / "venv" / "bin" / "keystone-manage"), "--config-file", str(kd / "etc" / "keystone.conf"),
             "fernet_rotate", "--keystone-user", user, "--keystone-group", group], env=self.env(), timeout=120,
            cwd=cloud.workdir)

    def kill9_and_up(self, cloud: Cloud):
        raise NotImplementedError("kill -9 is a kumo-only test")

    def log_tail(self, cloud: Cloud, lines: int = 60) -> str:
        return tail(cloud.state_dir / "keystone" / "keystone.log", lines)

    def stop(self, cloud: Cloud):
        try:
            self.script_cmd(cloud, "stop", timeout=120)
        except (CommandError, subprocess.TimeoutExpired) as e:
            print(f"peer stop failed: {e}", file=sys.stderr)
        self.stop_memcached(cloud)
        if not os.environ.get("KUMO_E2E_KEEP"):
            shutil.rmtree(cloud.workdir, ignore_errors=True)


DRIVERS = {"kumo": KumoDriver, "keystone-peer": PeerDriver}


def start_kumo(extra_conf: str = "") -> Cloud:
    """A kumo of its own (e.g. for one test module) with EXTRA_CONF appended to its kumo.conf;
    the caller stops it with cloud.stop()."""
    return KumoDriver(extra_conf).start()


def start_target(name: str) -> Cloud:
    if name not in DRIVERS:
        raise RuntimeError(f"KUMO_E2E_TARGET={name!r}: expected one of {', '.join(DRIVERS)}")
    return DRIVERS[name]().start()


# ==================================================================== Keystone-format Fernet tokens
def _pad(token: str) -> bytes:
    return (token + "=" * (-len(token) % 4)).encode()


def _fernet_keys(repo: Path) -> list[tuple[int, bytes]]:
    keys = [(int(p.name), p.read_bytes().strip()) for p in repo.iterdir() if p.name.isdigit()]
    return sorted(keys, reverse=True)  # primary (highest index) first, staged key 0 last


def reissue_token(repo: Path, token: str, *, expires_at: float | None = None) -> str:
    """Decrypt a token issued by the server with the key repository (Keystone's layout), optionally
    move its expires_at, and encrypt it again with the primary key, as keystone's TokenFormatter does.
    Only Keystone's payload format is assumed: a msgpack list whose one float is expires_at."""
    import msgpack
    from cryptography.fernet import Fernet, MultiFernet

    keys = _fernet_keys(repo)
    assert keys, f"no fernet keys in {repo}"
    multi = MultiFernet([Fernet(k) for _, k in keys])
    payload = msgpack.unpackb(multi.decrypt(_pad(token)))
    assert isinstance(payload, list) and isinstance(payload[0], int), f"not a Keystone payload: {payload!r}"
    issued = Fernet(keys[0][1]).extract_timestamp(_pad(token))
    if expires_at is not None:
        floats = [i for i, v in enumerate(payload) if isinstance(v, float)]
        assert len(floats) == 1, f"expected exactly one float (expires_at) in the payload: {payload!r}"
        payload[floats[0]] = float(int(expires_at))
        issued = int(expires_at) - 3600
    data = msgpack.packb(payload)
    return Fernet(keys[0][1]).encrypt_at_time(data, issued).rstrip(b"=").decode()


def b64_ok(token: str) -> bool:
    try:
        base64.urlsafe_b64decode(_pad(token))
        return True
    except ValueError:
        return False


# ==================================================================== assertions
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
          413: "Request Entity Too Large"}


def keystone_error(r: requests.Response, code: int, *, title: str | None = None) -> dict:
    """Assert r is Keystone's fault: status `code`, JSON body {"error": {"code", "title", "message"}}
    with the same code; returns the inner dict."""
    assert r.status_code == code, f"expected {code}, got {r.status_code}: {r.text[:800]}"
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"{code} body is not JSON ({ctype!r}): {r.text[:400]}"
    body = r.json()
    assert isinstance(body, dict) and list(body) == ["error"], f"not Keystone's error body: {body}"
    err = body["error"]
    assert set(err) >= {"code", "title", "message"}, f"error body lacks code/title/message: {err}"
    assert err["code"] == code, f"error.code {err['code']} != HTTP status {code}"
    assert isinstance(err["title"], str) and err["title"], err
    assert isinstance(err["message"], str) and err["message"], err
    want = title or TITLES.get(code)
    if want and code != 413:  # http.client calls 413 "Content Too Large" since Python 3.13
        assert err["title"] == want, f"title {err['title']!r} != {want!r}"
    return err
