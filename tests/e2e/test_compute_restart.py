"""Compute across a `kill -9` in the middle of 50 builds and across a plain restart.

A kumo of its own: three fake hosts whose spawns take 1.5 s (so that builds are in flight when
the process is killed) and a quota large enough for 50 servers. kumo only."""

from __future__ import annotations

import shutil
import time

import pytest

from cloudlib import pid_alive, start_kumo, unique
from computelib import (HOSTS, MAXV, PAUSED, RUNNING, SHUTDOWN, create_servers, delete_all, make_qcow2,
                          placement_usage, server, wait_server)

pytestmark = [pytest.mark.kumo_only("kill -9 and restart of the kumo process"),
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed")]

N = 50
CONF = ("[fake]\nhosts = 3\nspawn_delay_ms = 1500\n\n"
        "[quota]\ninstances = 200\ncores = 400\nram = 1000000\n")
NANO = {"VCPU": 1, "MEMORY_MB": 192, "DISK_GB": 1}


@pytest.fixture(scope="module")
def rc():
    c = start_kumo(CONF)
    try:
        src = make_qcow2(c.workdir / "r.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format",
                           "bare", "--public", unique("img"), fmt_json=True)["id"]
        yield c
    finally:
        c.stop()


def all_servers(c, name: str) -> list[dict]:
    r = c.compute("GET", "/servers/detail", params={"name": f"^{name}", "limit": 1000}, version=MAXV)
    assert r.status_code == 200, r.text
    return r.json()["servers"]


def flavor_sum(servers: list[dict]) -> dict:
    total: dict[str, int] = {}
    for s in servers:
        f = s["flavor"]
        for k, v in (("VCPU", f["vcpus"]), ("MEMORY_MB", f["ram"]), ("DISK_GB", f["disk"])):
            total[k] = total.get(k, 0) + v
    return {k: v for k, v in total.items() if v}


def test_kill9_during_50_builds(rc):
    name = unique("storm")
    ids = create_servers(rc, N, image=rc.image_id, flavor="42", name=name)
    try:
        check_kill9_during_builds(rc, name)
    finally:
        delete_all(rc, ids)
    assert placement_usage(rc) == {}, "the deletes gave every claim back"


def check_kill9_during_builds(rc, name):
    # wait until builds are on their hosts (spawning), but not all finished
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        servers = all_servers(rc, name)
        if any(s["OS-EXT-STS:task_state"] == "spawning" for s in servers):
            break
        time.sleep(0.05)
    old_pid = rc.server_pid()
    assert old_pid and pid_alive(old_pid)
    rc.kill9_and_up()  # SIGKILL of the pid in kumo.pid, then `kumo up` on the same port and state dir
    assert not pid_alive(old_pid) and rc.server_pid() != old_pid
    building_at_kill = [s for s in servers if s["status"] == "BUILD"]
    assert building_at_kill, "the kill came too late: every build had finished"

    # every server ends ACTIVE, or ERROR with a fault; none stays in BUILD
    deadline = time.monotonic() + 90
    while True:
        servers = all_servers(rc, name)
        assert len(servers) == N, f"{len(servers)} servers after the restart, {N} made"
        stuck = [s for s in servers if s["status"] not in ("ACTIVE", "ERROR") or s["OS-EXT-STS:task_state"]]
        if not stuck:
            break
        assert time.monotonic() < deadline, \
            f"{len(stuck)} servers still building 90 s after the restart: " \
            f"{[(s['id'], s['status'], s['OS-EXT-STS:task_state']) for s in stuck[:5]]}"
        time.sleep(0.5)
    for s in servers:
        if s["status"] == "ERROR":
            assert s.get("fault", {}).get("message"), f"{s['id']} in ERROR without a fault: {s}"
            assert s["OS-EXT-STS:vm_state"] == "error"
        else:
            assert s["OS-EXT-STS:vm_state"] == "active" and s["OS-EXT-STS:power_state"] == RUNNING, s
            assert s["OS-EXT-SRV-ATTR:host"] in HOSTS, s
    live = [s for s in servers if s["status"] != "ERROR"]
    # placement holds exactly the live servers' flavors: no claim lost, none leaked or doubled
    assert placement_usage(rc) == flavor_sum(live), (placement_usage(rc), len(live))
    for s in live:
        allocs = rc.placement("GET", f"/allocations/{s['id']}").json()["allocations"]
        assert list(allocs.values())[0]["resources"] == NANO and len(allocs) == 1, (s["id"], allocs)


def test_plain_restart_keeps_servers_and_states(rc):
    """Servers of the demo project in four states keep them, and their claims, across `kumo down` + `kumo up`."""
    auth = rc.cloud_auth("kumo")
    token = rc.login(auth["username"], auth["password"], project=auth["project_name"])
    ids = create_servers(rc, 4, image=rc.image_id, flavor="42", name=unique("keep"), token=token)
    try:
        for sid in ids:
            wait_server(rc, sid)
        stopped, paused, locked, plain = ids
        rc.osc("server", "stop", stopped, cloud="kumo")
        rc.osc("server", "pause", paused, cloud="kumo")
        rc.osc("server", "lock", locked, cloud="kumo")
        rc.osc("--os-compute-api-version", MAXV, "server", "set", "--tag", "t1", "--property", "k=v", plain,
               cloud="kumo")
        wait_server(rc, stopped, "SHUTOFF")
        wait_server(rc, paused, "PAUSED")
        keys = ("status", "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state", "OS-EXT-STS:task_state",
                "OS-EXT-SRV-ATTR:host", "flavor", "image", "locked", "tags", "metadata", "name", "created")
        before = {sid: {k: server(rc, sid).get(k) for k in keys} for sid in ids}
        usage = placement_usage(rc)
        assert usage == {k: 4 * v for k, v in NANO.items()}, usage

        old_pid = rc.server_pid()
        rc.restart()
        assert rc.server_pid() != old_pid
        after = {sid: {k: server(rc, sid).get(k) for k in keys} for sid in ids}
        assert after == before
        assert after[stopped]["OS-EXT-STS:power_state"] == SHUTDOWN
        assert after[paused]["OS-EXT-STS:power_state"] == PAUSED
        assert after[locked]["locked"] is True
        assert after[plain]["tags"] == ["t1"] and after[plain]["metadata"] == {"k": "v"}
        assert placement_usage(rc) == usage
        # they still take actions, and the lock still holds for the owner
        rc.osc("server", "start", stopped, cloud="kumo")
        rc.osc("server", "unpause", paused, cloud="kumo")
        for sid in (stopped, paused):
            assert wait_server(rc, sid)["OS-EXT-STS:power_state"] == RUNNING
        err = rc.osc_fail("server", "stop", locked, cloud="kumo")
        assert f"Instance {locked} is locked" in err, err
        rc.osc("server", "unlock", locked, cloud="kumo")
    finally:
        delete_all(rc, ids)
    assert placement_usage(rc) == {}
