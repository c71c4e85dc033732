"""Remote consoles on the fake driver: the API's answers (Nova's status codes and messages for
POST /servers/{id}/remote-consoles and the os-getVNCConsole action) and the /novnc proxy's
refusals. The fake driver has no VNC server, so a console request ends in 501; a real guest's
console is tested with the QEMU driver. kumo only."""

from __future__ import annotations

import os
import uuid

import pytest
import requests

from cloudlib import start_kumo
from computelib import create_servers, delete_all, make_qcow2, needs_qemu, nova_error, wait_server
from consolelib import websocket_status, websocket_target

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
