"""Real guests: kumo with the QEMU driver boots kumo-tiny (TCG here), and every server action
reaches the QEMU process. Through the real `openstack` CLI where it has the command.

A kumo of its own with `compute_driver = qemu`; skipped only when QEMU is not installed.
Guests outlive kumo by design, so the module's teardown kills any QEMU left in its state dir
(by the pid in each instance's qemu.pid, after checking that pid runs that instance)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from cloudlib import pid_alive, start_kumo, unique
from computelib import server, wait_server
from consolelib import rfb_handshake, websocket_status
from guestlib import READY as MARKER
from guestlib import console_log, kumo_tiny_image, needs_qemu_guest, wait_for_console

pytestmark = [pytest.mark.kumo_only("real guests under kumo's QEMU driver"), needs_qemu_guest]

CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 20\n\n"
        "[quota]\ninstances = 50\ncores = 100\nram = -1\n")


def qemu_pid(c, sid: str) -> int | None:
    """The pid of the server's QEMU, if one runs (checked against its command line)."""
    try:
        pid = int((c.state_dir / "instances" / sid / "qemu.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if sid.encode() not in cmd or stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return None
    return pid


def kill_guests(c):
    inst = c.state_dir / "instances"
    if not inst.is_dir():
        return
    for d in inst.iterdir():
        pid = qemu_pid(c, d.name)
        if pid:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def gc():
    image = kumo_tiny_image()
    c = start_kumo(CONF)
    try:
        c.image_id = c.osc("image", "create", "--file", str(image), "--disk-format", "qcow2",
                           "--container-format", "bare", "--public", unique("kumo-tiny"), fmt_json=True)["id"]
        c.key = unique("key")
        c.osc("keypair", "create", "--private-key", str(c.workdir / "key.pem"), c.key)
        yield c
    finally:
        try:
            for s in c.compute("GET", "/servers", params={"all_tenants": 1}).json().get("servers", []):
                c.compute("DELETE", f"/servers/{s['id']}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and c.compute("GET", "/servers").json().get("servers"):
                time.sleep(0.2)
        finally:
            kill_guests(c)
            c.stop()


def console(c, sid: str, lines: int | None = None) -> str:
    if lines:
        return c.osc_run("console", "log", "show", "--lines", str(lines), sid).stdout
    return console_log(c, sid)


def wait_marker(c, sid: str, count: int = 1, timeout: float = 30) -> str:
    return wait_for_console(c, sid, MARKER, timeout=timeout, interval=0.5, count=count)


def boot(c, name: str, image: str | None = None, flavor: str = "m1.nano", wait: bool = True) -> str:
    # no network: these tests are about the guest (the CLI asks for `auto`, which, as with Nova,
    # fails where the project has no network)
    s = c.osc("server", "create", "--image", image or c.image_id, "--flavor", flavor, "--key-name", c.key,
              "--nic", "none", name, fmt_json=True)
    if wait:
        wait_server(c, s["id"], "ACTIVE", timeout=90)
    return s["id"]


def allocations(c, sid: str) -> dict:
    r = c.placement("GET", f"/allocations/{sid}")
    assert r.status_code == 200, r.text
    return r.json()["allocations"]


def test_lifecycle_of_a_real_guest(gc):
    c = gc
    sid = boot(c, unique("life"))
    s = server(c, sid)
    assert s["OS-EXT-STS:power_state"] == 1 and s["OS-EXT-SRV-ATTR:hypervisor_hostname"]
    assert qemu_pid(c, sid), "a QEMU process runs the server"
    wait_marker(c, sid, 1, timeout=30)
    assert allocations(c, sid), "the server holds an allocation"
    # the console log's --lines gives the tail
    assert len(console(c, sid, lines=3).strip().splitlines()) <= 3

    c.osc_run("server", "stop", sid)
    wait_server(c, sid, "SHUTOFF", timeout=60)
    assert server(c, sid)["OS-EXT-STS:power_state"] == 4
    assert qemu_pid(c, sid) is None, "stop leaves no QEMU"

    c.osc_run("server", "start", sid)
    wait_server(c, sid, "ACTIVE", timeout=60)
    wait_marker(c, sid, 2)

    c.osc_run("server", "reboot", "--soft", "--wait", sid)
    wait_server(c, sid, "ACTIVE", timeout=60)
    wait_marker(c, sid, 3)
    c.osc_run("server", "reboot", "--hard", "--wait", sid)
    wait_server(c, sid, "ACTIVE", timeout=60)
    wait_marker(c, sid, 4)

    c.osc_run("server", "pause", sid)
    s = wait_server(c, sid, "PAUSED", timeout=30)
    assert s["OS-EXT-STS:power_state"] == 3
    r = c.http("GET", "/")  # kumo keeps serving while the guest is paused
    assert r.status_code in (200, 300)
    c.osc_run("server", "unpause", sid)
    assert wait_server(c, sid, "ACTIVE", timeout=30)["OS-EXT-STS:power_state"] == 1

    c.osc_run("server", "suspend", sid)
    assert wait_server(c, sid, "SUSPENDED", timeout=30)["OS-EXT-STS:power_state"] == 7
    c.osc_run("server", "resume", sid)
    wait_server(c, sid, "ACTIVE", timeout=30)

    pid = qemu_pid(c, sid)
    c.osc_run("server", "delete", "--wait", sid)
    assert not (pid and pid_alive(pid) and qemu_pid(c, sid)), "delete stops QEMU"
    assert not (c.state_dir / "instances" / sid).exists(), "delete removes the instance directory"
    assert allocations(c, sid) == {}, "delete gives the allocation back"


def test_create_image_of_a_running_guest_boots(gc):
    c = gc
    sid = boot(c, unique("snap-src"))
    wait_marker(c, sid)
    name = unique("snap")
    c.osc_run("server", "image", "create", "--name", name, "--wait", sid)
    img = c.osc("image", "show", name, fmt_json=True)
    assert img["status"] == "active" and img["disk_format"] == "qcow2", img
    assert wait_server(c, sid, "ACTIVE")["OS-EXT-STS:power_state"] == 1, "the source runs on after the snapshot"
    sid2 = boot(c, unique("from-snap"), image=img["id"])
    wait_marker(c, sid2)
    for x in (sid, sid2):
        c.osc_run("server", "delete", "--wait", x)
    c.osc_run("image", "delete", img["id"])


def test_kill9_keeps_guests_running(gc):
    c = gc
    ids = [boot(c, unique(f"k9-{n}"), wait=False) for n in range(3)]
    for sid in ids:
        wait_server(c, sid, "ACTIVE", timeout=120)
    pids = {sid: qemu_pid(c, sid) for sid in ids}
    assert all(pids.values()), pids
    kumo = c.server_pid()
    os.kill(kumo, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{kumo}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(pid_alive(p) for p in pids.values()), "kill -9 of kumo leaves the guests running"
    # a guest dies while kumo is down
    victim = ids[0]
    os.kill(pids[victim], signal.SIGKILL)
    c._driver.up(c, f"127.0.0.1:{c.port}")

    s = wait_server(c, victim, "SHUTOFF", timeout=60)
    assert s["OS-EXT-STS:power_state"] == 4
    for sid in ids[1:]:
        s = wait_server(c, sid, "ACTIVE")
        assert s["OS-EXT-STS:power_state"] == 1
        assert qemu_pid(c, sid) == pids[sid], "the same QEMU, not a new one"
    # manageable after the restart: stop and start one, start the dead one
    c.osc_run("server", "stop", ids[1])
    wait_server(c, ids[1], "SHUTOFF", timeout=60)
    assert qemu_pid(c, ids[1]) is None
    c.osc_run("server", "start", ids[1], victim)
    for sid in (ids[1], victim):
        wait_server(c, sid, "ACTIVE", timeout=60)
        assert qemu_pid(c, sid)
    for sid in ids:
        c.osc_run("server", "delete", sid)
    for sid in ids:
        deadline = time.monotonic() + 60
        while c.compute("GET", f"/servers/{sid}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_pid(c, sid) is None


def test_an_unbootable_image_ends_in_error_with_the_reason(gc):
    c = gc
    junk = c.workdir / "junk.raw"
    junk.write_bytes(os.urandom(1 << 20))
    img = c.osc("image", "create", "--file", str(junk), "--disk-format", "raw", "--container-format", "bare",
                unique("junk"), fmt_json=True)["id"]
    s = c.osc("server", "create", "--image", img, "--flavor", "m1.nano", "--nic", "none", unique("junk-vm"),
              fmt_json=True)
    s = wait_server(c, s["id"], "ERROR", timeout=60)
    fault = s.get("fault") or {}
    assert "spawning" in fault.get("message", ""), fault
    assert "not a bootable disk" in fault.get("message", ""), fault
    assert allocations(c, s["id"]) == {}, "the failed build gave its allocation back"
    assert qemu_pid(c, s["id"]) is None
    c.osc_run("server", "delete", "--wait", s["id"])
    c.osc_run("image", "delete", img)


def test_a_flavor_bigger_than_the_host_finds_no_host(gc):
    c = gc
    fl = unique("huge")
    c.osc_run("flavor", "create", "--ram", str(64 * 1024 * 1024), "--vcpus", "1", "--disk", "1", fl)
    s = c.osc("server", "create", "--image", c.image_id, "--flavor", fl, "--nic", "none", unique("huge-vm"),
              fmt_json=True)
    s = wait_server(c, s["id"], "ERROR", timeout=60)
    assert "No valid host" in (s.get("fault") or {}).get("message", ""), s.get("fault")
    c.osc_run("server", "delete", "--wait", s["id"])
    c.osc_run("flavor", "delete", fl)


def test_hypervisor_reports_the_real_host(gc):
    c = gc
    hv = c.compute("GET", "/os-hypervisors/detail", version="2.53").json()["hypervisors"]
    assert len(hv) == 1, hv
    h = hv[0]
    assert h["hypervisor_type"] == "QEMU" and h["hypervisor_version"] >= 7_000_000, h
    r = c.placement("GET", f"/resource_providers/{h['id']}/inventories")
    inv = r.json()["inventories"]
    assert inv["VCPU"]["total"] == os.cpu_count() and inv["VCPU"]["allocation_ratio"] == 4.0, inv
    mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")).split()[1])
    assert inv["MEMORY_MB"]["total"] == mem_kb // 1024, inv
    assert inv["MEMORY_MB"]["reserved"] == 512
    assert inv["DISK_GB"]["total"] == shutil.disk_usage(c.state_dir).total // (1 << 30), inv


def qemu_memory_arg(c, sid: str) -> str:
    pid = qemu_pid(c, sid)
    assert pid, "a QEMU runs the server"
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return args[args.index("-m") + 1]


def test_resize_restarts_the_guest_with_the_new_flavor(gc):
    c = gc
    sid = boot(c, unique("rs"))
    assert qemu_memory_arg(c, sid) == "192M"
    c.osc_run("server", "resize", "--flavor", "m1.micro", "--wait", sid)
    s = wait_server(c, sid, "VERIFY_RESIZE", timeout=90)
    assert s["flavor"]["ram"] == 256 and qemu_memory_arg(c, sid) == "256M"
    wait_marker(c, sid, 2)
    c.osc_run("server", "resize", "revert", sid)
    wait_server(c, sid, "ACTIVE", timeout=90)
    assert qemu_memory_arg(c, sid) == "192M", "revert runs the old flavor again"
    c.osc_run("server", "resize", "--flavor", "m1.micro", "--wait", sid)
    wait_server(c, sid, "VERIFY_RESIZE", timeout=90)
    c.osc_run("server", "resize", "confirm", sid)
    s = wait_server(c, sid, "ACTIVE", timeout=60)
    assert s["flavor"]["ram"] == 256 and qemu_memory_arg(c, sid) == "256M"
    assert not (c.state_dir / "instances" / sid / "disk.resize").exists(), "confirm drops the old disk"
    c.osc_run("server", "delete", "--wait", sid)


def test_a_guest_that_dies_shows_shutoff_at_once(gc):
    """No periodic sync needed (it runs every 600 s): QEMU's monitor closing is an event."""
    c = gc
    sid = boot(c, unique("dies"))
    pid = qemu_pid(c, sid)
    os.kill(pid, signal.SIGTERM)  # QEMU shuts the guest down and exits
    t0 = time.monotonic()
    s = wait_server(c, sid, "SHUTOFF", timeout=15)
    assert s["OS-EXT-STS:power_state"] == 4
    print(f"SHUTOFF {time.monotonic() - t0:.1f} s after QEMU was terminated")
    c.osc_run("server", "delete", "--wait", sid)


def test_novnc_console_reaches_the_guest_once_per_token(gc):
    c = gc
    sid = boot(c, unique("vnc"))
    url = c.osc("console", "url", "show", "--novnc", sid, fmt_json=True)["url"]
    assert "/novnc/vnc_lite.html?path=" in url, url
    assert rfb_handshake(url) == b"RFB 003.008\n", "the guest's VNC server answers through the proxy"
    assert websocket_status(url) == 401, "a console token works once"
    bad = url.replace("token%3D", "token%3Dx")
    assert websocket_status(bad) == 401
    # noVNC's page itself is served where the URL points
    page = c.http("GET", url.split("?")[0])
    assert page.status_code == 200 and "noVNC" in page.text
    c.osc_run("server", "stop", sid)
    wait_server(c, sid, "SHUTOFF", timeout=60)
    r = c.compute("POST", f"/servers/{sid}/remote-consoles", version="2.6",
                  json={"remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert r.status_code == 409, r.text
    c.osc_run("server", "delete", "--wait", sid)
