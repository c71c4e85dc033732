"""Helpers of the compute end-to-end tests (test_compute*.py): Nova's fault bodies, waiting for a
server's state, servers made through the API, placement usage summed over providers."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from cloudlib import run, unique

HOSTS = ("fake-1", "fake-2", "fake-3")
MAXV = "2.72"  # kumo's maximum compute microversion
# the CLI at a microversion that has tags (2.26), server show's host attributes and the like
NEW = ("--os-compute-api-version", MAXV)

needs_qemu = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed")

# Nova's power_state values (the API's ints; the CLI's JSON output keeps them as ints too)
RUNNING, PAUSED, SHUTDOWN, SUSPENDED = 1, 3, 4, 7


def make_qcow2(path: Path, size: str = "1M") -> Path:
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], timeout=60)
    return path


def nova_error(r, code: int) -> str:
    """Assert r is Nova's fault with status `code` ({"<name>": {"code": code, "message": ...}});
    returns the message."""
    assert r.status_code == code, f"expected {code}, got {r.status_code}: {r.text[:800]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and len(body) == 1, body
    (inner,) = body.values()
    assert inner["code"] == code, body
    assert isinstance(inner["message"], str) and inner["message"], body
    return inner["message"]


def server(c, sid: str, version: str = MAXV) -> dict:
    r = c.compute("GET", f"/servers/{sid}", version=version)
    assert r.status_code == 200, r.text
    return r.json()["server"]


def wait_server(c, sid: str, status: str | tuple = "ACTIVE", timeout: float = 60, task_none: bool = True) -> dict:
    """Poll (as admin) until the server is in `status` with no task; fails on ERROR (unless
    waited for) or at the timeout."""
    want = (status,) if isinstance(status, str) else status
    deadline = time.monotonic() + timeout
    s = {}
    while time.monotonic() < deadline:
        s = server(c, sid)
        if s["status"] in want and (not task_none or s["OS-EXT-STS:task_state"] is None):
            return s
        if s["status"] == "ERROR" and "ERROR" not in want:
            raise AssertionError(f"server {sid} went to ERROR: {s.get('fault')}")
        time.sleep(0.1)
    raise AssertionError(f"server {sid} not {want} after {timeout} s: status {s.get('status')}, "
                         f"task {s.get('OS-EXT-STS:task_state')}")


def wait_gone(c, sid: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.compute("GET", f"/servers/{sid}")
        if r.status_code == 404:
            return
        time.sleep(0.1)
    raise AssertionError(f"server {sid} still there {timeout} s after its delete")


def assert_state(s: dict, status: str, vm_state: str, power: int):
    got = (s["status"], s["OS-EXT-STS:vm_state"], s["OS-EXT-STS:power_state"], s["OS-EXT-STS:task_state"])
    assert got == (status, vm_state, power, None), f"{s['id']}: {got} != {(status, vm_state, power, None)}"


def osc_state(c, sid: str, **kw) -> tuple:
    shown = c.osc("server", "show", sid, fmt_json=True, **kw)
    return shown["status"], shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:power_state"]


def create_servers(c, n: int, *, image: str, flavor: str, token: str | None = None, name: str | None = None,
                   **extra) -> list[str]:
    """n servers through the API (min_count = max_count = n); returns their ids."""
    name = name or unique("vm")
    body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none",
                       "min_count": n, "max_count": n, **extra}}
    r = c.compute("POST", "/servers", json=body, version=MAXV, token=token)
    assert r.status_code == 202, r.text
    r = c.compute("GET", "/servers", params={"name": f"^{re.escape(name)}"}, version=MAXV, token=token)
    ids = [s["id"] for s in r.json()["servers"]]
    assert len(ids) == n, r.text
    return ids


def delete_all(c, ids):
    for sid in ids:
        c.compute("DELETE", f"/servers/{sid}")
    for sid in ids:
        wait_gone(c, sid)


def placement_usage(c) -> dict:
    """Usages summed over every resource provider."""
    total: dict[str, int] = {}
    for rp in c.placement("GET", "/resource_providers").json()["resource_providers"]:
        usages = c.placement("GET", f"/resource_providers/{rp['uuid']}/usages").json()["usages"]
        for k, v in usages.items():
            total[k] = total.get(k, 0) + v
    return {k: v for k, v in total.items() if v}
