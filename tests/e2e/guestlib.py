"""Helpers of the real-guest end-to-end tests (QEMU driver): is QEMU there, the kumo-tiny image
(tools/guest-image/build.sh, docs/guest-image.md), waiting for a marker on a server's console.

    ok, why = qemu_available()
    needs_qemu_guest = pytest.mark.skipif(not ok, reason=why)
    path = kumo_tiny_image()                      # KUMO_TINY_IMAGE, else build.sh (cached)
    path = cloud_image()                          # KUMO_CLOUD_IMAGE, else tools/cloud-image/build.sh
    text = wait_for_console(cloud, server_id)     # until "kumo-tiny: ready" is in the console log
    with guest_cloud(conf, image) as c: ...       # a kumo with the image and a flavor, cleaned up
    key, name = ssh_keypair(cloud, request)       # an ed25519 key registered as a key pair
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Union

import pytest

from cloudlib import REPO, Cloud, CommandError, run

BUILD_SH = REPO / "tools" / "guest-image" / "build.sh"
CLOUD_BUILD_SH = REPO / "tools" / "cloud-image" / "build.sh"
READY = "kumo-tiny: ready"  # the image's last boot line on its serial console


def qemu_available() -> tuple[bool, str]:
    """(True, "") when qemu-system-x86_64 and qemu-img are on PATH, else (False, why)."""
    missing = [b for b in ("qemu-system-x86_64", "qemu-img") if shutil.which(b) is None]
    if missing:
        return False, (f"{' and '.join(missing)} not installed (Debian: apt-get install "
                       f"qemu-system-x86 qemu-utils, both from the same release)")
    return True, ""


_ok, _why = qemu_available()
# for tests that boot real guests: @needs_qemu_guest
needs_qemu_guest = pytest.mark.skipif(not _ok, reason=_why or "qemu available")

_IMAGE: Path | None = None


def kumo_tiny_image() -> Path:
    """The kumo-tiny qcow2: $KUMO_TINY_IMAGE (run_tests.sh sets it), else the path that
    tools/guest-image/build.sh prints last (a cached build takes ~1 s, a fresh one ~5 s plus
    downloads). Built once per test session."""
    global _IMAGE
    env = os.environ.get("KUMO_TINY_IMAGE", "").strip()
    if env:
        p = Path(env)
        if not p.is_file():
            raise RuntimeError(f"KUMO_TINY_IMAGE={env}: no such file")
        return p
    if _IMAGE is not None and _IMAGE.is_file():
        return _IMAGE
    proc = run([str(BUILD_SH)], timeout=900)
    lines = proc.stdout.strip().splitlines()
    if not lines or not Path(lines[-1]).is_file():
        raise RuntimeError(f"{BUILD_SH} printed no image path:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    _IMAGE = Path(lines[-1])
    return _IMAGE


_CLOUD_IMAGE: Path | None = None


def cloud_image() -> Path:
    """The Debian 12 cloud-init qcow2 (docs/cloud-image.md): $KUMO_CLOUD_IMAGE (run_tests.sh sets
    it), else the path tools/cloud-image/build.sh prints last (cached: ~0.1 s; a fresh build
    runs debootstrap as root: ~3-4 min). Built once per test session."""
    global _CLOUD_IMAGE
    env = os.environ.get("KUMO_CLOUD_IMAGE", "").strip()
    if env:
        p = Path(env)
        if not p.is_file():
            raise RuntimeError(f"KUMO_CLOUD_IMAGE={env}: no such file")
        return p
    if _CLOUD_IMAGE is not None and _CLOUD_IMAGE.is_file():
        return _CLOUD_IMAGE
    proc = run([str(CLOUD_BUILD_SH)], timeout=1200)
    lines = proc.stdout.strip().splitlines()
    if not lines or not Path(lines[-1]).is_file():
        raise RuntimeError(f"{CLOUD_BUILD_SH} printed no image path:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    _CLOUD_IMAGE = Path(lines[-1])
    return _CLOUD_IMAGE


ConsoleSource = Union[Cloud, Callable[..., str]]  # a Cloud, or a callable running the CLI


def console_log(source: ConsoleSource, server: str) -> str:
    """`openstack console log show SERVER`'s output. `source` is a cloudlib.Cloud (the CLI as
    kumo-admin) or a callable taking the CLI's arguments and returning its stdout (e.g.
    `lambda *a: cloud.osc(*a, cloud="kumo")`). Raises CommandError when the CLI fails."""
    if isinstance(source, Cloud):
        return source.osc("console", "log", "show", server)
    return source("console", "log", "show", server)


def wait_for_console(source: ConsoleSource, server: str, marker: str = READY, timeout: float = 30,
                     interval: float = 1.0, count: int = 1) -> str:
    """Poll the server's console log until `count` lines contain `marker` (count > 1: after
    reboots, each boot prints it again); returns the whole log.
    CLI failures while the server builds (no console yet) are retried until the timeout, which
    fails the test with the last log (or error) seen."""
    deadline = time.monotonic() + timeout
    last, error = "", ""
    while True:
        try:
            last = console_log(source, server)
            error = ""
            if sum(marker in line for line in last.splitlines()) >= count:
                return last
        except CommandError as e:
            error = f"{e.stderr.strip()[-1000:]}"
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    tail = "\n".join(last.splitlines()[-40:])
    raise AssertionError(f"{marker!r} not {count} time(s) on the console of server {server} within {timeout} s"
                         + (f"; last CLI error: {error}" if error else "")
                         + f"; console log (tail):\n{tail}")


@contextlib.contextmanager
def guest_cloud(conf: str, image: Path, image_args: tuple = (), flavor_ram: int = 192,
                flavor_disk: int = 1):
    """A kumo of its own (`conf` appended to kumo.conf) with `image` uploaded as a public qcow2
    image (`c.image_id`), a one-vCPU flavor (`c.flavor`) and its namespace prefix (`c.prefix`);
    every server is deleted and kumo stopped at the end, also on failure."""
    from cloudlib import start_kumo, unique

    c = start_kumo(conf)
    try:
        c.prefix = c._driver.netns_prefix
        c.image_id = c.osc("image", "create", "--file", str(image), "--disk-format", "qcow2",
                           "--container-format", "bare", "--public", *image_args,
                           unique(image.stem.split("-")[0] + "-img"), fmt_json=True)["id"]
        c.flavor = c.osc("flavor", "create", "--vcpus", "1", "--ram", str(flavor_ram), "--disk",
                         str(flavor_disk), unique("guest"), fmt_json=True)["id"]
        yield c
    finally:
        try:
            servers = lambda: c.compute("GET", "/servers", params={"all_tenants": 1}).json().get("servers", [])  # noqa: E731
            for s in servers():
                c.compute("DELETE", f"/servers/{s['id']}")
            deadline = time.monotonic() + 60
            while servers() and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            c.stop()


def ssh_keypair(cloud, request) -> tuple[str, str]:
    """A fresh ed25519 key (file path) registered as a key pair (name) of the admin user; the
    key's temp dir is removed when the test ends."""
    from cloudlib import unique

    keydir = tempfile.mkdtemp(prefix="kumo-e2e-key-")
    request.addfinalizer(lambda: shutil.rmtree(keydir, ignore_errors=True))
    key = os.path.join(keydir, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    name = unique("key")
    cloud.osc("keypair", "create", "--public-key", key + ".pub", name)
    return key, name
