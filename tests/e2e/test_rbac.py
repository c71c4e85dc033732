"""Secure-RBAC defaults: reader/member/admin on project scope; every denial is Keystone's 403 body."""

from __future__ import annotations

import pytest

from cloudlib import keystone_error, unique


@pytest.fixture
def world(cloud, cleanup):
    """Projects A and B; reader_a (reader on A), member_a (member on A), member_b (member on B)."""
    w = {}
    for p in ("a", "b"):
        proj = cloud.create_project(unique(f"rbac-{p}"))
        cleanup("projects", proj["id"])
        w[p] = proj
    for uname, role, p in (("reader_a", "reader", "a"), ("member_a", "member", "a"), ("member_b", "member", "b")):
        pw = "pw-" + unique("x")
        u = cloud.create_user(unique(uname), pw)
        cleanup("users", u["id"])
        cloud.grant(role, project_id=w[p]["id"], user_id=u["id"])
        w[uname] = (u, pw)
        w[uname + "_token"] = cloud.login(u["name"], pw, project_id=w[p]["id"])
    return w


def forbidden(r):
    err = keystone_error(r, 403, title="Forbidden")
    # Keystone: "You are not authorized to perform the requested action: identity:<policy rule>."
    assert err["message"].startswith("You are not authorized to perform the requested action"), err
    return err


def test_reader_cannot_create_project(cloud, world):
    name = unique("denied")
    r = cloud.http("POST", "/projects", token=world["reader_a_token"], json={"project": {"name": name}})
    forbidden(r)
    # nothing was created
    found = cloud.admin("GET", "/projects", params={"name": name})["projects"]
    assert found == []


def test_reader_cannot_create_user(cloud, world):
    name = unique("denied")
    r = cloud.http("POST", "/users", token=world["reader_a_token"],
                   json={"user": {"name": name, "password": "x" * 12}})
    forbidden(r)
    assert cloud.admin("GET", "/users", params={"name": name})["users"] == []


def test_reader_cannot_create_with_cli(cloud, world):
    u, pw = world["reader_a"]
    name = unique("denied")
    err = cloud.osc_fail(*cloud.password_auth_args(u["name"], pw, world["a"]["name"]), "project", "create", name,
                         cloud=None)
    assert "403" in err, err
    assert cloud.admin("GET", "/projects", params={"name": name})["projects"] == []


def test_member_cannot_create_project(cloud, world):
    r = cloud.http("POST", "/projects", token=world["member_a_token"], json={"project": {"name": unique("denied")}})
    forbidden(r)


def test_member_cannot_list_other_projects_assignments(cloud, world):
    b = world["b"]["id"]
    r = cloud.http("GET", "/role_assignments", token=world["member_a_token"], params={"scope.project.id": b})
    forbidden(r)
    ub = world["member_b"][0]["id"]
    r = cloud.http("GET", f"/projects/{b}/users/{ub}/roles", token=world["member_a_token"])
    forbidden(r)


def test_member_cannot_list_other_projects_assignments_cli(cloud, world):
    u, pw = world["member_a"]
    err = cloud.osc_fail(*cloud.password_auth_args(u["name"], pw, world["a"]["name"]), "role", "assignment", "list",
                         "--project", world["b"]["id"], cloud=None)
    assert "403" in err, err


def test_admin_can_list_assignments(cloud, world):
    b = world["b"]["id"]
    ub = world["member_b"][0]["id"]
    body = cloud.admin("GET", "/role_assignments", params={"scope.project.id": b, "include_names": "true"})
    got = {(a["user"]["id"], a["role"]["name"]) for a in body["role_assignments"]}
    assert got == {(ub, "member")}, body
    rows = cloud.osc("role", "assignment", "list", "--project", b, "--names", fmt_json=True)
    assert [(r["User"], r["Role"]) for r in rows] == [(f"{world['member_b'][0]['name']}@Default", "member")]


def test_member_cannot_read_other_project(cloud, world):
    r = cloud.http("GET", f"/projects/{world['b']['id']}", token=world["member_a_token"])
    forbidden(r)


def test_member_can_read_own_project_and_token(cloud, world):
    a = world["a"]["id"]
    r = cloud.http("GET", f"/projects/{a}", token=world["member_a_token"])
    assert r.status_code == 200, r.text
    # any user can validate their own token
    r = cloud.http("GET", "/auth/tokens", token=world["member_a_token"],
                   headers={"X-Subject-Token": world["member_a_token"]})
    assert r.status_code == 200, r.text


def test_member_cannot_grant_roles(cloud, world):
    a = world["a"]["id"]
    u = world["reader_a"][0]["id"]
    r = cloud.http("PUT", f"/projects/{a}/users/{u}/roles/{cloud.role_id('admin')}", token=world["member_a_token"])
    forbidden(r)
    body = cloud.admin("GET", "/role_assignments", params={"scope.project.id": a, "user.id": u})
    assert {x["role"]["id"] for x in body["role_assignments"]} == {cloud.role_id("reader")}
