"""Subnets allocated from subnet pools, through the real `openstack` CLI and raw HTTP: a
prefix length or an explicit cidr from a named pool, `--use-default-subnet-pool`, prefix bounds,
the per-project prefix quota, one default pool per IP version, pools in use, and Neutron's
errors for each. kumo only."""

from __future__ import annotations

import pytest

from cloudlib import unique
from netlib import admin_api, demo_api, neutron_error, osc_demo

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
