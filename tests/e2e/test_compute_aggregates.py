"""Host aggregates and the availability zones they make, through the real `openstack` CLI and
raw HTTP, on a kumo with three fake compute hosts: zones from aggregates (zone list, services,
server create and the server's zone agree), AggregateInstanceExtraSpecsFilter on flavor extra
specs, membership mirrored into placement aggregates, and Nova's 400/403/404/409 answers."""

from __future__ import annotations

import time

import pytest
import requests

from cloudlib import KumoDriver, unique

pytestmark = pytest.mark.kumo_only("compute is served by kumo, not by the Keystone peer")

VERSION = "2.72"


@pytest.fixture(scope="module")
def c3():
    cloud = KumoDriver().start(extra_conf="[fake]\nhosts = 3\n")
    try:
        yield cloud
    finally:
        cloud.stop()


def compute(cloud, method: str, path: str, *, version: str = VERSION, token: str | None = None, **kw):
    h = {"X-Auth-Token": token or cloud.admin_token, "Accept": "application/json",
         "OpenStack-API-Version": f"compute {version}"}
    kw.setdefault("timeout", 60)
    return requests.request(method, cloud.base_url + "/compute/v2.1" + path, headers=h, **kw)


def ok(r, code=200):
    assert r.status_code == code, f"{r.request.method} {r.url}: {r.status_code} {r.text[:800]}"
    return r.json() if r.content else None


def fault(r, code: int, needle: str = "") -> str:
    assert r.status_code == code, f"expected {code}: {r.request.method} {r.url}: {r.status_code} {r.text[:800]}"
    body = r.json()
    (name,) = body.keys()
    msg = body[name]["message"]
    assert body[name]["code"] == code
    assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def wait_hosts(cloud, n: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        svcs = ok(compute(cloud, "GET", "/os-services?binary=nova-compute"))["services"]
        hyps = ok(compute(cloud, "GET", "/os-hypervisors"))["hypervisors"]
        up = [s["host"] for s in svcs if s["state"] == "up"]
        if len(up) >= n and len(hyps) >= n:
            return sorted(up)
        assert time.monotonic() < deadline, f"compute hosts not up: {svcs} {hyps}"
        time.sleep(0.5)


def server(cloud, sid: str) -> dict:
    return ok(compute(cloud, "GET", f"/servers/{sid}"))["server"]


def wait_status(cloud, sid: str, want: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = server(cloud, sid)
        if s["status"] == want:
            return s
        assert s["status"] not in ("ERROR", "ACTIVE") or s["status"] == want, s
        assert time.monotonic() < deadline, f"server {sid} still {s['status']}"
        time.sleep(0.3)


def boot(cloud, image: str, flavor: str, name: str, *args) -> str:
    out = cloud.osc("server", "create", "--image", image, "--flavor", flavor, "--nic", "none", *args, name,
                    fmt_json=True)
    return out["id"]


def provider_aggregates(cloud, rp: str) -> list[str]:
    r = cloud.placement("GET", f"/resource_providers/{rp}/aggregates", version="1.19")
    return ok(r)["aggregates"]


def test_aggregates_zones_and_extra_specs(c3):
    hosts = wait_hosts(c3, 3)
    assert {"fake-1", "fake-2", "fake-3"} <= set(hosts), hosts
    img_file = c3.workdir / "tiny.img"
    img_file.write_bytes(b"\0" * 65536)
    image = c3.osc("image", "create", "--disk-format", "raw", "--container-format", "bare", "--public",
                   "--file", img_file, unique("img"), fmt_json=True)["id"]

    # --- aggregate with a zone, a host, a property
    agg = c3.osc("aggregate", "create", "--zone", "az2", "agg1", fmt_json=True)
    assert agg["availability_zone"] == "az2" and agg["name"] == "agg1"
    agg_id = agg["id"]
    assert isinstance(agg_id, int)
    c3.osc("aggregate", "add", "host", "agg1", "fake-2")
    c3.osc("aggregate", "set", "--property", "ssd=true", "agg1")
    shown = ok(compute(c3, "GET", f"/os-aggregates/{agg_id}"))["aggregate"]
    assert shown["hosts"] == ["fake-2"]
    assert shown["metadata"] == {"availability_zone": "az2", "ssd": "true"}
    assert shown["availability_zone"] == "az2" and shown["deleted"] is False
    agg_uuid = shown["uuid"]
    # no uuid before 2.41
    assert "uuid" not in ok(compute(c3, "GET", f"/os-aggregates/{agg_id}", version="2.40"))["aggregate"]
    listed = ok(compute(c3, "GET", "/os-aggregates"))["aggregates"]
    assert [a["name"] for a in listed] == ["agg1"] and listed[0]["hosts"] == ["fake-2"]

    # --- zones agree everywhere
    zones = {z["Zone Name"] for z in c3.osc("availability", "zone", "list", "--compute", fmt_json=True)}
    assert {"az2", "nova"} <= zones, zones
    detail = ok(compute(c3, "GET", "/os-availability-zone/detail"))["availabilityZoneInfo"]
    az2 = [z for z in detail if z["zoneName"] == "az2"]
    assert az2 and list(az2[0]["hosts"]) == ["fake-2"], detail
    svc_zone = {s["host"]: s["zone"] for s in
                ok(compute(c3, "GET", "/os-services?binary=nova-compute"))["services"]}
    assert svc_zone["fake-2"] == "az2" and svc_zone["fake-1"] == "nova", svc_zone

    # --- placement mirrors the membership on fake-2's compute node provider
    hyps = ok(compute(c3, "GET", "/os-hypervisors/detail"))["hypervisors"]
    rp = {h["service"]["host"]: h["id"] for h in hyps}
    assert agg_uuid in provider_aggregates(c3, rp["fake-2"])
    assert agg_uuid not in provider_aggregates(c3, rp["fake-1"])

    # --- the CLI commands that read os-aggregates first
    h1 = c3.osc("hypervisor", "show", "fake-1", fmt_json=True)
    assert h1["aggregates"] == [], h1
    h2 = c3.osc("hypervisor", "show", "fake-2", fmt_json=True)
    assert h2["aggregates"] == ["agg1"], h2

    # --- a server asked into az2 lands on fake-2 and shows the zone
    s1 = boot(c3, image, "m1.nano", "vm-az2", "--availability-zone", "az2")
    s = wait_status(c3, s1, "ACTIVE")
    assert s["OS-EXT-SRV-ATTR:host"] == "fake-2" and s["OS-EXT-AZ:availability_zone"] == "az2", s
    # an unknown zone is refused
    r = compute(c3, "POST", "/servers", json={"server": {
        "name": "nozone", "imageRef": image, "flavorRef": "42", "networks": "none",
        "availability_zone": "nowhere"}})
    fault(r, 400, "The requested availability zone is not available")
    # a server without a zone on a host of the default zone shows that zone
    s2 = boot(c3, image, "m1.nano", "vm-any")
    s = wait_status(c3, s2, "ACTIVE")
    assert s["OS-EXT-AZ:availability_zone"] == ("az2" if s["OS-EXT-SRV-ATTR:host"] == "fake-2" else "nova")

    # --- AggregateInstanceExtraSpecsFilter: only fake-2 has ssd=true
    c3.osc("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1",
           "--property", "aggregate_instance_extra_specs:ssd=true", "ssd.nano")
    ssd = [boot(c3, image, "ssd.nano", f"vm-ssd-{i}") for i in range(3)]
    for sid in ssd:
        s = wait_status(c3, sid, "ACTIVE")
        assert s["OS-EXT-SRV-ATTR:host"] == "fake-2", s
    # asked into the default zone, the ssd flavor finds no host
    bad = boot(c3, image, "ssd.nano", "vm-ssd-nova", "--availability-zone", "nova")
    s = wait_status(c3, bad, "ERROR")
    assert "No valid host" in s["fault"]["message"], s

    # --- Nova's refusals
    fault(compute(c3, "POST", "/os-aggregates", json={"aggregate": {"name": "agg1"}}), 409,
          "Aggregate agg1 already exists.")
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action", json={"add_host": {"host": "nope"}}), 404,
          "Compute host nope could not be found.")
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action", json={"add_host": {"host": "fake-2"}}), 409,
          f"Aggregate {agg_id} already has host fake-2.")
    fault(compute(c3, "POST", "/os-aggregates/99999/action", json={"add_host": {"host": "fake-1"}}), 404,
          "Aggregate 99999 could not be found.")
    fault(compute(c3, "GET", "/os-aggregates/99999"), 404, "Aggregate 99999 could not be found.")
    fault(compute(c3, "GET", "/os-aggregates/abc"), 400, "id must be an integer")
    fault(compute(c3, "POST", "/os-aggregates", json={"aggregate": {"name": "x", "bogus": 1}}), 400,
          "Additional properties are not allowed")
    fault(compute(c3, "POST", "/os-aggregates", json={"aggregate": {"name": "x", "availability_zone": "a:b"}}),
          400, "availability_zone")
    fault(compute(c3, "POST", "/os-aggregates", json={"aggregate": {}}), 400, "'name' is a required property")
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action", json={"set_metadata": {"metadata": {"k": 1}}}),
          400, "is not of type")
    # a host is in one zone only
    agg2 = ok(compute(c3, "POST", "/os-aggregates", json={"aggregate": {"name": "agg2", "availability_zone": "az3"}}))
    agg2_id = agg2["aggregate"]["id"]
    assert "hosts" not in agg2["aggregate"] and "metadata" not in agg2["aggregate"]
    fault(compute(c3, "POST", f"/os-aggregates/{agg2_id}/action", json={"add_host": {"host": "fake-2"}}), 409,
          "One or more hosts already in availability zone(s) ['az2']")
    # the zone of hosts with instances does not change
    fault(compute(c3, "PUT", f"/os-aggregates/{agg_id}", json={"aggregate": {"availability_zone": "az9"}}), 400,
          "One or more hosts contain instances in this zone")
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action",
                  json={"set_metadata": {"metadata": {"availability_zone": None}}}), 400,
          "does not support empty named availability zone")
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action", json={"remove_host": {"host": "fake-2"}}), 409,
          "availability zone of the host would change from 'az2' to 'None'")
    # an aggregate with hosts is not deleted
    fault(compute(c3, "DELETE", f"/os-aggregates/{agg_id}"), 400, "Host aggregate is not empty")
    # admin only
    err = c3.osc_fail("aggregate", "list", cloud="kumo")
    assert "403" in err or "Policy doesn't allow" in err, err

    # --- rename, metadata removal, then empty the host and take it out
    upd = ok(compute(c3, "PUT", f"/os-aggregates/{agg_id}", json={"aggregate": {"name": "agg1-renamed"}}))
    assert upd["aggregate"]["name"] == "agg1-renamed" and upd["aggregate"]["updated_at"]
    fault(compute(c3, "PUT", f"/os-aggregates/{agg_id}", json={"aggregate": {"name": "agg2"}}), 409,
          "Aggregate agg2 already exists.")
    md = ok(compute(c3, "POST", f"/os-aggregates/{agg_id}/action",
                    json={"set_metadata": {"metadata": {"ssd": None, "tier": "gold"}}}))["aggregate"]["metadata"]
    assert md == {"availability_zone": "az2", "tier": "gold"}
    for sid in [s1, s2, *ssd, bad]:
        c3.osc("server", "delete", "--wait", sid)
    c3.osc("aggregate", "remove", "host", "agg1-renamed", "fake-2")
    assert agg_uuid not in provider_aggregates(c3, rp["fake-2"])
    fault(compute(c3, "POST", f"/os-aggregates/{agg_id}/action", json={"remove_host": {"host": "fake-2"}}), 404,
          f"Cannot remove host fake-2 in aggregate {agg_id}")
    svc_zone = {s["host"]: s["zone"] for s in
                ok(compute(c3, "GET", "/os-services?binary=nova-compute"))["services"]}
    assert svc_zone["fake-2"] == "nova", svc_zone
    # the emptied zone is gone from the list
    zones = {z["Zone Name"] for z in c3.osc("availability", "zone", "list", "--compute", fmt_json=True)}
    assert "az2" not in zones and "nova" in zones, zones
    c3.osc("aggregate", "delete", "agg1-renamed")
    fault(compute(c3, "GET", f"/os-aggregates/{agg_id}"), 404)

    # --- a compute service in an aggregate can be deleted (the CLI reads os-aggregates first);
    # the host leaves the aggregate
    ok(compute(c3, "POST", f"/os-aggregates/{agg2_id}/action", json={"add_host": {"host": "fake-3"}}))
    svc3 = [s for s in ok(compute(c3, "GET", "/os-services?binary=nova-compute"))["services"]
            if s["host"] == "fake-3"][0]
    c3.osc("compute", "service", "delete", svc3["id"])
    assert ok(compute(c3, "GET", f"/os-aggregates/{agg2_id}"))["aggregate"]["hosts"] == []
    c3.osc("aggregate", "delete", "agg2")
    assert ok(compute(c3, "GET", "/os-aggregates"))["aggregates"] == []
