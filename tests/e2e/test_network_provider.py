"""Provider networks (the `provider` extension) through the real `openstack` CLI and raw HTTP, on
a kumo of its own with `[network] network_vlan_ranges = physnet1:100:199` (API only, no data
plane): admins create local/flat/vlan/vxlan networks with ML2's checks and 409s for a segment in
use, tenant networks get the next free VNI, members neither see nor set the attributes, and a
segmentation id cannot change under bound ports. kumo only."""

from __future__ import annotations

import pytest

from cloudlib import start_kumo, unique
from netlib import NetApi, neutron_error

pytestmark = pytest.mark.kumo_only("the network service is kumo's")

CONF = ("[network]\ndataplane = none\nnetwork_vlan_ranges = physnet1:100:199,physnet2\n"
        "flat_networks = physnet1,physnet3\nvni_ranges = 500:600\n")
PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


@pytest.fixture(scope="module")
def pc():
    c = start_kumo(CONF)
    try:
        auth = c.cloud_auth("kumo")
        c.demo = NetApi(c, c.login(auth["username"], auth["password"], project=auth["project_name"]))
        c.adm = NetApi(c, c.admin_token)
        yield c
    finally:
        c.stop()


def provider_of(net: dict) -> tuple:
    return tuple(net.get(k) for k in PROVIDER)


def test_admin_provider_networks(pc):
    vlan = pc.osc("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                  "physnet1", "--provider-segment", "120", unique("vlan"), fmt_json=True)
    assert provider_of(vlan) == ("vlan", "physnet1", 120), vlan
    err = pc.osc_fail("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                      "physnet1", "--provider-segment", "120", unique("vlan"))
    assert "The VLAN 120 on physical network physnet1 is in use" in err, err
    body = {"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                        "provider:segmentation_id": 120}}
    msg = neutron_error(pc.adm("POST", "/networks", json=body), 409, "VlanIdInUse")
    assert msg == "Unable to create the network. The VLAN 120 on physical network physnet1 is in use.", msg
    # no id: the first free one of the physnet's range
    partial = pc.osc("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                     "physnet1", unique("vlan"), fmt_json=True)
    assert provider_of(partial) == ("vlan", "physnet1", 100), partial
    # an admin's VLAN outside the ranges, on a physnet without a range
    p2 = pc.osc("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                "physnet2", "--provider-segment", "7", unique("vlan"), fmt_json=True)
    assert provider_of(p2) == ("vlan", "physnet2", 7), p2
    flat = pc.osc("network", "create", "--provider-network-type", "flat", "--provider-physical-network",
                  "physnet3", unique("flat"), fmt_json=True)
    assert provider_of(flat) == ("flat", "physnet3", None), flat
    body = {"network": {"provider:network_type": "flat", "provider:physical_network": "physnet3"}}
    msg = neutron_error(pc.adm("POST", "/networks", json=body), 409, "FlatNetworkInUse")
    assert msg == "Unable to create the flat network. Physical network physnet3 is in use.", msg
    vx = pc.osc("network", "create", "--provider-network-type", "vxlan", "--provider-segment", "5000",
                unique("vx"), fmt_json=True)
    assert provider_of(vx) == ("vxlan", None, 5000), vx
    body = {"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 5000}}
    msg = neutron_error(pc.adm("POST", "/networks", json=body), 409, "TunnelIdInUse")
    assert msg == "Unable to create the network. The tunnel ID 5000 is in use.", msg
    local = pc.osc("network", "create", "--provider-network-type", "local", unique("local"), fmt_json=True)
    assert provider_of(local) == ("local", None, None), local

    bad = [
        ({"provider:physical_network": "physnet1"}, "network_type required"),
        ({"provider:network_type": "gre"}, "network_type value 'gre' not supported"),
        ({"provider:network_type": "flat"}, "physical_network required for flat provider network"),
        ({"provider:network_type": "flat", "provider:physical_network": "physnet2"},
         "physical_network 'physnet2' unknown for flat provider network"),
        ({"provider:network_type": "vlan", "provider:physical_network": "physnet9"},
         "physical_network 'physnet9' unknown for VLAN provider network"),
        ({"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 4095},
         "segmentation_id out of range (1 through 4094)"),
        ({"provider:network_type": "vlan", "provider:segmentation_id": 12},
         "segmentation_id requires physical_network for VLAN provider network"),
        ({"provider:network_type": "vxlan", "provider:physical_network": "physnet1"},
         "provider:physical_network specified for vxlan network"),
        ({"provider:network_type": "local", "provider:segmentation_id": 3},
         "segmentation_id prohibited for local provider network"),
    ]
    for attrs, reason in bad:
        msg = neutron_error(pc.adm("POST", "/networks", json={"network": attrs}), 400, "InvalidInput")
        assert msg == f"Invalid input for operation: {reason}.", (attrs, msg)
    r = pc.adm("POST", "/networks", json={"network": {"provider:network_type": "vxlan",
                                                      "provider:segmentation_id": "x"}})
    neutron_error(r, 400)
    listed = pc.adm("GET", "/networks?provider:network_type=vlan&provider:physical_network=physnet1").json()
    assert {n["id"] for n in listed["networks"]} == {vlan["id"], partial["id"]}, listed
    # deleting frees the segment
    pc.osc("network", "delete", flat["id"])
    again = pc.osc("network", "create", "--provider-network-type", "flat", "--provider-physical-network",
                   "physnet3", unique("flat"), fmt_json=True)
    assert provider_of(again) == ("flat", "physnet3", None)


def test_tenant_networks_and_members(pc):
    mine = pc.demo("POST", "/networks", json={"network": {"name": unique("t")}})
    assert mine.status_code == 201, mine.text
    net = mine.json()["network"]
    assert not set(PROVIDER) & set(net), net
    assert not set(PROVIDER) & set(pc.demo("GET", f"/networks/{net['id']}").json()["network"])
    shown = pc.adm("GET", f"/networks/{net['id']}").json()["network"]
    assert shown["provider:network_type"] == "vxlan" and shown["provider:physical_network"] is None, shown
    assert 500 <= shown["provider:segmentation_id"] <= 600, shown
    second = pc.demo("POST", "/networks", json={"network": {"name": unique("t")}}).json()["network"]
    vni2 = pc.adm("GET", f"/networks/{second['id']}").json()["network"]["provider:segmentation_id"]
    assert vni2 != shown["provider:segmentation_id"]
    r = pc.demo("POST", "/networks", json={"network": {"provider:network_type": "vxlan"}})
    msg = neutron_error(r, 403, "PolicyNotAuthorized")
    assert msg == "(rule:create_network and rule:create_network:provider:network_type) is disallowed by policy", msg
    r = pc.demo("PUT", f"/networks/{net['id']}", json={"network": {"provider:segmentation_id": 700}})
    neutron_error(r, 403, "PolicyNotAuthorized")
    err = pc.osc_fail("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                      "physnet1", unique("n"), cloud="kumo")
    assert "disallowed by policy" in err, err


def test_provider_updates(pc):
    net = pc.osc("network", "create", "--provider-network-type", "vlan", "--provider-physical-network",
                 "physnet1", "--provider-segment", "150", unique("upd"), fmt_json=True)
    pc.osc("network", "set", "--provider-segment", "151", net["id"])
    shown = pc.adm("GET", f"/networks/{net['id']}").json()["network"]
    assert shown["provider:segmentation_id"] == 151, shown
    r = pc.adm("PUT", f"/networks/{net['id']}", json={"network": {"provider:network_type": "vxlan"}})
    msg = neutron_error(r, 400, "InvalidInput")
    assert msg == ("Invalid input for operation: Plugin does not support updating the following provider "
                   "network attributes: provider:network_type, provider:physical_network."), msg
    # a port that is not bound does not stop the change; a bound one does
    pc.osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.99.0.0/24", unique("s"))
    port = pc.osc("port", "create", "--network", net["id"], unique("p"), fmt_json=True)
    pc.osc("network", "set", "--provider-segment", "152", net["id"])
    pc.osc("port", "set", "--host", "host-1", port["id"])
    r = pc.adm("PUT", f"/networks/{net['id']}", json={"network": {"provider:segmentation_id": 153}})
    msg = neutron_error(r, 400, "InvalidInput")
    assert msg == ("Invalid input for operation: Provider network attribute provider:segmentation_id cannot be "
                   "updated if any port in the network has not the following binding:vif_type: unbound, "
                   "binding_failed."), msg
    assert pc.adm("GET", f"/networks/{net['id']}").json()["network"]["provider:segmentation_id"] == 152
    # the same value is no change
    r = pc.adm("PUT", f"/networks/{net['id']}", json={"network": {"provider:segmentation_id": 152}})
    assert r.status_code == 200, r.text
    pc.osc("port", "delete", port["id"])
    r = pc.adm("PUT", f"/networks/{net['id']}", json={"network": {"provider:segmentation_id": 130}})
    assert r.status_code == 200, r.text
    other = pc.adm("POST", "/networks", json={"network": {"provider:network_type": "vlan",
                                                          "provider:physical_network": "physnet1",
                                                          "provider:segmentation_id": 199}}).json()["network"]
    r = pc.adm("PUT", f"/networks/{net['id']}", json={"network": {"provider:segmentation_id": 199}})
    neutron_error(r, 409, "VlanIdInUse")
    pc.adm("DELETE", f"/networks/{other['id']}")
