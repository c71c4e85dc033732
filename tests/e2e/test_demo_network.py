"""`kumo up --demo` makes devstack's networks once ([demo] network): `public` (external,
172.24.4.0/24, no DHCP), the demo project's `private` (10.0.0.0/26) behind `router1` with its
gateway on `public`, ICMP and SSH allowed into the demo project's default group, the shared
default subnet pool and `public` as the default external network; a restart makes nothing twice."""

from __future__ import annotations

import pytest

from cloudlib import start_kumo
from netlib import NetApi

pytestmark = pytest.mark.kumo_only("kumo up --demo and its [demo] network option")


def test_demo_networks_once():
    c = start_kumo("[demo]\nguest_image = none\nnetwork = true\n")
    try:
        demo = lambda *a: c.osc(*a, cloud="kumo", fmt_json=True)  # noqa: E731
        nets = {n["Name"]: n for n in demo("network", "list")}
        assert {"public", "private"} <= set(nets), nets
        public = c.osc("network", "show", "public", fmt_json=True)
        assert public["router:external"] in (True, "External")
        sub = c.osc("subnet", "show", "public-subnet", fmt_json=True)
        assert sub["cidr"] == "172.24.4.0/24" and sub["enable_dhcp"] is False
        assert sub["gateway_ip"] == "172.24.4.1"
        priv = demo("subnet", "show", "private-subnet")
        assert priv["cidr"] == "10.0.0.0/26"
        # devstack's shared default pool holds it; `public` is the default external network,
        # so `networks: auto` works in a project without networks (auto-allocated topology)
        pool = c.osc("subnet", "pool", "show", "shared-default-subnetpool-v4", fmt_json=True)
        assert pool["is_default"] is True and pool["shared"] is True, pool
        assert priv["subnetpool_id"] == pool["id"]
        assert public["is_default"] is True
        project = c.osc("token", "issue", fmt_json=True)["project_id"]
        dry = NetApi(c, c.admin_token)("GET", f"/auto-allocated-topology/{project}?fields=dry-run")
        assert dry.status_code == 200, dry.text
        router = demo("router", "show", "router1")
        gw = router["external_gateway_info"]
        gw = gw if isinstance(gw, dict) else __import__("json").loads(gw)
        assert gw["network_id"] == public["id"]
        rules = demo("security", "group", "rule", "list", "default", "--long")
        protos = {(r["IP Protocol"], str(r.get("Port Range"))) for r in rules
                  if r["Direction"] == "ingress"}
        assert any(p == "icmp" for p, _ in protos) and any(p == "tcp" and "22" in r for p, r in protos), rules
        c.restart()
        assert sorted(n["Name"] for n in demo("network", "list")) == sorted(nets)
        assert len(demo("router", "list")) == 1
    finally:
        c.stop()
