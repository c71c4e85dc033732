"""State and tokens survive a restart, a key rotation and a kill -9.

Restart and key rotation also run against the real Keystone (keystone.sh stop/start, keystone-manage
fernet_rotate) so that what is asserted here is what OpenStack does; kill -9 and kumo's own CLI are
kumo only."""

from __future__ import annotations

import stat

import pytest

from cloudlib import keystone_error, pid_alive, run, unique


@pytest.fixture
def setup(cloud, cleanup):
    """A user with a role on a project, a group role, and a token issued for the user."""
    project = cloud.create_project(unique("keep"))
    cleanup("projects", project["id"])
    password = "pw-" + unique("x")
    user = cloud.create_user(unique("keep"), password)
    cleanup("users", user["id"])
    cloud.grant("member", project_id=project["id"], user_id=user["id"])
    group = cloud.admin("POST", "/groups", json={"group": {"name": unique("keep")}}, expect=201)["group"]
    cleanup("groups", group["id"])
    cloud.admin("PUT", f"/groups/{group['id']}/users/{user['id']}", expect=204)
    cloud.grant("reader", project_id=project["id"], group_id=group["id"])
    token = cloud.login(user["name"], password, project_id=project["id"])
    before = cloud.validate(token).json()["token"]
    return {"project": project, "user": user, "password": password, "group": group, "token": token,
            "before": before}


def assert_state_intact(cloud, s):
    assert cloud.admin("GET", f"/projects/{s['project']['id']}")["project"]["name"] == s["project"]["name"]
    assert cloud.admin("GET", f"/users/{s['user']['id']}")["user"]["name"] == s["user"]["name"]
    body = cloud.admin("GET", "/role_assignments", params={"scope.project.id": s["project"]["id"]})
    got = {(a.get("user", a.get("group"))["id"], a["role"]["id"]) for a in body["role_assignments"]}
    assert got == {(s["user"]["id"], cloud.role_id("member")), (s["group"]["id"], cloud.role_id("reader"))}, body
    members = cloud.admin("GET", f"/groups/{s['group']['id']}/users")["users"]
    assert [u["id"] for u in members] == [s["user"]["id"]]
    # the old token still validates, unchanged
    r = cloud.validate(s["token"])
    assert r.status_code == 200, f"token issued before the restart no longer validates: {r.text}"
    after = r.json()["token"]
    assert after["expires_at"] == s["before"]["expires_at"]
    assert after["audit_ids"] == s["before"]["audit_ids"]
    assert {x["name"] for x in after["roles"]} == {x["name"] for x in s["before"]["roles"]}
    # and the user can still log in with the password
    cloud.login(s["user"]["name"], s["password"], project_id=s["project"]["id"])


def test_restart_keeps_state_and_tokens(cloud, setup):
    admin_token = cloud.admin_token
    revoked = cloud.login(setup["user"]["name"], setup["password"], project_id=setup["project"]["id"])
    assert cloud.http("DELETE", "/auth/tokens", token=admin_token, headers={"X-Subject-Token": revoked}
                      ).status_code == 204
    cloud.restart()
    assert_state_intact(cloud, setup)
    # the admin token from before still works as X-Auth-Token, and a revocation is still in force
    assert cloud.http("GET", "/projects", token=admin_token).status_code == 200
    keystone_error(cloud.validate(revoked, token=admin_token), 404)
    # the CLI still works with the same clouds.yaml
    assert setup["project"]["name"] in {p["Name"] for p in cloud.osc("project", "list", fmt_json=True)}


def _key_indexes(cloud):
    return sorted(int(p.name) for p in cloud.fernet_dir.iterdir() if p.name.isdigit())


def test_fernet_rotate_keeps_tokens_valid(cloud, setup):
    keys_before = _key_indexes(cloud)
    cloud.rotate_keys()
    keys_after = _key_indexes(cloud)
    assert max(keys_after) == max(keys_before) + 1, (keys_before, keys_after)
    assert 0 in keys_after, "a staged key 0 is kept, as keystone-manage does"
    assert_state_intact(cloud, setup)
    new = cloud.login(setup["user"]["name"], setup["password"], project_id=setup["project"]["id"])
    assert cloud.validate(new).status_code == 200
    assert cloud.validate(setup["token"]).status_code == 200


# ------------------------------------------------------------------ kumo only
@pytest.mark.kumo_only("kill -9 of the kumo process")
def test_kill9_then_up_keeps_state(cloud, setup):
    old_pid = cloud.server_pid()
    cloud.kill9_and_up()
    assert cloud.server_pid() != old_pid
    assert_state_intact(cloud, setup)


@pytest.mark.kumo_only("kumo up / kumo status")
def test_up_twice_and_status(cloud):
    pid = cloud.server_pid()
    assert pid and pid_alive(pid)
    drv = cloud._driver
    out = drv.kumo(cloud, "up", "--listen", f"127.0.0.1:{cloud.port}", "--demo", timeout=60)
    assert cloud.server_pid() == pid, "a second `kumo up` must not start another server"
    assert "already running" in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
    st = drv.kumo(cloud, "status", timeout=30)
    assert st.returncode == 0
    assert cloud.http("GET", cloud.identity_url).status_code == 200


@pytest.mark.kumo_only("kumo's state dir")
def test_state_dir_files(cloud):
    pw = cloud.state_dir / "admin-password"
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600, oct(pw.stat().st_mode)
    clouds = cloud.load_clouds_yaml()
    assert set(clouds) >= {"kumo", "kumo-admin"}
    assert clouds["kumo-admin"]["auth"]["username"] == "admin"
    assert clouds["kumo-admin"]["region_name"] == "RegionOne"
    assert clouds["kumo"]["auth"]["username"] == "demo"
    assert cloud.auth_url.endswith("/identity"), cloud.auth_url
    openrc = (cloud.state_dir / "openrc").read_text()
    out = run(["bash", "-c", f"source {cloud.state_dir / 'openrc'} >/dev/null && echo $OS_AUTH_URL"]).stdout.strip()
    assert out.rstrip("/").startswith(cloud.base_url), (openrc, out)
    assert (cloud.state_dir / "logs" / "kumo.log").exists()
