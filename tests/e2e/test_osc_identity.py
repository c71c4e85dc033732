"""Identity with the real `openstack` CLI (python-openstackclient) and clouds.yaml, as a user works."""

from __future__ import annotations

import pytest

from cloudlib import keystone_error, unique


def names(rows, key="Name"):
    return {r[key] for r in rows}


@pytest.fixture
def member(cloud, cleanup):
    """A fresh user with the member role on a fresh project: (user, password, project)."""
    project = cloud.create_project(unique("proj"))
    cleanup("projects", project["id"])
    password = "pw-" + unique("x")
    user = cloud.create_user(unique("user"), password)
    cleanup("users", user["id"])
    cloud.grant("member", project_id=project["id"], user_id=user["id"])
    return user, password, project


# ------------------------------------------------------------------ discovery, tokens, catalog
def test_version_discovery(cloud):
    r = cloud.http("GET", cloud.identity_url)
    assert r.status_code == 200, r.text
    assert r.json()["version"]["id"].startswith("v3")
    # identity v3 also answers at the root path /v3 (kumo: besides /identity/v3)
    r = cloud.http("GET", cloud.base_url + "/v3")
    assert r.status_code == 200, r.text
    assert r.json()["version"]["status"] == "stable"


def test_token_issue(cloud):
    tok = cloud.osc("token", "issue", fmt_json=True)
    assert tok["id"] and tok["expires"] and tok["project_id"] and tok["user_id"]
    r = cloud.validate(tok["id"])
    assert r.status_code == 200, r.text
    body = r.json()["token"]
    assert body["user"]["name"] == "admin"
    assert body["project"]["name"] == "admin"
    assert body["project"]["id"] == tok["project_id"]


def test_token_issue_demo_cloud(cloud):
    """The `kumo` cloud of clouds.yaml (the demo user with member on project demo)."""
    tok = cloud.osc("token", "issue", cloud="kumo", fmt_json=True)
    body = cloud.validate(tok["id"]).json()["token"]
    assert body["user"]["name"] == "demo"
    assert body["project"]["name"] == "demo"
    assert "member" in {r["name"] for r in body["roles"]}
    assert "admin" not in {r["name"] for r in body["roles"]}


def test_token_revoke(cloud):
    tok = cloud.osc("token", "issue", fmt_json=True)["id"]
    assert cloud.validate(tok).status_code == 200
    cloud.osc("token", "revoke", tok)
    keystone_error(cloud.validate(tok), 404)
    keystone_error(cloud.http("GET", "/projects", token=tok), 401)
    # the CLI with the revoked token is refused too
    err = cloud.osc_fail("--os-auth-type", "token", "--os-token", tok, "--os-auth-url", cloud.auth_url,
                         "--os-project-name", "admin", "--os-project-domain-name", "Default",
                         "--os-identity-api-version", "3", "project", "list", cloud=None)
    # keystoneauth re-authenticates with the token: the real Keystone answers that with 404
    assert "HTTP 404" in err or "HTTP 401" in err, err


def test_catalog_list(cloud):
    rows = cloud.osc("catalog", "list", fmt_json=True)
    identity = [r for r in rows if r["Type"] == "identity"]
    assert identity, rows
    assert f"127.0.0.1:{cloud.port}" in str(identity[0]["Endpoints"])


def test_endpoint_list(cloud):
    rows = cloud.osc("endpoint", "list", fmt_json=True)
    ident = [r for r in rows if r["Service Type"] == "identity" and r["Interface"] == "public"]
    assert ident, rows
    assert ident[0]["Region"] == "RegionOne"
    assert ident[0]["URL"].startswith(cloud.base_url), ident
    assert ident[0]["Enabled"] is True


def test_region_list(cloud):
    rows = cloud.osc("region", "list", fmt_json=True)
    assert "RegionOne" in names(rows, "Region"), rows


def test_service_list(cloud):
    rows = cloud.osc("service", "list", fmt_json=True)
    assert "identity" in names(rows, "Type"), rows
    show = cloud.osc("service", "show", "identity", fmt_json=True)
    assert show["type"] == "identity" and show["enabled"] is True


# ------------------------------------------------------------------ projects and domains
def test_project_crud(cloud, cleanup):
    name = unique("proj")
    p = cloud.osc("project", "create", "--description", "first", name, fmt_json=True)
    cleanup("projects", p["id"])
    assert p["name"] == name and p["enabled"] is True and p["domain_id"] == "default"
    assert name in names(cloud.osc("project", "list", fmt_json=True))
    shown = cloud.osc("project", "show", name, fmt_json=True)
    assert shown["id"] == p["id"] and shown["description"] == "first"
    cloud.osc("project", "set", "--description", "second", "--disable", name)
    shown = cloud.osc("project", "show", p["id"], fmt_json=True)
    assert shown["description"] == "second" and shown["enabled"] is False
    new_name = name + "-renamed"
    cloud.osc("project", "set", "--name", new_name, p["id"])
    assert cloud.osc("project", "show", p["id"], fmt_json=True)["name"] == new_name
    cloud.osc("project", "delete", p["id"])
    assert p["id"] not in names(cloud.osc("project", "list", fmt_json=True), "ID")
    err = cloud.osc_fail("project", "show", p["id"])
    assert "no project" in err.lower() or "404" in err, err
    keystone_error(cloud.http("GET", f"/projects/{p['id']}", token=cloud.admin_token), 404)


def test_project_with_parent(cloud, cleanup):
    parent = cloud.osc("project", "create", unique("parent"), fmt_json=True)
    cleanup("projects", parent["id"])
    child = cloud.osc("project", "create", "--parent", parent["id"], unique("child"), fmt_json=True)
    cleanup("projects", child["id"])
    assert child["parent_id"] == parent["id"]
    listed = cloud.osc("project", "list", "--parent", parent["id"], fmt_json=True)
    assert [r["ID"] for r in listed] == [child["id"]]


def test_domain_crud(cloud, cleanup):
    name = unique("dom")
    d = cloud.osc("domain", "create", "--description", "a domain", name, fmt_json=True)
    cleanup("domains", d["id"])
    assert d["name"] == name and d["enabled"] is True
    assert name in names(cloud.osc("domain", "list", fmt_json=True))
    assert cloud.osc("domain", "show", name, fmt_json=True)["id"] == d["id"]
    # a project in the new domain
    p = cloud.osc("project", "create", "--domain", name, unique("proj"), fmt_json=True)
    assert p["domain_id"] == d["id"]
    cloud.osc("project", "delete", "--domain", name, p["id"])
    # an enabled domain cannot be deleted
    err = cloud.osc_fail("domain", "delete", d["id"])
    assert "403" in err or "enabled" in err.lower(), err
    cloud.osc("domain", "set", "--disable", name)
    assert cloud.osc("domain", "show", d["id"], fmt_json=True)["enabled"] is False
    cloud.osc("domain", "delete", d["id"])
    assert d["id"] not in names(cloud.osc("domain", "list", fmt_json=True), "ID")


# ------------------------------------------------------------------ users and passwords
def test_user_create_and_password_set(cloud, cleanup):
    project = cloud.create_project(unique("proj"))
    cleanup("projects", project["id"])
    name, old, new = unique("user"), "old-" + unique("pw"), "new-" + unique("pw")
    u = cloud.osc("user", "create", "--password", old, "--project", project["id"], "--email", "u@example.org",
                  name, fmt_json=True)
    cleanup("users", u["id"])
    assert u["name"] == name and u["enabled"] is True and u["domain_id"] == "default"
    assert "password" not in u
    assert name in names(cloud.osc("user", "list", fmt_json=True))
    cloud.osc("role", "add", "--user", u["id"], "--project", project["id"], "member")
    tok = cloud.osc_as(name, old, "token", "issue", project=project["name"], fmt_json=True)
    assert tok["user_id"] == u["id"] and tok["project_id"] == project["id"]
    # the admin sets a new password: the new one works, the old one no longer does
    cloud.osc("user", "set", "--password", new, u["id"])
    cloud.osc_as(name, new, "token", "issue", project=project["name"], fmt_json=True)
    err = cloud.osc_fail(*cloud.password_auth_args(name, old, project["name"]), "token", "issue", cloud=None)
    assert "401" in err, err
    cloud.osc("user", "delete", u["id"])
    assert name not in names(cloud.osc("user", "list", fmt_json=True))


def test_user_changes_own_password(cloud, member):
    user, old, project = member
    new = "mine-" + unique("pw")
    cloud.osc_as(user["name"], old, "user", "password", "set", "--password", new, "--original-password", old,
                 project=project["name"])
    tok = cloud.osc_as(user["name"], new, "token", "issue", project=project["name"], fmt_json=True)
    assert tok["user_id"] == user["id"]
    keystone_error(cloud.http("POST", "/auth/tokens", json=cloud.auth_body(user["name"], old)), 401)
    # a wrong original password is refused and changes nothing
    err = cloud.osc_fail(*cloud.password_auth_args(user["name"], new, project["name"]), "user", "password", "set",
                         "--password", "other-" + unique("pw"), "--original-password", "wrong", cloud=None)
    assert "401" in err, err
    cloud.login(user["name"], new, project=project["name"])


def test_user_disable_blocks_login(cloud, member):
    user, password, project = member
    cloud.login(user["name"], password, project=project["name"])
    cloud.osc("user", "set", "--disable", user["id"])
    keystone_error(cloud.http("POST", "/auth/tokens",
                              json=cloud.auth_body(user["name"], password, project=project["name"])), 401)


# ------------------------------------------------------------------ groups, roles, assignments
def test_groups_roles_and_effective_assignments(cloud, member, cleanup):
    user, _, project = member
    gname = unique("grp")
    g = cloud.osc("group", "create", "--description", "e2e", gname, fmt_json=True)
    cleanup("groups", g["id"])
    assert gname in names(cloud.osc("group", "list", fmt_json=True))
    cloud.osc("group", "add", "user", gname, user["name"])
    proc = cloud.osc_run("group", "contains", "user", gname, user["name"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "not in group" not in out and "in group" in out, out
    assert user["id"] in names(cloud.osc("user", "list", "--group", gname, fmt_json=True), "ID")

    # the group gets reader on the project; the user itself has member (from the fixture)
    cloud.osc("role", "add", "--group", gname, "--project", project["id"], "reader")
    direct = cloud.osc("role", "assignment", "list", "--group", g["id"], "--project", project["id"], "--names",
                       fmt_json=True)
    assert [(r["Role"], r["Group"]) for r in direct] == [("reader", f"{gname}@Default")], direct

    # an implied role: a new role that implies another new role
    prior, implied = unique("prior"), unique("implied")
    pr = cloud.osc("role", "create", prior, fmt_json=True)
    cleanup("roles", pr["id"])
    ir = cloud.osc("role", "create", implied, fmt_json=True)
    cleanup("roles", ir["id"])
    rel = cloud.osc("implied", "role", "create", prior, "--implied-role", implied, fmt_json=True)
    assert rel["prior_role"] == pr["id"] and rel["implies"] == ir["id"], rel
    rows = cloud.osc("implied", "role", "list", fmt_json=True)
    assert any(r["Prior Role Name"] == prior and r["Implied Role Name"] == implied for r in rows), rows
    cloud.osc("role", "add", "--user", user["id"], "--project", project["id"], prior)

    effective = cloud.osc("role", "assignment", "list", "--user", user["id"], "--project", project["id"],
                          "--names", "--effective", fmt_json=True)
    roles = {r["Role"] for r in effective}
    # direct member, member's implied reader, group's reader (expanded to the user), prior and its implied role
    assert {"member", "reader", prior, implied} <= roles, effective
    assert all(r["User"] == f"{user['name']}@Default" for r in effective), effective
    assert all(r["Project"] == f"{project['name']}@Default" for r in effective), effective
    assert not any(r["Group"] for r in effective), "effective lists users, not groups"

    # the token carries the effective roles too
    tok = cloud.osc_as(user["name"], member[1], "token", "issue", project=project["name"], fmt_json=True)
    tok_roles = {r["name"] for r in cloud.validate(tok["id"]).json()["token"]["roles"]}
    assert {"member", "reader", prior, implied} <= tok_roles, tok_roles

    # the effective list marks the assignment that comes from the group membership (links.membership)
    def via_group():
        body = cloud.admin("GET", "/role_assignments",
                           params={"effective": "", "user.id": user["id"], "scope.project.id": project["id"]})
        return [a for a in body["role_assignments"] if "membership" in a.get("links", {})]

    assert [a["role"]["id"] for a in via_group()] == [cloud.role_id("reader")]
    # removing the user from the group takes the group's role away
    cloud.osc("group", "remove", "user", gname, user["name"])
    proc = cloud.osc_run("group", "contains", "user", gname, user["name"])
    assert "not in group" in proc.stdout + proc.stderr, proc
    assert via_group() == []


def test_role_add_user_project_and_list(cloud, member, cleanup):
    user, _, project = member
    rname = unique("role")
    role = cloud.osc("role", "create", rname, fmt_json=True)
    cleanup("roles", role["id"])
    assert rname in names(cloud.osc("role", "list", fmt_json=True))
    cloud.osc("role", "add", "--user", user["name"], "--project", project["name"], rname)
    rows = cloud.osc("role", "assignment", "list", "--user", user["id"], "--project", project["id"], "--names",
                     fmt_json=True)
    assert {r["Role"] for r in rows} == {"member", rname}, rows
    cloud.osc("role", "remove", "--user", user["name"], "--project", project["name"], rname)
    rows = cloud.osc("role", "assignment", "list", "--user", user["id"], "--project", project["id"], "--names",
                     fmt_json=True)
    assert {r["Role"] for r in rows} == {"member"}, rows


# ------------------------------------------------------------------ application credentials
def test_application_credential_login(cloud, member):
    user, password, project = member
    ac = cloud.osc_as(user["name"], password, "application", "credential", "create", unique("ac"),
                      project=project["name"], fmt_json=True)
    ac = {k.lower().replace(" ", "_"): v for k, v in ac.items()}
    assert ac["id"] and ac["secret"] and ac["project_id"] == project["id"], ac
    assert {r["name"] for r in ac["roles"]} >= {"member", "reader"}, ac
    listed = cloud.osc_as(user["name"], password, "application", "credential", "list",
                          project=project["name"], fmt_json=True)
    assert ac["id"] in {r["ID"] for r in listed}
    common = ["--os-auth-url", cloud.auth_url, "--os-identity-api-version", "3", "--os-region-name", cloud.region,
              "--os-auth-type", "v3applicationcredential", "--os-application-credential-id", ac["id"]]
    # `=`: a secret may start with "-", which argparse would take for an option
    tok = cloud.osc(*common, f"--os-application-credential-secret={ac['secret']}", "token", "issue",
                    cloud=None, fmt_json=True)
    assert tok["user_id"] == user["id"] and tok["project_id"] == project["id"]
    body = cloud.validate(tok["id"]).json()["token"]
    assert "application_credential" in body["methods"]
    assert body["application_credential"]["id"] == ac["id"]
    err = cloud.osc_fail(*common, "--os-application-credential-secret", "wrong-secret", "token", "issue",
                         cloud=None)
    assert "401" in err, err
    # deleting the credential ends logins with it
    cloud.osc_as(user["name"], password, "application", "credential", "delete", ac["id"], project=project["name"])
    err = cloud.osc_fail(*common, f"--os-application-credential-secret={ac['secret']}", "token", "issue", cloud=None)
    # the real Keystone: 404 "Could not find Application Credential: <id>."
    assert "HTTP 404" in err or "HTTP 401" in err, err
