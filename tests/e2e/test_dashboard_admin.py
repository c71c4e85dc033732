"""The dashboard's admin pages, the boot sequence beside the boot trace, and the launch form's
extra fields, in a real browser (Playwright + Debian's Chromium), against a kumo of their own with
two fake compute hosts (short spawns; fake-2 fails every spawn). Each change made in the browser
is then checked through the APIs. kumo only."""

from __future__ import annotations

import base64
import os
import shutil
import time

import pytest
import requests

from cloudlib import start_kumo, unique
from computelib import make_qcow2
from netlib import NetApi
from test_dashboard import CHROMIUM, DESKTOP, FLAGS, PHONE, TIMEOUT_MS, login, shot

pytestmark = pytest.mark.kumo_only("the dashboard is kumo's")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in this venv")

# fake-2 fails its spawns: an instance that lands there ends in ERROR (fake-1 disabled meanwhile)
CONF = ("[fake]\nhosts = 2\nspawn_delay_ms = 300\nfail_spawn_hosts = fake-2\n"
        "[network]\ndataplane = none\n")


@pytest.fixture(scope="module")
def ac():
    """This module's kumo: two fake hosts, an image, two networks and a key pair of the demo project."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; run_tests.sh installs it)")
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        c.image_name = unique("adm-img")
        src = make_qcow2(c.workdir / "tiny.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                           "--public", c.image_name, fmt_json=True)["id"]
        auth = c.cloud_auth("kumo")
        c.demo_user, c.demo_password, c.demo_project = auth["username"], auth["password"], auth["project_name"]
        c.demo_token = c.login(c.demo_user, c.demo_password, project=c.demo_project)
        c.demo_project_id = c.admin("GET", "/projects", params={"name": c.demo_project})["projects"][0]["id"]
        net = NetApi(c, c.demo_token)
        c.nets = []
        for i, cidr in enumerate(("10.81.0.0/24", "10.82.0.0/24")):
            name = unique(f"adm-net{i}")
            r = net("POST", "/networks", json={"network": {"name": name}})
            assert r.status_code == 201, r.text
            nid = r.json()["network"]["id"]
            r = net("POST", "/subnets", json={"subnet": {"network_id": nid, "cidr": cidr, "ip_version": 4}})
            assert r.status_code == 201, r.text
            c.nets.append((name, nid))
        c.keypair = unique("adm-kp")
        r = c.compute("POST", "/os-keypairs", token=c.demo_token, json={"keypair": {"name": c.keypair}})
        assert r.status_code in (200, 201), r.text
        r = net("POST", "/security-groups", json={"security_group": {"name": unique("adm-sg")}})
        assert r.status_code == 201, r.text
        c.secgroup = r.json()["security_group"]["name"]
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
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.on("page", lambda p: p.on("dialog", lambda d: d.accept()))
    try:
        yield ctx
    finally:
        ctx.close()


def admin_page(ac, context):
    page = context.new_page()
    login(ac, page, "admin", ac.admin_password)
    return page


def flash(page) -> str:
    return " ".join(page.locator(".flash").all_text_contents())


def row(page, table: str, name: str):
    return page.locator(f"#{table} tr[data-name='{name}']")


def wait_status(ac, sid: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = ac.compute("GET", f"/servers/{sid}", version="2.72").json()["server"]
        if s["status"] == status:
            return s
        assert s["status"] != "ERROR" or status == "ERROR", s
        assert time.monotonic() < deadline, f"server {sid} not {status}: {s['status']}"
        time.sleep(0.2)


# ------------------------------------------------------------------ who sees the admin pages
def test_admin_nav_only_for_admin_and_403_for_demo(ac, context):
    page = admin_page(ac, context)
    assert page.locator("#admin-nav").count() == 1
    assert page.locator("nav.side a[href='/dashboard/admin/hypervisors']").count() == 1
    demo = context.browser.new_context(viewport=DESKTOP)
    try:
        p = demo.new_page()
        login(ac, p, ac.demo_user, ac.demo_password)
        assert p.locator("#admin-nav").count() == 0
        assert p.locator("nav.side a[href^='/dashboard/admin/']").count() == 0
        for section in ("hypervisors", "flavors", "users", "quotas"):
            r = p.goto(ac.base_url + f"/dashboard/admin/{section}")
            assert r.status == 403, (section, r.status)
            assert "Not allowed" in p.text_content("h1"), section
        shot(p, "admin-00-demo-403")
        # nor does a POST with demo's own CSRF token do anything
        p.goto(ac.base_url + "/dashboard/project/overview")
        token = p.get_attribute("input[name=csrf_token]", "value")
        name = unique("nope")
        r = p.request.post(ac.base_url + "/dashboard/admin/flavors", max_redirects=0,
                           form={"csrf_token": token, "action": "create", "name": name, "vcpus": "1",
                                 "ram": "64", "disk": "0", "public": "1"})
        assert r.status == 403, r.status
        assert name not in [f["name"] for f in ac.compute("GET", "/flavors/detail?is_public=None").json()["flavors"]]
    finally:
        demo.close()


# ------------------------------------------------------------------ compute
def test_hypervisors_match_the_api_and_service_disable_enable(ac, context):
    page = admin_page(ac, context)
    page.goto(ac.base_url + "/dashboard/admin/hypervisors")
    api = ac.compute("GET", "/os-hypervisors/detail").json()["hypervisors"]
    assert {h["hypervisor_hostname"] for h in api} >= {"fake-1", "fake-2"}, api
    for h in api:
        r = row(page, "hypervisors", h["hypervisor_hostname"])
        assert r.count() == 1, h["hypervisor_hostname"]
        assert r.locator("td.vcpus").text_content().strip() == f"{h['vcpus_used']} of {h['vcpus']} used"
        assert r.locator("td.ram").text_content().strip() == \
            f"{h['memory_mb_used']} of {h['memory_mb']} MiB used"
        assert r.locator("td.disk").text_content().strip() == f"{h['local_gb_used']} of {h['local_gb']} GiB used"
        assert r.locator("td.running").text_content().strip() == str(h["running_vms"])
        assert r.locator("svg.bar").count() == 3
    shot(page, "admin-01-hypervisors")

    page.goto(ac.base_url + "/dashboard/admin/services")
    key = "nova-compute@fake-1"
    r = row(page, "compute-services", key)
    assert r.locator("td.status").text_content().strip() == "enabled"
    r.locator("button[data-action=disable]").click()
    page.wait_for_load_state()
    sync_api.expect(row(page, "compute-services", key).locator("td.status")).to_have_text("disabled")
    svc = [s for s in ac.compute("GET", "/os-services", version="2.72").json()["services"]
           if s["host"] == "fake-1" and s["binary"] == "nova-compute"]
    assert svc and svc[0]["status"] == "disabled", svc
    # the block storage services and the network agents (this host's four) are listed
    assert page.locator("#volume-services tbody tr").count() >= 1
    agents = page.text_content("#network-agents")
    for kind in ("Linux bridge agent", "DHCP agent", "L3 agent", "Metadata agent"):
        assert kind in agents, agents
    shot(page, "admin-02-services")
    row(page, "compute-services", key).locator("button[data-action=enable]").click()
    sync_api.expect(row(page, "compute-services", key).locator("td.status")).to_have_text("enabled")
    svc = [s for s in ac.compute("GET", "/os-services", version="2.72").json()["services"]
           if s["host"] == "fake-1" and s["binary"] == "nova-compute"]
    assert svc[0]["status"] == "enabled", svc


def test_flavor_create_seen_by_the_cli_then_delete(ac, context):
    page = admin_page(ac, context)
    page.goto(ac.base_url + "/dashboard/admin/flavors")
    name = unique("adm-flavor")
    page.fill("#create-flavor-name", name)
    page.fill("#create-flavor-vcpus", "3")
    page.fill("#create-flavor-ram", "768")
    page.fill("#create-flavor-disk", "7")
    page.uncheck("#create-flavor-public")
    page.click("#create-flavor button[type=submit]")
    page.wait_for_url("**/dashboard/admin/flavors")
    assert "Created flavor" in flash(page), flash(page)
    assert row(page, "flavors", name).count() == 1
    f = ac.osc("flavor", "show", name, fmt_json=True)
    assert (f["vcpus"], f["ram"], f["disk"], f["os-flavor-access:is_public"]) == (3, 768, 7, False), f
    shot(page, "admin-03-flavors")
    row(page, "flavors", name).locator("button[data-action=delete]").click()
    sync_api.expect(row(page, "flavors", name)).to_have_count(0)
    assert ac.compute("GET", f"/flavors/{f['id']}").status_code == 404


# ------------------------------------------------------------------ identity
def test_project_user_group_and_role_grant_seen_through_the_api(ac, context):
    page = admin_page(ac, context)
    project, user, group = unique("adm-proj"), unique("adm-user"), unique("adm-group")
    page.goto(ac.base_url + "/dashboard/admin/projects")
    page.fill("#create-project-name", project)
    page.fill("#create-project-description", "made in the dashboard")
    page.click("#create-project button[type=submit]")
    page.wait_for_url("**/dashboard/admin/projects")
    assert row(page, "projects", project).count() == 1, flash(page)
    p = ac.admin("GET", "/projects", params={"name": project})["projects"][0]
    assert p["enabled"] and p["description"] == "made in the dashboard"
    row(page, "projects", project).locator("button[data-action=disable]").click()
    sync_api.expect(row(page, "projects", project).locator("td.enabled")).to_have_text("disabled")
    assert ac.admin("GET", f"/projects/{p['id']}")["project"]["enabled"] is False
    row(page, "projects", project).locator("button[data-action=enable]").click()
    sync_api.expect(row(page, "projects", project).locator("td.enabled")).to_have_text("enabled")
    shot(page, "admin-04-projects")

    page.goto(ac.base_url + "/dashboard/admin/users")
    page.fill("#create-user-name", user)
    page.fill("#create-user-password", "pw-" + user)
    page.select_option("#create-user-default_project_id", label=project)
    page.click("#create-user button[type=submit]")
    page.wait_for_url("**/dashboard/admin/users")
    assert row(page, "users", user).count() == 1, flash(page)
    u = ac.admin("GET", "/users", params={"name": user})["users"][0]
    assert u["default_project_id"] == p["id"], u
    shot(page, "admin-05-users")

    # the role grant: then the user can log in to the project with its password
    page.goto(ac.base_url + "/dashboard/admin/roles")
    page.select_option("#grant-role-role_id", label="member")
    page.select_option("#grant-role-user_id", label=user)
    page.select_option("#grant-role-project_id", label=project)
    page.click("#grant-role button[type=submit]")
    page.wait_for_url("**/dashboard/admin/roles")
    assert "Granted" in flash(page), flash(page)
    ra = ac.admin("GET", "/role_assignments", params={"user.id": u["id"], "include_names": "true"})
    got = [(a["role"]["name"], a["scope"]["project"]["id"]) for a in ra["role_assignments"]]
    assert ("member", p["id"]) in got, got
    key = f"member|user {user}|project {project}"
    assert row(page, "role-assignments", key).count() == 1
    assert ac.login(user, "pw-" + user, project=project)
    shot(page, "admin-06-roles")

    # groups: create, add the user, seen in the group's members
    page.goto(ac.base_url + "/dashboard/admin/groups")
    page.fill("#create-group-name", group)
    page.click("#create-group button[type=submit]")
    page.wait_for_url("**/dashboard/admin/groups")
    assert row(page, "groups", group).count() == 1, flash(page)
    page.select_option("#add-member-user_id", label=user)
    page.select_option("#add-member-id", label=group)
    page.click("#add-member button[type=submit]")
    page.wait_for_url("**/dashboard/admin/groups")
    assert user in row(page, "groups", group).locator("td.members").text_content()
    g = ac.admin("GET", "/groups", params={"name": group})["groups"][0]
    assert [m["name"] for m in ac.admin("GET", f"/groups/{g['id']}/users")["users"]] == [user]
    shot(page, "admin-07-groups")

    # revoke, then delete the user and the project
    page.goto(ac.base_url + "/dashboard/admin/roles")
    row(page, "role-assignments", key).locator("button[data-action=revoke]").click()
    sync_api.expect(row(page, "role-assignments", key)).to_have_count(0)
    ra = ac.admin("GET", "/role_assignments", params={"user.id": u["id"]})["role_assignments"]
    assert ra == [], ra
    page.goto(ac.base_url + "/dashboard/admin/users")
    row(page, "users", user).locator("button[data-action=delete]").click()
    sync_api.expect(row(page, "users", user)).to_have_count(0)
    assert ac.admin("GET", "/users", params={"name": user})["users"] == []
    page.goto(ac.base_url + "/dashboard/admin/projects")
    row(page, "projects", project).locator("button[data-action=delete]").click()
    sync_api.expect(row(page, "projects", project)).to_have_count(0)


def test_quota_edit_seen_through_the_three_apis(ac, context):
    page = admin_page(ac, context)
    page.goto(ac.base_url + "/dashboard/admin/quotas")
    page.select_option("#quota-project-project", value=ac.demo_project_id)
    page.click("#quota-project button[type=submit]")
    page.wait_for_url(f"**/dashboard/admin/quotas?project={ac.demo_project_id}")
    page.fill("[id='edit-quotas-compute.instances']", "17")
    page.fill("[id='edit-quotas-network.port']", "77")
    page.fill("[id='edit-quotas-volume.volumes']", "13")
    assert page.locator("#edit-quotas h3.form-sub").all_text_contents() == \
        ["compute limits", "network limits", "volume limits"]
    shot(page, "admin-08-quotas")
    page.click("#edit-quotas button[type=submit]")
    page.wait_for_url(f"**/dashboard/admin/quotas?project={ac.demo_project_id}")
    assert "Saved" in flash(page), flash(page)
    assert page.input_value("[id='edit-quotas-compute.instances']") == "17"
    q = ac.compute("GET", f"/os-quota-sets/{ac.demo_project_id}").json()["quota_set"]
    assert q["instances"] == 17, q
    r = NetApi(ac, ac.admin_token)("GET", f"/quotas/{ac.demo_project_id}")
    assert r.json()["quota"]["port"] == 77, r.text
    r = requests.get(f"{ac.base_url}/volume/v3/os-quota-sets/{ac.demo_project_id}", timeout=30,
                     headers={"X-Auth-Token": ac.admin_token, "Accept": "application/json"})
    assert r.json()["quota_set"]["volumes"] == 13, r.text


# ------------------------------------------------------------------ launch form, boot sequence, all-projects lists
def set_compute_service(ac, host: str, status: str):
    svc = [s for s in ac.compute("GET", "/os-services", version="2.72").json()["services"]
           if s["host"] == host and s["binary"] == "nova-compute"][0]
    r = ac.compute("PUT", f"/os-services/{svc['id']}", json={"status": status}, version="2.72")
    assert r.status_code == 200, r.text


def test_launch_form_fields_reach_the_api_and_the_boot_sequence(ac, context):
    """fake-2 (whose spawns fail) is disabled meanwhile: both instances boot on fake-1."""
    set_compute_service(ac, "fake-2", "disabled")
    try:
        launch_and_check(ac, context)
    finally:
        set_compute_service(ac, "fake-2", "enabled")


def launch_and_check(ac, context):
    page = context.new_page()
    login(ac, page, ac.demo_user, ac.demo_password)
    page.goto(ac.base_url + "/dashboard/project/instances")
    page.click("#launch summary")
    name = unique("adm-vm")
    page.fill("#f-name", name)
    page.select_option("#f-image", label=ac.image_name)
    page.select_option("#f-flavor", label=page.locator("#f-flavor option", has_text="m1.nano").first.text_content())
    # two networks, the second one first
    page.select_option("#f-network", label=ac.nets[1][0])
    page.select_option("#f-network-2", label=ac.nets[0][0])
    page.select_option("#f-key", label=ac.keypair)
    page.check("#launch-form input[name=security_groups][value=default]")
    page.check(f"#launch-form input[name=security_groups][value='{ac.secgroup}']")
    user_data = "#!/bin/sh\necho launched from the dashboard\n"
    page.fill("#f-userdata", user_data)
    page.check("#f-configdrive")
    page.fill("#f-count", "2")
    shot(page, "admin-09-launch-form")
    page.click("#launch-submit")
    page.wait_for_url("**/dashboard/project/instances")
    assert "Launching 2 instances" in flash(page), flash(page)

    r = ac.compute("GET", "/servers/detail", params={"all_tenants": "1", "name": f"^{name}"}, version="2.72")
    servers = [s for s in r.json()["servers"] if s["name"].startswith(name)]
    assert len(servers) == 2, [s["name"] for s in servers]
    for s in servers:
        s = wait_status(ac, s["id"], "ACTIVE")
        assert s["key_name"] == ac.keypair
        assert s["config_drive"] in (True, "True", "true"), s["config_drive"]
        assert {g["name"] for g in s["security_groups"]} == {"default", ac.secgroup}, s["security_groups"]
        assert base64.b64decode(s["OS-EXT-SRV-ATTR:user_data"]).decode() == user_data
        assert set(s["addresses"]) == {ac.nets[0][0], ac.nets[1][0]}, s["addresses"]
        ifaces = ac.compute("GET", f"/servers/{s['id']}/os-interface").json()["interfaceAttachments"]
        assert {i["net_id"] for i in ifaces} == {ac.nets[0][1], ac.nets[1][1]}, ifaces
    # the interface order follows the form: the first NIC is on the network chosen first
    ports = NetApi(ac, ac.admin_token)("GET", "/ports", params={"device_id": servers[0]["id"]}).json()["ports"]
    assert len(ports) == 2

    # the boot sequence beside the trace: every phase's numbers come from the events
    sid = servers[0]["id"]
    page.goto(ac.base_url + f"/dashboard/project/instances/{sid}")
    seq = page.locator("#boot-sequence")
    assert seq.locator("ol.boot-steps > li").count() == 28
    sched = seq.locator("li.phase[data-phase=scheduling]")
    assert "steps 3-12" in sched.text_content()
    assert "nova-scheduler" in sched.locator("b").all_text_contents()
    spawn = seq.locator("li.phase[data-phase=spawning]")
    dur = spawn.locator(".phase-duration").text_content().strip()
    assert dur.endswith("ms") or dur.endswith(" s"), dur
    ms = float(dur.split()[0]) * (1 if dur.endswith("ms") else 1000)
    assert ms >= 250, dur  # the fake driver's 300 ms spawn
    # the phase's times are its event's (as the API gives them, to the millisecond)
    acts = ac.compute("GET", f"/servers/{sid}/os-instance-actions", version="2.72").json()["instanceActions"]
    rid = [a for a in acts if a["action"] == "create"][0]["request_id"]
    events = ac.compute("GET", f"/servers/{sid}/os-instance-actions/{rid}",
                        version="2.72").json()["instanceAction"]["events"]
    ev = {e["event"]: e for e in events}
    for phase, event in (("spawning", "compute_build_spawning"), ("networking", "compute_build_networking"),
                         ("block_device_mapping", "compute_build_block_device_mapping")):
        want = f"{ev[event]['start_time'][11:23]} → {ev[event]['finish_time'][11:23]}"
        assert want in seq.locator(f"li.phase[data-phase={phase}] .phase-time").text_content(), (phase, want)
    assert "not recorded" in seq.locator("li.phase[data-phase=authentication]").text_content()
    assert seq.locator("li.phase.failed").count() == 0
    assert "reached at" in seq.locator("li.phase[data-phase=Running] .phase-time").text_content()
    # each measured phase has its bar on the trace's time axis
    assert seq.locator("li.phase .phase-track").count() == 5
    shot(page, "admin-10-boot-sequence")
    page.set_viewport_size(PHONE)
    shot(page, "admin-11-boot-sequence-phone")

    # the admin's all-projects lists show them with their project and host
    admin = context.browser.new_context(viewport=DESKTOP)
    try:
        p = admin.new_page()
        login(ac, p, "admin", ac.admin_password)
        p.goto(ac.base_url + "/dashboard/admin/instances")
        for s in servers:
            r = row(p, "all-instances", s["name"])
            assert r.locator("td.project").text_content() == ac.demo_project
            assert r.locator("td.host").text_content() == "fake-1"
        shot(p, "admin-12-all-instances")
        # with these two running, fake-1's usage on the hypervisors page is the API's
        p.goto(ac.base_url + "/dashboard/admin/hypervisors")
        h = [h for h in ac.compute("GET", "/os-hypervisors/detail").json()["hypervisors"]
             if h["hypervisor_hostname"] == "fake-1"][0]
        assert h["running_vms"] >= 2 and h["vcpus_used"] >= 2, h
        r = row(p, "hypervisors", "fake-1")
        assert r.locator("td.running").text_content().strip() == str(h["running_vms"])
        assert r.locator("td.vcpus").text_content().strip() == f"{h['vcpus_used']} of {h['vcpus']} used"
        p.goto(ac.base_url + "/dashboard/admin/images")
        assert row(p, "all-images", ac.image_name).locator("td.visibility").text_content() == "public"
        p.goto(ac.base_url + "/dashboard/admin/networks")
        r = row(p, "all-networks", ac.nets[0][0])
        assert r.locator("td.project").text_content() == ac.demo_project
        assert "10.81.0.0/24" in r.locator("td.subnets").text_content()
        shot(p, "admin-13-all-networks")
        p.set_viewport_size(PHONE)
        pages = [f"admin/{s}" for s in ("hypervisors", "instances", "flavors", "images", "networks", "projects",
                                         "users", "groups", "roles", "quotas", "services")]
        pages += [f"project/{s}" for s in ("overview", "instances", "images", "volumes", "networks", "topology",
                                           "floating-ips", "security-groups", "keypairs", "api-access")]
        pages.append(f"project/instances/{sid}")
        for path in pages:
            p.goto(ac.base_url + f"/dashboard/{path}")
            # the page itself does not scroll sideways: the nav and wide tables scroll inside their box
            assert p.evaluate("document.documentElement.scrollWidth") <= 390 + 1, path
            nav = p.locator("nav.side")
            assert nav.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX") == "auto"
            shot(p, "phone-" + path.replace("/", "-"))
    finally:
        admin.close()
    for s in servers:
        ac.compute("DELETE", f"/servers/{s['id']}")


def test_failed_spawn_marks_its_phase_and_step_red(ac, context):
    """fake-1 disabled: the boot goes to fake-2, whose spawns fail; the boot sequence shows the
    spawning phase (step 28) red and Active not reached."""
    set_compute_service(ac, "fake-1", "disabled")
    try:
        name = unique("adm-doomed")
        flavor = [f["id"] for f in ac.compute("GET", "/flavors").json()["flavors"] if f["name"] == "m1.nano"][0]
        r = ac.compute("POST", "/servers", token=ac.demo_token, version="2.72", json={"server": {
            "name": name, "imageRef": ac.image_id, "flavorRef": flavor, "networks": "none"}})
        assert r.status_code == 202, r.text
        sid = r.json()["server"]["id"]
        s = wait_status(ac, sid, "ERROR")
    finally:
        set_compute_service(ac, "fake-1", "enabled")
    page = context.new_page()
    login(ac, page, ac.demo_user, ac.demo_password)
    page.goto(ac.base_url + f"/dashboard/project/instances/{sid}")
    seq = page.locator("#boot-sequence")
    phases = seq.locator("li.phase.failed").evaluate_all("els => els.map(e => e.dataset.phase)")
    # (a reschedule that found no other host may also fail its second scheduling)
    assert "spawning" in phases and "Running" not in phases, (phases, s.get("fault"))
    failed = seq.locator("li.phase[data-phase=spawning]")
    step = failed.locator("li[data-step='28']")
    assert step.count() == 1
    assert step.evaluate("e => getComputedStyle(e).color") == "rgb(185, 28, 28)"
    assert "failed" in failed.locator(".phase-time").text_content()
    assert "not reached" in seq.locator("li.phase[data-phase=Running]").text_content()
    assert seq.locator("li.phase[data-phase=networking].failed").count() == 0
    assert failed.locator(".phase-track .span").evaluate("e => getComputedStyle(e).backgroundColor") == \
        "rgb(185, 28, 28)"
    shot(page, "admin-14-failed-boot-sequence")
    ac.compute("DELETE", f"/servers/{sid}")
