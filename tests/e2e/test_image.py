"""The image service (Glance v2) through the real `openstack` CLI and raw HTTP.

Images are real qcow2 files made with qemu-img; two projects (demo and one made here) check the
visibility and sharing rules; restarts and a kill -9 in the middle of an upload check that state and
data survive and that nothing half-written is left. kumo only (the peer target is Keystone)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socketserver
import threading
import time
from pathlib import Path

import pytest
import requests

from cloudlib import CommandError, run, unique

pytestmark = pytest.mark.kumo_only("the image service is kumo's")

PATCH = "application/openstack-images-v2.1-json-patch"


def qemu_img_available() -> bool:
    return shutil.which("qemu-img") is not None


needs_qemu = pytest.mark.skipif(not qemu_img_available(), reason="qemu-img (qemu-utils) not installed")


def make_qcow2(path: Path, size: str = "16M") -> Path:
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], timeout=60)
    return path


def digests(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest()


class ImageApi:
    """Raw HTTP to /image/v2 with one token."""

    def __init__(self, cloud, token: str):
        self.base = cloud.base_url + "/image/v2"
        self.token = token

    def __call__(self, method: str, path: str, *, headers: dict | None = None, **kw) -> requests.Response:
        h = {"X-Auth-Token": self.token, "Accept": "application/json"}
        h.update(headers or {})
        kw.setdefault("timeout", 60)
        return requests.request(method, self.base + path, headers=h, **kw)

    def create(self, **body) -> dict:
        r = self("POST", "/images", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, image_id: str, data, **headers) -> requests.Response:
        h = {"Content-Type": "application/octet-stream", **headers}
        return self("PUT", f"/images/{image_id}/file", data=data, headers=h)

    def show(self, image_id: str) -> dict:
        r = self("GET", f"/images/{image_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_import(self, image_id: str, timeout: float = 60) -> dict:
        """Until the import finished: active, or failed (os_glance_failed_import set)."""
        deadline = time.monotonic() + timeout
        while True:
            img = self.show(image_id)
            if img["status"] == "active" or img.get("os_glance_failed_import") or time.monotonic() > deadline:
                return img
            time.sleep(0.2)


def glance_error(r: requests.Response, code: int) -> str:
    """Assert r is Glance's JSON fault with status `code`; returns the message."""
    assert r.status_code == code, f"expected {code}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"code", "title", "message"}, body
    assert body["code"].startswith(str(code)), body
    return body["message"]


@pytest.fixture(scope="module")
def demo(cloud):
    auth = cloud.cloud_auth("kumo")
    token = cloud.login(auth["username"], auth["password"], project=auth["project_name"])
    return {"api": ImageApi(cloud, token), "auth": auth}


@pytest.fixture(scope="module")
def other(cloud):
    """A second project with its own member user."""
    project = cloud.create_project(unique("img-other"))
    password = "pw-" + unique("o")
    user = cloud.create_user(unique("img-other"), password, default_project_id=project["id"])
    cloud.grant("member", project_id=project["id"], user_id=user["id"])
    token = cloud.login(user["name"], password, project_id=project["id"])
    yield {"project": project, "user": user, "password": password, "api": ImageApi(cloud, token),
           "osc": lambda *a, **kw: cloud.osc_as(user["name"], password, *a, project=project["name"], **kw)}
    cloud.delete("users", user["id"])
    cloud.delete("projects", project["id"])


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def test_version_discovery(cloud):
    r = requests.get(cloud.base_url + "/image/", timeout=30)
    assert r.status_code == 300
    versions = r.json()["versions"]
    current = [v for v in versions if v["status"] == "CURRENT"]
    assert len(current) == 1 and current[0]["id"].startswith("v2.")
    assert current[0]["links"][0]["href"] == cloud.base_url + "/image/v2/"
    assert requests.get(cloud.base_url + "/image/v2", timeout=30).status_code == 200
    # the catalog says where the image service is
    cat = cloud.osc("catalog", "show", "image", fmt_json=True)
    assert any(e["url"] == cloud.base_url + "/image" for e in cat["endpoints"]), cat


@needs_qemu
def test_osc_image_lifecycle(cloud, tmp):
    src = make_qcow2(tmp / "disk.qcow2")
    md5, sha512 = digests(src)
    name = unique("img")
    img = cloud.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                    "--property", "k=v", name, cloud="kumo", fmt_json=True)
    assert img["status"] == "active" and img["checksum"] == md5
    shown = cloud.osc("image", "show", name, cloud="kumo", fmt_json=True)
    assert shown["id"] == img["id"]
    props = shown["properties"]
    assert props["k"] == "v" and props["os_hash_algo"] == "sha512" and props["os_hash_value"] == sha512
    assert shown["size"] == src.stat().st_size and shown["virtual_size"] == 16 * 1024 * 1024
    listed = cloud.osc("image", "list", cloud="kumo", fmt_json=True)
    assert name in [i["Name"] for i in listed]

    out = tmp / "saved.qcow2"
    cloud.osc("image", "save", "--file", out, name, cloud="kumo")
    assert out.read_bytes() == src.read_bytes()

    cloud.osc("image", "set", "--property", "k=w", "--property", "k2=x", "--tag", "t1", "--tag", "t2",
              "--min-ram", "64", name, cloud="kumo")
    shown = cloud.osc("image", "show", name, cloud="kumo", fmt_json=True)
    assert shown["properties"]["k"] == "w" and shown["properties"]["k2"] == "x"
    assert sorted(shown["tags"]) == ["t1", "t2"] and shown["min_ram"] == 64
    tagged = cloud.osc("image", "list", "--tag", "t1", cloud="kumo", fmt_json=True)
    assert [i["ID"] for i in tagged] == [img["id"]]
    cloud.osc("image", "unset", "--property", "k2", "--tag", "t1", name, cloud="kumo")
    shown = cloud.osc("image", "show", name, cloud="kumo", fmt_json=True)
    assert "k2" not in shown["properties"] and shown["tags"] == ["t2"]

    cloud.osc("image", "delete", name, cloud="kumo")
    err = cloud.osc_fail("image", "show", img["id"], cloud="kumo")
    assert "No Image found" in err or "404" in err or "Could not find" in err, err
    data_file = cloud.state_dir / "images" / img["id"]
    assert not data_file.exists(), "the data goes with the image"


@needs_qemu
def test_sharing_accept_and_visibility(cloud, demo, other, tmp):
    d, o = demo["api"], other["api"]
    src = make_qcow2(tmp / "s.qcow2", "1M")
    img = d.create(name=unique("shared"), disk_format="qcow2", container_format="bare", visibility="private")
    assert d.upload(img["id"], src.read_bytes()).status_code == 204
    # private: the other project cannot see it at all
    glance_error(o("GET", f"/images/{img['id']}"), 404)
    glance_error(o("GET", f"/images/{img['id']}/file"), 404)
    # members only exist on shared images
    glance_error(d("POST", f"/images/{img['id']}/members", json={"member": other["project"]["id"]}), 403)
    r = d("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/visibility",
                                                             "value": "shared"}]),
          headers={"Content-Type": PATCH})
    assert r.status_code == 200 and r.json()["visibility"] == "shared"

    cloud.osc("image", "add", "project", img["id"], other["project"]["id"], cloud="kumo")
    members = cloud.osc("image", "member", "list", img["id"], cloud="kumo", fmt_json=True)
    assert [(m["Member ID"], m["Status"]) for m in members] == [(other["project"]["id"], "pending")]
    # pending: visible by id, not in the default list
    assert o.show(img["id"])["id"] == img["id"]
    assert img["id"] not in [i["id"] for i in o("GET", "/images").json()["images"]]
    pending = o("GET", "/images", params={"member_status": "pending"}).json()["images"]
    assert img["id"] in [i["id"] for i in pending]
    # the owner cannot accept on the member's behalf
    glance_error(d("PUT", f"/images/{img['id']}/members/{other['project']['id']}", json={"status": "accepted"}),
                 403)
    other["osc"]("image", "set", "--accept", img["id"])
    assert img["id"] in [i["id"] for i in o("GET", "/images").json()["images"]]
    members = cloud.osc("image", "member", "list", img["id"], cloud="kumo", fmt_json=True)
    assert members[0]["Status"] == "accepted"
    # an accepted member reads the data but may not change the image
    r = o("GET", f"/images/{img['id']}/file")
    assert r.status_code == 200 and r.content == src.read_bytes()
    glance_error(o("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/name",
                                                                      "value": "x"}]),
                   headers={"Content-Type": PATCH}), 403)
    glance_error(o("DELETE", f"/images/{img['id']}"), 403)
    # rejected: out of the list again; removing the member hides the image
    other["osc"]("image", "set", "--reject", img["id"])
    assert img["id"] not in [i["id"] for i in o("GET", "/images").json()["images"]]
    assert d("DELETE", f"/images/{img['id']}/members/{other['project']['id']}").status_code == 204
    glance_error(o("GET", f"/images/{img['id']}"), 404)

    # public needs an admin (publicize_image); community does not
    r = d("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/visibility",
                                                             "value": "public"}]),
          headers={"Content-Type": PATCH})
    glance_error(r, 403)
    r = d("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/visibility",
                                                             "value": "community"}]),
          headers={"Content-Type": PATCH})
    assert r.status_code == 200
    assert o.show(img["id"])["visibility"] == "community"
    assert img["id"] not in [i["id"] for i in o("GET", "/images").json()["images"]], \
        "community images stay out of other projects' default lists"
    assert img["id"] in [i["id"] for i in o("GET", "/images", params={"visibility": "community"}).json()["images"]]
    admin = ImageApi(cloud, cloud.admin_token)
    r = admin("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/visibility",
                                                                 "value": "public"}]),
              headers={"Content-Type": PATCH})
    assert r.status_code == 200
    assert img["id"] in [i["id"] for i in o("GET", "/images").json()["images"]]
    # protected images cannot be deleted until unprotected
    r = d("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/protected",
                                                             "value": True}]),
          headers={"Content-Type": PATCH})
    assert r.status_code == 200
    glance_error(d("DELETE", f"/images/{img['id']}"), 403)
    d("PATCH", f"/images/{img['id']}", data=json.dumps([{"op": "replace", "path": "/protected", "value": False}]),
      headers={"Content-Type": PATCH})
    assert d("DELETE", f"/images/{img['id']}").status_code == 204


@needs_qemu
def test_import_glance_direct_and_tasks(cloud, tmp):
    src = make_qcow2(tmp / "imp.qcow2", "8M")
    md5, _ = digests(src)
    name = unique("imported")
    img = cloud.osc("image", "create", "--import", "--file", src, "--disk-format", "qcow2",
                    "--container-format", "bare", name, fmt_json=True)
    api = ImageApi(cloud, cloud.admin_token)
    done = api.wait_import(img["id"])
    assert done["status"] == "active", done
    assert done["checksum"] == md5 and done["virtual_size"] == 8 * 1024 * 1024
    assert "os_glance_import_task" not in done
    tasks = api("GET", f"/images/{img['id']}/tasks").json()["tasks"]
    assert len(tasks) == 1 and tasks[0]["status"] == "success", tasks
    assert tasks[0]["input"]["import_req"]["method"]["name"] == "glance-direct"
    listed = cloud.osc("image", "task", "list", fmt_json=True)
    assert tasks[0]["id"] in [t["ID"] for t in listed], listed
    shown = cloud.osc("image", "task", "show", tasks[0]["id"], fmt_json=True)
    assert shown["status"] == "success" and shown["type"] == "api_image_import"
    # only admins use the tasks API (Glance's tasks_api_access)
    cloud.osc_fail("image", "task", "list", cloud="kumo")
    # the image is an ordinary image now: download it back
    r = api("GET", f"/images/{img['id']}/file")
    assert hashlib.md5(r.content).hexdigest() == md5 and r.headers["Content-MD5"] == md5
    api("DELETE", f"/images/{img['id']}")


@needs_qemu
def test_import_format_mismatch_is_a_clear_400(cloud, demo, tmp):
    d = demo["api"]
    img = d.create(name=unique("mismatch"), disk_format="qcow2", container_format="bare")
    assert d("PUT", f"/images/{img['id']}/stage", data=b"\0" * 65536,
             headers={"Content-Type": "application/octet-stream"}).status_code == 204
    assert d.show(img["id"])["status"] == "uploading"
    msg = glance_error(d("POST", f"/images/{img['id']}/import", json={"method": {"name": "glance-direct"}}), 400)
    assert "qcow2" in msg and "raw" in msg, msg
    assert d.show(img["id"])["status"] == "uploading", "nothing changed: the staged data can be replaced"
    # a direct upload is checked the same way, as Glance's format inspector does (415)
    img2 = d.create(name=unique("mismatch"), disk_format="qcow2", container_format="bare")
    glance_error(d.upload(img2["id"], b"\0" * 65536), 415)
    after = d.show(img2["id"])
    assert after["status"] == "queued" and after["size"] is None and after["checksum"] is None
    assert not (cloud.state_dir / "images" / img2["id"]).exists()
    for i in (img, img2):
        d("DELETE", f"/images/{i['id']}")
    assert not (cloud.state_dir / "images" / "staging" / img["id"]).exists()


def test_bad_input(cloud, demo):
    d = demo["api"]
    img = d.create(name=unique("bad"), disk_format="raw", container_format="bare")
    iid = img["id"]
    # PATCH needs Glance's JSON-patch media type
    r = d("PATCH", f"/images/{iid}", json=[{"op": "replace", "path": "/name", "value": "x"}])
    glance_error(r, 415)
    assert "openstack-images-v2.1-json-patch" in r.headers.get("Accept-Patch", "")
    for attr in ("status", "id", "checksum", "size", "os_hash_value", "created_at"):
        r = d("PATCH", f"/images/{iid}", data=json.dumps([{"op": "replace", "path": f"/{attr}", "value": "x"}]),
              headers={"Content-Type": PATCH})
        assert f"'{attr}' is read-only" in glance_error(r, 403)
    glance_error(d("PATCH", f"/images/{iid}", data=json.dumps([{"op": "add", "path": "/os_glance_x", "value": "1"}]),
                   headers={"Content-Type": PATCH}), 403)
    glance_error(d("PATCH", f"/images/{iid}", data=json.dumps([{"op": "remove", "path": "/nope"}]),
                   headers={"Content-Type": PATCH}), 409)
    glance_error(d("PATCH", f"/images/{iid}", data="[{", headers={"Content-Type": PATCH}), 400)
    glance_error(d("PATCH", f"/images/{iid}", data=json.dumps([{"op": "add", "path": "/min_ram", "value": -1}]),
                   headers={"Content-Type": PATCH}), 400)
    # a failed PATCH changes nothing, not even the operations before the bad one
    r = d("PATCH", f"/images/{iid}", data=json.dumps([{"op": "add", "path": "/a", "value": "1"},
                                                      {"op": "replace", "path": "/status", "value": "active"}]),
          headers={"Content-Type": PATCH})
    glance_error(r, 403)
    assert "a" not in d.show(iid)
    # unknown visibility, formats, read-only attributes and non-string properties on create
    glance_error(d("POST", "/images", json={"name": "x", "visibility": "bogus"}), 400)
    glance_error(d("POST", "/images", json={"name": "x", "disk_format": "bogus"}), 400)
    glance_error(d("POST", "/images", json={"name": "x", "status": "active"}), 403)
    glance_error(d("POST", "/images", json={"name": "x", "prop": 1}), 400)
    glance_error(d("POST", "/images", data="{not json", headers={"Content-Type": "application/json"}), 400)
    # data: wrong media type, second upload, upload to a deleted image
    glance_error(d("PUT", f"/images/{iid}/file", data=b"x", headers={"Content-Type": "application/json"}), 415)
    assert d.upload(iid, b"hello").status_code == 204
    glance_error(d.upload(iid, b"again"), 409)
    assert d.show(iid)["checksum"] == hashlib.md5(b"hello").hexdigest()
    glance_error(d("GET", "/images/" + iid + "/file", headers={"Range": "bytes=10-20"}), 416)
    r = d("GET", f"/images/{iid}/file", headers={"Range": "bytes=1-3"})
    assert r.status_code == 206 and r.content == b"ell" and r.headers["Content-Range"] == "bytes 1-3/5"
    assert d("DELETE", f"/images/{iid}").status_code == 204
    glance_error(d.upload(iid, b"late"), 404)
    glance_error(d("GET", f"/images/{iid}"), 404)
    glance_error(d("DELETE", f"/images/{iid}"), 404)
    # Glance's paths: a trailing slash is another (missing) resource
    glance_error(d("GET", "/images/"), 404)
    # huge headers: refused before anything happens
    before = len(d("GET", "/images", params={"limit": 1000}).json()["images"])
    r = d("POST", "/images", json={"name": "huge"}, headers={"X-Huge": "a" * 70000})
    glance_error(r, 400)
    assert len(d("GET", "/images", params={"limit": 1000}).json()["images"]) == before
    # a queued image without formats takes no data
    img = d.create(name=unique("noformat"))
    assert "must be set prior to saving data" in glance_error(d.upload(img["id"], b"x"), 400)
    assert d.show(img["id"])["status"] == "queued"
    d("DELETE", f"/images/{img['id']}")
    # list parameters
    glance_error(d("GET", "/images", params={"sort_key": "bogus"}), 400)
    glance_error(d("GET", "/images", params={"limit": "x"}), 400)
    glance_error(d("GET", "/images", params={"marker": "00000000-0000-0000-0000-000000000000"}), 400)


def test_list_pagination_and_filters(cloud, demo):
    d = demo["api"]
    tag = unique("page")
    made = [d.create(name=f"{tag}-{i}", disk_format="raw", container_format="bare", tags=[tag], foo=tag)["id"]
            for i in range(5)]
    seen, url = [], "/images?" + f"tag={tag}&limit=2&sort=name:asc"
    while url:
        body = d("GET", url[len("/v2"):] if url.startswith("/v2") else url).json()
        seen += [i["name"] for i in body["images"]]
        url = body.get("next")
    assert seen == [f"{tag}-{i}" for i in range(5)]
    assert len(d("GET", "/images", params={"foo": tag}).json()["images"]) == 5
    got = d("GET", "/images", params={"name": f"in:{tag}-1,{tag}-3", "sort": "name:asc"}).json()["images"]
    assert [i["name"] for i in got] == [f"{tag}-1", f"{tag}-3"]
    assert d("GET", "/images", params={"tag": tag, "status": "active"}).json()["images"] == []
    for i in made:
        d("DELETE", f"/images/{i}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web_server(tmp):
    """A loopback HTTP server on a free port serving tmp/."""
    handler = lambda *a, **kw: _QuietHandler(*a, directory=str(tmp), **kw)  # noqa: E731
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def reconfigure(cloud, text: str):
    """Append to kumo.conf and restart kumo with it."""
    conf = cloud.state_dir / "kumo.conf"
    if text not in conf.read_text():
        with open(conf, "a") as f:
            f.write("\n" + text + "\n")
    cloud.restart()


@needs_qemu
def test_web_download_from_a_local_server(cloud, demo, tmp, web_server):
    d = demo["api"]
    make_qcow2(tmp / "web.qcow2", "4M")
    (tmp / "raw.bin").write_bytes(b"\1" * 100000)
    img = d.create(name=unique("web"), disk_format="qcow2", container_format="bare")
    # Glance's default filter only allows ports 80 and 443
    msg = glance_error(d("POST", f"/images/{img['id']}/import",
                         json={"method": {"name": "web-download", "uri": f"{web_server}/web.qcow2"}}), 400)
    assert "does not pass filtering" in msg
    reconfigure(cloud, "[import_filtering_opts]\nallowed_ports =")
    d = ImageApi(cloud, cloud.login(demo["auth"]["username"], demo["auth"]["password"],
                                    project=demo["auth"]["project_name"]))
    r = d("POST", f"/images/{img['id']}/import",
          json={"method": {"name": "web-download", "uri": f"{web_server}/web.qcow2"}})
    assert r.status_code == 202, r.text
    done = d.wait_import(img["id"])
    assert done["status"] == "active", done
    assert done["checksum"] == digests(tmp / "web.qcow2")[0] and done["virtual_size"] == 4 * 1024 * 1024
    # a second import of an active image is refused
    glance_error(d("POST", f"/images/{img['id']}/import",
                   json={"method": {"name": "web-download", "uri": f"{web_server}/web.qcow2"}}), 409)
    # raw bytes declared qcow2: the task fails, the image goes back to queued
    bad = d.create(name=unique("web-bad"), disk_format="qcow2", container_format="bare")
    assert d("POST", f"/images/{bad['id']}/import",
             json={"method": {"name": "web-download", "uri": f"{web_server}/raw.bin"}}).status_code == 202
    shown = d.wait_import(bad["id"])
    assert shown["status"] == "queued" and shown["os_glance_failed_import"], shown
    admin = ImageApi(cloud, cloud.admin_token)
    tasks = admin("GET", f"/images/{bad['id']}/tasks").json()["tasks"]
    assert tasks[0]["status"] == "failure" and "does not match" in tasks[0]["message"], tasks
    # a missing file on the server: the task fails too
    missing = d.create(name=unique("web-404"), disk_format="raw", container_format="bare")
    d("POST", f"/images/{missing['id']}/import",
      json={"method": {"name": "web-download", "uri": f"{web_server}/nope"}})
    shown = d.wait_import(missing["id"])
    assert shown["status"] == "queued" and shown["os_glance_failed_import"], shown
    for i in (img, bad, missing):
        d("DELETE", f"/images/{i['id']}")


@needs_qemu
def test_restart_keeps_images_and_data(cloud, demo, tmp):
    src = make_qcow2(tmp / "keep.qcow2", "2M")
    d = demo["api"]
    img = d.create(name=unique("keep"), disk_format="qcow2", container_format="bare", tags=["keep"], k="v")
    assert d.upload(img["id"], src.read_bytes()).status_code == 204
    before = d.show(img["id"])
    cloud.restart()
    d = ImageApi(cloud, cloud.login(demo["auth"]["username"], demo["auth"]["password"],
                                    project=demo["auth"]["project_name"]))
    after = d.show(img["id"])
    assert after == before
    r = d("GET", f"/images/{img['id']}/file")
    assert r.content == src.read_bytes() and r.headers["Content-MD5"] == before["checksum"]
    d("DELETE", f"/images/{img['id']}")


def test_kill9_mid_upload_leaves_no_partial_data(cloud, demo):
    d = demo["api"]
    img = d.create(name=unique("crash"), disk_format="raw", container_format="bare")
    started = threading.Event()

    def slow():
        yield b"\1" * 65536
        started.set()
        for _ in range(600):
            time.sleep(0.05)
            yield b"\1" * 65536

    def upload():
        try:
            d.upload(img["id"], slow())
        except requests.RequestException:
            pass

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    assert started.wait(30)
    deadline = time.monotonic() + 30
    while d.show(img["id"])["status"] != "saving" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.show(img["id"])["status"] == "saving"
    time.sleep(0.5)
    parts = [p for p in (cloud.state_dir / "images").iterdir() if p.name.endswith(".part")]
    assert parts, "the upload is being written to a temporary file"
    cloud.kill9_and_up()
    t.join(timeout=60)
    d = ImageApi(cloud, cloud.login(demo["auth"]["username"], demo["auth"]["password"],
                                    project=demo["auth"]["project_name"]))
    shown = d.show(img["id"])
    assert shown["status"] == "queued" and shown["size"] is None and shown["checksum"] is None, shown
    names = [p.name for p in (cloud.state_dir / "images").iterdir()]
    assert not [n for n in names if n.endswith(".part") or n == img["id"]], names
    # and the image takes an upload again
    assert d.upload(img["id"], b"after the crash").status_code == 204
    assert d.show(img["id"])["status"] == "active"
    d("DELETE", f"/images/{img['id']}")


def test_cli_errors_are_readable(cloud):
    with pytest.raises(CommandError) as e:
        cloud.osc("image", "show", "00000000-0000-0000-0000-000000000000", cloud="kumo")
    assert "00000000-0000-0000-0000-000000000000" in e.value.stderr + e.value.stdout


def test_size_cap_is_413_and_leaves_nothing(cloud, demo):
    reconfigure(cloud, "[image]\nimage_size_cap = 1048576")
    d = ImageApi(cloud, cloud.login(demo["auth"]["username"], demo["auth"]["password"],
                                    project=demo["auth"]["project_name"]))
    img = d.create(name=unique("big"), disk_format="raw", container_format="bare")
    glance_error(d.upload(img["id"], b"\0" * (1048576 + 1)), 413)

    def chunks():  # no Content-Length: the cap is found while streaming
        for _ in range(3):
            yield b"\0" * 600000

    glance_error(d.upload(img["id"], chunks()), 413)
    shown = d.show(img["id"])
    assert shown["status"] == "queued" and shown["size"] is None
    leftovers = [p.name for p in (cloud.state_dir / "images").iterdir() if p.is_file()]
    assert not [n for n in leftovers if img["id"] in n], leftovers
    assert d.upload(img["id"], b"\0" * 1048576).status_code == 204
    d("DELETE", f"/images/{img['id']}")
