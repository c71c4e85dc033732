"""Print, as a Markdown table, what a target answers to each bad-input case of test_bad_input.py and
test_rbac.py: status, title and message. Used to fill tests/e2e/README.md from the real Keystone.

    KUMO_E2E_TARGET=keystone-peer ~/.cache/kumo/venv-*/bin/python tests/e2e/observe.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402

from cloudlib import reissue_token, start_target, unique  # noqa: E402

JSON = {"Content-Type": "application/json"}


def main():
    c = start_target(os.environ.get("KUMO_E2E_TARGET", "keystone-peer"))
    rows = []

    def case(label, r):
        try:
            err = r.json().get("error", {})
            title, msg = err.get("title", ""), err.get("message", "")
        except ValueError:
            title, msg = "(not JSON)", " ".join(r.text.split())[:120]
        ctype = r.headers.get("content-type", "").split(";")[0]
        rows.append(f"| {label} | {r.status_code} | {title} | `{msg}` | {ctype} |")

    try:
        A = c.admin_token
        h = c.http
        case("POST /v3/auth/tokens, malformed JSON", h("POST", "/auth/tokens", data='{"auth": ', headers=JSON))
        case("POST /v3/projects, malformed JSON", h("POST", "/projects", token=A, data='{"project": ', headers=JSON))
        case("POST /v3/projects, Content-Type form", h("POST", "/projects", token=A, data="name=x",
                                                       headers={"Content-Type": "application/x-www-form-urlencoded"}))
        for kind in ("projects", "users", "domains", "groups", "roles"):
            case(f"POST /v3/{kind}, no name", h("POST", f"/{kind}", token=A, json={kind[:-1]: {"description": "d"}}))
        try:
            case("POST /v3/projects, body `{}`", h("POST", "/projects", token=A, json={}))
        except requests.ConnectionError:
            rows.append("| POST /v3/projects, body `{}` | 500 (connection dropped) | | `KeyError: 'name'` in the log | |")
        case("POST /v3/auth/tokens `{\"auth\": {}}`", h("POST", "/auth/tokens", json={"auth": {}}))
        case("POST /v3/auth/tokens, no password section",
             h("POST", "/auth/tokens", json={"auth": {"identity": {"methods": ["password"]}}}))
        case("POST /v3/auth/tokens, user without domain/password",
             h("POST", "/auth/tokens",
               json={"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin"}}}}}))
        case("POST /v3/projects, name of 65 chars", h("POST", "/projects", token=A, json={"project": {"name": "x" * 65}}))
        case("POST /v3/projects, unknown domain_id",
             h("POST", "/projects", token=A, json={"project": {"name": unique("p"), "domain_id": "no-such-domain"}}))
        case("POST /v3/users, unknown domain_id",
             h("POST", "/users", token=A, json={"user": {"name": unique("u"), "domain_id": "no-such-domain"}}))
        case("GET /v3/projects/no-such-project", h("GET", "/projects/no-such-project", token=A))
        for kind in ("projects", "users", "domains", "groups", "roles"):
            name = unique("dup")
            r = h("POST", f"/{kind}", token=A, json={kind[:-1]: {"name": name}})
            case(f"POST /v3/{kind}, duplicate name", h("POST", f"/{kind}", token=A, json={kind[:-1]: {"name": name}}))
            c.delete(kind, r.json()[kind[:-1]]["id"])
        d = c.admin("POST", "/domains", json={"domain": {"name": unique("d")}}, expect=201)["domain"]
        case("DELETE /v3/domains/ID, domain enabled", h("DELETE", f"/domains/{d['id']}", token=A))
        c.delete("domains", d["id"])
        case("POST /v3/auth/tokens, wrong password",
             h("POST", "/auth/tokens", json=c.auth_body("admin", "wrong", project="admin")))
        case("POST /v3/auth/tokens, unknown user name",
             h("POST", "/auth/tokens", json=c.auth_body(unique("nobody"), "wrong", project="admin")))
        case("POST /v3/auth/tokens, unknown user id",
             h("POST", "/auth/tokens", json=c.auth_body("", "wrong", user_id="0" * 32)))
        case("GET /v3/projects, X-Auth-Token garbage", h("GET", "/projects", token="garbage"))
        case("GET /v3/projects, no X-Auth-Token", h("GET", "/projects"))
        case("GET /v3/auth/tokens, X-Subject-Token garbage", c.validate("garbage"))
        case("HEAD /v3/auth/tokens, X-Subject-Token garbage",
             h("HEAD", "/auth/tokens", token=A, headers={"X-Subject-Token": "garbage"}))
        t = c.login("admin", c.admin_password, project="admin")
        case("DELETE /v3/auth/tokens (revoke)", h("DELETE", "/auth/tokens", token=A, headers={"X-Subject-Token": t}))
        case("GET /v3/auth/tokens, X-Subject-Token revoked", c.validate(t))
        case("GET /v3/projects, X-Auth-Token revoked", h("GET", "/projects", token=t))
        case("DELETE /v3/auth/tokens, already revoked",
             h("DELETE", "/auth/tokens", token=A, headers={"X-Subject-Token": t}))
        t = c.login("admin", c.admin_password, project="admin")
        exp = reissue_token(c.fernet_dir, t, expires_at=time.time() - 3600)
        case("GET /v3/auth/tokens, X-Subject-Token expired", c.validate(exp))
        case("GET /v3/projects, X-Auth-Token expired", h("GET", "/projects", token=exp))
        big = json.dumps({"project": {"name": "big", "description": "x" * (1024 * 1024)}})
        case("POST /v3/projects, 1 MiB body", h("POST", "/projects", token=A, data=big, headers=JSON))
        case("POST /v3/auth/tokens, 1 MiB body", h("POST", "/auth/tokens", data=big, headers=JSON))
        # RBAC
        pa, pb = c.create_project(unique("a")), c.create_project(unique("b"))
        ur = c.create_user(unique("reader"), "pw-reader-1")
        um = c.create_user(unique("member"), "pw-member-1")
        c.grant("reader", project_id=pa["id"], user_id=ur["id"])
        c.grant("member", project_id=pa["id"], user_id=um["id"])
        c.grant("member", project_id=pb["id"], user_id=ur["id"])
        tr = c.login(ur["name"], "pw-reader-1", project_id=pa["id"])
        tm = c.login(um["name"], "pw-member-1", project_id=pa["id"])
        case("reader: POST /v3/projects", h("POST", "/projects", token=tr, json={"project": {"name": unique("x")}}))
        case("reader: POST /v3/users", h("POST", "/users", token=tr, json={"user": {"name": unique("x")}}))
        case("member of A: GET /v3/role_assignments?scope.project.id=B",
             h("GET", "/role_assignments", token=tm, params={"scope.project.id": pb["id"]}))
        case("member of A: GET /v3/projects/B/users/U/roles",
             h("GET", f"/projects/{pb['id']}/users/{ur['id']}/roles", token=tm))
        case("member of A: GET /v3/projects/B", h("GET", f"/projects/{pb['id']}", token=tm))
        for kind, x in (("users", ur), ("users", um), ("projects", pa), ("projects", pb)):
            c.delete(kind, x["id"])
    finally:
        c.stop()
    print("| case | status | title | message | content-type |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
