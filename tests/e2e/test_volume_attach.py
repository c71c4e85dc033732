"""Volumes on real kumo-tiny guests (Nova's os-volume_attachments over Cinder's 3.44
attachments, QMP hot-plug), through the real `openstack` CLI:

- a 1 GiB volume attached to a running guest (`server add volume`) shows up in the guest as a
  new virtio disk (`/sys/block/vdb`, read over SSH), takes a marker written with `dd`, is
  detached (`server remove volume`: the guest lets go, the volume is `available`), attached to
  a second guest, which reads the marker back; a `kill -9` of kumo and a start leave it attached
  once (no second disk in the guest); extended while in use (volume 3.42), the disk grows under
  the running guest (`/sys/block/vdb/size`) with its data;
- `kill -9` of kumo 0-0.3 s after an attach request to that guest: after `kumo up` the volume is
  either in-use, listed and seen by the guest, or available, unlisted and unseen;
- a detach from a paused guest times out (`[qemu] volume_detach_timeout`): the volume stays
  `in-use`, the attachment stays listed (`server volume list`), the action's event has the
  error; after unpause the detach works;
- a server boots from a volume made from the image (`volume create --image`, `server create
  --volume`) and from an image-to-volume block device mapping with delete_on_termination
  (`--block-device ...`): both reach the kumo-tiny ready marker; deleting the second deletes
  its volume, deleting the first leaves its volume `available`, and that volume, uploaded to
  an image, boots a third guest.

Needs root, QEMU and kumo's volume service (skipped without: the catalog must have
`block-storage`). kumo only."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from cloudlib import unique
from computelib import wait_server
from guestlib import guest_cloud, kumo_tiny_image, needs_qemu_guest, ssh_keypair, wait_for_console

pytestmark = [
    pytest.mark.kumo_only("kumo's QEMU driver and volume service"),
    needs_qemu_guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "dnsmasq")),
                       reason="ip, nft and dnsmasq are needed"),
]

DETACH_TIMEOUT = 5
CONF = ("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n\n"
        f"[qemu]\nvolume_detach_timeout = {DETACH_TIMEOUT}\n\n"
        "[quota]\ninstances = 20\ncores = 40\nram = -1\n")


def wait_until(check, timeout: float, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


@pytest.fixture(scope="module")
def vc():
    with guest_cloud(CONF, kumo_tiny_image()) as c:
        types = {e["Type"] for e in c.osc("catalog", "list", fmt_json=True)}
        if not types & {"block-storage", "volumev3"}:
            pytest.skip("this kumo has no volume service in its catalog")
        c.net = c.osc("network", "create", unique("private"), fmt_json=True)
        c.osc("subnet", "create", "--network", c.net["id"], "--subnet-range", "10.42.0.0/24",
              unique("private-sub"))
        project = c.osc("token", "issue", fmt_json=True)["project_id"]
        groups = c.osc("security", "group", "list", "--project", project, fmt_json=True)
        default = next(g for g in groups if g["Name"] == "default")["ID"]
        c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", default)
        yield c


# kumo-tiny's SSH user is not root and /dev/vd* are root's: the guest's user_data (run as root
# at boot) keeps hot-plugged disks writable for it.
USER_DATA = "#!/bin/sh\n(while :; do chmod 666 /dev/vd[b-z] 2>/dev/null; sleep 0.2; done) </dev/null >/dev/null 2>&1 &\n"


def boot(c, name: str, key_name: str, *how) -> dict:
    how = how or ("--image", c.image_id)
    ud = c.workdir / "volume-user-data"
    ud.write_text(USER_DATA)
    s = c.osc("server", "create", *how, "--flavor", c.flavor, "--network", c.net["id"],
              "--key-name", key_name, "--user-data", str(ud), name, fmt_json=True)
    return wait_server(c, s["id"], "ACTIVE", timeout=240)


def ssh(c, server_id: str, key: str, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """`command` in the guest (user kumo) through `kumo ssh` (the network's DHCP namespace)."""
    return subprocess.run([c._driver.bin, "--state-dir", str(c.state_dir), "ssh", server_id, "-i", key,
                           "--", command], capture_output=True, text=True, timeout=timeout)


def in_guest(c, server_id: str, key: str, command: str) -> str:
    r = ssh(c, server_id, key, command)
    assert r.returncode == 0, f"{command!r}: {r.stderr}"
    return r.stdout


def volume(c, vid: str) -> dict:
    return c.osc("volume", "show", vid, fmt_json=True)


def wait_volume(c, vid: str, status: str, timeout: float = 120) -> dict:
    got = wait_until(lambda: (v := volume(c, vid))["status"] == status and v, timeout)
    assert got, f"volume {vid} not {status} within {timeout} s: {volume(c, vid)}"
    return got


def has_vdb(c, server_id: str, key: str) -> bool:
    r = ssh(c, server_id, key, "test -e /sys/block/vdb && echo YES || echo NO")
    return r.returncode == 0 and "YES" in r.stdout


def test_attach_write_detach_reattach_and_paused_detach(vc, request):
    c = vc
    key, keypair = ssh_keypair(c, request)
    vol = c.osc("volume", "create", "--size", "1", unique("data"), fmt_json=True)
    wait_volume(c, vol["id"], "available")
    s1 = boot(c, unique("v1"), keypair)
    wait_for_console(c, s1["id"], "dropbear listening on port 22", timeout=120)
    assert wait_until(lambda: ssh(c, s1["id"], key, "true").returncode == 0, 60), "no SSH"
    assert not has_vdb(c, s1["id"], key)

    t0 = time.monotonic()
    c.osc("server", "add", "volume", s1["id"], vol["id"])
    assert wait_until(lambda: has_vdb(c, s1["id"], key), 60), "the guest never saw vdb"
    print(f"attach -> /sys/block/vdb in the guest: {time.monotonic() - t0:.1f} s")
    v = wait_volume(c, vol["id"], "in-use", 30)
    assert v["attachments"][0]["server_id"] == s1["id"], v
    size = int(in_guest(c, s1["id"], key, "cat /sys/block/vdb/size").strip())
    assert size * 512 == 1 << 30, size
    attached = c.osc("server", "volume", "list", s1["id"], fmt_json=True)
    assert [a["Volume ID"] for a in attached] == [vol["id"]], attached
    assert attached[0]["Device"] == "/dev/vdb", attached
    shown = c.compute("GET", f"/servers/{s1['id']}", version="2.3").json()["server"]
    assert shown["os-extended-volumes:volumes_attached"] == [
        {"id": vol["id"], "delete_on_termination": False}], shown

    marker = unique("kumo-volume-marker")
    assert wait_until(lambda: "rw" in ssh(c, s1["id"], key, "test -w /dev/vdb && echo rw").stdout, 10)
    in_guest(c, s1["id"], key, f"echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync && sync")
    assert marker in in_guest(c, s1["id"], key, "dd if=/dev/vdb bs=512 count=1 2>/dev/null")

    c.osc("server", "remove", "volume", s1["id"], vol["id"])
    wait_volume(c, vol["id"], "available", 60)
    assert wait_until(lambda: not has_vdb(c, s1["id"], key), 30)
    assert c.osc("server", "volume", "list", s1["id"], fmt_json=True) == []

    s2 = boot(c, unique("v2"), keypair)
    wait_for_console(c, s2["id"], "dropbear listening on port 22", timeout=120)
    assert wait_until(lambda: ssh(c, s2["id"], key, "true").returncode == 0, 60), "no SSH"
    c.osc("server", "add", "volume", s2["id"], vol["id"])
    assert wait_until(lambda: has_vdb(c, s2["id"], key), 60)
    wait_volume(c, vol["id"], "in-use", 30)
    assert wait_until(lambda: "rw" in ssh(c, s2["id"], key, "test -w /dev/vdb && echo rw").stdout, 10)
    assert marker in in_guest(c, s2["id"], key, "dd if=/dev/vdb bs=512 count=1 2>/dev/null")

    # kill -9 of kumo and up again: the guests run on, the attachment is still recorded, and
    # the agent's start does not plug the disk a second time.
    c.kill9_and_up()
    assert volume(c, vol["id"])["status"] == "in-use"
    assert [a["Volume ID"] for a in c.osc("server", "volume", "list", s2["id"], fmt_json=True)] == [vol["id"]]
    disks = in_guest(c, s2["id"], key, "ls /sys/block").split()
    assert sorted(d for d in disks if d.startswith("vd")) == ["vda", "vdb"], disks

    # Extend while in use (Cinder 3.42): the volume service tells compute (volume-extended) and
    # QEMU grows the disk under the running guest, which sees the new size; the data stays.
    c.osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vol["id"])
    grown = wait_until(lambda: ssh(c, s2["id"], key, "cat /sys/block/vdb/size").stdout.strip()
                       == str((2 << 30) // 512), 60)
    assert grown, in_guest(c, s2["id"], key, "cat /sys/block/vdb/size; dmesg | tail -5")
    v = wait_volume(c, vol["id"], "in-use", 30)
    assert v["size"] == 2, v
    assert marker in in_guest(c, s2["id"], key, "dd if=/dev/vdb bs=512 count=1 2>/dev/null")

    # Paused: the guest cannot let go; the detach fails after the timeout, nothing is lost.
    c.osc("server", "pause", s2["id"])
    wait_server(c, s2["id"], "PAUSED", timeout=30)
    c.osc("server", "remove", "volume", s2["id"], vol["id"])
    time.sleep(DETACH_TIMEOUT + 3)

    def detach_failed():
        for a in c.osc("server", "event", "list", s2["id"], fmt_json=True):
            if a["Action"] == "detach_volume":
                ev = c.osc("server", "event", "show", s2["id"], a["Request ID"], fmt_json=True)
                events = ev.get("events") or []
                if any(e.get("result") == "Error" for e in events):
                    return events
        return None
    events = wait_until(detach_failed, 30)
    assert events, "the detach_volume action has no failed event"
    assert any("did not release" in (e.get("traceback") or "") + str(e) for e in events) or events
    assert volume(c, vol["id"])["status"] == "in-use"
    assert [a["Volume ID"] for a in c.osc("server", "volume", "list", s2["id"], fmt_json=True)] == [vol["id"]]
    c.osc("server", "unpause", s2["id"])
    wait_server(c, s2["id"], "ACTIVE", timeout=30)
    c.osc("server", "remove", "volume", s2["id"], vol["id"])
    wait_volume(c, vol["id"], "available", 60)
    assert wait_until(lambda: not has_vdb(c, s2["id"], key), 30)
    c.osc("volume", "delete", vol["id"])

    kill9_during_attach(c, s2["id"], key)


def kill9_during_attach(c, server_id: str, key: str) -> None:
    """kill -9 of kumo at several moments of an attach to a running guest (request answered,
    then 0 to 0.3 s later): after `kumo up` the volume settles either in-use, listed on the server
    and seen by the guest, or available, not listed and not seen; never in-use without an
    attachment, never a disk in the guest that no attachment accounts for."""
    outcomes = []
    for delay in (0.0, 0.05, 0.15, 0.3):
        vol = c.osc("volume", "create", "--size", "1", unique("k9v"), fmt_json=True)
        wait_volume(c, vol["id"], "available")
        r = c.compute("POST", f"/servers/{server_id}/os-volume_attachments",
                      json={"volumeAttachment": {"volumeId": vol["id"]}})
        assert r.status_code == 200, r.text
        time.sleep(delay)
        c.kill9_and_up()
        settled = wait_until(lambda: volume(c, vol["id"])["status"] in ("in-use", "available"), 60)
        assert settled, f"volume {vol['id']} stuck after kill -9 + up: {volume(c, vol['id'])}"
        time.sleep(1)  # anything still finishing would show now
        v = volume(c, vol["id"])
        listed = [a["volumeId"] for a in c.compute(
            "GET", f"/servers/{server_id}/os-volume_attachments").json()["volumeAttachments"]]
        assert wait_until(lambda: ssh(c, server_id, key, "true").returncode == 0, 120), \
            "no SSH to the guest after kill -9 + up"
        if v["status"] == "in-use":
            assert v["attachments"] and v["attachments"][0]["server_id"] == server_id, v
            assert listed == [vol["id"]], listed
            assert wait_until(lambda: has_vdb(c, server_id, key), 30), \
                f"in-use after kill -9 at +{delay} s but the guest has no vdb"
            c.osc("server", "remove", "volume", server_id, vol["id"])
            wait_volume(c, vol["id"], "available", 60)
            assert wait_until(lambda: not has_vdb(c, server_id, key), 30)
        else:
            assert not v["attachments"], v
            assert listed == [], listed
            assert not has_vdb(c, server_id, key), \
                f"available after kill -9 at +{delay} s but the guest still has vdb"
        outcomes.append((delay, v["status"]))
        c.osc("volume", "delete", vol["id"])
    print("kill -9 during attach:", outcomes)


def test_boot_from_volume_and_delete_on_termination(vc, request):
    c = vc
    _, keypair = ssh_keypair(c, request)
    # a volume made from the image, booted as the root disk; kept when the server goes
    boot_vol = c.osc("volume", "create", "--size", "1", "--image", c.image_id, unique("boot"),
                     fmt_json=True)
    wait_volume(c, boot_vol["id"], "available", 180)
    s1 = boot(c, unique("bfv"), keypair, "--volume", boot_vol["id"])
    wait_for_console(c, s1["id"], timeout=180)
    shown = c.compute("GET", f"/servers/{s1['id']}", version="2.3").json()["server"]
    assert shown["image"] == "", shown["image"]
    assert shown["os-extended-volumes:volumes_attached"][0]["id"] == boot_vol["id"]
    assert volume(c, boot_vol["id"])["status"] == "in-use"

    # image -> new volume in the build's block_device_mapping step, deleted with the server
    s2 = boot(c, unique("bfv-dot"), keypair, "--block-device",
              f"source_type=image,uuid={c.image_id},destination_type=volume,volume_size=1,"
              "boot_index=0,delete_on_termination=true")
    wait_for_console(c, s2["id"], timeout=180)
    made = c.compute("GET", f"/servers/{s2['id']}", version="2.3").json()["server"][
        "os-extended-volumes:volumes_attached"]
    assert len(made) == 1 and made[0]["delete_on_termination"] is True, made
    made_id = made[0]["id"]
    assert volume(c, made_id)["status"] == "in-use"

    for s in (s1, s2):
        c.osc("server", "delete", "--wait", s["id"])
    gone = wait_until(lambda: made_id not in {v["ID"] for v in c.osc("volume", "list", fmt_json=True)}, 60)
    assert gone, "the delete_on_termination volume survived its server"
    wait_volume(c, boot_vol["id"], "available", 60)

    # the volume a guest ran from, uploaded to an image, boots a new guest
    name = unique("from-volume")
    c.osc("image", "create", "--volume", boot_vol["id"], "--disk-format", "qcow2", name)
    image = None
    def uploaded():
        nonlocal image
        found = [i for i in c.osc("image", "list", "--long", fmt_json=True) if i["Name"] == name]
        image = found[0] if found and found[0]["Status"] == "active" else None
        return image is not None
    assert wait_until(uploaded, 180), f"image {name} from volume {boot_vol['id']} not active"
    wait_volume(c, boot_vol["id"], "available", 60)
    s3 = boot(c, unique("from-upload"), keypair, "--image", image["ID"])
    wait_for_console(c, s3["id"], timeout=180)
    c.osc("server", "delete", "--wait", s3["id"])
    c.osc("image", "delete", image["ID"])
    c.osc("volume", "delete", boot_vol["id"])
