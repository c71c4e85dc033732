#!/usr/bin/env python3
"""placement_fixture.py URL TOKEN COUNT [PREFIX]: create COUNT resource providers named
PREFIX-NNNN (VCPU=16, MEMORY_MB=32768 each, as ../shared/peer/bench-placement.sh's), skipping
names that exist. Standard library only; loopback only."""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid


def call(url, token, method, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "X-Auth-Token": token, "OpenStack-API-Version": "placement 1.39",
        "Accept": "application/json", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def main():
    url, token, count = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else "fixture-rp"
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing non-loopback target: {url}")
    status, body = call(f"{url}/resource_providers", token, "GET")
    if status != 200:
        sys.exit(f"GET /resource_providers answered {status}: {body}")
    have = {p["name"] for p in body["resource_providers"]}
    made = 0
    for i in range(count):
        name = f"{prefix}-{i:04d}"
        if name in have:
            continue
        u = str(uuid.uuid4())
        status, body = call(f"{url}/resource_providers", token, "POST", {"name": name, "uuid": u})
        if status != 200:
            sys.exit(f"creating {name} answered {status}: {body}")
        inv = {"resource_provider_generation": 0,
               "inventories": {"VCPU": {"total": 16}, "MEMORY_MB": {"total": 32768}}}
        status, body = call(f"{url}/resource_providers/{u}/inventories", token, "PUT", inv)
        if status != 200:
            sys.exit(f"inventory of {name} answered {status}: {body}")
        made += 1
    print(made)


main()
