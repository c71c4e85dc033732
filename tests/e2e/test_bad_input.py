"""Bad input over raw HTTP: exact status codes, Keystone's error body, and no change of state.
The statuses and messages the real Keystone gives are listed in tests/e2e/README.md."""

from __future__ import annotations

import json
import time

import pytest

from cloudlib import keystone_error, reissue_token, unique

JSON = {"Content-Type": "application/json"}
AUTH_FAILED = "The request you have made requires authentication."


def count(cloud, kind, name):
    return len(cloud.admin("GET", f"/{kind}", params={"name": name})[kind])


# ------------------------------------------------------------------ malformed and incomplete bodies
@pytest.mark.parametrize("path", ["/auth/tokens", "/projects", "/users"])
def test_malformed_json(cloud, path):
    r = cloud.http("POST", path, token=cloud.admin_token, data='{"project": {"name": ', headers=JSON)
    err = keystone_error(r, 400)
    assert "JSON" in err["message"], err


def test_malformed_json_creates_nothing(cloud):
    name = unique("bad")
    r = cloud.http("POST", "/projects", token=cloud.admin_token, data='{"project": {"name": "%s"' % name,
                   headers=JSON)
    keystone_error(r, 400)
    assert count(cloud, "projects", name) == 0


def test_wrong_content_type(cloud):
    name = unique("form")
    r = cloud.http("POST", "/projects", token=cloud.admin_token, data=f"name={name}",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    keystone_error(r, 400)
    assert count(cloud, "projects", name) == 0


@pytest.mark.parametrize("path,body", [
    ("/projects", {"project": {"description": "no name"}}),
    ("/users", {"user": {"password": "no-name-123"}}),
    ("/domains", {"domain": {"description": "no name"}}),
    ("/groups", {"group": {"description": "no name"}}),
    ("/roles", {"role": {"description": "no name"}}),
])
def test_missing_required_field(cloud, path, body):
    r = cloud.http("POST", path, token=cloud.admin_token, json=body)
    err = keystone_error(r, 400)
    assert "name" in err["message"], err


def test_missing_resource_key(cloud):
    """`{}` instead of `{"project": {...}}`. The real Keystone 30 fails here with a 500 (KeyError 'name')
    and a dropped connection; kumo must answer 400 like every other schema violation."""
    if cloud.target == "keystone-peer":
        pytest.xfail("Keystone 30.0.0 bug: POST /v3/projects {} -> 500 (KeyError 'name')")
    r = cloud.http("POST", "/projects", token=cloud.admin_token, json={})
    keystone_error(r, 400)


@pytest.mark.parametrize("body", [
    {"auth": {}},
    {"auth": {"identity": {"methods": ["password"]}}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin"}}}}},
])
def test_incomplete_auth_body(cloud, body):
    r = cloud.http("POST", "/auth/tokens", json=body)
    assert r.status_code in (400, 401), r.text
    keystone_error(r, r.status_code)


def test_name_too_long(cloud):
    r = cloud.http("POST", "/projects", token=cloud.admin_token, json={"project": {"name": "x" * 65}})
    keystone_error(r, 400)


# ------------------------------------------------------------------ references to things that do not exist
def test_project_in_unknown_domain(cloud):
    name = unique("nodom")
    r = cloud.http("POST", "/projects", token=cloud.admin_token,
                   json={"project": {"name": name, "domain_id": "no-such-domain"}})
    err = keystone_error(r, 400)
    assert "no-such-domain" in err["message"], err
    assert count(cloud, "projects", name) == 0


def test_user_in_unknown_domain(cloud):
    """Keystone is not consistent here: a project in an unknown domain is a 400, a user a 404."""
    name = unique("nodom")
    r = cloud.http("POST", "/users", token=cloud.admin_token,
                   json={"user": {"name": name, "domain_id": "no-such-domain"}})
    err = keystone_error(r, 404)
    assert "no-such-domain" in err["message"], err
    assert count(cloud, "users", name) == 0


def test_get_unknown_project(cloud):
    err = keystone_error(cloud.http("GET", "/projects/no-such-project", token=cloud.admin_token), 404)
    assert "no-such-project" in err["message"], err


# ------------------------------------------------------------------ duplicates
@pytest.mark.parametrize("kind,key", [("projects", "project"), ("users", "user"), ("domains", "domain"),
                                      ("groups", "group"), ("roles", "role")])
def test_duplicate_name_conflicts(cloud, cleanup, kind, key):
    name = unique("dup")
    first = cloud.admin("POST", f"/{kind}", json={key: {"name": name}}, expect=201)[key]
    cleanup(kind, first["id"])
    r = cloud.http("POST", f"/{kind}", token=cloud.admin_token, json={key: {"name": name}})
    keystone_error(r, 409, title="Conflict")
    listed = cloud.admin("GET", f"/{kind}", params={"name": name})[kind]
    assert [x["id"] for x in listed] == [first["id"]], listed


def test_duplicate_project_name_other_domain_ok(cloud, cleanup):
    """Names are unique per domain only."""
    name = unique("dup")
    d = cloud.admin("POST", "/domains", json={"domain": {"name": unique("dom")}}, expect=201)["domain"]
    cleanup("domains", d["id"])
    p1 = cloud.create_project(name)
    cleanup("projects", p1["id"])
    p2 = cloud.create_project(name, domain_id=d["id"])
    cleanup("projects", p2["id"])
    assert p1["id"] != p2["id"]


def test_delete_enabled_domain(cloud, cleanup):
    d = cloud.admin("POST", "/domains", json={"domain": {"name": unique("dom")}}, expect=201)["domain"]
    cleanup("domains", d["id"])
    err = keystone_error(cloud.http("DELETE", f"/domains/{d['id']}", token=cloud.admin_token), 403)
    assert "disable" in err["message"], err
    assert cloud.admin("GET", f"/domains/{d['id']}")["domain"]["enabled"] is True


# ------------------------------------------------------------------ authentication failures
def test_wrong_password_and_unknown_user_look_the_same(cloud):
    wrong = cloud.http("POST", "/auth/tokens", json=cloud.auth_body("admin", "not-the-password", project="admin"))
    unknown = cloud.http("POST", "/auth/tokens",
                         json=cloud.auth_body(unique("nobody"), "not-the-password", project="admin"))
    e1 = keystone_error(wrong, 401, title="Unauthorized")
    e2 = keystone_error(unknown, 401, title="Unauthorized")
    assert e1 == e2, (e1, e2)
    assert e1["message"] == AUTH_FAILED, e1
    assert "X-Subject-Token" not in wrong.headers


def test_unknown_user_id(cloud):
    r = cloud.http("POST", "/auth/tokens", json=cloud.auth_body("", "pw", user_id="0" * 32))
    err = keystone_error(r, 401)
    assert err["message"] == AUTH_FAILED, err


@pytest.mark.parametrize("token", ["garbage", "gAAAAABnot-a-real-fernet-token", "x" * 300])
def test_garbage_auth_token(cloud, token):
    err = keystone_error(cloud.http("GET", "/projects", token=token), 401)
    assert err["message"] == AUTH_FAILED, err


def test_missing_auth_token(cloud):
    keystone_error(cloud.http("GET", "/projects"), 401)


@pytest.mark.parametrize("subject", ["garbage", "gAAAAABnot-a-real-fernet-token"])
def test_garbage_subject_token(cloud, subject):
    keystone_error(cloud.validate(subject), 404, title="Not Found")
    r = cloud.http("HEAD", "/auth/tokens", token=cloud.admin_token, headers={"X-Subject-Token": subject})
    assert r.status_code == 404


def test_revoked_token(cloud):
    tok = cloud.login("admin", cloud.admin_password, project="admin")
    r = cloud.http("DELETE", "/auth/tokens", token=cloud.admin_token, headers={"X-Subject-Token": tok})
    assert r.status_code == 204, r.text
    keystone_error(cloud.validate(tok), 404, title="Not Found")
    r = cloud.http("HEAD", "/auth/tokens", token=cloud.admin_token, headers={"X-Subject-Token": tok})
    assert r.status_code == 404
    keystone_error(cloud.http("GET", "/projects", token=tok), 401)
    # revoking it again: it no longer exists
    r = cloud.http("DELETE", "/auth/tokens", token=cloud.admin_token, headers={"X-Subject-Token": tok})
    keystone_error(r, 404)
    # the token that did the revoking is unaffected
    assert cloud.validate(cloud.admin_token).status_code == 200


def test_expired_token(cloud):
    """An expired token, made as Keystone makes tokens: a real token re-encrypted (Keystone's Fernet payload)
    with expires_at moved an hour into the past, using the server's own key repository."""
    tok = cloud.login("admin", cloud.admin_password, project="admin")
    same = reissue_token(cloud.fernet_dir, tok)  # same payload, new ciphertext: must still be valid
    r = cloud.validate(same)
    assert r.status_code == 200, f"a re-encrypted copy of a valid token is refused (Keystone token format?): {r.text}"
    expired = reissue_token(cloud.fernet_dir, tok, expires_at=time.time() - 3600)
    keystone_error(cloud.validate(expired), 404, title="Not Found")
    keystone_error(cloud.http("GET", "/projects", token=expired), 401)


# ------------------------------------------------------------------ size limits
@pytest.mark.parametrize("path", ["/projects", "/auth/tokens"])
def test_oversized_body(cloud, path):
    name = unique("big")
    body = json.dumps({"project": {"name": name, "description": "x" * (1024 * 1024)}})
    r = cloud.http("POST", path, token=cloud.admin_token, data=body, headers=JSON)
    assert r.status_code == 413, r.text[:300]
    if cloud.target == "keystone-peer":
        # the real Keystone's sizelimit middleware (oslo.middleware) answers with an HTML page here;
        # kumo answers with Keystone's JSON error body like every other error (issue 3)
        assert "Request Entity Too Large" in r.text
    else:
        keystone_error(r, 413)
    assert count(cloud, "projects", name) == 0
