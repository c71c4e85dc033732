#!/usr/bin/env python3
"""What bench/compute.sh needs in kumo before ../shared/peer/bench-compute.sh runs (stdlib only).

Usage: compute_fixture.py BASE PASSWORD [IMAGE_NAME [FLAVOR_NAME]]
  BASE      kumo's root URL (loopback), e.g. http://127.0.0.1:5001
  PASSWORD  the admin password (user admin, project admin, domain default)

The same objects as the peer's (../shared/peer/nova/peer_setup.py), through the APIs:
  - the image IMAGE_NAME (default tiny-raw): 64 KiB of zeros, disk_format raw, container_format
    bare, public; waits until it is active; reused when an active one exists;
  - the flavor FLAVOR_NAME (default tiny, id = name): 1 vCPU, 64 MiB RAM, 1 GiB disk, created with
    POST <compute>/flavors (admin); reused when it exists.
The compute endpoint is the token's catalog entry of type "compute" (public interface).
Prints the image id. Exit 3 when the catalog has no compute endpoint, 2 on any other failure.
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def fail(msg, code=2):
    print("compute_fixture: " + msg, file=sys.stderr)
    sys.exit(code)


def loopback(url):
    h = urllib.parse.urlsplit(url).hostname or ""
    if not (h.startswith("127.") or h in ("localhost", "::1")):
        fail("refusing non-loopback URL: %s" % url)
    return url.rstrip("/")


def req(method, url, token=None, body=None, data=None, headers=None):
    h = {"Accept": "application/json"}
    if token:
        h["X-Auth-Token"] = token
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    r = urllib.request.Request(loopback(url), data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            st, hd, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        st, hd, raw = e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, repr(e)
    try:
        return st, hd, json.loads(raw) if raw else {}
    except ValueError:
        return st, hd, raw.decode(errors="replace")


def main():
    if len(sys.argv) < 3:
        fail(__doc__.strip())
    base, password = loopback(sys.argv[1]), sys.argv[2]
    image_name = sys.argv[3] if len(sys.argv) > 3 else "tiny-raw"
    flavor_name = sys.argv[4] if len(sys.argv) > 4 else "tiny"

    st, hd, d = req("POST", base + "/identity/v3/auth/tokens", body={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    if st != 201:
        fail("token request failed: %s %s" % (st, str(d)[:200]))
    token = hd["X-Subject-Token"]

    def endpoint(stype):
        for s in d["token"].get("catalog", []):
            if s.get("type") == stype:
                for e in s.get("endpoints", []):
                    if e.get("interface") == "public":
                        return loopback(e["url"])
        return None

    types = sorted({s.get("type") for s in d["token"].get("catalog", [])})
    nova = endpoint("compute")
    if not nova:
        fail("kumo has no compute endpoint in its catalog (services: %s); the compute API is not "
             "in this kumo build yet" % ", ".join(types), 3)
    glance = endpoint("image")
    if not glance:
        fail("kumo has no image endpoint in its catalog (services: %s)" % ", ".join(types))

    # the compute API answers (it may still be starting)
    deadline = time.time() + 30
    while True:
        st, _, r = req("GET", nova + "/flavors", token)
        if st == 200:
            break
        if time.time() > deadline:
            fail("GET %s/flavors -> %s %s" % (nova, st, str(r)[:200]))
        time.sleep(0.2)

    # flavor (admin), id = name as the peer's
    st, _, r = req("GET", nova + "/flavors/" + urllib.parse.quote(flavor_name), token)
    if st != 200:
        st, _, r = req("POST", nova + "/flavors", token, {"flavor": {
            "name": flavor_name, "id": flavor_name, "ram": 64, "vcpus": 1, "disk": 1}})
        if st != 200:
            fail("POST %s/flavors -> %s %s" % (nova, st, str(r)[:300]))
    print("compute_fixture: flavor %s ok" % flavor_name, file=sys.stderr)

    # image
    st, _, r = req("GET", glance + "/v2/images?" + urllib.parse.urlencode(
        {"name": image_name, "visibility": "all"}), token)
    ims = [i for i in r.get("images", []) if i.get("status") == "active"] if st == 200 else []
    if ims:
        iid = ims[0]["id"]
    else:
        st, _, r = req("POST", glance + "/v2/images", token, {
            "name": image_name, "disk_format": "raw", "container_format": "bare",
            "visibility": "public", "min_disk": 0, "min_ram": 0})
        if st != 201:
            fail("POST %s/v2/images -> %s %s" % (glance, st, str(r)[:300]))
        iid = r["id"]
        st, _, r = req("PUT", glance + "/v2/images/%s/file" % iid, token, data=b"\0" * 65536,
                       headers={"Content-Type": "application/octet-stream"})
        if st != 204:
            fail("PUT image data -> %s %s" % (st, str(r)[:300]))
        deadline = time.time() + 30
        while True:
            st, _, r = req("GET", glance + "/v2/images/" + iid, token)
            if st == 200 and r.get("status") == "active":
                break
            if time.time() > deadline:
                fail("image %s not active: %s %s" % (iid, st, str(r)[:200]))
            time.sleep(0.1)
    print("compute_fixture: image %s = %s (active)" % (image_name, iid), file=sys.stderr)
    print(iid)


if __name__ == "__main__":
    main()
