"""The compute service (Nova v2.1, fake driver) through the real `openstack` CLI and raw HTTP.

One kumo for the module with three fake compute hosts (`[fake] hosts = 3`, fake-1..3) and
instant spawns; a small qcow2 image uploaded here and the demo flavors (m1.nano, m1.micro) of
`kumo up --demo`. Rescheduling gets kumos of its own (`[fake] fail_spawn_hosts`). kumo only (the
peer target is Keystone)."""

from __future__ import annotations

import datetime
import shutil

import pytest
import requests

from cloudlib import start_kumo, unique
from computelib import (HOSTS, MAXV, NEW, PAUSED, RUNNING, SHUTDOWN, SUSPENDED, assert_state,
                        create_servers, delete_all, make_qcow2, needs_qemu, nova_error, osc_state, placement_usage,
                        server, wait_gone, wait_server)

pytestmark = pytest.mark.kumo_only("the compute service is kumo's")

FAST = "[fake]\nhosts = 3\nspawn_delay_ms = 0\n"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cc():
    """This module's kumo: 3 fake hosts, instant spawns, a qcow2 image; stopped at the end."""
    c = start_kumo(FAST)
    try:
        if shutil.which("qemu-img"):
            src = make_qcow2(c.workdir / "tiny.qcow2")
            img = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format", "bare",
                        "--public", unique("cirros"), fmt_json=True)
            c.image_id = img["id"]
        else:
            c.image_id = None
        flavors = {f["Name"]: f["ID"] for f in c.osc("flavor", "list", fmt_json=True)}
        c.nano, c.micro = flavors["m1.nano"], flavors["m1.micro"]
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def demo_token(cc):
    auth = cc.cloud_auth("kumo")
    return cc.login(auth["username"], auth["password"], project=auth["project_name"])


@pytest.fixture
def vm(cc, demo_token):
    """vm(): one ACTIVE server of the demo project, made through the API; deleted afterwards."""
    if cc.image_id is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    made = []

    def make(**extra):
        (sid,) = create_servers(cc, 1, image=cc.image_id, flavor=cc.nano, token=demo_token, **extra)
        made.append(sid)
        return wait_server(cc, sid)

    yield make
    delete_all(cc, made)


# ------------------------------------------------------------------ create, events
@needs_qemu
def test_create_wait_active_and_show(cc):
    name = unique("boot")
    s = cc.osc("server", "create", "--image", cc.image_id, "--flavor", "m1.nano", "--nic", "none", "--wait",
               "--property", "role=web", name, cloud="kumo", fmt_json=True)
    try:
        assert s["status"] == "ACTIVE" and s["name"] == name, s
        shown = cc.osc("server", "show", name, cloud="kumo", fmt_json=True)
        assert shown["id"] == s["id"] and shown["status"] == "ACTIVE"
        assert shown["OS-EXT-STS:vm_state"] == "active" and shown["OS-EXT-STS:power_state"] == RUNNING
        assert "m1.nano" in str(shown["flavor"]), shown["flavor"]
        assert cc.image_id in str(shown["image"]), shown["image"]
        assert shown["properties"] == {"role": "web"} or shown["properties"] == "role='web'", shown["properties"]
        # the admin sees the host: one of the fake hosts
        raw = server(cc, s["id"])
        assert raw["OS-EXT-SRV-ATTR:host"] in HOSTS and raw["OS-EXT-SRV-ATTR:hypervisor_hostname"] in HOSTS
        assert raw["OS-EXT-STS:power_state"] == RUNNING and raw["OS-EXT-STS:task_state"] is None
        # in the project's list, by the member
        listed = cc.osc("server", "list", cloud="kumo", fmt_json=True)
        assert s["id"] in [x["ID"] for x in listed]
        # the flavor embedded in the server (2.47+) is m1.nano's
        assert raw["flavor"]["original_name"] == "m1.nano" and raw["flavor"]["ram"] == 192
    finally:
        cc.osc("server", "delete", "--wait", s["id"], cloud="kumo")
    r = cc.compute("GET", f"/servers/{s['id']}")
    assert "could not be found" in nova_error(r, 404)


@needs_qemu
def test_boot_events(cc):
    name = unique("ev")
    s = cc.osc("server", "create", "--image", cc.image_id, "--flavor", "m1.nano", "--nic", "none", "--wait",
               name, cloud="kumo", fmt_json=True)
    try:
        actions = cc.osc("server", "event", "list", s["id"], cloud="kumo", fmt_json=True)
        assert [a["Action"] for a in actions] == ["create"], actions
        req = actions[0]["Request ID"]
        assert req.startswith("req-"), req
        shown = cc.osc(*NEW, "server", "event", "show", s["id"], req, fmt_json=True)
        assert shown["action"] == "create" and shown["request_id"] == req
        events = {e["event"]: e for e in shown["events"]}
        for step in ("conductor_schedule_and_build_instances", "compute__do_build_and_run_instance",
                     "compute_build_networking", "compute_build_block_device_mapping", "compute_build_spawning"):
            assert step in events, f"no event {step}: {sorted(events)}"
            assert events[step]["result"] == "Success", events[step]
            assert events[step]["start_time"] and events[step]["finish_time"], events[step]
        # the steps happen in the book's order
        order = ["compute_build_networking", "compute_build_block_device_mapping", "compute_build_spawning"]
        starts = [events[e]["start_time"] for e in order]
        assert starts == sorted(starts), starts
        # an action shows up for each later action, newest first
        cc.osc("server", "stop", s["id"], cloud="kumo")
        wait_server(cc, s["id"], "SHUTOFF")
        actions = cc.osc("server", "event", "list", s["id"], cloud="kumo", fmt_json=True)
        assert [a["Action"] for a in actions] == ["stop", "create"], actions
        # the raw API: unknown request id -> 404
        r = cc.compute("GET", f"/servers/{s['id']}/os-instance-actions/req-nope")
        nova_error(r, 404)
    finally:
        cc.osc("server", "delete", "--wait", s["id"], cloud="kumo")


# ------------------------------------------------------------------ actions
@needs_qemu
def test_every_action_through_the_cli(cc, vm):
    """As the owner (the demo user, a member), each action and the state it leaves (polled as admin)."""
    s = vm()
    sid = s["id"]

    def osc(*args, **kw):
        return cc.osc(*args, cloud="kumo", **kw)

    def step(*args, status, vm_state, power, cli_show=False):
        osc("server", *args, sid)
        got = wait_server(cc, sid, status)
        assert_state(got, status, vm_state, power)
        if cli_show:  # what `server show` prints agrees (checked on a few steps: each CLI call costs ~1 s)
            cli = osc_state(cc, sid, cloud="kumo")
            assert cli == (status, vm_state, power), cli
        return got

    assert_state(s, "ACTIVE", "active", RUNNING)
    step("stop", status="SHUTOFF", vm_state="stopped", power=SHUTDOWN, cli_show=True)
    step("start", status="ACTIVE", vm_state="active", power=RUNNING)
    step("reboot", status="ACTIVE", vm_state="active", power=RUNNING)
    step("reboot", "--hard", status="ACTIVE", vm_state="active", power=RUNNING)
    acts = [a["Action"] for a in osc("server", "event", "list", sid, fmt_json=True)]
    assert acts[:2] == ["reboot", "reboot"], acts
    step("pause", status="PAUSED", vm_state="paused", power=PAUSED, cli_show=True)
    step("unpause", status="ACTIVE", vm_state="active", power=RUNNING)
    step("suspend", status="SUSPENDED", vm_state="suspended", power=SUSPENDED, cli_show=True)
    step("resume", status="ACTIVE", vm_state="active", power=RUNNING)

    # lock: the owner can no longer act on it; unlock lifts that
    osc("server", "lock", sid)
    assert server(cc, sid)["locked"] is True
    err = cc.osc_fail("server", "stop", sid, cloud="kumo")
    assert f"Instance {sid} is locked" in err and "409" in err, err
    osc("server", "unlock", sid)
    assert server(cc, sid)["locked"] is False
    assert_state(server(cc, sid), "ACTIVE", "active", RUNNING)

    # shelve: offloaded at once (shelved_offload_time 0, Nova's default); unshelve goes to a host again
    osc("server", "shelve", sid)
    got = wait_server(cc, sid, "SHELVED_OFFLOADED")
    assert_state(got, "SHELVED_OFFLOADED", "shelved_offloaded", SHUTDOWN)
    assert got["OS-EXT-SRV-ATTR:host"] is None, "an offloaded server has no host"
    step("unshelve", status="ACTIVE", vm_state="active", power=RUNNING)
    assert server(cc, sid)["OS-EXT-SRV-ATTR:host"] in HOSTS

    # rebuild with another name and image metadata kept
    osc("server", "rebuild", "--image", cc.image_id, "--name", sid[:8] + "-rebuilt", sid)
    got = wait_server(cc, sid)
    assert_state(got, "ACTIVE", "active", RUNNING)
    assert got["name"] == sid[:8] + "-rebuilt"
    assert [a["Action"] for a in osc("server", "event", "list", sid, fmt_json=True)][0] == "rebuild"

    # resize + confirm: the flavor changes, placement holds the new flavor only
    osc("server", "resize", "--flavor", "m1.micro", sid)
    got = wait_server(cc, sid, "VERIFY_RESIZE")
    assert_state(got, "VERIFY_RESIZE", "resized", RUNNING)
    assert got["flavor"]["original_name"] == "m1.micro"
    osc("server", "resize", "confirm", sid)
    got = wait_server(cc, sid)
    assert_state(got, "ACTIVE", "active", RUNNING)
    assert got["flavor"]["original_name"] == "m1.micro"
    allocs = cc.placement("GET", f"/allocations/{sid}").json()["allocations"]
    assert [a["resources"]["MEMORY_MB"] for a in allocs.values()] == [256], allocs

    # resize + revert: back to m1.micro's predecessor... here: to m1.nano and back to m1.micro
    osc("server", "resize", "--flavor", "m1.nano", sid)
    wait_server(cc, sid, "VERIFY_RESIZE")
    osc("server", "resize", "revert", sid)
    got = wait_server(cc, sid)
    assert_state(got, "ACTIVE", "active", RUNNING)
    assert got["flavor"]["original_name"] == "m1.micro", "revert goes back to the old flavor"
    allocs = cc.placement("GET", f"/allocations/{sid}").json()["allocations"]
    assert [a["resources"]["MEMORY_MB"] for a in allocs.values()] == [256], allocs

    # server image create: a snapshot that becomes an active image
    snap = unique("snap")
    osc("server", "image", "create", "--name", snap, "--wait", sid)
    images = {i["Name"]: i for i in osc("image", "list", fmt_json=True)}
    assert snap in images, sorted(images)
    assert images[snap]["Status"] == "active"
    img = osc("image", "show", snap, fmt_json=True)
    assert img["properties"].get("instance_uuid") == sid, img["properties"]
    assert_state(server(cc, sid), "ACTIVE", "active", RUNNING)
    osc("image", "delete", snap)

    # delete
    osc("server", "delete", "--wait", sid)
    nova_error(cc.compute("GET", f"/servers/{sid}"), 404)
    r = cc.placement("GET", f"/allocations/{sid}")
    assert r.json()["allocations"] == {}, "the delete gives back the claim"


@needs_qemu
def test_wrong_state_is_409_with_novas_message(cc, vm):
    sid = vm()["id"]
    cases = [({"os-start": None}, "start", "active"), ({"unpause": None}, "unpause", "active"),
             ({"resume": None}, "resume", "active"), ({"confirmResize": None}, "confirmResize", "active"),
             ({"unshelve": None}, "unshelve", "active")]
    for body, action, state in cases:
        r = cc.compute("POST", f"/servers/{sid}/action", json=body, version=MAXV)
        msg = nova_error(r, 409)
        assert msg == f"Cannot '{action}' instance {sid} while it is in vm_state {state}", msg
    # from the CLI too
    err = cc.osc_fail("server", "unpause", sid)
    assert f"Cannot 'unpause' instance {sid} while it is in vm_state active" in err and "409" in err, err
    cc.osc("server", "stop", sid)
    wait_server(cc, sid, "SHUTOFF")
    for body, action in (({"os-stop": None}, "stop"), ({"pause": None}, "pause"), ({"suspend": None}, "suspend")):
        msg = nova_error(cc.compute("POST", f"/servers/{sid}/action", json=body), 409)
        assert msg == f"Cannot '{action}' instance {sid} while it is in vm_state stopped", msg
    # nothing changed
    assert_state(server(cc, sid), "SHUTOFF", "stopped", SHUTDOWN)


# ------------------------------------------------------------------ lists, show, set, tags
@needs_qemu
def test_list_filters_paging_set_and_tags(cc):
    prefix = unique("lst")
    t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(seconds=2)
    ids = create_servers(cc, 2, image=cc.image_id, flavor=cc.nano, name=prefix + "-a")
    ids += create_servers(cc, 1, image=cc.image_id, flavor=cc.micro, name=prefix + "-b")
    try:
        for sid in ids:
            wait_server(cc, sid)
        osc = cc.osc
        # name is a regex
        by_name = osc("server", "list", "--name", f"^{prefix}-a", fmt_json=True)
        assert sorted(x["ID"] for x in by_name) == sorted(ids[:2])
        assert osc("server", "list", "--name", f"^{prefix}-[ab]", fmt_json=True).__len__() == 3
        assert osc("server", "list", "--name", f"^{prefix}-z", fmt_json=True) == []
        # flavor, image
        by_flavor = {x["ID"] for x in osc("server", "list", "--flavor", "m1.micro", fmt_json=True)}
        assert ids[2] in by_flavor and not set(ids[:2]) & by_flavor
        by_image = {x["ID"] for x in osc("server", "list", "--image", cc.image_id, fmt_json=True)}
        assert set(ids) <= by_image
        # status
        cc.osc("server", "stop", ids[0])
        wait_server(cc, ids[0], "SHUTOFF")
        shutoff = {x["ID"] for x in osc("server", "list", "--status", "SHUTOFF", fmt_json=True)}
        active = {x["ID"] for x in osc("server", "list", "--status", "ACTIVE", fmt_json=True)}
        assert ids[0] in shutoff and ids[0] not in active and set(ids[1:]) <= active
        # an unknown status: 400 from 2.38, before that an empty list
        r = cc.compute("GET", "/servers", params={"status": "BOGUS"}, version="2.38")
        assert nova_error(r, 400) == "Invalid status value", r.text
        r = cc.compute("GET", "/servers", params={"status": "BOGUS"}, version="2.37")
        assert r.status_code == 200 and r.json()["servers"] == [], r.text

        # server set --name / --property, server show
        new_name = prefix + "-renamed"
        osc("server", "set", "--name", new_name, "--property", "a=1", "--property", "b=2", ids[1])
        shown = osc("server", "show", ids[1], fmt_json=True)
        assert shown["name"] == new_name
        props = shown["properties"]
        assert props in ({"a": "1", "b": "2"}, "a='1', b='2'"), props
        assert server(cc, ids[1])["metadata"] == {"a": "1", "b": "2"}
        osc("server", "unset", "--property", "a", ids[1])
        assert server(cc, ids[1])["metadata"] == {"b": "2"}
        # PUT answers with the server without its extended attributes below 2.75 (Nova's update view);
        # progress only shows in the statuses where something is under way (not SHUTOFF)
        r = cc.compute("PUT", f"/servers/{ids[0]}", json={"server": {"accessIPv6": "0:0:0:0:0:babe:dc0c:1602"}},
                       version=MAXV)
        assert r.status_code == 200, r.text
        body = r.json()["server"]
        assert not [k for k in body if k.startswith("OS-EXT-")] and "key_name" not in body, sorted(body)
        assert body["accessIPv6"] == "::babe:dc0c:1602", "kept in canonical form, as Nova's netaddr field does"
        assert "progress" not in body and "progress" not in server(cc, ids[0]), "SHUTOFF shows no progress"
        assert server(cc, ids[1])["progress"] == 0

        # changes-since: everything changed after t0; nothing after a future time; a rename counts
        since = {x["ID"] for x in osc("server", "list", "--changes-since", t0.isoformat(), fmt_json=True)}
        assert set(ids) <= since
        future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
        assert osc("server", "list", "--changes-since", future, fmt_json=True) == []
        r = cc.compute("GET", "/servers", params={"changes-since": "not-a-date"})
        nova_error(r, 400)

        # tags (2.26)
        osc(*NEW, "server", "set", "--tag", "blue", "--tag", "green", ids[2])
        osc(*NEW, "server", "set", "--tag", "blue", ids[0])
        shown = osc(*NEW, "server", "show", ids[2], fmt_json=True)
        assert sorted(shown["tags"]) == ["blue", "green"], shown["tags"]
        tagged = {x["ID"] for x in osc(*NEW, "server", "list", "--tags", "blue", fmt_json=True)}
        assert tagged == {ids[0], ids[2]}
        both = {x["ID"] for x in osc(*NEW, "server", "list", "--tags", "blue,green", fmt_json=True)}
        assert both == {ids[2]}
        not_green = {x["ID"] for x in osc(*NEW, "server", "list", "--not-tags", "green", fmt_json=True)}
        assert ids[0] in not_green and ids[2] not in not_green
        osc(*NEW, "server", "unset", "--tag", "green", ids[2])
        assert server(cc, ids[2])["tags"] == ["blue"]
        # the tags API directly: check, add, replace, clear
        assert cc.compute("GET", f"/servers/{ids[2]}/tags/blue", version=MAXV).status_code == 204
        nova_error(cc.compute("GET", f"/servers/{ids[2]}/tags/green", version=MAXV), 404)
        r = cc.compute("PUT", f"/servers/{ids[2]}/tags", json={"tags": ["x", "y"]}, version=MAXV)
        assert r.status_code == 200 and sorted(r.json()["tags"]) == ["x", "y"]
        assert cc.compute("DELETE", f"/servers/{ids[2]}/tags", version=MAXV).status_code == 204
        assert server(cc, ids[2])["tags"] == []
        # below 2.26 there are no tags
        nova_error(cc.compute("GET", f"/servers/{ids[2]}/tags", version="2.25"), 404)

        # limit / marker: pages of one over the three, in the API's order, no repeats
        seen, marker = [], None
        for _ in range(10):
            args = ["server", "list", "--name", f"^{prefix}", "--limit", "1"]
            if marker:
                args += ["--marker", marker]
            page = osc(*args, fmt_json=True)
            if not page:
                break
            assert len(page) == 1
            seen.append(page[0]["ID"])
            marker = page[0]["ID"]
        assert sorted(seen) == sorted(ids) and len(seen) == 3, seen
        r = cc.compute("GET", "/servers", params={"marker": "00000000-0000-0000-0000-000000000000"})
        assert "marker" in nova_error(r, 400).lower()
        r = cc.compute("GET", "/servers", params={"limit": "-1"})
        nova_error(r, 400)
        # the detailed list carries the same servers with their details
        detail = cc.compute("GET", "/servers/detail", params={"name": f"^{prefix}"}, version=MAXV).json()["servers"]
        assert sorted(d["id"] for d in detail) == sorted(ids)
        assert all(d["flavor"]["original_name"] in ("m1.nano", "m1.micro") for d in detail)
    finally:
        delete_all(cc, ids)


# ------------------------------------------------------------------ quota
@needs_qemu
def test_quota_exceeded_is_403(cc):
    """A fresh project with the default quota (10 instances): the 11th server is refused."""
    project = cc.create_project(unique("quota"))
    password = "pw-" + unique("q")
    user = cc.create_user(unique("quota"), password, default_project_id=project["id"])
    cc.grant("member", project_id=project["id"], user_id=user["id"])
    token = cc.login(user["name"], password, project_id=project["id"])
    ids = []
    try:
        limit = cc.compute("GET", f"/os-quota-sets/{project['id']}", token=token).json()["quota_set"]["instances"]
        assert limit == 10, limit
        ids = create_servers(cc, limit, image=cc.image_id, flavor=cc.nano, token=token)
        body = {"server": {"name": unique("over"), "imageRef": cc.image_id, "flavorRef": cc.nano,
                           "networks": "none"}}
        r = cc.compute("POST", "/servers", json=body, version=MAXV, token=token)
        msg = nova_error(r, 403)
        assert msg == f"Quota exceeded for instances: Requested 1, but already used {limit} of {limit} instances", msg
        assert "forbidden" in r.json(), r.json()
        # several at once: Nova names how many were asked for
        body["server"]["min_count"] = 2
        msg = nova_error(cc.compute("POST", "/servers", json=body, version=MAXV, token=token), 403)
        assert f"Requested 2, but already used {limit} of {limit} instances" in msg, msg
        # the CLI shows it too, and nothing was made
        args = cc.password_auth_args(user["name"], password, project["name"])
        err = cc.osc_fail(*args, "server", "create", "--image", cc.image_id, "--flavor", "m1.nano", "--nic", "none",
                          unique("over"), cloud=None)
        assert "Quota exceeded for instances" in err and "403" in err, err
        listed = cc.compute("GET", "/servers", token=token).json()["servers"]
        assert len(listed) == limit
        # usage in the limits document
        absolute = cc.compute("GET", "/limits", token=token).json()["limits"]["absolute"]
        assert absolute["totalInstancesUsed"] == limit and absolute["maxTotalInstances"] == limit
        # one deleted: room for one again
        cc.compute("DELETE", f"/servers/{ids[0]}", token=token)
        wait_gone(cc, ids[0])
        body["server"].pop("min_count")
        r = cc.compute("POST", "/servers", json=body, version=MAXV, token=token)
        assert r.status_code == 202, r.text
        ids = ids[1:] + [r.json()["server"]["id"]]
    finally:
        delete_all(cc, ids)
        cc.delete("users", user["id"])
        cc.delete("projects", project["id"])


# ------------------------------------------------------------------ bad input
@needs_qemu
def test_bad_input(cc, demo_token):
    good = {"name": unique("bad"), "imageRef": cc.image_id, "flavorRef": cc.nano, "networks": "none"}

    def create(server, version=MAXV):
        return cc.compute("POST", "/servers", json={"server": server}, version=version, token=demo_token)

    before = len(cc.compute("GET", "/servers", token=demo_token).json()["servers"])
    msg = nova_error(create({**good, "bogus": 1}), 400)
    assert "Additional properties are not allowed" in msg and "bogus" in msg, msg
    nova_error(cc.compute("POST", "/servers", json={"server": good, "extra": 1}, token=demo_token), 400)
    msg = nova_error(create({**good, "flavorRef": "no-such-flavor"}), 400)
    assert msg == "Flavor no-such-flavor could not be found.", msg
    msg = nova_error(create({**good, "imageRef": "00000000-0000-0000-0000-000000000000"}), 400)
    assert msg == "Can not find requested image", msg
    msg = nova_error(create({**good, "imageRef": "not-a-uuid"}), 400)
    assert "imageRef" in msg or "not-a-uuid" in msg, msg
    nova_error(create({k: v for k, v in good.items() if k != "flavorRef"}), 400)
    nova_error(create({**good, "name": ""}), 400)
    nova_error(create({**good, "name": "x" * 256}), 400)
    nova_error(cc.compute("POST", "/servers", data="{not json", token=demo_token,
                          headers={"Content-Type": "application/json"}), 400)
    # 2.37+ needs networks
    nova_error(create({k: v for k, v in good.items() if k != "networks"}), 400)
    assert len(cc.compute("GET", "/servers", token=demo_token).json()["servers"]) == before, "nothing was made"

    # unknown server: 404 for show, action, delete, update
    missing = "00000000-0000-0000-0000-000000000000"
    msg = nova_error(cc.compute("GET", f"/servers/{missing}", token=demo_token), 404)
    assert msg == f"Instance {missing} could not be found.", msg
    nova_error(cc.compute("POST", f"/servers/{missing}/action", json={"os-stop": None}, token=demo_token), 404)
    nova_error(cc.compute("DELETE", f"/servers/{missing}", token=demo_token), 404)
    nova_error(cc.compute("PUT", f"/servers/{missing}", json={"server": {"name": "x"}}, token=demo_token), 404)
    err = cc.osc_fail("server", "show", missing, cloud="kumo")
    assert "No Server found" in err or "could not be found" in err, err

    # microversions: out of range -> 406, garbage -> 400, "latest" -> the max
    r = cc.compute("GET", "/servers", version="2.999", token=demo_token)
    assert r.status_code == 406, r.text
    assert "Version 2.999 is not supported by the API. Minimum is 2.1 and maximum is" in r.text, r.text
    assert cc.compute("GET", "/servers", version="2.0", token=demo_token).status_code == 406
    assert cc.compute("GET", "/servers", version="3.1", token=demo_token).status_code == 406
    r = cc.compute("GET", "/servers", version="latest", token=demo_token)
    assert r.status_code == 200 and r.headers["OpenStack-API-Version"] == f"compute {MAXV}"
    nova_error(cc.compute("GET", "/servers", version="2.x", token=demo_token), 400)
    # the CLI at a microversion the server does not have
    err = cc.osc_fail("--os-compute-api-version", "2.999", "server", "list", cloud="kumo")
    assert "2.999" in err, err


def test_versions_and_flavors(cc):
    r = requests.get(cc.base_url + "/compute/", timeout=30)
    assert r.status_code == 200
    v21 = [v for v in r.json()["versions"] if v["id"] == "v2.1"][0]
    assert v21["status"] == "CURRENT" and v21["version"] == MAXV and v21["min_version"] == "2.1"
    flavors = {f["Name"]: f for f in cc.osc("flavor", "list", cloud="kumo", fmt_json=True)}
    assert {"m1.nano", "m1.micro", "m1.tiny", "m1.small"} <= set(flavors)
    assert flavors["m1.nano"]["RAM"] == 192 and flavors["m1.nano"]["VCPUs"] == 1
    # hosts report to placement: one provider per fake host
    rps = {rp["name"] for rp in cc.placement("GET", "/resource_providers").json()["resource_providers"]}
    assert set(HOSTS) <= rps, rps


# ------------------------------------------------------------------ reschedule
@needs_qemu
def test_reschedule_around_a_failing_host():
    """fake-1's spawns fail: every server still ends ACTIVE, on fake-2 or fake-3, and at least one
    build shows the failed attempt in its events."""
    c = start_kumo("[fake]\nhosts = 3\nspawn_delay_ms = 0\nfail_spawn_hosts = fake-1\n")
    try:
        img = c.osc("image", "create", "--file", make_qcow2(c.workdir / "r.qcow2"), "--disk-format", "qcow2",
                    "--container-format", "bare", "--public", unique("img"), fmt_json=True)
        ids = create_servers(c, 6, image=img["id"], flavor="42")
        states = [wait_server(c, sid) for sid in ids]
        hosts = [s["OS-EXT-SRV-ATTR:host"] for s in states]
        assert set(hosts) <= {"fake-2", "fake-3"}, hosts
        failed_attempts = 0
        for sid in ids:
            (action,) = c.compute("GET", f"/servers/{sid}/os-instance-actions", version=MAXV).json()[
                "instanceActions"]
            detail = c.compute("GET", f"/servers/{sid}/os-instance-actions/{action['request_id']}",
                               version=MAXV).json()["instanceAction"]
            failed_attempts += sum(1 for e in detail["events"]
                                   if e["event"] == "compute_build_spawning" and e["result"] == "Error")
        assert failed_attempts >= 1, "no build was tried on fake-1: weighers should spread 6 builds over 3 hosts"
        assert placement_usage(c) == {"VCPU": 6, "MEMORY_MB": 6 * 192, "DISK_GB": 6}, placement_usage(c)
    finally:
        c.stop()


@needs_qemu
def test_all_hosts_failing_ends_in_error_with_a_fault():
    c = start_kumo("[fake]\nhosts = 3\nspawn_delay_ms = 0\nfail_spawn_hosts = fake-1, fake-2, fake-3\n")
    try:
        img = c.osc("image", "create", "--file", make_qcow2(c.workdir / "e.qcow2"), "--disk-format", "qcow2",
                    "--container-format", "bare", "--public", unique("img"), fmt_json=True)
        name = unique("doomed")
        err = c.osc_fail("server", "create", "--image", img["id"], "--flavor", "m1.nano", "--nic", "none",
                         "--wait", name, cloud="kumo")
        assert "ERROR" in err or "Error" in err, err
        (s,) = c.compute("GET", "/servers/detail", params={"name": name, "all_tenants": 1},
                         version=MAXV).json()["servers"]
        assert s["status"] == "ERROR" and s["OS-EXT-STS:vm_state"] == "error", s
        fault = s["fault"]
        assert fault["code"] == 500, fault
        assert fault["message"] == ("Exceeded maximum number of retries. Exhausted all hosts available for retrying "
                                    f"build failures for instance {s['id']}."), fault
        # the admin sees the details: the hosts tried and the step the last attempt failed at
        assert fault["details"].startswith("tried: "), fault
        assert sorted(fault["details"].split(";")[0][len("tried: "):].split(", ")) == list(HOSTS), fault
        assert "failed at step spawning" in fault["details"], fault
        assert s["OS-EXT-SRV-ATTR:host"] is None
        shown = c.osc("server", "show", name, cloud="kumo", fmt_json=True)
        assert shown["status"] == "ERROR" and "Exceeded maximum number of retries" in str(shown["fault"])
        # three attempts, each a failed spawning step
        (action,) = c.compute("GET", f"/servers/{s['id']}/os-instance-actions").json()["instanceActions"]
        detail = c.compute("GET", f"/servers/{s['id']}/os-instance-actions/{action['request_id']}",
                           version=MAXV).json()["instanceAction"]
        spawns = [e for e in detail["events"] if e["event"] == "compute_build_spawning"]
        assert len(spawns) == 3 and all(e["result"] == "Error" for e in spawns), detail["events"]
        # ERROR holds no claim; the server can be deleted
        assert placement_usage(c) == {}
        c.osc("server", "delete", "--wait", s["id"])
    finally:
        c.stop()
