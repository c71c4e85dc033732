"""`kumo up --demo` uploads the kumo-tiny guest image ([demo] guest_image, docs/guest-image.md):
public, active, hashed like any upload, owned by the admin project, once across restarts."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import requests

from cloudlib import KumoDriver
from guestlib import kumo_tiny_image

pytestmark = [
    pytest.mark.kumo_only("kumo up --demo and its [demo] guest_image option"),
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed"),
]


@pytest.fixture(scope="module")
def tiny():
    path = kumo_tiny_image()
    c = KumoDriver(extra_conf=f"[demo]\nguest_image = {path}\n").start()
    try:
        yield c, path
    finally:
        c.stop()


def digests(path) -> tuple[str, str]:
    md5, sha512 = hashlib.md5(), hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


def kumo_tiny_images(c, cloud="kumo-admin") -> list[dict]:
    return [i for i in c.osc("image", "list", "--long", cloud=cloud, fmt_json=True) if i["Name"] == "kumo-tiny"]


def test_demo_image_uploaded_public_active(tiny):
    c, path = tiny
    img = c.osc("image", "show", "kumo-tiny", fmt_json=True)
    assert img["status"] == "active", img
    assert img["visibility"] == "public", img
    assert (img["disk_format"], img["container_format"]) == ("qcow2", "bare"), img
    md5, sha512 = digests(path)
    assert img["checksum"] == md5, img
    assert img["size"] == path.stat().st_size, img
    assert (img["min_disk"], img["min_ram"]) == (1, 128), img
    props = img["properties"]
    assert props["os_distro"] == "kumo-tiny" and props["hw_qemu_guest_agent"] == "no", props
    admin_project = c.osc("project", "show", "admin", fmt_json=True)["id"]
    assert img["owner"] == admin_project, img
    assert "demo image uploaded" in c.log_tail(400)
    # the hashes as Glance's API shows them (the CLI leaves os_hash_* out)
    r = requests.get(f"{c.base_url}/image/v2/images/{img['id']}", timeout=30,
                     headers={"X-Auth-Token": c.admin_token})
    assert r.status_code == 200, r.text
    raw = r.json()
    assert (raw["os_hash_algo"], raw["os_hash_value"]) == ("sha512", sha512), raw


def test_demo_user_sees_it(tiny):
    c, _ = tiny
    (img,) = kumo_tiny_images(c, cloud="kumo")
    assert img["Status"] == "active", img


def test_restart_uploads_no_second_one(tiny):
    c, _ = tiny
    (before,) = kumo_tiny_images(c)
    c.restart()
    (after,) = kumo_tiny_images(c)
    assert after["ID"] == before["ID"]


def test_missing_file_is_a_warning(tiny):
    c, _ = tiny
    conf = c.state_dir / "kumo.conf"
    text = conf.read_text()
    conf.write_text(text.replace("guest_image = ", f"guest_image = {c.workdir}/missing.qcow2\n# was: "))
    try:
        c.restart()
        assert "no such file" in c.log_tail(200)
        assert len(kumo_tiny_images(c)) == 1
    finally:
        conf.write_text(text)
