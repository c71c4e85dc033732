"""Security groups and their rules (Neutron's security-group extension) through the real
`openstack` CLI and raw HTTP: the per-project default group, rule validation errors in Neutron's
body, duplicates, project scoping, in-use and quotas. kumo only."""

from __future__ import annotations

import json

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


def rules_of(sg) -> list:
    rules = sg.get("security_group_rules", sg.get("rules"))
    return json.loads(rules) if isinstance(rules, str) else rules


def test_extensions_and_discovery(demo):
    aliases = {e["alias"] for e in demo("GET", "/extensions").json()["extensions"]}
    assert {"security-group", "stateful-security-group", "security-groups-normalized-cidr"} <= aliases
    colls = {x["collection"] for x in demo("GET", "/").json()["resources"]}
    assert {"security-groups", "security-group-rules"} <= colls


def test_default_group(cloud, demo):
    groups = demo("GET", "/security-groups", params={"name": "default"}).json()["security_groups"]
    assert len(groups) == 1, groups
    d = groups[0]
    assert d["description"] == "Default security group" and d["stateful"] is True
    rules = d["security_group_rules"]
    assert sorted((r["direction"], r["ethertype"], r["remote_group_id"]) for r in rules) == sorted([
        ("egress", "IPv4", None), ("egress", "IPv6", None),
        ("ingress", "IPv4", d["id"]), ("ingress", "IPv6", d["id"])])
    assert all(r["belongs_to_default_sg"] is True for r in rules)
    # one per project, whatever the number of lists
    again = demo("GET", "/security-groups").json()["security_groups"]
    assert [g["id"] for g in again if g["name"] == "default"] == [d["id"]]
    # "default" is reserved; the default group can be neither renamed nor deleted by its project
    msg = neutron_error(demo("POST", "/security-groups", json={"security_group": {"name": "default"}}),
                        409, "SecurityGroupDefaultAlreadyExists")
    assert msg == "Default security group already exists."
    neutron_error(demo("PUT", f"/security-groups/{d['id']}", json={"security_group": {"name": "x"}}),
                  409, "SecurityGroupCannotUpdateDefault")
    neutron_error(demo("DELETE", f"/security-groups/{d['id']}"), 409, "SecurityGroupCannotRemoveDefault")
    err = cloud.osc_fail("security", "group", "delete", d["id"], cloud="kumo")
    assert "default security group" in err, err
    # its description may change
    r = demo("PUT", f"/security-groups/{d['id']}", json={"security_group": {"description": "dd"}})
    assert r.status_code == 200 and r.json()["security_group"]["description"] == "dd", r.text
    demo("PUT", f"/security-groups/{d['id']}",
         json={"security_group": {"description": "Default security group"}})


def test_group_and_rules_cli(cloud):
    name = unique("sg")
    sg = osc_demo(cloud, "security", "group", "create", "--description", "web", name, fmt_json=True)
    assert sg["name"] == name and sg["description"] == "web"
    assert sorted((r["direction"], r["ethertype"]) for r in rules_of(sg)) == [("egress", "IPv4"),
                                                                               ("egress", "IPv6")]
    other = osc_demo(cloud, "security", "group", "create", unique("sg-peer"), fmt_json=True)
    try:
        listed = osc_demo(cloud, "security", "group", "list", fmt_json=True)
        assert {sg["id"], other["id"]} <= {g["ID"] for g in listed}
        shown = osc_demo(cloud, "security", "group", "show", name, fmt_json=True)
        assert shown["id"] == sg["id"]
        osc_demo(cloud, "security", "group", "set", "--name", name + "-x", "--description", "web2", sg["id"])
        shown = osc_demo(cloud, "security", "group", "show", sg["id"], fmt_json=True)
        assert shown["name"] == name + "-x" and shown["description"] == "web2"

        icmp = osc_demo(cloud, "security", "group", "rule", "create", "--protocol", "icmp", sg["id"],
                        fmt_json=True)
        assert icmp["protocol"] == "icmp" and icmp["direction"] == "ingress" and icmp["ether_type"] == "IPv4"
        ssh = osc_demo(cloud, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
                       sg["id"], fmt_json=True)
        assert (ssh["port_range_min"], ssh["port_range_max"]) == (22, 22)
        peer = osc_demo(cloud, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port",
                        "80:81", "--remote-group", other["id"], sg["id"], fmt_json=True)
        assert peer["remote_group_id"] == other["id"] and peer["port_range_max"] == 81
        net = osc_demo(cloud, "security", "group", "rule", "create", "--protocol", "udp", "--dst-port", "53",
                       "--remote-ip", "10.1.2.3/16", sg["id"], fmt_json=True)
        assert net["remote_ip_prefix"] == "10.1.2.3/16"
        v6 = osc_demo(cloud, "security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol",
                      "ipv6-icmp", "--egress", sg["id"], fmt_json=True)
        assert v6["ether_type"] == "IPv6" and v6["direction"] == "egress"

        listed = osc_demo(cloud, "security", "group", "rule", "list", sg["id"], fmt_json=True)
        ids = {r["ID"] for r in listed}
        assert {icmp["id"], ssh["id"], peer["id"], net["id"], v6["id"]} <= ids and len(ids) == 7, listed
        shown = osc_demo(cloud, "security", "group", "rule", "show", net["id"], fmt_json=True)
        assert shown["id"] == net["id"]
        # the same rule again: 409 naming the existing rule
        err = cloud.osc_fail("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
                             sg["id"], cloud="kumo")
        assert ssh["id"] in err, err
        osc_demo(cloud, "security", "group", "rule", "delete", icmp["id"])
        listed = osc_demo(cloud, "security", "group", "rule", "list", sg["id"], fmt_json=True)
        assert icmp["id"] not in {r["ID"] for r in listed}
    finally:
        osc_demo(cloud, "security", "group", "delete", sg["id"])
        osc_demo(cloud, "security", "group", "delete", other["id"])
    err = cloud.osc_fail("security", "group", "show", sg["id"], cloud="kumo")
    assert "No SecurityGroup found" in err or "does not exist" in err or "404" in err, err


def test_rule_rendering_and_revisions(demo):
    sg = demo("POST", "/security-groups", json={"security_group": {"name": unique("rv")}}).json()["security_group"]
    try:
        assert sg["revision_number"] == 0 and sg["shared"] is False and sg["tags"] == []
        r = demo("POST", "/security-group-rules", json={"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "protocol": "TCP",
            "port_range_min": "1", "port_range_max": 65535, "remote_ip_prefix": "192.168.7.9/24"}})
        assert r.status_code == 201, r.text
        rule = r.json()["security_group_rule"]
        assert rule["protocol"] == "tcp"
        # the full range is no range (Neutron's canonical form)
        assert rule["port_range_min"] is None and rule["port_range_max"] is None
        assert rule["remote_ip_prefix"] == "192.168.7.9/24" and rule["normalized_cidr"] == "192.168.7.0/24"
        assert rule["tenant_id"] == rule["project_id"] == sg["project_id"]
        assert rule["belongs_to_default_sg"] is False
        shown = demo("GET", f"/security-groups/{sg['id']}").json()["security_group"]
        assert shown["revision_number"] == 1 and len(shown["security_group_rules"]) == 3
        # rules are immutable
        r = demo("PUT", f"/security-group-rules/{rule['id']}",
                 json={"security_group_rule": {"description": "x"}})
        neutron_error(r, 405)
        # filters, fields
        r = demo("GET", "/security-group-rules", params={"security_group_id": sg["id"], "direction": "egress",
                                                         "fields": "id"})
        rs = r.json()["security_group_rules"]
        assert len(rs) == 2 and all(set(x) == {"id"} for x in rs), rs
        r = demo("GET", "/security-group-rules", params={"security_group_id": sg["id"], "limit": 2,
                                                         "sort_key": "ethertype", "sort_dir": "asc"})
        assert len(r.json()["security_group_rules"]) == 2 and r.json().get("security_group_rules_links")
        assert demo("DELETE", f"/security-group-rules/{rule['id']}").status_code == 204
        neutron_error(demo("DELETE", f"/security-group-rules/{rule['id']}"), 404, "SecurityGroupRuleNotFound")
        neutron_error(demo("GET", f"/security-group-rules/{rule['id']}"), 404, "SecurityGroupRuleNotFound")
    finally:
        demo("DELETE", f"/security-groups/{sg['id']}")


BAD_RULES = [
    ({"protocol": "foo"}, 400, "SecurityGroupRuleInvalidProtocol"),
    ({"protocol": 256}, 400, "SecurityGroupRuleInvalidProtocol"),
    ({"ethertype": "IPv5"}, 400, "SecurityGroupRuleInvalidEtherType"),
    ({"direction": "up"}, 400, "HTTPBadRequest"),
    ({"port_range_min": 22}, 400, "SecurityGroupProtocolRequiredWithPorts"),
    ({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}, 400, "SecurityGroupInvalidPortRange"),
    ({"protocol": "tcp", "port_range_min": 70000}, 400, "SecurityGroupInvalidPortValue"),
    ({"protocol": "icmp", "port_range_min": 300}, 400, "SecurityGroupInvalidIcmpValue"),
    ({"protocol": "icmp", "port_range_max": 3}, 400, "SecurityGroupMissingIcmpType"),
    ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}, 400, "SecurityGroupInvalidProtocolForPort"),
    ({"remote_ip_prefix": "::/0"}, 400, "SecurityGroupRuleParameterConflict"),
    ({"remote_ip_prefix": "10.0.0.0/40"}, 400, "InvalidCIDR"),
    ({"protocol": "ipv6-icmp"}, 400, "SecurityGroupEthertypeConflictWithProtocol"),
    ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "SELF"}, 400, "SecurityGroupMultipleRemoteEntites"),
    ({"remote_group_id": "00000000-0000-0000-0000-000000000000"}, 404, "SecurityGroupNotFound"),
    ({"security_group_id": "00000000-0000-0000-0000-000000000000"}, 404, "SecurityGroupNotFound"),
    ({"bogus": 1}, 400, "HTTPBadRequest"),
]


def test_rule_errors(demo):
    sg = demo("POST", "/security-groups", json={"security_group": {"name": unique("bad")}}).json()["security_group"]
    try:
        for extra, code, kind in BAD_RULES:
            body = {"security_group_id": sg["id"], "direction": "ingress"}
            body.update({k: (sg["id"] if v == "SELF" else v) for k, v in extra.items()})
            neutron_error(demo("POST", "/security-group-rules", json={"security_group_rule": body}), code, kind)
        msg = neutron_error(demo("POST", "/security-group-rules", json={"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 5}}), 400)
        assert msg == "For TCP/UDP protocols, port_range_min must be <= port_range_max"
        # bulk: all or nothing, duplicates in one POST
        rule = {"security_group_id": sg["id"], "direction": "ingress", "protocol": "udp"}
        r = demo("POST", "/security-group-rules", json={"security_group_rules": [rule, dict(rule, protocol="17")]})
        neutron_error(r, 409, "DuplicateSecurityGroupRuleInPost")
        r = demo("POST", "/security-group-rules", json={"security_group_rules": [rule, dict(rule, protocol="sctp")]})
        assert r.status_code == 201 and len(r.json()["security_group_rules"]) == 2, r.text
        existing = r.json()["security_group_rules"][0]["id"]
        msg = neutron_error(demo("POST", "/security-group-rules", json={"security_group_rule": rule}), 409,
                            "SecurityGroupRuleExists")
        assert msg == f"Security group rule already exists. Rule id is {existing}."
    finally:
        demo("DELETE", f"/security-groups/{sg['id']}")


def test_project_isolation_and_quota(cloud, admin, demo):
    project = cloud.create_project(unique("sg-other"))
    pid = project["id"]
    try:
        r = admin("POST", "/security-groups", json={"security_group": {"name": "priv", "project_id": pid}})
        assert r.status_code == 201, r.text
        priv = r.json()["security_group"]
        # the admin's create made the project's default group too
        theirs = admin("GET", "/security-groups", params={"project_id": pid}).json()["security_groups"]
        assert sorted(g["name"] for g in theirs) == ["default", "priv"]
        assert priv["id"] not in {g["id"] for g in demo("GET", "/security-groups").json()["security_groups"]}
        neutron_error(demo("GET", f"/security-groups/{priv['id']}"), 404, "SecurityGroupNotFound")
        neutron_error(demo("DELETE", f"/security-groups/{priv['id']}"), 404, "SecurityGroupNotFound")
        neutron_error(demo("POST", "/security-group-rules", json={"security_group_rule": {
            "security_group_id": priv["id"], "direction": "ingress"}}), 404, "SecurityGroupNotFound")
        mine = demo("POST", "/security-groups", json={"security_group": {"name": unique("m")}}).json()
        mine = mine["security_group"]
        neutron_error(demo("POST", "/security-group-rules", json={"security_group_rule": {
            "security_group_id": mine["id"], "direction": "ingress", "remote_group_id": priv["id"]}}),
            404, "SecurityGroupNotFound")
        demo("DELETE", f"/security-groups/{mine['id']}")
        # quotas: the default group's rules count
        d = admin("GET", f"/quotas/{pid}/details.json").json()["quota"]
        assert d["security_group"]["used"] == 2 and d["security_group_rule"]["used"] == 6, d
        assert admin("PUT", f"/quotas/{pid}", json={"quota": {"security_group": 2}}).status_code == 200
        r = admin("POST", "/security-groups", json={"security_group": {"name": "third", "project_id": pid}})
        assert neutron_error(r, 409, "OverQuota") == "Quota exceeded for resources: ['security_group']."
        assert admin("PUT", f"/quotas/{pid}", json={"quota": {"security_group_rule": 6}}).status_code == 200
        r = admin("POST", "/security-group-rules", json={"security_group_rule": {
            "security_group_id": priv["id"], "direction": "ingress", "project_id": pid}})
        assert neutron_error(r, 409, "OverQuota") == "Quota exceeded for resources: ['security_group_rule']."
        # an admin may delete a default group
        default = [g for g in theirs if g["name"] == "default"][0]
        assert admin("DELETE", f"/security-groups/{default['id']}").status_code == 204
        assert admin("DELETE", f"/security-groups/{priv['id']}").status_code == 204
    finally:
        admin("DELETE", f"/quotas/{pid}")
        cloud.delete("projects", pid)
