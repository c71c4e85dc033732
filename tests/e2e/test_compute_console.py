"""Remote consoles on the fake driver: the API's answers (Nova's status codes and messages for
POST /servers/{id}/remote-consoles and the os-getVNCConsole action) and the /novnc proxy's
refusals. The fake driver has no VNC server, so a console request ends in 501; a real guest's
console is tested with the QEMU driver. kumo only."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

from cloudlib import start_kumo
from computelib import create_servers, delete_all, make_qcow2, needs_qemu, nova_error, wait_server
from consolelib import rfb_handshake, websocket_status, websocket_target

pytestmark = pytest.mark.kumo_only("the compute service is kumo's")

VNC = {"remote_console": {"protocol": "vnc", "type": "novnc"}}


@pytest.fixture(scope="module")
def cc():
    c = start_kumo("[fake]\nhosts = 1\n")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def vm(cc):
    """One ACTIVE server on the fake host."""
    src = make_qcow2(cc.workdir / "tiny.qcow2")
    img = cc.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                 "--public", "console-img", fmt_json=True)
    flavors = {f["Name"]: f["ID"] for f in cc.osc("flavor", "list", fmt_json=True)}
    (sid,) = create_servers(cc, 1, image=img["id"], flavor=flavors["m1.nano"])
    wait_server(cc, sid)
    yield sid
    delete_all(cc, [sid])


@needs_qemu
def test_fake_driver_has_no_vnc(cc, vm):
    r = cc.compute("POST", f"/servers/{vm}/remote-consoles", json=VNC, version="2.6")
    assert nova_error(r, 501) == "Unable to get vnc console, functionality not implemented"
    r = cc.compute("POST", f"/servers/{vm}/action", json={"os-getVNCConsole": {"type": "novnc"}})
    assert nova_error(r, 501) == "Unable to get vnc console, functionality not implemented"


@needs_qemu
def test_bad_protocols_and_types(cc, vm):
    def create(body, version="2.6"):
        return cc.compute("POST", f"/servers/{vm}/remote-consoles", json=body, version=version)

    msg = nova_error(create({"remote_console": {"protocol": "foo", "type": "novnc"}}), 400)
    assert msg == ("Invalid input for field/attribute protocol. Value: foo. "
                   "'foo' is not one of ['vnc', 'spice', 'rdp', 'serial']"), msg
    assert "is a required property" in nova_error(create({"remote_console": {"protocol": "vnc"}}), 400)
    assert "Additional properties" in nova_error(create({"remote_console": {**VNC["remote_console"], "x": 1}}), 400)
    # Consoles kumo does not serve: Nova's ConsoleTypeUnavailable / ConsoleTypeInvalid.
    for proto, kind in (("spice", "spice-html5"), ("serial", "serial"), ("rdp", "rdp-html5")):
        msg = nova_error(create({"remote_console": {"protocol": proto, "type": kind}}), 400)
        assert msg == f"Unavailable console type {kind}.", msg
    assert nova_error(create({"remote_console": {"protocol": "vnc", "type": "xvpvnc"}}), 400) == \
        "Invalid console type xvpvnc"
    # mks only from 2.8.
    assert "is not one of" in nova_error(create({"remote_console": {"protocol": "mks", "type": "webmks"}}), 400)
    assert nova_error(create({"remote_console": {"protocol": "mks", "type": "webmks"}}, "2.8"), 400) == \
        "Unavailable console type webmks."
    # The route is 2.6+; the actions are below 2.6 only.
    nova_error(create(VNC, "2.5"), 404)
    action = {"os-getVNCConsole": {"type": "novnc"}}
    nova_error(cc.compute("POST", f"/servers/{vm}/action", json=action, version="2.6"), 404)
    msg = nova_error(cc.compute("POST", f"/servers/{vm}/action", json={"os-getVNCConsole": {"type": "spice-html5"}}),
                     400)
    assert "'spice-html5' is not one of ['novnc', 'xvpvnc']" in msg, msg
    msg = nova_error(cc.compute("POST", f"/servers/{vm}/action", json={"os-getSPICEConsole": {"type": "spice-html5"}}),
                     400)
    assert msg == "Unavailable console type spice-html5.", msg


@needs_qemu
def test_unknown_and_stopped_servers(cc, vm):
    missing = str(uuid.uuid4())
    r = cc.compute("POST", f"/servers/{missing}/remote-consoles", json=VNC, version="2.6")
    assert nova_error(r, 404) == f"Instance {missing} could not be found."
    r = cc.compute("POST", f"/servers/{vm}/action", json={"os-stop": None})
    assert r.status_code == 202, r.text
    wait_server(cc, vm, "SHUTOFF")
    try:
        r = cc.compute("POST", f"/servers/{vm}/remote-consoles", json=VNC, version="2.6")
        assert nova_error(r, 409) == f"Cannot 'get_vnc_console' instance {vm} while it is in vm_state stopped"
    finally:
        assert cc.compute("POST", f"/servers/{vm}/action", json={"os-start": None}).status_code == 202
        wait_server(cc, vm)


def test_proxy_refuses_bad_tokens(cc):
    url = f"{cc.base_url}/novnc/vnc_lite.html?path=novnc%2Fwebsockify%3Ftoken%3Dnot-a-token"
    assert websocket_target(url)[3] == "/novnc/websockify?token=not-a-token"
    assert websocket_status(url) == 401
    assert websocket_status(f"{cc.base_url}/novnc/vnc_lite.html?path=novnc%2Fwebsockify") == 401
    r = requests.get(f"{cc.base_url}/novnc/websockify?token=x", timeout=10)
    assert r.status_code == 400, r.text


def test_proxy_serves_novnc(cc):
    r = requests.get(f"{cc.base_url}/novnc/vnc_lite.html", timeout=10)
    if not os.path.isdir("/usr/share/novnc"):
        assert r.status_code == 404 and "apt-get install novnc" in r.text, r.text
        pytest.skip("noVNC is not installed (apt-get install novnc)")
    assert r.status_code == 200 and "readQueryVariable('path'" in r.text, r.text[:300]
    assert requests.get(f"{cc.base_url}/novnc/core/rfb.js", timeout=10).status_code == 200
    # Path traversal (a client normalises `..` away, so raw requests): crates/compute/tests/novnc_proxy.rs.


def _plant_token(cc, target: str, ttl: int = 600) -> str:
    """A console token row as the API stores it (SHA-256 of the token), written straight into
    kumo's compute database: the fake driver has no VNC server to ask the API for one."""
    token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    now = datetime.datetime.now(datetime.timezone.utc)
    db = sqlite3.connect(cc.state_dir / "db" / "compute.sqlite")
    try:
        db.execute("INSERT INTO console_auth_tokens (token_hash, instance_uuid, console_type, host, target,"
                   " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (hashlib.sha256(token.encode()).hexdigest(), "11111111-2222-3333-4444-555555555555", "novnc",
                    "fake-1", target, now.isoformat(), (now + datetime.timedelta(seconds=ttl)).isoformat()))
        db.commit()
    finally:
        db.close()
    return token


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 not installed")
def test_proxy_reaches_a_qemu_vnc_server_once(cc):
    """The whole path through kumo's listener: console URL -> websocket -> QEMU's VNC socket."""
    d = tempfile.mkdtemp(prefix="kvnc", dir="/tmp")
    qemu = subprocess.Popen(["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-nodefaults", "-display", "none",
                             "-vnc", f"unix:{d}/vnc.sock", "-S", "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{d}/vnc.sock"):
            assert qemu.poll() is None and time.monotonic() < deadline, "QEMU made no VNC socket"
            time.sleep(0.05)
        token = _plant_token(cc, f"unix:{d}/vnc.sock")
        # The admin sees what it opens (2.31+ for VNC tokens) without using it.
        r = cc.compute("GET", f"/os-console-auth-tokens/{token}", version="2.31")
        assert r.status_code == 200, r.text
        assert r.json()["console"] == {"instance_uuid": "11111111-2222-3333-4444-555555555555",
                                       "host": f"{d}/vnc.sock", "port": None, "internal_access_path": None}
        nova_error(cc.compute("GET", f"/os-console-auth-tokens/{token}", version="2.30"), 401)
        url = f"{cc.base_url}/novnc/vnc_lite.html?path=novnc%2Fwebsockify%3Ftoken%3D{token}"
        # A page of another site is refused before the token is looked at (nova-novncproxy's check).
        assert websocket_status(url, origin="https://evil.example") == 403
        assert rfb_handshake(url, origin=cc.base_url) == b"RFB 003.008\n"
        assert websocket_status(url) == 401, "a console token opens once"
        assert nova_error(cc.compute("GET", f"/os-console-auth-tokens/{token}", version="2.31"), 404) == \
            "Token not found"
        expired = _plant_token(cc, f"unix:{d}/vnc.sock", ttl=-1)
        assert websocket_status(f"{cc.base_url}/novnc/websockify?token={expired}") == 401
    finally:
        qemu.kill()
        qemu.wait()
        shutil.rmtree(d, ignore_errors=True)


def test_console_auth_tokens_are_admin_only(cc):
    auth = cc.cloud_auth("kumo")
    member = cc.login(auth["username"], auth["password"], project=auth["project_name"])
    msg = nova_error(cc.compute("GET", "/os-console-auth-tokens/x", version="2.31", token=member), 403)
    assert msg == "Policy doesn't allow os_compute_api:os-console-auth-tokens to be performed.", msg
    assert nova_error(cc.compute("GET", "/os-console-auth-tokens/x", version="2.31"), 404) == "Token not found"
