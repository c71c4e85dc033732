"""os-volume_attachments semantics on the fake compute driver with kumo's volume service: Nova's
status codes, bodies and faults over raw HTTP, the volume's status through Cinder's API, the
instance actions, and server delete with delete_on_termination. Fast (no guest). kumo only."""

from __future__ import annotations

import shutil
import time

import pytest

from cloudlib import start_kumo, unique
from computelib import MAXV, make_qcow2, nova_error, wait_server

pytestmark = pytest.mark.kumo_only("kumo's compute and volume services")

CONF = "[fake]\nhosts = 1\n[compute]\nnetwork_hook = none\n"
MISSING = "3df201cf-2451-44f2-8d25-a4ca826fc1f3"


@pytest.fixture(scope="module")
def fc():
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        types = {e["Type"] for e in c.osc("catalog", "list", fmt_json=True)}
        if not types & {"block-storage", "volumev3"}:
            pytest.skip("this kumo has no volume service in its catalog")
        src = make_qcow2(c.workdir / "tiny.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format",
                           "bare", "--public", unique("img"), fmt_json=True)["id"]
        yield c
    finally:
        c.stop()


def status(c, vid: str) -> str:
    return c.osc("volume", "show", vid, "-c", "status", "-f", "value").strip()


def wait_status(c, vid: str, want: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while status(c, vid) != want:
        assert time.monotonic() < deadline, f"volume {vid} not {want}: {status(c, vid)}"
        time.sleep(0.2)


def new_volume(c) -> str:
    vid = c.osc("volume", "create", "--size", "1", unique("vol"), fmt_json=True)["id"]
    wait_status(c, vid, "available")
    return vid


def boot(c) -> str:
    s = c.osc("--os-compute-api-version", "2.37", "server", "create", "--image", c.image_id, "--flavor",
              "m1.nano", "--nic", "none", unique("s"), fmt_json=True)
    wait_server(c, s["id"], "ACTIVE", timeout=60)
    return s["id"]


def attach(c, sid: str, vid: str, version: str = MAXV, **extra):
    return c.compute("POST", f"/servers/{sid}/os-volume_attachments", version=version,
                     json={"volumeAttachment": {"volumeId": vid, **extra}})


def test_attach_list_show_detach_and_faults(fc):
    c = fc
    sid, vid = boot(c), new_volume(c)
    r = attach(c, sid, vid, tag="data", device="/dev/sdz")
    assert r.status_code == 200, r.text
    a = r.json()["volumeAttachment"]
    assert a == {"id": vid, "serverId": sid, "volumeId": vid, "device": "/dev/vdb", "tag": "data"}, a
    wait_status(c, vid, "in-use")
    lst = c.compute("GET", f"/servers/{sid}/os-volume_attachments").json()["volumeAttachments"]
    assert lst == [{"id": vid, "serverId": sid, "volumeId": vid, "device": "/dev/vdb"}], lst
    assert c.compute("GET", f"/servers/{sid}/os-volume_attachments?limit=1&offset=1").json() == {
        "volumeAttachments": []}
    shown = c.compute("GET", f"/servers/{sid}/os-volume_attachments/{vid}").json()["volumeAttachment"]
    assert shown["device"] == "/dev/vdb"
    assert c.compute("GET", f"/servers/{sid}", version="2.3").json()["server"][
        "os-extended-volumes:volumes_attached"] == [{"id": vid, "delete_on_termination": False}]

    # faults
    assert "already attached" in nova_error(attach(c, sid, vid), 400)
    other = new_volume(c)
    assert "could not be found" in nova_error(attach(c, MISSING, other), 404)
    assert "could not be found" in nova_error(attach(c, sid, MISSING), 404)
    assert "'nope' is not a 'uuid'" in nova_error(attach(c, sid, "nope"), 400)
    assert "was unexpected" in nova_error(attach(c, sid, other, version="2.48", tag="t"), 400)
    s2 = boot(c)
    assert "status must be 'available'. Currently in 'in-use'" in nova_error(attach(c, s2, vid), 400)
    assert "volume_id not found" in nova_error(
        c.compute("GET", f"/servers/{sid}/os-volume_attachments/{other}"), 404)
    assert "is not attached to volume" in nova_error(
        c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{other}"), 404)
    # a swap is refused with a clear fault
    r = c.compute("PUT", f"/servers/{sid}/os-volume_attachments/{vid}",
                  json={"volumeAttachment": {"volumeId": other}})
    assert "not supported" in nova_error(r, 400)
    r = c.compute("PUT", f"/servers/{sid}/os-volume_attachments/{vid}",
                  json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 202, r.text

    # detach: 202, the volume available again, the mapping gone; actions recorded
    r = c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert r.status_code == 202, r.text
    wait_status(c, vid, "available")
    assert c.compute("GET", f"/servers/{sid}/os-volume_attachments").json() == {"volumeAttachments": []}
    actions = [a["Action"] for a in c.osc("server", "event", "list", sid, fmt_json=True)]
    assert "attach_volume" in actions and "detach_volume" in actions, actions
    for s in (sid, s2):
        c.osc("server", "delete", "--wait", s)
    for v in (vid, other):
        c.osc("volume", "delete", v)


def test_boot_from_volume_and_delete_on_termination(fc):
    c = fc
    keep = new_volume(c)
    flavor = c.osc("flavor", "show", "m1.nano", "-c", "id", "-f", "value").strip()
    s = c.compute("POST", "/servers", version="2.37", json={"server": {
        "name": unique("bfv"), "flavorRef": flavor, "networks": "none",
        "block_device_mapping_v2": [
            {"source_type": "image", "uuid": c.image_id, "destination_type": "volume", "volume_size": 1,
             "boot_index": 0, "delete_on_termination": True},
            {"source_type": "volume", "uuid": keep, "destination_type": "volume", "boot_index": 1}]}})
    assert s.status_code == 202, s.text
    sid = s.json()["server"]["id"]
    srv = wait_server(c, sid, "ACTIVE", timeout=120)
    assert srv["image"] == "", srv["image"]
    att = c.compute("GET", f"/servers/{sid}/os-volume_attachments").json()["volumeAttachments"]
    assert [a["device"] for a in att] == ["/dev/vda", "/dev/vdb"], att
    made = att[0]["volumeId"]
    assert status(c, made) == "in-use" and status(c, keep) == "in-use"
    assert "root device" in nova_error(c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{made}"), 400)
    events = c.osc("server", "event", "show", sid, c.osc("server", "event", "list", sid, fmt_json=True)[-1][
        "Request ID"], fmt_json=True)["events"]
    assert any(e["event"] == "compute_build_block_device_mapping" for e in events), events
    # an unknown volume in a create is 400
    r = c.compute("POST", "/servers", version="2.37", json={"server": {
        "name": "x", "flavorRef": flavor, "networks": "none", "block_device_mapping_v2": [
            {"source_type": "volume", "uuid": MISSING, "destination_type": "volume", "boot_index": 0}]}})
    assert "failed to get volume" in nova_error(r, 400)
    c.osc("server", "delete", "--wait", sid)
    deadline = time.monotonic() + 30
    while made in {v["ID"] for v in c.osc("volume", "list", fmt_json=True)}:
        assert time.monotonic() < deadline, "the delete_on_termination volume survived"
        time.sleep(0.3)
    wait_status(c, keep, "available")
    c.osc("volume", "delete", keep)


def test_extend_in_use_reaches_the_guest(fc):
    """Cinder 3.42 extends an attached volume, then tells compute (`volume-extended`): the server
    gets an `extend_volume` action whose `compute_extend_volume` event succeeded, and the guest's
    driver grew the disk to the new size."""
    c = fc
    sid, vid = boot(c), new_volume(c)
    assert attach(c, sid, vid).status_code == 200
    wait_status(c, vid, "in-use")
    # before 3.42 an in-use volume cannot be extended (Cinder's message)
    out = c.osc_fail("--os-volume-api-version", "3.41", "volume", "set", "--size", "2", vid)
    assert "in-use" in out or "available" in out, out
    c.osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vid)
    wait_status(c, vid, "in-use")
    assert c.osc("volume", "show", vid, fmt_json=True)["size"] == 2

    def extend_event():
        for a in c.osc("server", "event", "list", sid, fmt_json=True):
            if a["Action"] == "extend_volume":
                ev = c.osc("server", "event", "show", sid, a["Request ID"], fmt_json=True)["events"]
                return [e for e in ev if e["event"] == "compute_extend_volume"]
        return []

    deadline = time.monotonic() + 30
    while not (ev := extend_event()) or ev[0].get("result") is None:
        assert time.monotonic() < deadline, f"no finished compute_extend_volume event: {ev}"
        time.sleep(0.3)
    assert ev[0]["result"] == "Success", ev
    log = c.compute("POST", f"/servers/{sid}/action", json={"os-getConsoleOutput": {}}).json()["output"]
    assert f"volume {vid} extended to {2 << 30} bytes" in log, log
    # volume-extended needs 2.51; one for a volume the server does not have ends as a failed event
    body = {"events": [{"name": "volume-extended", "server_uuid": sid, "tag": MISSING}]}
    nova_error(c.compute("POST", "/os-server-external-events", version="2.50", json=body), 400)
    r = c.compute("POST", "/os-server-external-events", version="2.51", json=body)
    assert r.status_code == 200, r.text
    rid = r.headers["x-openstack-request-id"]
    deadline = time.monotonic() + 30
    while True:
        ev = c.osc("server", "event", "show", sid, rid, fmt_json=True)["events"]
        if ev and ev[0].get("result"):
            break
        assert time.monotonic() < deadline, f"no finished event for {rid}: {ev}"
        time.sleep(0.3)
    assert ev[0]["event"] == "compute_extend_volume" and ev[0]["result"] == "Error", ev
    c.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    wait_status(c, vid, "available")
    assert c.osc("volume", "show", vid, fmt_json=True)["size"] == 2
    c.osc("server", "delete", "--wait", sid)
    c.osc("volume", "delete", vid)
