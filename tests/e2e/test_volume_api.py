"""The volume service (Cinder v3) through the real `openstack` CLI and raw HTTP.

A kumo of its own with the kumo-tiny image uploaded (`[demo] guest_image`): volumes (empty, from a
snapshot, from a volume, from the image), snapshots, types, upload to an image, quotas (413),
the attachments API at 3.44 with the connection-info contract compute attaches with, Cinder's
error bodies for bad input, and a kill -9 in the middle of a from-image create."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import requests

from cloudlib import run, start_kumo, unique
from guestlib import kumo_tiny_image

pytestmark = [
    pytest.mark.kumo_only("the volume service is kumo's"),
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed"),
]


@pytest.fixture(scope="module")
def vc():
    image = kumo_tiny_image()
    c = start_kumo(f"[demo]\nguest_image = {image}\nnetwork = false\n")
    try:
        c.tiny_path = image
        c.tiny_id = next(i["ID"] for i in c.osc("image", "list", fmt_json=True) if i["Name"] == "kumo-tiny")
        yield c
    finally:
        c.stop()


class VolumeApi:
    """Raw HTTP to /volume/v3 with one token and a microversion."""

    def __init__(self, cloud, token: str, version: str | None = None):
        self.base = cloud.base_url + "/volume/v3"
        self.token = token
        self.version = version

    def __call__(self, method: str, path: str, *, version: str | None = None, **kw) -> requests.Response:
        h = {"X-Auth-Token": self.token, "Accept": "application/json"}
        v = version or self.version
        if v:
            h["OpenStack-API-Version"] = f"volume {v}"
        kw.setdefault("timeout", 60)
        return requests.request(method, self.base + path, headers=h, **kw)

    def wait(self, vid: str, status: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            r = self("GET", f"/volumes/{vid}")
            assert r.status_code == 200, r.text
            last = r.json()["volume"]
            if last["status"] == status:
                return last
            assert last["status"] not in ("error", "error_deleting") or status.startswith("error"), last
            time.sleep(0.1)
        raise AssertionError(f"volume {vid} not {status}: {last}")

    def wait_gone(self, path: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self("GET", path).status_code == 404:
                return
            time.sleep(0.1)
        raise AssertionError(f"{path} still there")

    def create(self, **body) -> dict:
        r = self("POST", "/volumes", json={"volume": body})
        assert r.status_code == 202, r.text
        return r.json()["volume"]


@pytest.fixture(scope="module")
def admin_api(vc):
    return VolumeApi(vc, vc.admin_token)


@pytest.fixture(scope="module")
def demo_api(vc):
    auth = vc.cloud_auth("kumo")
    return VolumeApi(vc, vc.login(auth["username"], auth["password"], project=auth["project_name"]))


def fault(r: requests.Response, code: int, key: str) -> str:
    assert r.status_code == code, f"{r.status_code} {r.text}"
    body = r.json()
    assert list(body) == [key], body
    assert body[key]["code"] == code, body
    return body[key]["message"]


def volume_file(vc, vid: str) -> Path:
    return vc.state_dir / "volumes" / f"volume-{vid}.qcow2"


def raw_sha(path: Path, workdir: Path, size: int | None = None) -> str:
    """sha256 of the disk's contents as raw bytes (first `size` bytes when given)."""
    out = workdir / f"raw-{os.getpid()}-{time.time_ns()}"
    run(["qemu-img", "convert", "-U", "-O", "raw", str(path), str(out)], timeout=120)
    try:
        with out.open("rb") as f:
            data = f.read(size) if size else f.read()
        return hashlib.sha256(data).hexdigest()
    finally:
        out.unlink()


def virtual_size(path: Path) -> int:
    return json.loads(run(["qemu-img", "info", "-U", "--output=json", str(path)]).stdout)["virtual-size"]


# ------------------------------------------------------------------ discovery and catalog
def test_versions_and_catalog(vc):
    r = requests.get(vc.base_url + "/volume/", timeout=10)
    assert r.status_code == 300
    v = r.json()["versions"][0]
    assert v["id"] == "v3.0" and v["min_version"] == "3.0" and v["version"] >= "3.60"
    r = requests.get(vc.base_url + "/volume/v3", timeout=10)
    assert r.status_code == 200
    types = {e["Type"] for e in vc.osc("catalog", "list", fmt_json=True)}
    assert {"block-storage", "volumev3"} <= types
    services = {(s["Binary"], s["Host"], s["State"]) for s in vc.osc("volume", "service", "list", fmt_json=True)}
    assert services == {("cinder-scheduler", "kumo", "up"), ("cinder-volume", "kumo@file", "up")}, services
    zones = vc.osc("availability", "zone", "list", "--volume", fmt_json=True)
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones] == [("nova", "available")], zones


def test_microversion_header(admin_api):
    r = admin_api("GET", "/volumes", version="3.44")
    assert r.status_code == 200
    assert r.headers["OpenStack-API-Version"] == "volume 3.44"
    r = admin_api("GET", "/volumes", version="3.999")
    assert r.status_code == 406
    # with and without the project id in the path
    pid = admin_api("GET", "/limits").status_code
    assert pid == 200


# ------------------------------------------------------------------ CLI lifecycle
def test_cli_volume_lifecycle(vc):
    name = unique("vol")
    v = vc.osc("volume", "create", "--size", "1", "--property", "a=b", name, fmt_json=True)
    vid = v["id"]
    try:
        deadline = time.time() + 30
        while vc.osc("volume", "show", vid, fmt_json=True)["status"] != "available":
            assert time.time() < deadline
            time.sleep(0.2)
        shown = vc.osc("volume", "show", name, fmt_json=True)
        assert shown["size"] == 1 and shown["id"] == vid
        assert shown["type"] == "__DEFAULT__" and shown["availability_zone"] == "nova"
        assert shown["bootable"] in (False, "false")
        path = volume_file(vc, vid)
        assert path.is_file() and virtual_size(path) == 1 << 30
        assert name in {x["Name"] for x in vc.osc("volume", "list", fmt_json=True)}
        vc.osc("volume", "set", "--name", name + "-2", "--description", "d", "--property", "c=d", vid)
        vc.osc("volume", "unset", "--property", "a", vid)
        shown = vc.osc("volume", "show", vid, fmt_json=True)
        assert shown["name"] == name + "-2" and shown["description"] == "d"
        props = shown["properties"]
        assert props in ({"c": "d"}, "c='d'"), props
        vc.osc("volume", "set", "--size", "2", vid)
        deadline = time.time() + 30
        while vc.osc("volume", "show", vid, fmt_json=True)["size"] != 2:
            assert time.time() < deadline
            time.sleep(0.2)
        assert virtual_size(path) == 2 << 30
    finally:
        vc.osc("volume", "delete", vid)
    deadline = time.time() + 30
    while vid in {x["ID"] for x in vc.osc("volume", "list", fmt_json=True)}:
        assert time.time() < deadline
        time.sleep(0.2)
    assert not volume_file(vc, vid).exists()


def test_snapshots_and_clones_keep_data(vc, admin_api):
    src = admin_api.create(size=1, name=unique("src"))
    admin_api.wait(src["id"], "available")
    # put known bytes into the volume: write a raw disk and convert it over the volume file
    raw = vc.workdir / "pattern.raw"
    with raw.open("wb") as f:
        f.write(os.urandom(1 << 20))
        f.truncate(1 << 30)
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(volume_file(vc, src["id"]))])
    want = raw_sha(volume_file(vc, src["id"]), vc.workdir, 1 << 20)
    snap = vc.osc("volume", "snapshot", "create", "--volume", src["id"], unique("snap"), fmt_json=True)
    sid = snap["id"]
    deadline = time.time() + 30
    while vc.osc("volume", "snapshot", "show", sid, fmt_json=True)["status"] != "available":
        assert time.time() < deadline
        time.sleep(0.2)
    assert sid in {s["ID"] for s in vc.osc("volume", "snapshot", "list", fmt_json=True)}
    # a volume with a snapshot is not deleted without cascade
    msg = fault(admin_api("DELETE", f"/volumes/{src['id']}"), 400, "badRequest")
    assert msg.startswith("Invalid volume:") and "snapshots" in msg
    from_snap = vc.osc("volume", "create", "--snapshot", sid, "--size", "2", unique("fs"), fmt_json=True)
    clone = vc.osc("volume", "create", "--source", src["id"], unique("cl"), fmt_json=True)
    a = admin_api.wait(from_snap["id"], "available")
    b = admin_api.wait(clone["id"], "available")
    assert a["snapshot_id"] == sid and a["size"] == 2
    assert b["source_volid"] == src["id"] and b["size"] == 1
    # deleting the original never breaks its snapshot nor what was made from it
    r = admin_api("DELETE", f"/volumes/{src['id']}?cascade=true")
    assert r.status_code == 202, r.text
    admin_api.wait_gone(f"/volumes/{src['id']}")
    admin_api.wait_gone(f"/snapshots/{sid}")
    assert raw_sha(volume_file(vc, from_snap["id"]), vc.workdir, 1 << 20) == want
    assert raw_sha(volume_file(vc, clone["id"]), vc.workdir, 1 << 20) == want
    for v in (from_snap, clone):
        assert admin_api("DELETE", f"/volumes/{v['id']}").status_code == 202


def test_volume_from_image_and_upload(vc, admin_api):
    v = vc.osc("volume", "create", "--image", vc.tiny_id, "--size", "1", unique("boot"), fmt_json=True)
    vol = admin_api.wait(v["id"], "available")
    assert vol["bootable"] == "true"
    assert vol["volume_image_metadata"]["image_id"] == vc.tiny_id
    image_virtual = virtual_size(vc.tiny_path)
    assert raw_sha(volume_file(vc, v["id"]), vc.workdir, image_virtual) == raw_sha(vc.tiny_path, vc.workdir)
    # image from the volume: qcow2, and its data is the volume's
    name = unique("up")
    vc.osc("image", "create", "--volume", v["id"], "--disk-format", "qcow2", name)
    deadline = time.time() + 120
    while True:
        imgs = [i for i in vc.osc("image", "list", "--long", fmt_json=True) if i["Name"] == name]
        if imgs and imgs[0]["Status"] == "active":
            break
        assert time.time() < deadline, imgs
        time.sleep(0.5)
    admin_api.wait(v["id"], "available")
    dl = vc.workdir / "uploaded.qcow2"
    vc.osc("image", "save", "--file", str(dl), imgs[0]["ID"])
    assert json.loads(run(["qemu-img", "info", "--output=json", str(dl)]).stdout)["format"] == "qcow2"
    assert raw_sha(dl, vc.workdir, image_virtual) == raw_sha(vc.tiny_path, vc.workdir)
    vc.osc("image", "delete", imgs[0]["ID"])
    assert admin_api("DELETE", f"/volumes/{v['id']}").status_code == 202


def test_volume_types(vc, admin_api, demo_api):
    name = unique("type")
    t = vc.osc("volume", "type", "create", "--property", "volume_backend_name=file", name, fmt_json=True)
    vc.osc("volume", "type", "set", "--property", "x=y", name)
    shown = vc.osc("volume", "type", "show", name, fmt_json=True)
    props = shown["properties"]
    assert props in ({"volume_backend_name": "file", "x": "y"}, "volume_backend_name='file', x='y'"), props
    v = vc.osc("volume", "create", "--size", "1", "--type", name, unique("typed"), fmt_json=True)
    assert admin_api.wait(v["id"], "available")["volume_type"] == name
    # members may not write types
    r = demo_api("POST", "/types", json={"volume_type": {"name": unique("nope")}})
    fault(r, 403, "forbidden")
    # a type in use is not deleted
    fault(admin_api("DELETE", f"/types/{t['id']}"), 400, "badRequest")
    assert admin_api("DELETE", f"/volumes/{v['id']}").status_code == 202
    admin_api.wait_gone(f"/volumes/{v['id']}")
    vc.osc("volume", "type", "delete", name)
    assert admin_api("GET", "/types/default").json()["volume_type"]["name"] == "__DEFAULT__"


def test_quota_exceeded_is_413(vc, demo_api):
    auth = vc.cloud_auth("kumo")
    project = next(p["ID"] for p in vc.osc("project", "list", fmt_json=True) if p["Name"] == auth["project_name"])
    before = [v["id"] for v in demo_api("GET", "/volumes").json()["volumes"]]
    vc.osc("quota", "set", "--volumes", str(len(before) + 1), project)
    try:
        first = demo_api.create(size=1, name=unique("q1"))
        r = demo_api("POST", "/volumes", json={"volume": {"size": 1, "name": unique("q2")}})
        msg = fault(r, 413, "overLimit")
        assert msg == f"Maximum number of volumes allowed ({len(before) + 1}) exceeded for quota 'volumes'."
        err = vc.osc_fail("volume", "create", "--size", "1", unique("q3"), cloud="kumo")
        assert "Maximum number of volumes allowed" in err
        q = demo_api("GET", f"/os-quota-sets/{project}?usage=true").json()["quota_set"]
        assert q["volumes"]["limit"] == len(before) + 1 and q["volumes"]["in_use"] == len(before) + 1
        # gigabytes
        vc.osc("quota", "set", "--volumes", "100", "--gigabytes", "3", project)
        r = demo_api("POST", "/volumes", json={"volume": {"size": 5}})
        msg = fault(r, 413, "overLimit")
        assert "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 5G, quota is 3G" in msg
        # a member may not change quotas
        fault(demo_api("PUT", f"/os-quota-sets/{project}", json={"quota_set": {"volumes": 50}}), 403,
              "forbidden")
        demo_api.wait(first["id"], "available")
        assert demo_api("DELETE", f"/volumes/{first['id']}").status_code == 202
    finally:
        vc.osc("quota", "set", "--volumes", "10", "--gigabytes", "1000", project)


def test_attachments_api(vc, demo_api):
    v = demo_api.create(size=1, name=unique("att"))
    demo_api.wait(v["id"], "available")
    api = VolumeApi(vc, demo_api.token, "3.44")
    server = "11111111-2222-3333-4444-555555555555"
    r = api("POST", "/attachments", json={"attachment": {"volume_uuid": v["id"], "instance_uuid": server}})
    assert r.status_code == 200, r.text
    att = r.json()["attachment"]
    assert att["status"] == "reserved"
    assert api.wait(v["id"], "reserved")
    # in use elsewhere: no delete
    assert fault(api("DELETE", f"/volumes/{v['id']}"), 400, "badRequest").startswith("Invalid volume:")
    # a connector of kumo's own host (all-in-one: the machine's hostname) gets the file; one of
    # another host would get an NBD export (test_multihost_network.py)
    here = socket.gethostname()
    connector = {"host": here, "mountpoint": "/dev/vdb", "initiator": None}
    r = api("PUT", f"/attachments/{att['id']}", json={"attachment": {"connector": connector}})
    assert r.status_code == 200, r.text
    ci = r.json()["attachment"]["connection_info"]
    assert ci["driver_volume_type"] == "local"
    data = ci["data"]
    assert set(data) == {"device_path", "format", "access_mode", "volume_id", "discard"}, data
    assert data["volume_id"] == v["id"] and data["format"] == "qcow2" and data["access_mode"] == "rw"
    assert data["discard"] is True
    assert Path(data["device_path"]).is_file() and Path(data["device_path"]) == volume_file(vc, v["id"])
    r = api("POST", f"/attachments/{att['id']}/action", json={"os-complete": None})
    assert r.status_code == 204, r.text
    vol = api.wait(v["id"], "in-use")
    (a,) = vol["attachments"]
    assert a["server_id"] == server and a["attachment_id"] == att["id"] and a["device"] == "/dev/vdb"
    assert a["host_name"] == here and a["volume_id"] == v["id"]
    listed = api("GET", f"/attachments?volume_id={v['id']}").json()["attachments"]
    assert [x["id"] for x in listed] == [att["id"]]
    # os-complete is 3.44: below it the action does not exist
    assert api("POST", f"/attachments/{att['id']}/action", json={"os-complete": None},
               version="3.27").status_code == 404
    # extend in-use needs 3.42
    msg = fault(api("POST", f"/volumes/{v['id']}/action", json={"os-extend": {"new_size": 2}}, version="3.41"),
                400, "badRequest")
    assert msg.startswith("Invalid volume:")
    r = api("DELETE", f"/attachments/{att['id']}")
    assert r.status_code == 200, r.text
    api.wait(v["id"], "available")
    assert api("GET", f"/volumes/{v['id']}").json()["volume"]["attachments"] == []
    assert api("DELETE", f"/volumes/{v['id']}").status_code == 202


def test_attachments_across_restart(vc, admin_api):
    """A completed attachment survives a restart (in-use); a reserved one does not (available)."""
    api = VolumeApi(vc, admin_api.token, "3.44")
    done, pending = api.create(size=1), api.create(size=1)
    for v in (done, pending):
        api.wait(v["id"], "available")
    here = {"host": socket.gethostname()}  # this host's connector: the file, no NBD export
    a = api("POST", "/attachments", json={"attachment": {"volume_uuid": done["id"], "connector": here,
                                                          "instance_uuid": "11111111-2222-3333-4444-555555555555"}})
    assert a.status_code == 200, a.text
    assert api("POST", f"/attachments/{a.json()['attachment']['id']}/action",
               json={"os-complete": None}).status_code == 204
    b = api("POST", "/attachments", json={"attachment": {"volume_uuid": pending["id"]}})
    assert b.status_code == 200, b.text
    api.wait(pending["id"], "reserved")
    vc.restart()
    api = VolumeApi(vc, vc.admin_token, "3.44")
    assert api("GET", f"/volumes/{done['id']}").json()["volume"]["status"] == "in-use"
    assert api("GET", f"/volumes/{pending['id']}").json()["volume"]["status"] == "available"
    assert api("GET", f"/attachments/{b.json()['attachment']['id']}").status_code == 404
    assert api("DELETE", f"/attachments/{a.json()['attachment']['id']}").status_code == 200
    for v in (done, pending):
        api.wait(v["id"], "available")
        assert api("DELETE", f"/volumes/{v['id']}").status_code == 202


def test_all_projects_listing(vc, admin_api, demo_api):
    mine = demo_api.create(size=1, name=unique("mine"))
    names = {v["Name"] for v in vc.osc("volume", "list", "--all-projects", fmt_json=True)}
    assert mine["name"] in names
    assert mine["id"] not in {v["id"] for v in admin_api("GET", "/volumes").json()["volumes"]}
    detail = admin_api("GET", "/volumes/detail?all_tenants=1").json()["volumes"]
    row = next(v for v in detail if v["id"] == mine["id"])
    assert row["os-vol-host-attr:host"] == "kumo@file#file"
    assert "os-vol-host-attr:host" not in demo_api("GET", f"/volumes/{mine['id']}").json()["volume"]
    # a member's all_tenants is ignored: only their project
    ids = {v["id"] for v in demo_api("GET", "/volumes?all_tenants=1").json()["volumes"]}
    assert mine["id"] in ids and not (ids - {v["id"] for v in demo_api("GET", "/volumes").json()["volumes"]})
    demo_api.wait(mine["id"], "available")
    assert demo_api("DELETE", f"/volumes/{mine['id']}").status_code == 202


def test_legacy_attach_actions(vc, admin_api):
    v = admin_api.create(size=1)
    admin_api.wait(v["id"], "available")
    act = lambda body: admin_api("POST", f"/volumes/{v['id']}/action", json=body)  # noqa: E731
    assert act({"os-reserve": {}}).status_code == 202
    assert admin_api.wait(v["id"], "reserved")
    r = act({"os-initialize_connection": {"connector": {"host": socket.gethostname()}}})
    assert r.status_code == 200 and r.json()["connection_info"]["data"]["volume_id"] == v["id"]
    assert act({"os-attach": {"instance_uuid": "11111111-2222-3333-4444-555555555555",
                              "mountpoint": "/dev/vdc"}}).status_code == 202
    assert admin_api.wait(v["id"], "in-use")["attachments"][0]["device"] == "/dev/vdc"
    assert act({"os-begin_detaching": {}}).status_code == 202
    admin_api.wait(v["id"], "detaching")
    assert act({"os-roll_detaching": {}}).status_code == 202
    admin_api.wait(v["id"], "in-use")
    assert act({"os-begin_detaching": {}}).status_code == 202
    assert act({"os-terminate_connection": {"connector": {"host": socket.gethostname()}}}).status_code == 202
    assert act({"os-detach": {}}).status_code == 202
    admin_api.wait(v["id"], "available")
    msg = fault(act({"os-begin_detaching": {}}), 400, "badRequest")
    assert msg.startswith("Invalid volume:")
    assert act({"os-set_bootable": {"bootable": True}}).status_code == 200
    assert act({"os-update_readonly_flag": {"readonly": True}}).status_code == 202
    assert admin_api("GET", f"/volumes/{v['id']}").json()["volume"]["bootable"] == "true"
    assert act({"os-reset_status": {"status": "error"}}).status_code == 202
    assert act({"os-reset_status": {"status": "bogus"}}).status_code == 400
    assert act({"os-force_delete": {}}).status_code == 202
    admin_api.wait_gone(f"/volumes/{v['id']}")


def test_bad_input(vc, admin_api, demo_api):
    nope = "00000000-0000-0000-0000-000000000000"
    for size in (0, -1, "abc"):
        fault(admin_api("POST", "/volumes", json={"volume": {"size": size}}), 400, "badRequest")
    fault(admin_api("POST", "/volumes", json={"volume": {"name": "x"}}), 400, "badRequest")
    fault(admin_api("POST", "/volumes", json={"nothing": {}}), 400, "badRequest")
    assert fault(admin_api("POST", "/volumes", json={"volume": {"size": 1, "snapshot_id": nope}}), 404,
                 "itemNotFound") == f"Snapshot {nope} could not be found."
    assert fault(admin_api("POST", "/volumes", json={"volume": {"size": 1, "source_volid": nope}}), 404,
                 "itemNotFound") == f"Volume {nope} could not be found."
    fault(admin_api("POST", "/volumes", json={"volume": {"size": 1, "volume_type": nope}}), 404, "itemNotFound")
    assert fault(admin_api("GET", f"/volumes/{nope}"), 404, "itemNotFound") == f"Volume {nope} could not be found."
    fault(admin_api("DELETE", f"/volumes/{nope}"), 404, "itemNotFound")
    fault(admin_api("GET", "/volumes/"), 404, "itemNotFound")
    fault(admin_api("GET", "/volumes?sort=name:sideways"), 400, "badRequest")
    fault(admin_api("GET", "/volumes?limit=-1"), 400, "badRequest")
    fault(admin_api("GET", f"/volumes?marker={nope}"), 400, "badRequest")
    # an unknown status filters everything out (Cinder: 200, empty)
    r = admin_api("GET", "/volumes/detail?status=null")
    assert r.status_code == 200 and r.json()["volumes"] == []
    fault(admin_api("POST", "/snapshots", json={"snapshot": {"volume_id": nope}}), 404, "itemNotFound")
    fault(admin_api("POST", "/snapshots", json={"snapshot": {}}), 400, "badRequest")
    # another project's volume does not exist for the demo member
    v = admin_api.create(size=1)
    fault(demo_api("GET", f"/volumes/{v['id']}"), 404, "itemNotFound")
    fault(demo_api("POST", f"/volumes/{v['id']}/action", json={"os-reset_status": {"status": "error"}}), 404,
          "itemNotFound")
    admin_api.wait(v["id"], "available")
    fault(admin_api("POST", f"/volumes/{v['id']}/action", json={"os-extend": {"new_size": 1}}), 400, "badRequest")
    assert admin_api("DELETE", f"/volumes/{v['id']}").status_code == 202


def test_lists_filters_and_paging(admin_api):
    tag = unique("pg")
    ids = []
    for i in range(3):
        ids.append(admin_api.create(size=1, name=f"{tag}-{i}", metadata={"tag": tag})["id"])
    for i in ids:
        admin_api.wait(i, "available")
    meta = json.dumps({"tag": tag})
    r = admin_api("GET", "/volumes/detail", params={"metadata": meta, "sort": "name:asc", "limit": 2})
    page = r.json()
    assert [v["name"] for v in page["volumes"]] == [f"{tag}-0", f"{tag}-1"]
    assert page["volumes_links"][0]["rel"] == "next"
    r = requests.get(page["volumes_links"][0]["href"], headers={"X-Auth-Token": admin_api.token}, timeout=30)
    assert [v["name"] for v in r.json()["volumes"]] == [f"{tag}-2"]
    r = admin_api("GET", "/volumes", params={"name": f"{tag}-1"})
    assert [v["id"] for v in r.json()["volumes"]] == [ids[1]]
    r = admin_api("GET", "/volumes/detail", params={"metadata": meta, "offset": 1, "sort": "name:asc"})
    assert [v["name"] for v in r.json()["volumes"]] == [f"{tag}-1", f"{tag}-2"]
    # 3.60: time comparisons on created_at / updated_at
    q = {"metadata": meta, "created_at": "gt:2000-01-01T00:00:00Z"}
    assert len(admin_api("GET", "/volumes", params=q, version="3.60").json()["volumes"]) == 3
    q["created_at"] = "lt:2000-01-01T00:00:00Z"
    assert admin_api("GET", "/volumes", params=q, version="3.60").json()["volumes"] == []
    assert len(admin_api("GET", "/volumes", params=q, version="3.59").json()["volumes"]) == 3
    q["created_at"] = "after:2000"
    fault(admin_api("GET", "/volumes", params=q, version="3.60"), 400, "badRequest")
    for i in ids:
        assert admin_api("DELETE", f"/volumes/{i}").status_code == 202


def test_kill9_during_image_create_is_not_stuck(vc, admin_api):
    # a slow image: big enough that the download + convert is still running when kumo dies
    big = vc.workdir / "big.raw"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    img = vc.osc("image", "create", "--file", str(big), "--disk-format", "raw", "--container-format", "bare",
                 unique("big"), fmt_json=True)
    stuck = [admin_api.create(size=1, imageRef=img["id"])["id"] for _ in range(3)]
    vc.kill9_and_up()
    api = VolumeApi(vc, vc.admin_token)
    for vid in stuck:
        st = api("GET", f"/volumes/{vid}").json()["volume"]["status"]
        assert st in ("available", "error"), st
        assert api("DELETE", f"/volumes/{vid}").status_code == 202
    leftovers = list((vc.state_dir / "volumes" / "tmp").iterdir())
    assert leftovers == [], leftovers
    vc.osc("image", "delete", img["id"])
