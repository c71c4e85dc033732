"""Helpers shared by the network e2e tests: raw HTTP to /network/v2.0 and Neutron's error body."""

from __future__ import annotations

import requests


class NetApi:
    """Raw HTTP to /network/v2.0 with one token."""

    def __init__(self, cloud, token: str):
        self.base = cloud.base_url + "/network/v2.0"
        self.token = token

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        h = {"X-Auth-Token": self.token, "Accept": "application/json", **kw.pop("headers", {})}
        kw.setdefault("timeout", 60)
        return requests.request(method, self.base + path, headers=h, **kw)


def neutron_error(r: requests.Response, code: int, kind: str | None = None) -> str:
    assert r.status_code == code, f"expected {code}, got {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert set(body) == {"NeutronError"}, body
    assert set(body["NeutronError"]) == {"type", "message", "detail"}, body
    if kind:
        assert body["NeutronError"]["type"] == kind, body
    return body["NeutronError"]["message"]


def admin_api(cloud) -> NetApi:
    return NetApi(cloud, cloud.admin_token)


def demo_api(cloud) -> NetApi:
    """The demo user of `kumo up --demo` (cloud `kumo` of clouds.yaml), member of its project."""
    auth = cloud.cloud_auth("kumo")
    token = cloud.login(auth["username"], auth["password"], project=auth["project_name"])
    return NetApi(cloud, token)


def osc_demo(cloud, *args, fmt_json=False):
    return cloud.osc(*args, cloud="kumo", fmt_json=fmt_json)
