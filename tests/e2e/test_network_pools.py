"""Subnets allocated from subnet pools, through the real `openstack` CLI and raw HTTP: a
prefix length or an explicit cidr from a named pool, `--use-default-subnet-pool`, prefix bounds,
the per-project prefix quota, one default pool per IP version, pools in use, and Neutron's
errors for each. kumo only."""

from __future__ import annotations

import pytest

from cloudlib import unique
from netlib import NetApi, admin_api, demo_api, neutron_error, osc_demo

pytestmark = pytest.mark.kumo_only("the network service is kumo's")


@pytest.fixture(scope="module")
def admin(cloud):
    return admin_api(cloud)


@pytest.fixture(scope="module")
def demo(cloud):
    return demo_api(cloud)


@pytest.fixture(scope="module")
def default_pool(cloud, admin):
    """The cloud's shared default IPv4 pool (10.150.0.0/16, /24 by default, /28 at most)."""
    pool = cloud.osc("subnet", "pool", "create", "--default", "--share",
                     "--pool-prefix", "10.150.0.0/16", "--default-prefix-length", "24",
                     "--max-prefix-length", "28", unique("default-v4"), fmt_json=True)
    yield pool
    for s in admin("GET", f"/subnets?subnetpool_id={pool['id']}").json()["subnets"]:
        admin("DELETE", f"/subnets/{s['id']}")
    admin("DELETE", f"/subnetpools/{pool['id']}")


def demo_net(cloud):
    return osc_demo(cloud, "network", "create", unique("poolnet"), fmt_json=True)


def test_subnets_from_a_pool(cloud, admin, demo, default_pool):
    pid = default_pool["id"]
    assert default_pool["is_default"] in (True, "True") and default_pool["shared"] in (True, "True")
    net = demo_net(cloud)
    a = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                 "--prefix-length", "26", unique("a"), fmt_json=True)
    assert a["cidr"] == "10.150.0.0/26" and a["subnetpool_id"] == pid, a
    assert a["gateway_ip"] == "10.150.0.1"
    shown = demo("GET", f"/subnets/{a['id']}").json()["subnet"]
    assert shown["subnetpool_id"] == pid and "prefixlen" not in shown
    # the pool's default length; the hole after the /26 is kept for smaller requests
    net2 = demo_net(cloud)
    b = osc_demo(cloud, "subnet", "create", "--network", net2["id"], "--use-default-subnet-pool",
                 unique("b"), fmt_json=True)
    assert b["cidr"] == "10.150.1.0/24" and b["subnetpool_id"] == pid, b
    c = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                 "--subnet-range", "10.150.0.64/27", unique("c"), fmt_json=True)
    assert c["cidr"] == "10.150.0.64/27", c
    d = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                 "--prefix-length", "27", unique("d"), fmt_json=True)
    assert d["cidr"] == "10.150.0.96/27", d
    assert {s["id"] for s in demo("GET", f"/subnets?subnetpool_id={pid}").json()["subnets"]} >= {
        a["id"], b["id"], c["id"], d["id"]}

    def post(body):
        return demo("POST", "/subnets", json={"subnet": {"network_id": net2["id"], "ip_version": 4, **body}})

    # an explicit cidr must be free and inside the pool
    for cidr in ("10.150.0.0/28", "192.168.77.0/24"):
        msg = neutron_error(post({"subnetpool_id": pid, "cidr": cidr}), 409, "SubnetAllocationError")
        assert msg == ("Failed to allocate subnet: Cannot allocate requested subnet from the "
                       "available set of prefixes."), msg
    msg = neutron_error(post({"subnetpool_id": pid, "prefixlen": 30}), 400, "MaxPrefixSubnetAllocationError")
    assert msg == "Unable to allocate subnet with prefix length 30, maximum allowed prefix is 28.", msg
    msg = neutron_error(post({"subnetpool_id": pid, "prefixlen": 4}), 400, "MinPrefixSubnetAllocationError")
    assert msg == "Unable to allocate subnet with prefix length 4, minimum allowed prefix is 8.", msg
    msg = neutron_error(post({"subnetpool_id": pid, "cidr": "10.150.9.0/24", "prefixlen": 24}), 400, "BadRequest")
    assert msg == "Bad subnets request: cidr and prefixlen must not be supplied together.", msg
    msg = neutron_error(post({"subnetpool_id": pid, "use_default_subnetpool": True}), 400, "BadRequest")
    assert msg == "Bad subnets request: subnetpool_id and use_default_subnetpool cannot both be specified.", msg
    msg = neutron_error(post({"subnetpool_id": pid, "allocation_pools": [
        {"start": "10.150.9.10", "end": "10.150.9.20"}]}), 400, "BadRequest")
    # Neutron's message ends in a period and BadRequest adds one
    assert msg == "Bad subnets request: allocation_pools allowed only for specific subnet requests..", msg
    msg = neutron_error(post({"subnetpool_id": pid, "ip_version": 6}), 400, "BadRequest")
    assert msg == "Bad subnets request: Cannot allocate IPv6 subnet from IPv4 subnet pool.", msg
    msg = neutron_error(post({"use_default_subnetpool": True, "ip_version": 6}), 400, "BadRequest")
    assert msg == "Bad subnets request: No default subnetpool found for IPv6.", msg
    neutron_error(post({"subnetpool_id": "0" * 32}), 404, "SubnetPoolNotFound")
    # subnets of one network and IP version come from one pool
    msg = neutron_error(post({"cidr": "192.168.78.0/24"}), 400, "NetworkSubnetPoolAffinityError")
    assert msg == "Subnets hosted on the same network must be allocated from the same subnet pool.", msg

    # one default pool per IP version
    r = admin("POST", "/subnetpools", json={"subnetpool": {
        "name": unique("second"), "prefixes": ["10.151.0.0/16"], "is_default": True}})
    msg = neutron_error(r, 400, "InvalidInput")
    assert msg == ("Invalid input for operation: A default subnetpool for this IP family has already "
                   "been set. Only one default may exist per IP family."), msg
    # a pool with subnets cannot go; without them it can
    msg = neutron_error(admin("DELETE", f"/subnetpools/{pid}"), 400, "SubnetPoolDeleteError")
    assert msg == "Unable to delete subnet pool: Subnet pool has existing allocations.", msg
    for s in (a, c, d):
        osc_demo(cloud, "subnet", "delete", s["id"])
    osc_demo(cloud, "network", "delete", net2["id"])
    # freed prefixes are given again
    again = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                     "--prefix-length", "26", unique("again"), fmt_json=True)
    assert again["cidr"] == "10.150.0.0/26", again
    osc_demo(cloud, "network", "delete", net["id"])


def test_pool_quota_and_bounds(cloud, admin, demo):
    pool = cloud.osc("subnet", "pool", "create", "--share", "--pool-prefix", "10.152.0.0/24",
                     "--default-prefix-length", "26", "--default-quota", "128",
                     unique("quota"), fmt_json=True)
    pid = pool["id"]
    net = demo_net(cloud)
    try:
        first = osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                         unique("q1"), fmt_json=True)
        assert first["cidr"] == "10.152.0.0/26"
        osc_demo(cloud, "subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                 "--prefix-length", "26", unique("q2"), fmt_json=True)
        # 2 x /26 = 128 addresses: the quota is used up (counted per project)
        r = demo("POST", "/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                      "subnetpool_id": pid, "prefixlen": 28}})
        msg = neutron_error(r, 409, "SubnetPoolQuotaExceeded")
        assert msg == "Per-project subnet pool prefix quota exceeded.", msg
        err = cloud.osc_fail("subnet", "create", "--network", net["id"], "--subnet-pool", pid,
                             unique("q3"), cloud="kumo")
        assert "quota exceeded" in err, err
        # the admin project has its own quota
        admin_net = cloud.osc("network", "create", unique("adm"), fmt_json=True)
        adm = cloud.osc("subnet", "create", "--network", admin_net["id"], "--subnet-pool", pid,
                        "--prefix-length", "26", unique("adm1"), fmt_json=True)
        assert adm["cidr"] == "10.152.0.128/26", adm
        cloud.osc("network", "delete", admin_net["id"])
    finally:
        osc_demo(cloud, "network", "delete", net["id"])
        cloud.osc("subnet", "pool", "delete", pid)
    # a full pool
    small = cloud.osc("subnet", "pool", "create", "--pool-prefix", "10.154.0.0/26",
                      "--default-prefix-length", "26", unique("small"), fmt_json=True)
    admin_net = cloud.osc("network", "create", unique("adm"), fmt_json=True)
    try:
        cloud.osc("subnet", "create", "--network", admin_net["id"], "--subnet-pool", small["id"],
                  unique("full"), fmt_json=True)
        r = admin("POST", "/subnets", json={"subnet": {"network_id": admin_net["id"], "ip_version": 4,
                                                       "subnetpool_id": small["id"], "prefixlen": 27}})
        msg = neutron_error(r, 409, "SubnetAllocationError")
        assert msg == "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /27.", msg
    finally:
        cloud.osc("network", "delete", admin_net["id"])
        cloud.osc("subnet", "pool", "delete", small["id"])
    # prefix bounds of a pool
    r = admin("POST", "/subnetpools", json={"subnetpool": {
        "prefixes": ["10.153.0.0/16"], "min_prefixlen": 24, "max_prefixlen": 20}})
    msg = neutron_error(r, 400, "IllegalSubnetPoolPrefixBounds")
    assert msg == "Illegal prefix bounds: min_prefixlen=24, max_prefixlen=20.", msg
    r = admin("POST", "/subnetpools", json={"subnetpool": {
        "prefixes": ["10.153.0.0/16", "2001:db8::/32"]}})
    neutron_error(r, 400, "PrefixVersionMismatch")


@pytest.fixture()
def fresh_project(cloud):
    """A project of its own (no network yet) with a member user; yields (project, NetApi, osc args)."""
    project = cloud.create_project(unique("auto"))
    password = "secret-" + unique("pw")
    user = cloud.create_user(unique("auto-user"), password)
    cloud.grant("member", project_id=project["id"], user_id=user["id"])
    cloud.grant("reader", project_id=project["id"], user_id=user["id"])
    token = cloud.login(user["name"], password, project=project["name"])
    yield project, NetApi(cloud, token), (user["name"], password, project["name"])
    admin = admin_api(cloud)
    for r in admin("GET", f"/routers?project_id={project['id']}").json()["routers"]:
        for p in admin("GET", f"/ports?device_id={r['id']}&device_owner=network:router_interface").json()["ports"]:
            admin("PUT", f"/routers/{r['id']}/remove_router_interface", json={"port_id": p["id"]})
        admin("DELETE", f"/routers/{r['id']}")
    for n in admin("GET", f"/networks?project_id={project['id']}").json()["networks"]:
        admin("DELETE", f"/networks/{n['id']}")
    cloud.delete("users", user["id"])
    cloud.delete("projects", project["id"])


def test_auto_allocated_topology(cloud, admin, default_pool, fresh_project):
    project, api, (user, password, pname) = fresh_project
    pid = project["id"]

    def osc_user(*args, fmt_json=False):
        return cloud.osc_as(user, password, *args, project=pname, fmt_json=fmt_json)

    path = f"/auto-allocated-topology/{pid}"
    msg = neutron_error(api("GET", path + "?fields=dry-run"), 409, "AutoAllocationFailure")
    assert msg == "Deployment error: No default router:external network.", msg
    neutron_error(api("GET", path), 409, "AutoAllocationFailure")
    err = cloud.osc_fail(*cloud.password_auth_args(user, password, pname), "network", "auto", "allocated",
                         "topology", "create", "--check-resources", cloud=None)
    assert "No default router:external network" in err, err
    ext = cloud.osc("network", "create", "--external", "--default", unique("ext"), fmt_json=True)
    try:
        assert ext["is_default"] in (True, "True"), ext
        cloud.osc("subnet", "create", "--network", ext["id"], "--subnet-range", "172.24.70.0/24",
                  "--no-dhcp", unique("ext-sub"))
        r = admin("POST", "/networks", json={"network": {"name": unique("ext2"), "router:external": True,
                                                         "is_default": True}})
        msg = neutron_error(r, 409, "DefaultExternalNetworkExists")
        assert msg == f"A default external network already exists: {ext['id']}.", msg
        # only admins say which network is the default
        r = api("POST", "/networks", json={"network": {"name": unique("x"), "is_default": False}})
        neutron_error(r, 403, "PolicyNotAuthorized")
        # succeeds now (the client shows its own `dry_run` column, empty with Neutron too)
        osc_user("network", "auto", "allocated", "topology", "create", "--check-resources")
        assert api("GET", path + "?fields=dry-run").json()["auto_allocated_topology"] == {
            "id": "dry-run=pass", "tenant_id": pid, "project_id": pid}
        assert api("GET", path + "?fields=bogus").status_code == 400
        # another project's topology is not for a member
        other = admin("GET", "/networks").json()["networks"][0]["project_id"]
        neutron_error(api("GET", f"/auto-allocated-topology/{other}"), 403, "NotAuthorized")

        # concurrent first calls build one topology
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: api("GET", path), range(4)))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        ids = {a.json()["auto_allocated_topology"]["id"] for a in answers}
        assert len(ids) == 1, ids
        (net_id,) = ids
        made = osc_user("network", "auto", "allocated", "topology", "create", fmt_json=True)
        assert made["id"] == net_id, made
        nets = api("GET", f"/networks?project_id={pid}").json()["networks"]
        assert [n["name"] for n in nets] == ["auto_allocated_network"], nets
        assert nets[0]["admin_state_up"] is True and nets[0]["is_default"] is None
        (sub,) = api("GET", f"/subnets?network_id={net_id}").json()["subnets"]
        assert sub["subnetpool_id"] == default_pool["id"] and sub["name"] == "auto_allocated_subnet_v4", sub
        assert sub["cidr"].startswith("10.150.") and sub["cidr"].endswith("/24"), sub
        (router,) = api("GET", f"/routers?project_id={pid}").json()["routers"]
        assert router["name"] == "auto_allocated_router", router
        assert router["external_gateway_info"]["network_id"] == ext["id"], router
        ifaces = api("GET", f"/ports?device_id={router['id']}&device_owner=network:router_interface").json()["ports"]
        assert [p["fixed_ips"][0]["subnet_id"] for p in ifaces] == [sub["id"]], ifaces

        osc_user("network", "auto", "allocated", "topology", "delete")
        assert api("GET", f"/networks?project_id={pid}").json()["networks"] == []
        assert api("GET", f"/routers?project_id={pid}").json()["routers"] == []
        assert api("DELETE", path).status_code == 204  # nothing left: still fine
    finally:
        cloud.osc("network", "delete", ext["id"])
