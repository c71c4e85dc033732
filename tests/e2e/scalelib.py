"""Processes of a cloud split over several `kumo serve ROLE...` (tests/e2e/test_scale_out.py,
tests/e2e/test_multihost_network.py): each in the foreground with its own state dir and log,
stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cloudlib import Cloud, KumoDriver, free_port, tail

# Host A of the multihost tests: every role but the compute agents, in one process (issue #11's
# acceptance: api + conductor + scheduler + network-agent + volume; with metadata and dashboard).
CONTROLLER_ROLES = ["api", "conductor", "scheduler", "network-agent", "volume", "metadata", "dashboard"]


def metadata_conf(port: int | None = None, secret: str | None = None) -> str:
    """A split process's metadata role: `[metadata] listen` on a free loopback port (not 8775, which
    another test may hold) and the proxies' shared secret."""
    return (f"[metadata]\nlisten = 127.0.0.1:{port or free_port()}\n"
            f"[neutron]\nmetadata_proxy_shared_secret = {secret or secrets.token_hex(16)}\n")


class Proc:
    """One `kumo serve ROLE...` in the foreground, its log in its state dir."""

    def __init__(self, name: str, work: Path, conf: str, roles: list[str], listen: str | None = None,
                 bin: str | None = None):
        self.name = name
        self.state = work / name
        self.state.mkdir(mode=0o700, exist_ok=True)
        (self.state / "kumo.conf").write_text(conf)
        self.log = self.state / "serve.log"
        # `bin`: another build than KUMO_BIN (the rolling-upgrade test's N+1)
        self.argv = [bin or KumoDriver().bin, "serve", *roles, "--state-dir", str(self.state), "--config",
                     str(self.state / "kumo.conf")] + (["--listen", listen] if listen else [])
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.pop("ADMIN_PASSWORD", None)
        self.proc = subprocess.Popen(self.argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()

    def restart_with(self, bin: str) -> int:
        """Stop, then start again from the build `bin` on the same state dir (an upgrade); returns
        where the new run's log starts (for `wait_log(since=...)`)."""
        self.stop()
        since = self.log.stat().st_size
        self.argv[0] = bin
        self.start()
        return since

    def log_text(self, since: int = 0) -> str:
        """The log from byte `since` on."""
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def wait_log(self, text: str, timeout: float = 60, since: int = 0):
        """Wait for `text` in the log (from byte `since` on)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text(since):
            assert self.proc is not None and self.proc.poll() is None, \
                f"{self.name} exited ({self.proc.returncode}):\n{tail(self.log, 40)}"
            assert time.monotonic() < deadline, f"{self.name}: no {text!r} within {timeout} s:\n{tail(self.log, 40)}"
            time.sleep(0.1)

    def guests(self) -> set[str]:
        """The guests this host's fake driver keeps (its state file)."""
        f = self.state / "instances" / "fake" / f"{self.name}.json"
        return set(json.loads(f.read_text())) if f.exists() else set()


class Stub:
    """Cloud's driver for processes this test starts and stops itself."""
    supports_lifecycle = False


def cloud_of(api: Proc, port: int, work: Path) -> Cloud:
    """The CLI and REST client of the cloud whose api process is `api`, listening on `port`."""
    c = Cloud(target="kumo", workdir=work, state_dir=api.state, clouds_yaml=api.state / "clouds.yaml",
              _driver=Stub())
    c.load_clouds_yaml()
    c.admin_password = (api.state / "admin-password").read_text().strip()
    return c


# a line of kumo's log at level ERROR (tracing's text format: time, level, message), or a panic
_ERROR_LINE = re.compile(r"^\S+\s+ERROR\s|panicked at")


def log_errors(procs: list[Proc]) -> dict[str, list[str]]:
    """The ERROR lines and panics of each process's log, by process name (only those with some)."""
    found = {}
    for p in procs:
        lines = [line for line in p.log.read_text(errors="replace").splitlines() if _ERROR_LINE.search(line)]
        if lines:
            found[p.name] = lines
    return found


@contextlib.contextmanager
def split_processes(prefix: str, no_errors: bool = False):
    """A temp dir for one test's processes and the list they go in (`with ... as (work, procs)`):
    on failure each one's log tail is printed; at the end every one is stopped by its PID and
    the dir removed (kept with KUMO_E2E_KEEP=1). `no_errors`: when the block succeeded, the
    processes' logs (their stop included) must hold no ERROR line and no panic."""
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    procs: list[Proc] = []
    try:
        yield work, procs
        for p in procs:
            p.stop()
        errors = log_errors(procs) if no_errors else {}
        assert not errors, "errors in the logs:\n" + "\n".join(
            f"--- {name} ---\n" + "\n".join(lines[:20]) for name, lines in errors.items())
    except BaseException:
        for p in procs:
            print(f"--- {p.name} (tail) ---\n{tail(p.log, 60)}")
        raise
    finally:
        for p in procs:
            p.stop()
        if not os.environ.get("KUMO_E2E_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        print(f"test took {time.monotonic() - t0:.1f} s")
