"""Helpers shared by the network e2e tests: raw HTTP to /network/v2.0 and Neutron's error body,
devstack's routed network, and network namespaces a test's thread works in (`in_namespace`,
`control_namespace`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from types import SimpleNamespace

import requests

from cloudlib import close_osc_zygote, remove_namespaces

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd: int):
    # Python 3.11 has no os.setns; setns(2) switches only the calling thread
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_namespace(ns: str):
    """Move this thread into network namespace `ns` for good (e.g. a ThreadPoolExecutor's
    `initializer`, so that its workers reach the same loopback as the thread that made it)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_namespace(ns: str):
    """This thread, and every process it starts (kumo, database servers, the `openstack` CLI,
    its own fork server: cloudlib.osc_zygote), in network namespace `ns` until the block ends.
    Sockets the thread opens inside (requests' connections) are in `ns`; other threads of the
    process stay where they are. The CLI fork server started inside is stopped on the way out."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            try:
                close_osc_zygote()
            finally:
                _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextlib.contextmanager
def control_namespace(ns: str):
    """A fresh namespace `ns` (its name must start with `kt`, as every test namespace's) with
    only loopback, up, for a test's control plane: the calling thread is in it for the block
    (`in_namespace`); at the end whatever still runs in it is killed by PID and it is deleted,
    also on failure."""
    assert ns.startswith("kt"), ns
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        with in_namespace(ns):
            yield ns
    finally:
        remove_namespaces(ns)


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


def routed_network(c) -> SimpleNamespace:
    """devstack's layout through the CLI (admin): an external `public` network (172.24.4.0/24,
    gateway .1, no DHCP), a private 10.0.0.0/24 network behind a router with its gateway on
    `public`, and ICMP and TCP 22 allowed in the admin project's default security group.
    Returns `public`, `net`, `sub`, `router` (the CLI's JSON) and `default` (the group's id)."""
    from cloudlib import unique

    public = c.osc("network", "create", "--external", unique("public"), fmt_json=True)
    c.osc("subnet", "create", "--network", public["id"], "--subnet-range", "172.24.4.0/24",
          "--no-dhcp", "--gateway", "172.24.4.1", unique("public-sub"))
    net = c.osc("network", "create", unique("private"), fmt_json=True)
    sub = c.osc("subnet", "create", "--network", net["id"], "--subnet-range", "10.0.0.0/24",
                unique("private-sub"), fmt_json=True)
    router = c.osc("router", "create", unique("router"), fmt_json=True)
    c.osc("router", "set", "--external-gateway", public["id"], router["id"])
    c.osc("router", "add", "subnet", router["id"], sub["id"])
    project = c.osc("token", "issue", fmt_json=True)["project_id"]
    groups = c.osc("security", "group", "list", "--project", project, fmt_json=True)
    default = next(g for g in groups if g["Name"] == "default")["ID"]
    c.osc("security", "group", "rule", "create", "--protocol", "icmp", default)
    c.osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", default)
    return SimpleNamespace(public=public, net=net, sub=sub, router=router, default=default)
