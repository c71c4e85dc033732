"""Nova's proxy APIs (below microversion 2.36) over kumo's network and image services, and
the compute fixes the full compute Tempest list needed.

- `/os-security-groups`, `/os-security-group-rules`: what is made through compute is what the
  network service (and the `openstack` CLI, which talks to it) sees, and back; Nova's views,
  faults and messages; 404 from 2.36.
- `addSecurityGroup` / `removeSecurityGroup` and `GET /servers/{id}/os-security-groups`: the
  group on the server's ports.
- `/images`: the image service's images in Nova's view, delete, 404 from 2.36.
- `x-compute-request-id` (the id instance actions are found by), an ECDSA public key
  imported with `openstack keypair create`, and rebuild's answer below 2.75 (addresses
  without the OS-EXT-IPS keys).

A kumo of its own with the fake compute driver and no data plane. kumo only."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cloudlib import start_kumo, unique
from computelib import make_qcow2, nova_error, wait_gone, wait_server
from netlib import NetApi

pytestmark = pytest.mark.kumo_only("the compute, network and image services are kumo's")

CONF = "[fake]\nhosts = 1\n[network]\ndataplane = none\n[DEFAULT]\nvif_plugging_timeout = 20\n"
MISSING = "3df201cf-2451-44f2-8d25-a4ca826fc1f3"
OLD = "2.1"  # the proxy APIs' microversions end at 2.35


@pytest.fixture(scope="module")
def cc():
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) not installed")
    c = start_kumo(CONF)
    try:
        src = make_qcow2(c.workdir / "tiny.qcow2")
        c.image_id = c.osc("image", "create", "--file", src, "--disk-format", "qcow2", "--container-format",
                           "bare", "--public", unique("cirros"), fmt_json=True)["id"]
        auth = c.cloud_auth("kumo")
        c.demo_token = c.login(auth["username"], auth["password"], project=auth["project_name"])
        c.net = NetApi(c, c.demo_token)
        r = c.net("POST", "/networks", json={"network": {"name": unique("net")}})
        assert r.status_code == 201, r.text
        c.net_id = r.json()["network"]["id"]
        r = c.net("POST", "/subnets", json={"subnet": {"network_id": c.net_id, "cidr": "10.40.0.0/24",
                                                        "ip_version": 4}})
        assert r.status_code == 201, r.text
        yield c
    finally:
        c.stop()


def nova(c, method: str, path: str, version: str = OLD, **kw):
    """The demo user's request to compute at `version`."""
    return c.compute(method, path, token=c.demo_token, version=version, **kw)


def demo(c, *args, fmt_json=False):
    return c.osc(*args, cloud="kumo", fmt_json=fmt_json)


def new_group(c, name: str | None = None, description: str = "made through compute") -> dict:
    r = nova(c, "POST", "/os-security-groups",
             json={"security_group": {"name": name or unique("sg"), "description": description}})
    assert r.status_code == 200, r.text
    return r.json()["security_group"]


def boot(c) -> str:
    s = demo(c, "server", "create", "--image", c.image_id, "--flavor", "m1.nano", "--network", c.net_id, "--wait",
             unique("vm"), fmt_json=True)
    return s["id"]


def delete_server(c, sid: str):
    c.compute("DELETE", f"/servers/{sid}")
    wait_gone(c, sid)


# ------------------------------------------------------------------ security groups
def test_security_group_made_through_compute_is_the_network_services(cc):
    c = cc
    g = new_group(c, name=" spaced name ")
    assert set(g) == {"id", "name", "description", "tenant_id", "rules"}, g
    assert g["name"] == " spaced name " and g["rules"] == []
    # the CLI (the network API) sees it, with its egress rules that Nova does not show
    shown = demo(c, "security group", "show", g["id"], fmt_json=True)
    assert shown["name"] == " spaced name " and shown["description"] == "made through compute"
    # list and show answer the very same group
    listed = nova(c, "GET", "/os-security-groups").json()["security_groups"]
    assert g in listed
    assert nova(c, "GET", f"/os-security-groups/{g['id']}").json()["security_group"] == g
    # the default group is listed, with its rules from members of itself
    (default,) = [x for x in listed if x["name"] == "default"]
    assert default["rules"] and all(r["group"]["name"] == "default" and r["ip_range"] == {}
                                    for r in default["rules"]), default
    # update
    r = nova(c, "PUT", f"/os-security-groups/{g['id']}",
             json={"security_group": {"name": "renamed", "description": "new words"}})
    assert r.status_code == 200, r.text
    assert demo(c, "security group", "show", g["id"], fmt_json=True)["name"] == "renamed"
    # delete: 202, then 404 with the network service's message
    assert nova(c, "DELETE", f"/os-security-groups/{g['id']}").status_code == 202
    msg = nova_error(nova(c, "GET", f"/os-security-groups/{g['id']}"), 404)
    assert g["id"] in msg


def test_rules_through_compute(cc):
    c = cc
    g = new_group(c)
    src = new_group(c)
    try:
        r = nova(c, "POST", "/os-security-group-rules", json={"security_group_rule": {
            "parent_group_id": g["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": "22",
            "cidr": "10.0.0.0/8"}})
        assert r.status_code == 200, r.text
        rule = r.json()["security_group_rule"]
        assert rule == {"id": rule["id"], "parent_group_id": g["id"], "ip_protocol": "tcp", "from_port": 22,
                        "to_port": 22, "group": {}, "ip_range": {"cidr": "10.0.0.0/8"}}, rule
        # an ingress rule of the network service
        nrule = demo(c, "security group rule", "show", rule["id"], fmt_json=True)
        assert (nrule["direction"], nrule["ether_type"], nrule["port_range_min"], nrule["remote_ip_prefix"]) == \
            ("ingress", "IPv4", 22, "10.0.0.0/8"), nrule
        # the same rule again: Nova's 400
        again = nova(c, "POST", "/os-security-group-rules", json={"security_group_rule": {
            "parent_group_id": g["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
            "cidr": "10.0.0.0/8"}})
        assert nova_error(again, 400) == f"This rule already exists in group {g['id']}"
        # a rule from a group: all of TCP when no ports are given
        r = nova(c, "POST", "/os-security-group-rules", json={"security_group_rule": {
            "parent_group_id": g["id"], "ip_protocol": "tcp", "group_id": src["id"]}})
        assert r.status_code == 200, r.text
        grule = r.json()["security_group_rule"]
        assert (grule["from_port"], grule["to_port"], grule["ip_range"]) == (1, 65535, {}), grule
        assert grule["group"] == {"name": src["name"], "tenant_id": src["tenant_id"]}
        shown = nova(c, "GET", f"/os-security-groups/{g['id']}").json()["security_group"]
        assert sorted(x["id"] for x in shown["rules"]) == sorted([rule["id"], grule["id"]])
        # delete: 202, gone from the network service too
        assert nova(c, "DELETE", f"/os-security-group-rules/{rule['id']}").status_code == 202
        ids = [x["ID"] for x in demo(c, "security group rule", "list", g["id"], fmt_json=True)]
        assert rule["id"] not in ids and grule["id"] in ids
        nova_error(nova(c, "DELETE", f"/os-security-group-rules/{rule['id']}"), 404)
    finally:
        nova(c, "DELETE", f"/os-security-groups/{g['id']}")
        nova(c, "DELETE", f"/os-security-groups/{src['id']}")


@pytest.mark.parametrize("rule,message", [
    ({"ip_protocol": "tcp", "from_port": 30, "to_port": 20},
     "Invalid port range 30:20. Former value cannot be greater than the later"),
    ({"ip_protocol": "udp", "from_port": 0, "to_port": 20},
     "Invalid port range 0:20. Valid UDP ports should be between 1-65535"),
    ({"ip_protocol": "icmp", "from_port": 300, "to_port": 0},
     "Invalid port range 300:0. For ICMP, the type:code must be valid"),
    ({"ip_protocol": "gre", "from_port": 1, "to_port": 2}, "Invalid IP protocol gre."),
    ({"ip_protocol": "tcp", "from_port": "a", "to_port": 2},
     "Invalid input received: To and From ports must be integers"),
    ({"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/33"},
     "10.0.0.0/33 is not a valid IP network."),
    ({"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/0"},
     "Bad prefix for network in cidr 10.0.0.0/0"),
    ({"ip_protocol": "tcp"}, "Not enough parameters to build a valid rule."),
])
def test_bad_rules_are_novas_400s(cc, rule, message):
    c = cc
    g = new_group(c)
    try:
        r = nova(c, "POST", "/os-security-group-rules",
                 json={"security_group_rule": {"parent_group_id": g["id"], **rule}})
        assert nova_error(r, 400) == message
    finally:
        nova(c, "DELETE", f"/os-security-groups/{g['id']}")


def test_bad_security_group_requests(cc):
    c = cc
    r = nova(c, "POST", "/os-security-groups", json={"security_group": {"name": "x"}})
    assert "'description' is a required property" in nova_error(r, 400)
    r = nova(c, "POST", "/os-security-groups", json={"security_group": {"name": "x" * 256, "description": ""}})
    assert "is too long" in nova_error(r, 400)
    r = nova(c, "POST", "/os-security-groups", json={"security_group": {"name": 5, "description": ""}})
    assert "5 is not of type 'string'" in nova_error(r, 400)
    assert nova_error(nova(c, "GET", "/os-security-groups/not-a-uuid"), 400) == "Security group id should be uuid"
    nova_error(nova(c, "GET", f"/os-security-groups/{MISSING}"), 404)
    nova_error(nova(c, "PUT", f"/os-security-groups/{MISSING}",
                    json={"security_group": {"name": "a", "description": "b"}}), 404)
    nova_error(nova(c, "DELETE", f"/os-security-groups/{MISSING}"), 404)
    nova_error(nova(c, "DELETE", "/os-security-groups"), 404)
    r = nova(c, "POST", "/os-security-group-rules", json={"security_group_rule": {"parent_group_id": "x"}})
    assert "'x' is not a 'uuid'" in nova_error(r, 400)
    r = nova(c, "POST", "/os-security-group-rules", json={"security_group_rule": {
        "parent_group_id": MISSING, "ip_protocol": "tcp", "from_port": 1, "to_port": 2}})
    nova_error(r, 404)
    # the default group cannot go: the network service's 409 is Nova's 400
    listed = nova(c, "GET", "/os-security-groups").json()["security_groups"]
    (default,) = [x for x in listed if x["name"] == "default"]
    nova_error(nova(c, "DELETE", f"/os-security-groups/{default['id']}"), 400)


def test_proxies_are_gone_from_2_36(cc):
    c = cc
    g = new_group(c)
    try:
        assert nova(c, "GET", "/os-security-groups", version="2.35").status_code == 200
        for method, path in [("GET", "/os-security-groups"), ("GET", f"/os-security-groups/{g['id']}"),
                             ("DELETE", f"/os-security-groups/{g['id']}"),
                             ("POST", "/os-security-group-rules"), ("GET", "/images"),
                             ("GET", "/images/detail"), ("GET", f"/images/{c.image_id}"),
                             ("DELETE", f"/images/{c.image_id}")]:
            kw = {"json": {"security_group_rule": {"parent_group_id": g["id"]}}} if method == "POST" else {}
            r = nova(c, method, path, version="2.36", **kw)
            assert nova_error(r, 404) == "The resource could not be found.", (method, path)
        # still there
        demo(c, "security group", "show", g["id"], fmt_json=True)
        demo(c, "image", "show", c.image_id, fmt_json=True)
    finally:
        nova(c, "DELETE", f"/os-security-groups/{g['id']}")


def test_server_security_groups_are_its_ports(cc):
    c = cc
    # a group made with the CLI (the network service) and named to compute
    name = unique("web")
    gid = demo(c, "security group", "create", name, fmt_json=True)["id"]
    sid = boot(c)
    try:
        before = [g["name"] for g in nova(c, "GET", f"/servers/{sid}/os-security-groups").json()["security_groups"]]
        assert before == ["default"], before
        r = nova(c, "POST", f"/servers/{sid}/action", json={"addSecurityGroup": {"name": name}})
        assert r.status_code == 202, r.text
        (port,) = demo(c, "port", "list", "--server", sid, "--long", fmt_json=True)
        assert gid in port["Security Groups"], port
        groups = nova(c, "GET", f"/servers/{sid}/os-security-groups").json()["security_groups"]
        assert sorted(g["name"] for g in groups) == sorted(["default", name]), groups
        assert name in [g["name"] for g in demo(c, "server", "show", sid, fmt_json=True)["security_groups"]]
        # in use: Nova's 400
        nova_error(nova(c, "DELETE", f"/os-security-groups/{gid}"), 400)
        # unknown group, empty name
        msg = nova_error(nova(c, "POST", f"/servers/{sid}/action", json={"addSecurityGroup": {"name": "nope"}}),
                         404)
        assert msg.startswith("Security group nope is not found for project"), msg
        nova_error(nova(c, "POST", f"/servers/{sid}/action", json={"addSecurityGroup": {"name": ""}}), 400)
        # remove, and again: not on the server any more
        r = nova(c, "POST", f"/servers/{sid}/action", json={"removeSecurityGroup": {"name": name}})
        assert r.status_code == 202, r.text
        (port,) = demo(c, "port", "list", "--server", sid, "--long", fmt_json=True)
        assert gid not in port["Security Groups"], port
        msg = nova_error(nova(c, "POST", f"/servers/{sid}/action", json={"removeSecurityGroup": {"name": name}}),
                         404)
        assert msg == f"Security group {name} not associated with the instance {sid}"
        nova_error(nova(c, "GET", f"/servers/{MISSING}/os-security-groups"), 404)
    finally:
        delete_server(c, sid)
        demo(c, "security group", "delete", gid)


# ------------------------------------------------------------------ images
def test_image_proxy_shows_lists_and_deletes(cc):
    c = cc
    r = nova(c, "GET", f"/images/{c.image_id}")
    assert r.status_code == 200, r.text
    img = r.json()["image"]
    assert (img["status"], img["progress"], img["minRam"], img["minDisk"]) == ("ACTIVE", 100, 0, 0), img
    assert {lk["rel"] for lk in img["links"]} == {"self", "bookmark", "alternate"}
    assert img["OS-EXT-IMG-SIZE:size"] > 0 and "server" not in img
    listed = nova(c, "GET", "/images").json()["images"]
    assert {"id", "name", "links"} == set(next(i for i in listed if i["id"] == c.image_id))
    detail = nova(c, "GET", "/images/detail").json()["images"]
    assert img in detail
    page = nova(c, "GET", "/images?limit=1").json()
    assert len(page["images"]) == 1 and page["images_links"][0]["rel"] == "next", page
    nova_error(nova(c, "GET", f"/images/{MISSING}"), 404)

    # a snapshot: its server and metadata, then delete through compute
    sid = boot(c)
    try:
        r = nova(c, "POST", f"/servers/{sid}/action",
                 json={"createImage": {"name": unique("snap"), "metadata": {"image_type": "test"}}})
        assert r.status_code == 202, r.text
        snap = r.headers["location"].rsplit("/", 1)[1]
        wait_server(c, sid)
        shot = nova(c, "GET", f"/images/{snap}").json()["image"]
        assert shot["server"]["id"] == sid and shot["metadata"]["image_type"] == "test", shot
        assert nova(c, "GET", f"/images/detail?server={sid}").json()["images"] == [shot]
        assert nova(c, "DELETE", f"/images/{snap}").status_code == 204
        assert nova_error(nova(c, "GET", f"/images/{snap}"), 404) == "Image not found."
        assert nova_error(nova(c, "DELETE", f"/images/{snap}"), 404) == "Image not found."
    finally:
        delete_server(c, sid)


# ------------------------------------------------------------------ the other fixes
def test_compute_request_id_finds_the_action(cc):
    c = cc
    r = nova(c, "GET", "/flavors")
    assert r.headers["x-compute-request-id"] == r.headers["x-openstack-request-id"]
    r = nova(c, "POST", "/servers", json={"server": {"name": unique("vm"), "imageRef": c.image_id,
                                                     "flavorRef": "42", "networks": [{"uuid": c.net_id}]}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    try:
        rid = r.headers["x-compute-request-id"]
        assert rid.startswith("req-")
        wait_server(c, sid)
        a = nova(c, "GET", f"/servers/{sid}/os-instance-actions/{rid}")
        assert a.status_code == 200 and a.json()["instanceAction"]["action"] == "create", a.text
    finally:
        delete_server(c, sid)


def test_ecdsa_public_key_imports(cc):
    c = cc
    key = c.workdir / unique("ecdsa")
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(key)], check=True)
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", f"{key}.pub"], check=True, capture_output=True,
                        text=True).stdout.split()[1].removeprefix("MD5:")
    name = unique("key")
    k = demo(c, "keypair", "create", "--public-key", f"{key}.pub", name, fmt_json=True)
    try:
        assert k["fingerprint"] == fp, k
    finally:
        demo(c, "keypair", "delete", name)


def test_rebuild_answer_below_2_75_has_plain_addresses(cc):
    c = cc
    sid = boot(c)
    try:
        r = nova(c, "POST", f"/servers/{sid}/action", json={"rebuild": {"imageRef": c.image_id}})
        assert r.status_code == 202, r.text
        answered = r.json()["server"]
        ips = [ip for net in answered["addresses"].values() for ip in net]
        assert ips and all(set(ip) == {"addr", "version"} for ip in ips), answered["addresses"]
        assert not any(k.startswith("OS-EXT-") for k in answered), answered
        s = wait_server(c, sid)
        assert all("OS-EXT-IPS:type" in ip for net in s["addresses"].values() for ip in net)
    finally:
        delete_server(c, sid)
