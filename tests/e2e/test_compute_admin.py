"""Compute features beyond servers and flavors, through the real `openstack` CLI: key pairs, server
groups (anti-affinity over three fake hosts), `quota set`, private flavors and flavor access,
flavor properties (extra specs), `compute service list`, `hypervisor list`.

What is asserted is Nova's documented behaviour (api-ref and nova/api/openstack/compute/*):
status codes and messages of the real Nova. A kumo of its own with three fake hosts. kumo only."""

from __future__ import annotations

import base64
import hashlib

import pytest

from cloudlib import start_kumo, unique
from computelib import (HOSTS, MAXV, NEW, create_servers, delete_all, make_qcow2, needs_qemu, nova_error, server,
                        wait_server)

pytestmark = pytest.mark.kumo_only("the compute service is kumo's")

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


@pytest.fixture(scope="module")
def ac():
    c = start_kumo("[fake]\nhosts = 3\nspawn_delay_ms = 0\n")
    try:
        src = make_qcow2(c.workdir / "a.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format",
                           "bare", "--public", unique("img"), fmt_json=True)["id"]
        yield c
    finally:
        c.stop()


@pytest.fixture
def project_user(ac):
    """project_user(): a new project with a member user; returns a dict with `osc` (the CLI as that
    user), `token`, `project`, `user`. Deleted afterwards."""
    made = []

    def make():
        project = ac.create_project(unique("cproj"))
        password = "pw-" + unique("p")
        user = ac.create_user(unique("cuser"), password, default_project_id=project["id"])
        ac.grant("member", project_id=project["id"], user_id=user["id"])
        made.append((user, project))
        token = ac.login(user["name"], password, project_id=project["id"])
        args = ac.password_auth_args(user["name"], password, project["name"])
        return {"project": project, "user": user, "password": password, "token": token,
                "osc": lambda *a, **kw: ac.osc(*args, *a, cloud=None, **kw),
                "osc_fail": lambda *a, **kw: ac.osc_fail(*args, *a, cloud=None, **kw)}

    yield make
    for user, project in made:
        ids = [s["id"] for s in ac.compute("GET", "/servers", params={"all_tenants": 1, "project_id": project["id"]}
                                           ).json()["servers"]]
        delete_all(ac, ids)
        ac.delete("users", user["id"])
        ac.delete("projects", project["id"])


def md5_fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def ed25519_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode() + " e2e@kumo"


# ------------------------------------------------------------------ key pairs
@needs_qemu
def test_keypairs(ac, project_user):
    u = project_user()
    osc = u["osc"]
    # generated: the CLI prints the private key, Nova keeps only the public one
    gen = unique("kp-gen")
    private = osc("keypair", "create", gen)
    assert "PRIVATE KEY" in private, private[:200]
    shown = osc("keypair", "show", gen, fmt_json=True)
    assert shown["name"] == gen and shown["user_id"] == u["user"]["id"] and shown["type"] == "ssh"
    assert len(shown["fingerprint"].split(":")) == 16, shown
    # imported: the fingerprint is the MD5 of the key, as Nova computes it
    pub = ed25519_public_key()
    pub_file = ac.workdir / f"{unique('k')}.pub"  # in the kumo's temp dir: removed with it
    pub_file.write_text(pub + "\n")
    imp = unique("kp-imp")
    made = osc("keypair", "create", "--public-key", pub_file, imp, fmt_json=True)
    assert made["fingerprint"] == md5_fingerprint(pub), made
    raw = ac.compute("GET", f"/os-keypairs/{imp}", token=u["token"], version=MAXV).json()["keypair"]
    assert raw["public_key"].split()[:2] == pub.split()[:2] and raw["type"] == "ssh"
    listed = {k["Name"]: k for k in osc("keypair", "list", fmt_json=True)}
    assert set(listed) == {gen, imp}, listed
    assert listed[imp]["Fingerprint"] == md5_fingerprint(pub)
    # names are unique per user: 409
    r = ac.compute("POST", "/os-keypairs", token=u["token"], version=MAXV,
                   json={"keypair": {"name": imp, "public_key": pub}})
    assert nova_error(r, 409) == f"Key pair '{imp}' already exists."
    # bad public key: 400
    r = ac.compute("POST", "/os-keypairs", token=u["token"], version=MAXV,
                   json={"keypair": {"name": unique("kp-bad"), "public_key": "ssh-rsa not-base64"}})
    assert nova_error(r, 400) == "Keypair data is invalid: failed to generate fingerprint"
    r = ac.compute("POST", "/os-keypairs", token=u["token"], version=MAXV, json={"keypair": {"name": ""}})
    nova_error(r, 400)
    # 2.2+: created is 201; 2.1: 200
    r = ac.compute("POST", "/os-keypairs", token=u["token"], version="2.1",
                   json={"keypair": {"name": unique("kp-v21"), "public_key": pub}})
    assert r.status_code == 200, r.text
    ac.compute("DELETE", f"/os-keypairs/{r.json()['keypair']['name']}", token=u["token"])
    # key pairs belong to their user: another user of another project sees none of them
    other = project_user()
    assert other["osc"]("keypair", "list", fmt_json=True) == []
    r = ac.compute("GET", f"/os-keypairs/{imp}", token=other["token"])
    assert nova_error(r, 404) == f"Keypair {imp} not found for user {other['user']['id']}"
    # a server with the key: key_name is shown; an unknown key is a 400
    s = osc("server", "create", "--image", ac.image_id, "--flavor", "m1.nano", "--nic", "none", "--key-name", imp,
            "--wait", unique("kvm"), fmt_json=True)
    assert s["key_name"] == imp
    r = ac.compute("POST", "/servers", token=u["token"], version=MAXV,
                   json={"server": {"name": "x", "imageRef": ac.image_id, "flavorRef": "42", "networks": "none",
                                    "key_name": "no-such-key"}})
    assert nova_error(r, 400) == "Invalid key_name provided."
    osc("server", "delete", "--wait", s["id"])
    # delete
    osc("keypair", "delete", gen, imp)
    assert osc("keypair", "list", fmt_json=True) == []
    err = u["osc_fail"]("keypair", "show", imp)
    assert imp in err, err


# ------------------------------------------------------------------ server groups
@needs_qemu
def test_anti_affinity_spreads_over_three_hosts_and_the_fourth_fails(ac, project_user):
    u = project_user()
    osc = u["osc"]
    group = osc(*NEW, "server", "group", "create", "--policy", "anti-affinity", unique("grp"), fmt_json=True)
    assert group["policy"] == "anti-affinity", group
    names = [unique(f"aa{i}") for i in range(4)]
    ids = []
    for name in names[:3]:
        s = osc("server", "create", "--image", ac.image_id, "--flavor", "m1.nano", "--nic", "none",
                "--hint", f"group={group['id']}", "--wait", name, fmt_json=True)
        assert s["status"] == "ACTIVE", s
        ids.append(s["id"])
    hosts = [server(ac, sid)["OS-EXT-SRV-ATTR:host"] for sid in ids]  # as admin
    assert sorted(hosts) == sorted(HOSTS), f"anti-affinity put {hosts}"
    # no fourth host: the 4th build ends in ERROR with NoValidHost
    err = u["osc_fail"]("server", "create", "--image", ac.image_id, "--flavor", "m1.nano", "--nic", "none",
                        "--hint", f"group={group['id']}", "--wait", names[3])
    assert "ERROR" in err or "Error" in err, err
    (fourth,) = ac.compute("GET", "/servers/detail", params={"name": names[3], "all_tenants": 1},
                           version=MAXV).json()["servers"]
    ids.append(fourth["id"])
    assert fourth["status"] == "ERROR", fourth
    assert fourth["fault"]["code"] == 500 and NO_VALID_HOST in fourth["fault"]["message"], fourth["fault"]
    assert fourth["OS-EXT-SRV-ATTR:host"] is None
    shown = osc(*NEW, "server", "group", "show", group["id"], fmt_json=True)
    assert set(ids[:3]) <= set(shown["members"] if isinstance(shown["members"], list)
                               else shown["members"].split(", ")), shown
    # the group lists for its project; a deleted group is gone
    assert group["id"] in [g["ID"] for g in osc("server", "group", "list", fmt_json=True)]
    # a bad policy is a 400; an unknown group in a hint is a 400 too
    r = ac.compute("POST", "/os-server-groups", token=u["token"], version=MAXV,
                   json={"server_group": {"name": "g", "policy": "bogus"}})
    nova_error(r, 400)
    delete_all(ac, ids)
    osc("server", "group", "delete", group["id"])
    r = ac.compute("GET", f"/os-server-groups/{group['id']}", token=u["token"], version=MAXV)
    assert nova_error(r, 404) == f"Instance group {group['id']} could not be found."


@needs_qemu
def test_affinity_keeps_servers_together(ac, project_user):
    u = project_user()
    group = u["osc"](*NEW, "server", "group", "create", "--policy", "affinity", unique("aff"), fmt_json=True)
    ids = []
    for i in range(3):
        r = ac.compute("POST", "/servers", token=u["token"], version=MAXV,
                       json={"server": {"name": unique(f"af{i}"), "imageRef": ac.image_id, "flavorRef": "42",
                                        "networks": "none"}, "os:scheduler_hints": {"group": group["id"]}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["server"]["id"])
        wait_server(ac, ids[-1])
    hosts = {server(ac, sid)["OS-EXT-SRV-ATTR:host"] for sid in ids}
    assert len(hosts) == 1, hosts
    delete_all(ac, ids)


# ------------------------------------------------------------------ quotas
@needs_qemu
def test_quota_set_instances(ac, project_user):
    u = project_user()
    pid = u["project"]["id"]
    ac.osc("quota", "set", "--instances", "2", pid)
    qs = ac.compute("GET", f"/os-quota-sets/{pid}", token=u["token"]).json()["quota_set"]
    assert qs["instances"] == 2 and qs["cores"] == 20, qs
    ids = create_servers(ac, 2, image=ac.image_id, flavor="42", token=u["token"])
    for sid in ids:
        wait_server(ac, sid)
    r = ac.compute("POST", "/servers", token=u["token"], version=MAXV,
                   json={"server": {"name": unique("third"), "imageRef": ac.image_id, "flavorRef": "42",
                                    "networks": "none"}})
    assert nova_error(r, 403) == "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    err = u["osc_fail"]("server", "create", "--image", ac.image_id, "--flavor", "m1.nano", "--nic", "none",
                        unique("third"))
    assert "Quota exceeded for instances" in err, err
    # below what is used: refused without --force
    r = ac.compute("PUT", f"/os-quota-sets/{pid}", json={"quota_set": {"instances": 1}})
    assert nova_error(r, 400) == ("Quota limit 1 for instances must be greater than or equal to already used "
                                  "and reserved 2.")
    # members may read their quota but not set it
    r = ac.compute("PUT", f"/os-quota-sets/{pid}", token=u["token"], json={"quota_set": {"instances": 50}})
    assert nova_error(r, 403) == "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed."
    # raised: the third fits; deleted: back to the defaults
    ac.osc("quota", "set", "--instances", "3", pid)
    ids += create_servers(ac, 1, image=ac.image_id, flavor="42", token=u["token"])
    assert ac.compute("DELETE", f"/os-quota-sets/{pid}").status_code == 202
    qs = ac.compute("GET", f"/os-quota-sets/{pid}", token=u["token"]).json()["quota_set"]
    assert qs["instances"] == 10, qs
    # cores are counted too: 3 used (3 x m1.nano), m1.medium asks for 2 more of 4
    ac.osc("quota", "set", "--cores", "4", pid)
    r = ac.compute("POST", "/servers", token=u["token"], version=MAXV,
                   json={"server": {"name": unique("c"), "imageRef": ac.image_id, "flavorRef": "3",
                                    "networks": "none"}})
    assert nova_error(r, 403) == "Quota exceeded for cores: Requested 2, but already used 3 of 4 cores"
    delete_all(ac, ids)


@needs_qemu
def test_user_quota_is_enforced_on_create(ac, project_user):
    u = project_user()
    pid, uid = u["project"]["id"], u["user"]["id"]
    r = ac.compute("PUT", f"/os-quota-sets/{pid}", params={"user_id": uid},
                   json={"quota_set": {"instances": 1}})
    assert r.status_code == 200, r.text
    ids = create_servers(ac, 1, image=ac.image_id, flavor="42", token=u["token"])
    wait_server(ac, ids[0])
    # the project allows 10, the user 1
    r = ac.compute("POST", "/servers", token=u["token"], version=MAXV,
                   json={"server": {"name": unique("second"), "imageRef": ac.image_id, "flavorRef": "42",
                                    "networks": "none"}})
    assert nova_error(r, 403) == "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    # another user of the same project is not held by it
    other = ac.create_user(unique("cuser2"), "pw-other-1", default_project_id=pid)
    try:
        ac.grant("member", project_id=pid, user_id=other["id"])
        tok = ac.login(other["name"], "pw-other-1", project_id=pid)
        ids += create_servers(ac, 1, image=ac.image_id, flavor="42", token=tok)
    finally:
        delete_all(ac, ids)
        ac.delete("users", other["id"])


# ------------------------------------------------------------------ flavors
@needs_qemu
def test_private_flavor_access(ac, project_user):
    p = project_user()
    q = project_user()
    name = unique("priv")
    f = ac.osc("flavor", "create", "--private", "--project", p["project"]["id"], "--ram", "128", "--disk", "1",
               "--vcpus", "1", name, fmt_json=True)
    assert f["os-flavor-access:is_public"] is False, f
    fid = f["id"]
    # (the CLI only logs a failed addTenantAccess and exits 0: the access list is what counts)
    r = ac.compute("GET", f"/flavors/{fid}/os-flavor-access")
    assert r.status_code == 200, r.text
    access = r.json()["flavor_access"]
    assert access == [{"flavor_id": fid, "tenant_id": p["project"]["id"]}], access
    # visible to P, in its list and by id; P boots with it
    assert name in [x["Name"] for x in p["osc"]("flavor", "list", fmt_json=True)]
    assert p["osc"]("flavor", "show", fid, fmt_json=True)["name"] == name
    s = p["osc"]("server", "create", "--image", ac.image_id, "--flavor", fid, "--nic", "none", "--wait",
                 unique("pvm"), fmt_json=True)
    assert s["status"] == "ACTIVE"
    p["osc"]("server", "delete", "--wait", s["id"])
    # not to Q
    assert name not in [x["Name"] for x in q["osc"]("flavor", "list", "--all", fmt_json=True)]
    r = ac.compute("GET", f"/flavors/{fid}", token=q["token"])
    assert nova_error(r, 404) == f"Flavor {fid} could not be found."
    r = ac.compute("POST", "/servers", token=q["token"], version=MAXV,
                   json={"server": {"name": "x", "imageRef": ac.image_id, "flavorRef": fid, "networks": "none"}})
    assert nova_error(r, 400) == f"Flavor {fid} could not be found."
    # the admin sees it only when asking for private flavors too (is_public=None; the default is public ones
    # and those of the admin's own project)
    assert fid in [x["id"] for x in ac.compute("GET", "/flavors", params={"is_public": "None"}).json()["flavors"]]
    assert fid not in [x["id"] for x in ac.compute("GET", "/flavors").json()["flavors"]]
    # access given to Q, then taken from P
    ac.osc("flavor", "set", "--project", q["project"]["id"], fid)
    assert q["osc"]("flavor", "show", fid, fmt_json=True)["name"] == name
    ac.osc("flavor", "unset", "--project", p["project"]["id"], fid)
    nova_error(ac.compute("GET", f"/flavors/{fid}", token=p["token"]), 404)
    # a public flavor has no access list
    r = ac.compute("GET", "/flavors/42/os-flavor-access")
    assert nova_error(r, 404) == "Access list not available for public flavors."
    # members cannot create flavors; names are unique
    err = p["osc_fail"]("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", unique("nope"))
    assert "403" in err, err
    r = ac.compute("POST", "/flavors", json={"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 1}})
    assert nova_error(r, 409) == f"Flavor with name {name} already exists."
    ac.osc("flavor", "delete", fid)


def test_flavor_properties(ac, project_user):
    name = unique("props")
    f = ac.osc("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "--property", "hw:cpu_policy=shared",
               name, fmt_json=True)
    fid = f["id"]
    ac.osc("flavor", "set", "--property", "quota:disk_read_bytes_sec=10240", "--property", "trait:CUSTOM_X=required",
           fid)
    props = ac.osc("flavor", "show", fid, fmt_json=True)["properties"]
    assert props == {"hw:cpu_policy": "shared", "quota:disk_read_bytes_sec": "10240",
                     "trait:CUSTOM_X": "required"}, props
    specs = ac.compute("GET", f"/flavors/{fid}/os-extra_specs").json()["extra_specs"]
    assert specs == props
    r = ac.compute("GET", f"/flavors/{fid}/os-extra_specs/hw:cpu_policy")
    assert r.status_code == 200 and r.json() == {"hw:cpu_policy": "shared"}
    ac.osc("flavor", "unset", "--property", "trait:CUSTOM_X", fid)
    assert "trait:CUSTOM_X" not in ac.osc("flavor", "show", fid, fmt_json=True)["properties"]
    r = ac.compute("GET", f"/flavors/{fid}/os-extra_specs/trait:CUSTOM_X")
    assert nova_error(r, 404) == f"Flavor {fid} has no extra specs with key trait:CUSTOM_X."
    # the flavor embedded in a server (2.47+) carries its extra specs
    r = ac.compute("GET", "/flavors/detail", version=MAXV)
    listed = {x["id"]: x for x in r.json()["flavors"]}
    assert listed[fid]["extra_specs"] == {"hw:cpu_policy": "shared", "quota:disk_read_bytes_sec": "10240"}
    # a member reads, but does not set, extra specs
    u = project_user()
    assert ac.compute("GET", f"/flavors/{fid}/os-extra_specs", token=u["token"]).status_code == 200
    r = ac.compute("POST", f"/flavors/{fid}/os-extra_specs", token=u["token"],
                   json={"extra_specs": {"a": "b"}})
    nova_error(r, 403)
    ac.osc("flavor", "delete", fid)


# ------------------------------------------------------------------ services, hypervisors
@needs_qemu
def test_compute_services_and_hypervisors(ac):
    services = ac.osc(*NEW, "compute", "service", "list", fmt_json=True)
    computes = {s["Host"]: s for s in services if s["Binary"] == "nova-compute"}
    assert set(computes) == set(HOSTS), services
    for s in computes.values():
        assert (s["Zone"], s["Status"], s["State"]) == ("nova", "enabled", "up"), s
    binaries = {s["Binary"] for s in services}
    assert {"nova-scheduler", "nova-conductor"} <= binaries, binaries

    hypervisors = {h["Hypervisor Hostname"]: h for h in ac.osc(*NEW, "hypervisor", "list", fmt_json=True)}
    assert set(hypervisors) == set(HOSTS), hypervisors
    for h in hypervisors.values():
        assert h["State"] == "up" and h["Hypervisor Type"] == "fake", h
    assert "fake-2" in ac.osc(*NEW, "hypervisor", "show", "fake-2")
    detail = ac.compute("GET", "/os-hypervisors/detail", version="2.53").json()["hypervisors"]
    by_name = {h["hypervisor_hostname"]: h for h in detail}
    assert set(by_name) == set(HOSTS), detail
    h2 = by_name["fake-2"]
    assert (h2["service"]["host"], h2["status"], h2["state"]) == ("fake-2", "enabled", "up"), h2

    # a disabled compute service gets no new servers
    ac.osc(*NEW, "compute", "service", "set", "--disable", "--disable-reason", "e2e", "fake-1", "nova-compute")
    svc = [s for s in ac.osc(*NEW, "compute", "service", "list", "--host", "fake-1", "--long", fmt_json=True)
           if s["Binary"] == "nova-compute"][0]
    assert svc["Status"] == "disabled" and svc["Disabled Reason"] == "e2e", svc
    ids = create_servers(ac, 4, image=ac.image_id, flavor="42")
    try:
        hosts = {wait_server(ac, sid)["OS-EXT-SRV-ATTR:host"] for sid in ids}
        assert "fake-1" not in hosts and hosts <= {"fake-2", "fake-3"}, hosts
    finally:
        ac.osc(*NEW, "compute", "service", "set", "--enable", "fake-1", "nova-compute")
        delete_all(ac, ids)
    # members may not list services or hypervisors
    err = ac.osc_fail("compute", "service", "list", cloud="kumo")
    assert "403" in err, err
    err = ac.osc_fail("hypervisor", "list", cloud="kumo")
    assert "403" in err, err


def test_live_migration_between_fake_hosts(ac, project_user):
    """`openstack server migrate --live-migration` moves a server to another host: a
    `live-migration` record goes accepted -> completed, placement holds the server on the new
    host only, the action is recorded; Nova's refusals for bad bodies, states and hosts."""
    u = project_user()
    sid = u["osc"]("server", "create", "--image", ac.image_id, "--flavor", "42", "--no-network", unique("lm"),
                   fmt_json=True)["id"]
    try:
        source = wait_server(ac, sid)["OS-EXT-SRV-ATTR:host"]
        dest = next(h for h in HOSTS if h != source)
        act = lambda body, v="2.30", token=None: ac.compute("POST", f"/servers/{sid}/action", version=v,  # noqa: E731
                                                             json={"os-migrateLive": body}, token=token)
        # Nova's refusals: bad bodies (400), the server's own host, an unknown host, shared storage
        assert "is a required property" in nova_error(act({"host": None}), 400)
        assert "is a required property" in nova_error(act({"host": None, "block_migration": True}, v="2.24"), 400)
        nova_error(act({"host": None, "block_migration": "sometimes"}), 400)
        nova_error(act({"host": None, "block_migration": "auto", "force": True}, v="2.68"), 400)
        assert f"to current host ({source})" in nova_error(act({"host": source, "block_migration": "auto"}), 400)
        assert "could not be found" in nova_error(act({"host": "nowhere", "block_migration": "auto"}), 400)
        assert "shared storage" in nova_error(act({"host": None, "block_migration": False}), 400)
        # members may not (policy: admin), and the server is not there for another project's member
        nova_error(act({"host": None, "block_migration": "auto"}, token=u["token"]), 403)
        # a stopped server is not live-migrated
        ac.osc("server", "stop", sid)
        wait_server(ac, sid, "SHUTOFF")
        assert "in vm_state stopped" in nova_error(act({"host": dest, "block_migration": "auto"}), 409)
        ac.osc("server", "start", sid)
        wait_server(ac, sid)

        ac.osc("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", dest, sid)
        got = wait_server(ac, sid)
        assert got["OS-EXT-SRV-ATTR:host"] == dest and got["OS-EXT-STS:power_state"] == 1, got
        migs = ac.compute("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"]
        assert [(m["migration_type"], m["status"], m["source_compute"], m["dest_compute"]) for m in migs] == \
            [("live-migration", "completed", source, dest)], migs
        rps = {rp["uuid"]: rp["name"] for rp in ac.placement("GET", "/resource_providers").json()["resource_providers"]}
        allocs = ac.placement("GET", f"/allocations/{sid}").json()["allocations"]
        assert [rps[rp] for rp in allocs] == [dest], allocs
        assert ac.placement("GET", f"/allocations/{migs[0]['uuid']}").json()["allocations"] == {}, \
            "the migration still holds the source's resources"
        actions = ac.osc("server", "event", "list", sid, fmt_json=True)
        assert "live-migration" in {a["Action"] for a in actions}, actions

        # without a host the scheduler picks one that is not the source; a paused server moves too
        ac.osc("server", "pause", sid)
        wait_server(ac, sid, "PAUSED")
        r = act({"host": None, "block_migration": "auto"})
        assert r.status_code == 202, r.text
        got = wait_server(ac, sid, "PAUSED")
        assert got["OS-EXT-SRV-ATTR:host"] not in (dest,), got
        assert got["OS-EXT-STS:power_state"] == 3, got
    finally:
        delete_all(ac, [sid])


def test_cold_migration_confirm_and_revert(ac, project_user):
    """`openstack server migrate` (cold): the server stops, moves, waits in VERIFY_RESIZE on the
    new host with a `migration` record `finished`; confirm keeps it there (the source's claim
    goes), revert brings it back (the destination's claim goes); a stopped server stays stopped."""
    u = project_user()
    sid = u["osc"]("server", "create", "--image", ac.image_id, "--flavor", "42", "--no-network", unique("cm"),
                   fmt_json=True)["id"]
    rps = {rp["uuid"]: rp["name"] for rp in ac.placement("GET", "/resource_providers").json()["resource_providers"]}

    def held_on():
        return sorted(rps[rp] for rp in ac.placement("GET", f"/allocations/{sid}").json()["allocations"])

    try:
        source = wait_server(ac, sid)["OS-EXT-SRV-ATTR:host"]
        # a body before 2.56 must be null; a host only from 2.56
        r = ac.compute("POST", f"/servers/{sid}/action", version="2.55", json={"migrate": {"host": "fake-1"}})
        nova_error(r, 400)
        r = ac.compute("POST", f"/servers/{sid}/action", version="2.56", json={"migrate": {"host": source}})
        assert "to current host" in nova_error(r, 400)
        nova_error(ac.compute("POST", f"/servers/{sid}/action", version="2.56", json={"migrate": None},
                              token=u["token"]), 403)

        ac.osc("server", "migrate", sid)
        got = wait_server(ac, sid, "VERIFY_RESIZE")
        dest = got["OS-EXT-SRV-ATTR:host"]
        assert dest != source and got["OS-EXT-STS:power_state"] == 1, got
        migs = ac.compute("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"]
        assert [(m["migration_type"], m["status"], m["source_compute"], m["dest_compute"]) for m in migs] == \
            [("migration", "finished", source, dest)], migs
        ac.osc("server", "migrate", "confirm", sid)
        got = wait_server(ac, sid)
        assert got["OS-EXT-SRV-ATTR:host"] == dest, got
        assert held_on() == [dest]
        assert ac.placement("GET", f"/allocations/{migs[0]['uuid']}").json()["allocations"] == {}
        status = {m["migration_type"]: m["status"] for m in
                  ac.compute("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"]}
        assert status == {"migration": "confirmed"}, status

        # a stopped server moves stopped, and a revert brings it back where it was
        ac.osc("server", "stop", sid)
        wait_server(ac, sid, "SHUTOFF")
        ac.compute("POST", f"/servers/{sid}/action", version="2.56", json={"migrate": {"host": source}})
        got = wait_server(ac, sid, "VERIFY_RESIZE")
        assert got["OS-EXT-SRV-ATTR:host"] == source and got["OS-EXT-STS:power_state"] == 4, got
        assert held_on() == [source]
        ac.osc("server", "migrate", "revert", sid)
        got = wait_server(ac, sid, "SHUTOFF")
        assert got["OS-EXT-SRV-ATTR:host"] == dest, got
        assert held_on() == [dest]
        statuses = sorted(m["status"] for m in
                          ac.compute("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"])
        assert statuses == ["confirmed", "reverted"], statuses
    finally:
        delete_all(ac, [sid])
