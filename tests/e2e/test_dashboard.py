"""The dashboard (/dashboard) in a real browser: Python Playwright driving Debian's Chromium headless
(`/usr/bin/chromium`, never a browser Playwright downloads), against a kumo of its own with one fake
compute host whose spawns take a few seconds, so a launched instance is seen in BUILD first.

Screenshots of every main page go to target/dashboard-screenshots/ (artifacts, looked at by people).
kumo only."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
import requests

from cloudlib import REPO, start_kumo, unique
from computelib import make_qcow2, wait_gone
from netlib import NetApi

pytestmark = pytest.mark.kumo_only("the dashboard is kumo's")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in this venv")

CHROMIUM = os.environ.get("KUMO_CHROMIUM", "/usr/bin/chromium")
# the flags that work as root with no outside network (../shared/notes/browser-tests.md)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "dashboard-screenshots"
CONF = "[fake]\nhosts = 1\nspawn_delay_ms = 4000\n[network]\ndataplane = none\n"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def dc():
    """This module's kumo: one fake host, 4 s spawns, an image, a network of the demo project and a
    reader user on the demo project."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; run_tests.sh installs it)")
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        c.image_name = unique("dash-img")
        src = make_qcow2(c.workdir / "tiny.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                           "--public", c.image_name, fmt_json=True)["id"]
        auth = c.cloud_auth("kumo")
        c.demo_user, c.demo_password, c.demo_project = auth["username"], auth["password"], auth["project_name"]
        c.demo_token = c.login(c.demo_user, c.demo_password, project=c.demo_project)
        net = NetApi(c, c.demo_token)
        c.net_name = unique("dash-net")
        r = net("POST", "/networks", json={"network": {"name": c.net_name}})
        assert r.status_code == 201, r.text
        c.net_id = r.json()["network"]["id"]
        r = net("POST", "/subnets", json={"subnet": {"network_id": c.net_id, "cidr": "10.77.0.0/24",
                                                      "ip_version": 4, "name": unique("dash-sub")}})
        assert r.status_code == 201, r.text
        project_id = c.admin("GET", "/projects", params={"name": c.demo_project})["projects"][0]["id"]
        c.demo_project_id = project_id
        c.reader_name, c.reader_password = unique("reader"), "reader-" + unique("pw")
        user = c.create_user(c.reader_name, c.reader_password)
        c.grant("reader", project_id=project_id, user_id=user["id"])
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def context(browser):
    """A fresh browser context (own cookies) per test; dialogs (confirm) are accepted."""
    ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.on("page", lambda p: p.on("dialog", lambda d: d.accept()))
    try:
        yield ctx
    finally:
        ctx.close()


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(dc, page, user: str, password: str, domain: str = "Default"):
    page.goto(dc.base_url + "/dashboard/")
    assert "/dashboard/login" in page.url, page.url
    page.fill("#domain", domain)
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_url("**/dashboard/project/overview")


def page_token(dc, page) -> str:
    """The session's token, from the API access page."""
    page.goto(dc.base_url + "/dashboard/project/api-access")
    token = page.text_content("#token").strip()
    assert token, "no token on the API access page"
    return token


def csrf_of(page) -> str:
    value = page.get_attribute("input[name=csrf_token]", "value")
    assert value and len(value) == 64, value
    return value


def server_by_name(dc, name: str) -> dict | None:
    r = dc.compute("GET", "/servers/detail", params={"name": f"^{name}$", "all_tenants": "1"})
    assert r.status_code == 200, r.text
    found = [s for s in r.json()["servers"] if s["name"] == name]
    return found[0] if found else None


# ------------------------------------------------------------------ the main story
def test_login_launch_watch_active_detail_trace_and_delete(dc, context):
    page = context.new_page()
    page.goto(dc.base_url + "/dashboard/")
    page.wait_for_url("**/dashboard/login")
    cookie = [c for c in context.cookies() if c["name"] == "kumo_dashboard_session"]
    assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict" and cookie[0]["path"] == "/dashboard"
    shot(page, "01-login")

    # a wrong password: the login page again, with a message
    page.fill("#domain", "Default")
    page.fill("#username", dc.demo_user)
    page.fill("#password", "not-the-password")
    page.click("#login-button")
    assert "not correct" in page.text_content("#login-message")

    login(dc, page, dc.demo_user, dc.demo_password)
    # `kumo up` said where the dashboard is
    assert f"{dc.base_url}/dashboard/" in dc._driver.last_up_output, dc._driver.last_up_output
    assert page.locator(".bar-row[data-label=Instances]").count() == 1
    assert page.locator(".bar-row[data-label='Floating IPs']").count() == 1
    assert page.locator(".bar-row[data-label=Volumes]").count() == 1
    assert "0 of" in page.text_content(".bar-row[data-label=Instances]")
    shot(page, "02-overview")

    # a key pair: created, its private key downloaded once
    kp = unique("dash-kp")
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    page.fill("#k-name", kp)
    page.click("#create-keypair button[type=submit]")
    page.wait_for_selector("#download-key")
    with page.expect_download() as dl:
        page.click("#download-key")
    path = dl.value.path()
    pem = Path(path).read_text()
    assert "PRIVATE KEY" in pem, pem[:200]
    assert dl.value.suggested_filename == f"{kp}.pem"
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    assert page.locator(f"#keypairs tr[data-name='{kp}']").count() == 1
    assert page.locator("#download-key").count() == 0  # once only
    shot(page, "03-keypairs")

    page.goto(dc.base_url + "/dashboard/project/images")
    assert page.locator(f"#images tr[data-name='{dc.image_name}']").count() == 1
    shot(page, "04-images")

    # launch: name, image, flavor, network, key pair, default security group
    name = unique("dash-vm")
    page.goto(dc.base_url + "/dashboard/project/instances")
    page.click("#launch summary")
    page.fill("#f-name", name)
    page.select_option("#f-image", label=dc.image_name)
    page.select_option("#f-flavor", label=page.locator("#f-flavor option", has_text="m1.nano").first.text_content())
    page.select_option("#f-network", label=dc.net_name)
    page.select_option("#f-key", label=kp)
    page.check("#launch-form input[name=security_groups][value=default]")
    page.fill("#f-userdata", "#!/bin/sh\necho hello from the dashboard\n")
    shot(page, "05-launch-form")
    page.click("#launch-submit")
    page.wait_for_url("**/dashboard/project/instances")
    # from here on, the page must not be loaded again: htmx updates the row in place
    page.evaluate("window.__kumoSamePage = 'yes'")
    row = page.locator(f"#instances tr[data-name='{name}']")
    badge = row.locator(".badge")
    assert badge.text_content() == "BUILD", badge.text_content()
    assert row.get_attribute("hx-trigger") == "every 2s"
    shot(page, "06-instances-build")
    sync_api.expect(badge).to_have_text("ACTIVE", timeout=60_000)
    assert page.evaluate("window.__kumoSamePage") == "yes", "the instances page was reloaded"
    assert row.get_attribute("hx-trigger") is None, "an ACTIVE row must stop polling"
    assert "10.77.0." in row.locator("td.ips").text_content()
    shot(page, "07-instances-active")

    s = server_by_name(dc, name)
    assert s and s["status"] == "ACTIVE" and s["key_name"] == kp, s
    assert dc.net_name in s["addresses"], s["addresses"]

    # the detail page: overview, interfaces, boot trace, console log, action log
    row.locator("a").first.click()
    page.wait_for_url(f"**/dashboard/project/instances/{s['id']}")
    assert page.text_content("#detail-status") == "ACTIVE"
    events = page.eval_on_selector_all("#boot-trace li.step", "els => els.map(e => e.dataset.event)")
    for ev in ("conductor_schedule_and_build_instances", "compute_build_networking", "compute_build_spawning"):
        assert ev in events, events
    assert page.locator("#boot-trace li.step.failed").count() == 0
    # the spawn took the fake driver's 4 s
    spawn = page.text_content("#boot-trace li[data-event=compute_build_spawning] .step-label .muted").strip()
    assert spawn.endswith(" s") and float(spawn.split()[0]) >= 3.5, spawn
    assert "fake" in page.text_content("#console-output")
    assert "create" in page.text_content("#action-log")
    assert "10.77.0." in page.text_content("#interfaces")
    assert page.locator("#vnc-message").count() == 1  # the fake driver has no VNC: said, not broken
    shot(page, "08-instance-detail")
    page.click("#refresh-log")
    page.wait_for_timeout(300)
    assert "fake" in page.text_content("#console-output")

    # phone width
    page.set_viewport_size(PHONE)
    shot(page, "09-instance-detail-phone")
    page.goto(dc.base_url + "/dashboard/project/instances")
    shot(page, "10-instances-phone")
    page.set_viewport_size(DESKTOP)

    # stop from the row: SHUTOFF without reload, then delete: the row goes away
    page.evaluate("window.__kumoSamePage = 'again'")
    row = page.locator(f"#instances tr[data-name='{name}']")
    row.locator("button[data-action=stop]").click()
    sync_api.expect(row.locator(".badge")).to_have_text("SHUTOFF", timeout=60_000)
    sync_api.expect(row.locator("button[data-action=start]")).to_have_count(1)
    row.locator("button[data-action=start]").click()
    sync_api.expect(row.locator(".badge")).to_have_text("ACTIVE", timeout=60_000)
    sync_api.expect(row.locator("button[data-action=reboot]")).to_have_count(1)
    row.locator("button[data-action=reboot]").click()
    deadline = time.monotonic() + 30
    while True:
        actions = [a["action"] for a in dc.compute("GET", f"/servers/{s['id']}/os-instance-actions").json()[
            "instanceActions"]]
        if "reboot" in actions:
            break
        assert time.monotonic() < deadline, f"no reboot action after the click: {actions}"
        time.sleep(0.2)
    assert {"stop", "start"} <= set(actions), actions
    sync_api.expect(row.locator(".badge")).to_have_text("ACTIVE", timeout=60_000)
    sync_api.expect(row.locator("button[data-action=stop]")).to_have_count(1, timeout=60_000)
    row.locator("button[data-action=delete]").click()
    sync_api.expect(row).to_have_count(0, timeout=60_000)
    assert page.evaluate("window.__kumoSamePage") == "again"
    wait_gone(dc, s["id"])

    # the key pair's delete
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    page.click(f"#keypairs tr[data-name='{kp}'] button[data-action=delete]")
    sync_api.expect(page.locator(f"#keypairs tr[data-name='{kp}']")).to_have_count(0)
    r = dc.compute("GET", f"/os-keypairs/{kp}", token=dc.demo_token)
    assert r.status_code == 404, r.text


# ------------------------------------------------------------------ bad input
def test_post_without_or_with_a_wrong_csrf_token_is_403(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    good = csrf_of(page)
    url = dc.base_url + "/dashboard/project/keypairs"
    names = [unique("csrf-kp") for _ in range(3)]
    r = page.request.post(url, form={"name": names[0]}, max_redirects=0)
    assert r.status == 403, r.status
    assert "security token" in r.text()
    r = page.request.post(url, form={"name": names[1], "csrf_token": "0" * 64}, max_redirects=0)
    assert r.status == 403, r.status
    for n in names[:2]:
        assert dc.compute("GET", f"/os-keypairs/{n}", token=dc.demo_token).status_code == 404
    # the same request with the session's token is acted on
    r = page.request.post(url, form={"name": names[2], "csrf_token": good}, max_redirects=0)
    assert r.status == 303, r.status
    assert dc.compute("GET", f"/os-keypairs/{names[2]}", token=dc.demo_token).status_code == 200
    assert dc.compute("DELETE", f"/os-keypairs/{names[2]}", token=dc.demo_token).status_code == 202
    # a logout without the token does not log out
    r = page.request.post(dc.base_url + "/dashboard/logout", form={}, max_redirects=0)
    assert r.status == 403
    page.goto(url)
    assert "/dashboard/project/keypairs" in page.url
    page.set_content(r.text())
    shot(page, "11-csrf-403")


def test_invalid_input_shows_the_api_message_next_to_the_field(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    page.fill("#i-name", unique("bad-kp"))
    page.fill("#i-key", "ssh-rsa this-is-not-a-key")
    page.click("#import-keypair button[type=submit]")
    err = page.text_content("#import-keypair .field-error")
    assert "Keypair data is invalid" in err, err
    assert page.input_value("#i-key") == "ssh-rsa this-is-not-a-key"  # kept for correcting
    shot(page, "12-invalid-input")
    # the launch form: a count the browser would not send (min=1), sent anyway; the API's message
    # comes back next to the count field, the other values kept
    form = {"csrf_token": csrf_of(page), "name": unique("zero"), "image": dc.image_id, "flavor": "1",
            "count": "0"}
    r = page.request.post(dc.base_url + "/dashboard/project/instances", form=form, max_redirects=0)
    assert r.status == 200, r.status
    page.set_content(r.text())
    err = page.text_content("#launch-form input[name=count] + .field-error")
    assert "min_count" in err and "0" in err, err
    assert page.input_value("#f-name") == form["name"]


def test_expired_session_goes_back_to_login_with_a_message(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    token = page_token(dc, page)
    # the token dies behind the dashboard's back (as at its expiry): the next page is the login
    r = dc.http("DELETE", "/auth/tokens", token=dc.admin_token, headers={"X-Subject-Token": token})
    assert r.status_code == 204, r.text
    page.goto(dc.base_url + "/dashboard/project/instances")
    page.wait_for_url("**/dashboard/login?expired=1")
    assert "expired" in page.text_content("#login-message")
    shot(page, "13-session-expired")
    # and logging in again works
    login(dc, page, dc.demo_user, dc.demo_password)


# ------------------------------------------------------------------ roles, logout, projects
def test_reader_sees_no_mutating_buttons_and_a_refused_call_is_a_message(dc, context, browser):
    # the member does see them (so the reader's absence below is the role, not a broken page)
    member = browser.new_context(viewport=DESKTOP)
    try:
        mp = member.new_page()
        login(dc, mp, dc.demo_user, dc.demo_password)
        mp.goto(dc.base_url + "/dashboard/project/instances")
        assert mp.locator("#launch").count() == 1
    finally:
        member.close()

    page = context.new_page()
    login(dc, page, dc.reader_name, dc.reader_password)
    assert page.locator("#read-only").count() == 1
    page.goto(dc.base_url + "/dashboard/project/instances")
    assert page.locator("#launch").count() == 0
    assert page.locator("button[data-action]").count() == 0
    page.goto(dc.base_url + "/dashboard/project/keypairs")
    assert page.locator("#create-keypair").count() == 0
    assert page.locator("#import-keypair").count() == 0
    page.goto(dc.base_url + "/dashboard/project/volumes")
    assert page.locator("#create-volume").count() == 0
    page.goto(dc.base_url + "/dashboard/project/floating-ips")
    assert page.locator("#allocate-fip").count() == 0
    assert page.locator("button[data-action]").count() == 0
    page.goto(dc.base_url + "/dashboard/project/security-groups")
    assert page.locator("#create-sg").count() == 0 and page.locator("form.add-rule").count() == 0
    assert page.locator("section.sg").count() >= 1  # the reader does see the groups
    shot(page, "14-reader-keypairs")
    # what the buttons would do, sent anyway with a valid CSRF token: the API refuses, the page says so
    form = {"csrf_token": csrf_of(page), "name": unique("reader-vm"), "image": dc.image_id, "flavor": "1",
            "count": "1"}
    r = page.request.post(dc.base_url + "/dashboard/project/instances", form=form, max_redirects=0)
    assert r.status == 403, r.status
    assert "The compute service refused this" in r.text(), r.text()[:2000]
    assert "Traceback" not in r.text() and "panicked" not in r.text()
    page.set_content(r.text())
    shot(page, "15-reader-refused")


def test_logout_revokes_the_token(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    token = page_token(dc, page)
    shot(page, "16-api-access")
    assert dc.validate(token).status_code == 200
    page.goto(dc.base_url + "/dashboard/project/overview")
    page.click("#logout")
    page.wait_for_url("**/dashboard/login?logged_out=1")
    r = dc.validate(token)
    assert r.status_code in (401, 404), f"the dashboard's token still validates after logout: {r.status_code}"
    # the old session is gone: its pages go to the login
    page.goto(dc.base_url + "/dashboard/project/instances")
    page.wait_for_url("**/dashboard/login")


def test_project_switcher_rescopes(dc, context):
    other = dc.create_project(unique("dash-proj"))
    user = dc.admin("GET", "/users", params={"name": dc.demo_user})["users"][0]
    dc.grant("member", project_id=other["id"], user_id=user["id"])
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    options = page.eval_on_selector_all("#project-select option", "els => els.map(e => e.textContent)")
    assert other["name"] in options and dc.demo_project in options, options
    page.select_option("#project-select", label=other["name"])
    page.click(".switcher button")
    page.wait_for_url("**/dashboard/project/overview")
    assert other["name"] in page.text_content("h1")
    token = page_token(dc, page)
    r = dc.validate(token)
    assert r.status_code == 200 and r.json()["token"]["project"]["id"] == other["id"], r.text[:500]
    dc.delete("projects", other["id"])


# ------------------------------------------------------------------ volumes, networks
def test_volume_create_attach_detach_extend_delete(dc, context):
    flavors = dc.compute("GET", "/flavors", token=dc.demo_token).json()["flavors"]
    nano = next(f["id"] for f in flavors if f["name"] == "m1.nano")
    vm = unique("dash-volvm")
    r = dc.compute("POST", "/servers", token=dc.demo_token, version="2.72", json={"server": {
        "name": vm, "imageRef": dc.image_id, "flavorRef": nano, "networks": "none"}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        page = context.new_page()
        login(dc, page, dc.demo_user, dc.demo_password)
        page.goto(dc.base_url + "/dashboard/project/volumes")
        name = unique("dash-vol")
        page.fill("#v-name", name)
        page.fill("#v-size", "1")
        page.click("#create-volume button[type=submit]")
        page.wait_for_url("**/dashboard/project/volumes")
        page.evaluate("window.__kumoSamePage = 'vol'")
        row = page.locator(f"#volumes tr[data-name='{name}']")
        sync_api.expect(row.locator(".badge")).to_have_text("available", timeout=60_000)
        assert row.locator("td.size").text_content() == "1 GiB"
        # the instance must be ACTIVE to take a volume: its row is there once the page is reloaded
        deadline = time.monotonic() + 60
        while dc.compute("GET", f"/servers/{sid}").json()["server"]["status"] != "ACTIVE":
            assert time.monotonic() < deadline, "the instance for the volume never became ACTIVE"
            time.sleep(0.2)
        page.reload()
        page.evaluate("window.__kumoSamePage = 'vol'")
        row.locator("select[name=server_id]").select_option(label=vm)
        row.locator("button[data-action=attach]").click()
        sync_api.expect(row.locator(".badge")).to_have_text("in-use", timeout=60_000)
        sync_api.expect(row.locator("td.attached")).to_contain_text(vm)
        shot(page, "17-volumes-in-use")
        vid = dc.http("GET", dc.base_url + f"/volume/v3/volumes?name={name}", token=dc.demo_token).json()["volumes"][0]["id"]
        att = dc.compute("GET", f"/servers/{sid}/os-volume_attachments", token=dc.demo_token).json()
        assert [a["volumeId"] for a in att["volumeAttachments"]] == [vid], att
        # the instance's detail page lists it (another tab: this one must not reload)
        detail = context.new_page()
        detail.goto(dc.base_url + f"/dashboard/project/instances/{sid}")
        assert vid in detail.text_content("#volumes")
        detail.close()
        row.locator("button[data-action=detach]").click()
        sync_api.expect(row.locator(".badge")).to_have_text("available", timeout=60_000)
        row.locator("input[name=new_size]").fill("2")
        row.locator("button[data-action=extend]").click()
        sync_api.expect(row.locator("td.size")).to_have_text("2 GiB", timeout=60_000)
        assert page.evaluate("window.__kumoSamePage") == "vol", "the volumes page was reloaded"
        shot(page, "18-volumes")
        row.locator("button[data-action=delete]").click()
        sync_api.expect(row).to_have_count(0, timeout=60_000)
        deadline = time.monotonic() + 60
        while dc.http("GET", dc.base_url + f"/volume/v3/volumes/{vid}", token=dc.demo_token).status_code != 404:
            assert time.monotonic() < deadline, "the volume is still there after its delete"
            time.sleep(0.2)
    finally:
        dc.compute("DELETE", f"/servers/{sid}", token=dc.demo_token)
        wait_gone(dc, sid)


def test_networks_list_shows_subnets(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/networks")
    row = page.locator(f"#networks tr[data-name='{dc.net_name}']")
    sync_api.expect(row).to_have_count(1)
    assert "10.77.0.0/24" in row.text_content()
    shot(page, "19-networks")


def test_floating_ip_allocate_associate_topology_release(dc, context):
    """An external network (admin) and the demo project's router to it; an instance on the
    project's network. In the browser: allocate a floating IP from the external network, associate
    it with the instance, see the instance, its router and networks linked in the topology picture
    with the address on the instance, then disassociate and release it."""
    admin = NetApi(dc, dc.admin_token)
    demo = NetApi(dc, dc.demo_token)
    ext_name = unique("dash-ext")
    r = admin("POST", "/networks", json={"network": {"name": ext_name, "router:external": True}})
    assert r.status_code == 201, r.text
    ext = r.json()["network"]["id"]
    r = admin("POST", "/subnets", json={"subnet": {"network_id": ext, "cidr": "172.30.9.0/24", "ip_version": 4,
                                                   "gateway_ip": "172.30.9.1"}})
    assert r.status_code == 201, r.text
    subnet = demo("GET", f"/subnets?network_id={dc.net_id}").json()["subnets"][0]["id"]
    router_name = unique("dash-router")
    r = demo("POST", "/routers", json={"router": {"name": router_name,
                                                   "external_gateway_info": {"network_id": ext}}})
    assert r.status_code == 201, r.text
    router = r.json()["router"]["id"]
    assert demo("PUT", f"/routers/{router}/add_router_interface", json={"subnet_id": subnet}).status_code == 200
    flavors = dc.compute("GET", "/flavors", token=dc.demo_token).json()["flavors"]
    nano = next(f["id"] for f in flavors if f["name"] == "m1.nano")
    vm = unique("dash-fipvm")
    r = dc.compute("POST", "/servers", token=dc.demo_token, version="2.72", json={"server": {
        "name": vm, "imageRef": dc.image_id, "flavorRef": nano, "networks": [{"uuid": dc.net_id}]}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        deadline = time.monotonic() + 60
        while dc.compute("GET", f"/servers/{sid}").json()["server"]["status"] != "ACTIVE":
            assert time.monotonic() < deadline, "the instance never became ACTIVE"
            time.sleep(0.2)
        page = context.new_page()
        login(dc, page, dc.demo_user, dc.demo_password)
        page.goto(dc.base_url + "/dashboard/project/floating-ips")
        page.select_option("#fip-pool", label=ext_name)
        page.click("#allocate-fip button[type=submit]")
        page.wait_for_url("**/dashboard/project/floating-ips")
        sync_api.expect(page.locator(".flash-ok")).to_contain_text("Allocated 172.30.9.")
        row = page.locator("#floating-ips tbody tr").first
        address = row.get_attribute("data-address")
        assert address.startswith("172.30.9."), address
        port = demo("GET", f"/ports?device_id={sid}").json()["ports"][0]["id"]
        row.locator("select[name=port_id]").select_option(value=port)
        row.locator("button[data-action=associate]").click()
        page.wait_for_url("**/dashboard/project/floating-ips")
        row = page.locator(f"#floating-ips tr[data-address='{address}']")
        sync_api.expect(row.locator("td.mapped")).to_contain_text(vm)
        fips = demo("GET", f"/floatingips?floating_ip_address={address}").json()["floatingips"]
        assert fips[0]["port_id"] and fips[0]["fixed_ip_address"].startswith("10.77.0."), fips
        shot(page, "20-floating-ips")

        page.goto(dc.base_url + "/dashboard/project/topology")
        svg = page.locator("svg#topology")
        sync_api.expect(svg).to_have_count(1)
        for kind, name in (("ext", ext_name), ("router", router_name), ("net", dc.net_name), ("vm", vm)):
            sync_api.expect(svg.locator(f"g.node.{kind}[data-name='{name}']")).to_have_count(1)
        assert address in svg.locator(f"g.node.vm[data-name='{vm}']").text_content()
        links = {(ln.get_attribute("data-from"), ln.get_attribute("data-to"))
                 for ln in svg.locator("line.link").all()}
        assert {(ext, router), (router, dc.net_id), (dc.net_id, sid)} <= links, links
        shot(page, "21-topology")

        page.goto(dc.base_url + "/dashboard/project/floating-ips")
        row = page.locator(f"#floating-ips tr[data-address='{address}']")
        row.locator("button[data-action=disassociate]").click()
        page.wait_for_url("**/dashboard/project/floating-ips")
        sync_api.expect(row.locator("td.mapped")).not_to_contain_text(vm)
        row.locator("button[data-action=release]").click()
        sync_api.expect(row).to_have_count(0)
        assert demo("GET", f"/floatingips?floating_ip_address={address}").json()["floatingips"] == []
    finally:
        dc.compute("DELETE", f"/servers/{sid}", token=dc.demo_token)
        wait_gone(dc, sid)
        demo("PUT", f"/routers/{router}/remove_router_interface", json={"subnet_id": subnet})
        demo("DELETE", f"/routers/{router}")
        admin("DELETE", f"/networks/{ext}")


def test_security_group_rules_editor(dc, context):
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/security-groups")
    sync_api.expect(page.locator("section.sg[data-name='default'] tr[data-rule]")).not_to_have_count(0)
    name = unique("dash-sg")
    page.fill("#sg-name", name)
    page.fill("#sg-description", "web servers")
    page.click("#create-sg button[type=submit]")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text(f"Created security group {name}")
    sg = page.locator(f"section.sg[data-name='{name}']")
    rules_before = sg.locator("tr[data-rule]").count()  # Neutron's two egress rules
    form = sg.locator("form.add-rule")
    form.locator("select[name=protocol]").select_option("tcp")
    form.locator("input[name=port_min]").fill("8080")
    form.locator("input[name=remote]").fill("10.0.0.0/8")
    form.locator("button[data-action=add-rule]").click()
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Rule added")
    rule = sg.locator("tr[data-rule]", has_text="10.0.0.0/8")
    sync_api.expect(rule).to_have_count(1)
    assert "8080" in rule.text_content() and "tcp" in rule.text_content()
    sg_id = sg.get_attribute("id").removeprefix("sg-")
    rules = NetApi(dc, dc.demo_token)("GET", f"/security-group-rules?security_group_id={sg_id}").json()
    assert any(r["port_range_min"] == 8080 and r["port_range_max"] == 8080 and r["remote_ip_prefix"] == "10.0.0.0/8"
               for r in rules["security_group_rules"]), rules
    shot(page, "22-security-groups")
    # a port out of range: the API's message, nothing added
    form.locator("input[name=port_min]").fill("70000")
    form.locator("input[name=remote]").fill("")
    form.locator("button[data-action=add-rule]").click()
    sync_api.expect(page.locator(".flash-error")).to_contain_text("70000")
    assert sg.locator("tr[data-rule]").count() == rules_before + 1
    rule.locator("button[data-action=delete-rule]").click()
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Rule deleted")
    sync_api.expect(sg.locator("tr[data-rule]", has_text="10.0.0.0/8")).to_have_count(0)
    sg.locator("button[data-action=delete-group]").click()
    sync_api.expect(page.locator(f"section.sg[data-name='{name}']")).to_have_count(0)
    # the default group cannot be deleted from here
    assert page.locator("section.sg[data-name='default'] button[data-action=delete-group]").count() == 0


# ------------------------------------------------------------------ a failed boot
def test_failed_boot_shows_error_fault_and_the_failed_step_in_red(browser):
    """A kumo of its own whose only host fails every spawn: launched from the form, the row goes
    from BUILD to ERROR by itself, and the detail page shows the fault and the spawning steps red."""
    c = start_kumo("[fake]\nhosts = 2\nspawn_delay_ms = 500\nfail_spawn_hosts = fake-1, fake-2\n"
                   "[network]\ndataplane = none\n")
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        image = unique("dash-img")
        c.osc("image", "create", "--file", make_qcow2(c.workdir / "t.qcow2"), "--disk-format", "qcow2",
              "--container-format", "bare", "--public", image, fmt_json=True)
        auth = c.cloud_auth("kumo")
        page = ctx.new_page()
        login(c, page, auth["username"], auth["password"])
        page.goto(c.base_url + "/dashboard/project/instances")
        page.click("#launch summary")
        name = unique("doomed")
        page.fill("#f-name", name)
        page.select_option("#f-image", label=image)
        page.select_option("#f-flavor", label=page.locator("#f-flavor option", has_text="m1.nano").first.text_content())
        page.click("#launch-submit")
        page.wait_for_url("**/dashboard/project/instances")
        page.evaluate("window.__kumoSamePage = 'err'")
        row = page.locator(f"#instances tr[data-name='{name}']")
        sync_api.expect(row.locator(".badge")).to_have_text("ERROR", timeout=60_000)
        assert "badge-bad" in row.locator(".badge").get_attribute("class")
        assert page.evaluate("window.__kumoSamePage") == "err"
        row.locator("a").first.click()
        page.wait_for_url("**/dashboard/project/instances/*")
        assert page.text_content("#detail-status") == "ERROR"
        sid = page.url.rsplit("/", 1)[1]
        fault = c.compute("GET", f"/servers/{sid}").json()["server"]["fault"]["message"]
        assert fault and fault in page.text_content("#overview dd.problem"), fault
        failed = page.locator("#boot-trace li.step.failed")
        assert failed.count() >= 1
        events = failed.evaluate_all("els => els.map(e => e.dataset.event)")
        assert set(events) == {"compute_build_spawning"} or "compute_build_spawning" in events, events
        red = failed.first.locator(".span").evaluate("e => getComputedStyle(e).backgroundColor")
        assert red == "rgb(185, 28, 28)", red
        ok = page.locator("#boot-trace li.step:not(.failed) .span").first.evaluate(
            "e => getComputedStyle(e).backgroundColor")
        assert ok != red
        shot(page, "20-failed-boot-trace")
    finally:
        ctx.close()
        c.stop()


# ------------------------------------------------------------------ a real guest's console
def test_real_guest_console_log_and_embedded_novnc(browser):
    """A kumo with the QEMU driver and the kumo-tiny image: the detail page of a real guest shows
    its serial console log and an embedded noVNC that connects to the guest's VNC server."""
    from guestlib import READY, guest_cloud, kumo_tiny_image, qemu_available, wait_for_console

    ok, why = qemu_available()
    if not ok:
        pytest.skip(why)
    if not Path("/usr/share/novnc/vnc_lite.html").exists():
        pytest.skip("noVNC is not installed (Debian package novnc)")
    with guest_cloud("[DEFAULT]\ncompute_driver = qemu\nshutdown_timeout = 5\n", kumo_tiny_image()) as c:
        auth = c.cloud_auth("kumo")
        token = c.login(auth["username"], auth["password"], project=auth["project_name"])
        name = unique("dash-guest")
        r = c.compute("POST", "/servers", token=token, version="2.72", json={"server": {
            "name": name, "imageRef": c.image_id, "flavorRef": c.flavor, "networks": "none"}})
        assert r.status_code == 202, r.text
        sid = r.json()["server"]["id"]
        wait_for_console(c, sid, READY, timeout=120, interval=0.5)
        ctx = browser.new_context(viewport=DESKTOP)
        ctx.set_default_timeout(TIMEOUT_MS)
        try:
            page = ctx.new_page()
            login(c, page, auth["username"], auth["password"])
            page.goto(c.base_url + f"/dashboard/project/instances/{sid}")
            assert page.text_content("#detail-status") == "ACTIVE"
            image_name = c.http("GET", c.base_url + f"/image/v2/images/{c.image_id}", token=token).json()["name"]
            assert image_name in page.text_content("#overview")  # named, though no list was seen
            assert READY in page.text_content("#console-output")
            frame = page.frame_locator("iframe.vnc")
            sync_api.expect(frame.locator("#status")).to_contain_text("Connected", timeout=30_000)
            page.wait_for_timeout(1500)  # a frame of the guest's screen drawn
            shot(page, "21-real-guest-novnc")
        finally:
            ctx.close()


# ------------------------------------------------------------------ networks, routers, snapshots, images
def _wait(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_network_create_with_subnet_detail_add_subnet_and_delete(dc, context):
    demo = NetApi(dc, dc.demo_token)
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/networks")
    name = unique("dash-newnet")
    page.click("#create-network-box summary")
    page.fill("#n-name", name)
    page.fill("#s-name", "first")
    page.fill("#s-cidr", "10.88.0.0/24")
    page.fill("#s-pool-start", "10.88.0.10")
    page.fill("#s-pool-end", "10.88.0.20")
    shot(page, "23-network-create-form")
    page.click("#create-network-submit")
    page.wait_for_url("**/dashboard/project/networks/*")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text(f"Created network {name}")
    nets = demo("GET", f"/networks?name={name}").json()["networks"]
    assert len(nets) == 1 and nets[0]["admin_state_up"] is True, nets
    net_id = nets[0]["id"]
    assert page.url.endswith(f"/networks/{net_id}")
    subs = demo("GET", f"/subnets?network_id={net_id}").json()["subnets"]
    assert [(s["cidr"], s["name"], s["ip_version"], s["enable_dhcp"], s["gateway_ip"]) for s in subs] == [
        ("10.88.0.0/24", "first", 4, True, "10.88.0.1")], subs
    assert subs[0]["allocation_pools"] == [{"start": "10.88.0.10", "end": "10.88.0.20"}], subs
    row = page.locator("#subnets tr[data-cidr='10.88.0.0/24']")
    assert "10.88.0.10 – 10.88.0.20" in row.text_content() and "10.88.0.1" in row.text_content()

    # the detail page's subnet form: a refusal next to its field, the values kept
    page.click("#add-subnet-box summary")
    page.fill("#s-cidr", "10.88.0.0/33")
    page.click("#add-subnet-submit")
    err = page.locator("#add-subnet #s-cidr + .field-error")
    sync_api.expect(err).to_contain_text("Invalid input for cidr")
    assert page.input_value("#s-cidr") == "10.88.0.0/33"
    assert len(demo("GET", f"/subnets?network_id={net_id}").json()["subnets"]) == 1

    # a second subnet from the detail page: IPv6 from the CIDR, no gateway, DHCP off
    page.fill("#s-cidr", "fd00:88::/64")
    page.check("#s-nogw")
    page.uncheck("#s-dhcp")
    page.click("#add-subnet-submit")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Added subnet fd00:88::/64")
    v6 = demo("GET", f"/subnets?network_id={net_id}&ip_version=6").json()["subnets"]
    assert [(s["cidr"], s["gateway_ip"], s["enable_dhcp"]) for s in v6] == [("fd00:88::/64", None, False)], v6
    page.click("#subnets tr[data-cidr='fd00:88::/64'] button[data-action=delete-subnet]")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Subnet deleted")
    assert demo("GET", f"/subnets/{v6[0]['id']}").status_code == 404
    sync_api.expect(page.locator("#subnets tr[data-cidr='fd00:88::/64']")).to_have_count(0)

    # a port on it (made through the API): listed, and the network cannot be deleted
    r = demo("POST", "/ports", json={"port": {"network_id": net_id, "name": unique("dash-port")}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    page.reload()
    prow = page.locator(f"#ports tr[data-id='{port['id']}']")
    sync_api.expect(prow).to_have_count(1)
    assert port["mac_address"] in prow.text_content()
    assert port["fixed_ips"][0]["ip_address"].startswith("10.88.0.")
    assert port["fixed_ips"][0]["ip_address"] in prow.text_content()
    shot(page, "24-network-detail")
    page.set_viewport_size(PHONE)
    shot(page, "25-network-detail-phone")
    page.set_viewport_size(DESKTOP)
    page.click("button[data-action=delete-network]")
    sync_api.expect(page.locator(".flash-error")).to_contain_text("The network service cannot do this now")
    assert demo("GET", f"/networks/{net_id}").status_code == 200
    assert demo("DELETE", f"/ports/{port['id']}").status_code == 204
    page.click("button[data-action=delete-network]")
    page.wait_for_url("**/dashboard/project/networks")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Network deleted")
    assert page.locator(f"#networks tr[data-name='{name}']").count() == 0
    assert demo("GET", f"/networks/{net_id}").status_code == 404


def test_invalid_cidr_shows_the_api_message_next_to_the_field_and_leaves_no_network(dc, context):
    demo = NetApi(dc, dc.demo_token)
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/networks")
    name = unique("dash-badnet")
    for cidr in ("10.0.0.300/24", "banana"):
        if not page.locator("#create-network-box").get_attribute("open") == "":
            page.click("#create-network-box summary")
        page.fill("#n-name", name)
        page.fill("#s-cidr", cidr)
        page.fill("#s-gateway", "")
        page.click("#create-network-submit")
        err = page.locator("#s-cidr + .field-error")
        sync_api.expect(err).to_have_count(1)
        text = err.text_content()
        assert "Invalid input for cidr" in text and cidr in text, text
        # the user's values are kept, and no network is left behind
        assert page.input_value("#s-cidr") == cidr and page.input_value("#n-name") == name
        assert demo("GET", f"/networks?name={name}").json()["networks"] == []
    shot(page, "26-network-invalid-cidr")


def test_router_create_interface_gateway_and_delete(dc, context):
    admin = NetApi(dc, dc.admin_token)
    demo = NetApi(dc, dc.demo_token)
    ext_name = unique("dash-rext")
    r = admin("POST", "/networks", json={"network": {"name": ext_name, "router:external": True}})
    assert r.status_code == 201, r.text
    ext = r.json()["network"]["id"]
    r = admin("POST", "/subnets", json={"subnet": {"network_id": ext, "cidr": "172.31.7.0/24", "ip_version": 4}})
    assert r.status_code == 201, r.text
    net_name = unique("dash-rnet")
    net = demo("POST", "/networks", json={"network": {"name": net_name}}).json()["network"]["id"]
    r = demo("POST", "/subnets", json={"subnet": {"network_id": net, "cidr": "10.91.0.0/24", "ip_version": 4}})
    assert r.status_code == 201, r.text
    subnet = r.json()["subnet"]["id"]
    router = None
    try:
        page = context.new_page()
        login(dc, page, dc.demo_user, dc.demo_password)
        page.goto(dc.base_url + "/dashboard/project/routers")
        name = unique("dash-rtr")
        page.fill("#r-name", name)
        page.select_option("#r-ext", label=ext_name)
        page.click("#create-router button[type=submit]")
        page.wait_for_url("**/dashboard/project/routers/*")
        router = page.url.rsplit("/", 1)[1]
        rtr = demo("GET", f"/routers/{router}").json()["router"]
        assert rtr["name"] == name and rtr["external_gateway_info"]["network_id"] == ext, rtr
        assert ext_name in page.text_content("#gateway")
        assert "172.31.7." in page.text_content("#gateway")

        page.select_option("#add-interface select[name=subnet_id]", value=subnet)
        page.click("button[data-action=add-interface]")
        sync_api.expect(page.locator(".flash-ok")).to_contain_text("Interface added")
        ports = demo("GET", f"/ports?device_id={router}&device_owner=network:router_interface").json()["ports"]
        assert [p["fixed_ips"][0]["subnet_id"] for p in ports] == [subnet], ports
        iface = page.locator(f"#interfaces tr[data-subnet='{subnet}']")
        sync_api.expect(iface).to_have_count(1)
        assert "10.91.0.1" in iface.text_content() and net_name in iface.text_content()
        shot(page, "27-router-detail")
        page.set_viewport_size(PHONE)
        shot(page, "27-router-detail-phone")
        page.set_viewport_size(DESKTOP)

        page.click("button[data-action=clear-gateway]")
        sync_api.expect(page.locator(".flash-ok")).to_contain_text("Gateway cleared")
        assert demo("GET", f"/routers/{router}").json()["router"]["external_gateway_info"] is None
        page.select_option("#set-gateway select[name=network_id]", value=ext)
        page.click("button[data-action=set-gateway]")
        sync_api.expect(page.locator(".flash-ok")).to_contain_text("Gateway set")
        assert demo("GET", f"/routers/{router}").json()["router"]["external_gateway_info"]["network_id"] == ext

        page.goto(dc.base_url + "/dashboard/project/routers")
        row = page.locator(f"#routers tr[data-name='{name}']")
        assert ext_name in row.locator("td.gateway").text_content()
        shot(page, "28-routers")
        row.locator("a").click()
        page.wait_for_url(f"**/dashboard/project/routers/{router}")
        page.click(f"#interfaces tr[data-subnet='{subnet}'] button[data-action=remove-interface]")
        sync_api.expect(page.locator(".flash-ok")).to_contain_text("Interface removed")
        assert demo("GET", f"/ports?device_id={router}&device_owner=network:router_interface").json()["ports"] == []
        page.click("button[data-action=delete-router]")
        page.wait_for_url("**/dashboard/project/routers")
        assert demo("GET", f"/routers/{router}").status_code == 404
        router = None
    finally:
        if router:
            demo("PUT", f"/routers/{router}/remove_router_interface", json={"subnet_id": subnet})
            demo("DELETE", f"/routers/{router}")
        demo("DELETE", f"/networks/{net}")
        admin("DELETE", f"/networks/{ext}")


def _volume_api(dc, method: str, path: str, **kw):
    return dc.http(method, dc.base_url + "/volume/v3" + path, token=dc.demo_token, **kw)


def test_volume_snapshot_create_volume_from_it_and_delete(dc, context):
    vname = unique("dash-snapvol")
    r = _volume_api(dc, "POST", "/volumes", json={"volume": {"name": vname, "size": 1}})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    made = [vid]
    try:
        _wait("the volume", lambda: _volume_api(dc, "GET", f"/volumes/{vid}").json()["volume"]["status"] == "available")
        page = context.new_page()
        login(dc, page, dc.demo_user, dc.demo_password)
        page.goto(dc.base_url + "/dashboard/project/volumes")
        snap = unique("dash-snap")
        page.select_option("#sn-volume", value=vid)
        page.fill("#sn-name", snap)
        page.click("#create-snapshot button[type=submit]")
        page.wait_for_url("**/dashboard/project/volumes*")
        page.evaluate("window.__kumoSamePage = 'snap'")
        row = page.locator(f"#snapshot-list tr[data-name='{snap}']")
        sync_api.expect(row.locator(".badge")).to_have_text("available", timeout=60_000)
        assert vname in row.text_content()
        snaps = _volume_api(dc, "GET", "/snapshots/detail").json()["snapshots"]
        mine = [s for s in snaps if s["name"] == snap]
        assert len(mine) == 1 and mine[0]["volume_id"] == vid and mine[0]["status"] == "available", snaps
        sid = mine[0]["id"]
        shot(page, "29-volume-snapshots")
        page.set_viewport_size(PHONE)
        shot(page, "29-volume-snapshots-phone")
        page.set_viewport_size(DESKTOP)

        # a volume made from it
        newvol = unique("dash-fromsnap")
        row.locator("input[name=name]").fill(newvol)
        row.locator("button[data-action=create-volume]").click()
        sync_api.expect(page.locator(".flash-ok")).to_contain_text(f"Creating volume {newvol}")
        vols = _volume_api(dc, "GET", "/volumes/detail").json()["volumes"]
        fromsnap = [v for v in vols if v["name"] == newvol]
        assert len(fromsnap) == 1 and fromsnap[0]["snapshot_id"] == sid, fromsnap
        made.append(fromsnap[0]["id"])
        newrow = page.locator(f"#volumes tr[data-name='{newvol}']")
        sync_api.expect(newrow.locator(".badge")).to_have_text("available", timeout=60_000)

        # delete: the row polls until the snapshot is gone, without a reload
        page.evaluate("window.__kumoSamePage = 'snap'")
        row = page.locator(f"#snapshot-list tr[data-name='{snap}']")
        row.locator("button[data-action=delete-snapshot]").click()
        sync_api.expect(row).to_have_count(0, timeout=60_000)
        assert page.evaluate("window.__kumoSamePage") == "snap"
        assert _volume_api(dc, "GET", f"/snapshots/{sid}").status_code == 404
    finally:
        for v in reversed(made):
            _volume_api(dc, "DELETE", f"/volumes/{v}")


def test_image_upload_with_progress_edit_launch_link_and_delete(dc, context):
    # 3 MiB of random bytes: many chunks through the dashboard's stream, checked by Glance's md5
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = dc.workdir / "dash-upload.raw"
    src.write_bytes(data)
    page = context.new_page()
    login(dc, page, dc.demo_user, dc.demo_password)
    page.goto(dc.base_url + "/dashboard/project/images")
    page.click("#upload-box summary")
    sync_api.expect(page.locator("progress#upload-progress")).to_have_count(1)
    # what the progress bar showed last, kept across the page change that follows the upload
    page.evaluate("""document.getElementById('upload-image').addEventListener('htmx:xhr:progress',
        () => sessionStorage.setItem('kumoProgress', document.getElementById('upload-progress').value))""")
    # a public image is the admin's to make: Glance refuses before the file is read, and the
    # page says so (the rest of the upload is not waited for)
    refused = unique("dash-public")
    page.fill("#im-name", refused)
    page.select_option("#im-visibility", "public")
    page.set_input_files("#im-file", str(src))
    page.click("#upload-submit")
    sync_api.expect(page.locator(".flash-error")).to_contain_text("The image service refused this")
    r = dc.http("GET", dc.base_url + f"/image/v2/images?name={refused}", token=dc.demo_token)
    assert r.json()["images"] == [], r.text

    page.click("#upload-box summary")
    name = unique("dash-upload")
    page.fill("#im-name", name)
    page.select_option("#im-disk", "raw")
    page.select_option("#im-container", "bare")
    page.set_input_files("#im-file", str(src))
    shot(page, "30-image-upload-form")
    page.set_viewport_size(PHONE)
    shot(page, "30-image-upload-form-phone")
    page.set_viewport_size(DESKTOP)
    page.click("#upload-submit")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text(f"Uploaded image {name}")
    assert page.evaluate("sessionStorage.getItem('kumoProgress')") == "100"
    row = page.locator(f"#images tr[data-name='{name}']")
    sync_api.expect(row.locator(".badge")).to_have_text("active")
    imgs = dc.http("GET", dc.base_url + f"/image/v2/images?name={name}", token=dc.demo_token).json()["images"]
    assert len(imgs) == 1 and imgs[0]["status"] == "active" and imgs[0]["size"] == len(data), imgs
    assert imgs[0]["checksum"] == hashlib.md5(data).hexdigest(), imgs
    assert imgs[0]["disk_format"] == "raw" and imgs[0]["visibility"] == "private", imgs
    iid = imgs[0]["id"]
    shot(page, "31-images")

    # edit: name and minimums through a JSON patch
    row.locator("a").first.click()
    page.wait_for_url(f"**/dashboard/project/images/{iid}")
    page.fill("#e-name", name + "-renamed")
    page.fill("#e-min-disk", "2")
    page.fill("#e-min-ram", "128")
    page.click("#edit-image-submit")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Image updated")
    img = dc.http("GET", dc.base_url + f"/image/v2/images/{iid}", token=dc.demo_token).json()
    assert (img["name"], img["min_disk"], img["min_ram"]) == (name + "-renamed", 2, 128), img
    shot(page, "32-image-detail")

    # Launch: the launch form, open, with this image chosen
    page.click("#launch-image")
    page.wait_for_url("**/dashboard/project/instances?image=*")
    assert page.locator("#launch").get_attribute("open") == ""
    assert page.input_value("#f-image") == iid

    page.goto(dc.base_url + f"/dashboard/project/images/{iid}")
    page.click("button[data-action=delete-image]")
    page.wait_for_url("**/dashboard/project/images")
    sync_api.expect(page.locator(".flash-ok")).to_contain_text("Image deleted")
    assert dc.http("GET", dc.base_url + f"/image/v2/images/{iid}", token=dc.demo_token).status_code == 404


def test_reader_sees_no_network_router_snapshot_or_image_controls(dc, context):
    demo = NetApi(dc, dc.demo_token)
    r = demo("POST", "/routers", json={"router": {"name": unique("dash-rdr")}})
    assert r.status_code == 201, r.text
    router = r.json()["router"]["id"]
    try:
        page = context.new_page()
        login(dc, page, dc.reader_name, dc.reader_password)
        page.goto(dc.base_url + "/dashboard/project/networks")
        assert page.locator(f"#networks tr[data-name='{dc.net_name}']").count() == 1
        assert page.locator("#create-network").count() == 0
        page.goto(dc.base_url + f"/dashboard/project/networks/{dc.net_id}")
        assert "10.77.0.0/24" in page.text_content("#subnets")
        assert page.locator("#add-subnet").count() == 0 and page.locator("main form[method=post]").count() == 0
        page.goto(dc.base_url + "/dashboard/project/routers")
        assert page.locator("#create-router").count() == 0
        page.goto(dc.base_url + f"/dashboard/project/routers/{router}")
        assert page.locator("#add-interface").count() == 0 and page.locator("button[data-action]").count() == 0
        page.goto(dc.base_url + "/dashboard/project/volumes")
        assert page.locator("#create-snapshot").count() == 0
        page.goto(dc.base_url + "/dashboard/project/images")
        assert page.locator(f"#images tr[data-name='{dc.image_name}']").count() == 1
        assert page.locator("#upload-image").count() == 0 and page.locator("[data-action=launch]").count() == 0
        page.goto(dc.base_url + f"/dashboard/project/images/{dc.image_id}")
        assert page.locator("#edit-image").count() == 0 and page.locator("button[data-action]").count() == 0
        shot(page, "33-reader-image")
    finally:
        demo("DELETE", f"/routers/{router}")
