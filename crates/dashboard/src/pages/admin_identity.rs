//! The identity admin pages: projects, users, groups (with members), role assignments. Calls
//! go to the identity API the user logged in at, with the user's token.

use std::collections::HashMap;

use axum::response::Response;
use reqwest::Method;
use serde_json::{Value, json};

use super::admin::{
    Cell, Field, FormSpec, Row, RowAction, Table, options, page, section_url, soft, unknown,
};
use super::{flash_outcome, seg};
use crate::{Ctx, DashError, Dashboard, FormData};

fn st(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn enabled_cell(v: &Value) -> Cell {
    if v["enabled"] == false {
        Cell::badge("disabled", "off").with_class("enabled")
    } else {
        Cell::badge("enabled", "ok").with_class("enabled")
    }
}

/// enable / disable (whichever it is not) and delete.
fn toggle_and_delete(kind: &str, id: &str, name: &str, enabled: bool) -> Vec<RowAction> {
    let toggle = if enabled {
        RowAction::new("disable", "disable", &[("id", id)])
    } else {
        RowAction::new("enable", "enable", &[("id", id)])
    };
    vec![
        toggle,
        RowAction::new("delete", "delete", &[("id", id)])
            .dangerous(format!("Delete {kind} {name}?")),
    ]
}

async fn domains(d: &Dashboard, ctx: &Ctx) -> Result<Vec<(String, String)>, DashError> {
    let (v, _) = soft(d.get(ctx, "identity", "/domains").await)?;
    let mut out = options(&v, "domains");
    if out.is_empty() {
        out.push(("default".into(), "Default".into()));
    }
    Ok(out)
}

// ------------------------------------------------------------------ projects

pub fn project_table(list: &Value, domains: &HashMap<String, String>) -> Table {
    let mut t = Table::new(
        "projects",
        &["Name", "Domain", "Description", "Enabled", "ID"],
    );
    let mut ps: Vec<&Value> = list["projects"].as_array().into_iter().flatten().collect();
    ps.sort_by_key(|p| st(p, "name"));
    for p in ps {
        let (id, name) = (st(p, "id"), st(p, "name"));
        let dom = st(p, "domain_id");
        t.rows.push(Row {
            key: name.clone(),
            cells: vec![
                Cell::text(name.clone()),
                Cell::text(domains.get(&dom).cloned().unwrap_or(dom)),
                Cell::text(st(p, "description")),
                enabled_cell(p),
                Cell::text(id.clone()),
            ],
            actions: toggle_and_delete("project", &id, &name, p["enabled"] != false),
        });
    }
    t
}

pub async fn projects(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, err) = soft(d.get(ctx, "identity", "/projects").await)?;
    let doms = domains(d, ctx).await?;
    let mut t = project_table(&list, &doms.iter().cloned().collect());
    t.error = err;
    let form = FormSpec::post(
        "create-project",
        &section_url("projects"),
        "create",
        "Create project",
        vec![
            Field::input("text", "name", "Name", ""),
            Field::input("text", "description", "Description", "").optional(),
            Field::select("domain_id", "Domain", doms, "default"),
        ],
    );
    page(d, ctx, "projects", "Projects", vec![form], vec![t])
}

/// `PATCH {path}` with `{kind: {"enabled": ..}}`, or `DELETE {path}`, from a row's action.
async fn toggle_or_delete(
    d: &Dashboard,
    ctx: &Ctx,
    kind: &str,
    plural: &str,
    form: &FormData,
) -> Result<(), DashError> {
    let id = form.text("id");
    let path = format!("/{plural}/{}", seg(&id));
    let action = form.text("action");
    let r = match action.as_str() {
        "enable" | "disable" => {
            let body = json!({ kind: {"enabled": action == "enable"} });
            d.call(ctx, "identity", Method::PATCH, &path, Some(&body))
                .await
        }
        "delete" => d.call(ctx, "identity", Method::DELETE, &path, None).await,
        other => return Err(unknown(other)),
    };
    let done = match action.as_str() {
        "enable" => "Enabled",
        "disable" => "Disabled",
        _ => "Deleted",
    };
    flash_outcome(d, ctx, r, format!("{done} {kind} {id}.")).map(drop)
}

pub async fn projects_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    if form.text("action") != "create" {
        return toggle_or_delete(d, ctx, "project", "projects", form).await;
    }
    let name = form.text("name");
    let body = json!({"project": {"name": name, "description": form.text("description"),
        "domain_id": form.text("domain_id"), "enabled": true}});
    let r = d
        .call(ctx, "identity", Method::POST, "/projects", Some(&body))
        .await;
    flash_outcome(d, ctx, r, format!("Created project {name}.")).map(drop)
}

// ------------------------------------------------------------------ users

pub fn user_table(list: &Value, projects: &HashMap<String, String>) -> Table {
    let mut t = Table::new(
        "users",
        &["Name", "Default project", "Email", "Enabled", "ID"],
    );
    let mut us: Vec<&Value> = list["users"].as_array().into_iter().flatten().collect();
    us.sort_by_key(|u| st(u, "name"));
    for u in us {
        let (id, name) = (st(u, "id"), st(u, "name"));
        let dp = st(u, "default_project_id");
        t.rows.push(Row {
            key: name.clone(),
            cells: vec![
                Cell::text(name.clone()),
                Cell::text(projects.get(&dp).cloned().unwrap_or(dp)),
                Cell::text(st(u, "email")),
                enabled_cell(u),
                Cell::text(id.clone()),
            ],
            actions: toggle_and_delete("user", &id, &name, u["enabled"] != false),
        });
    }
    t
}

/// The `POST /v3/users` body of the create form (a default project only when one is chosen).
pub fn user_body(f: &FormData) -> Result<Value, String> {
    let name = f.text("name");
    let password = f.get("password").unwrap_or_default();
    if name.is_empty() || password.is_empty() {
        return Err("A user needs a name and a password.".into());
    }
    let mut user = json!({"name": name, "password": password,
        "domain_id": f.text("domain_id"), "enabled": true});
    let project = f.text("default_project_id");
    if !project.is_empty() {
        user["default_project_id"] = json!(project);
    }
    let email = f.text("email");
    if !email.is_empty() {
        user["email"] = json!(email);
    }
    Ok(json!({ "user": user }))
}

pub async fn users(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, projects) = tokio::join!(
        d.get(ctx, "identity", "/users"),
        d.get(ctx, "identity", "/projects"),
    );
    let (list, err) = soft(list)?;
    let (projects, _) = soft(projects)?;
    let popts = options(&projects, "projects");
    let mut t = user_table(&list, &popts.iter().cloned().collect());
    t.error = err;
    let doms = domains(d, ctx).await?;
    let form = FormSpec::post(
        "create-user",
        &section_url("users"),
        "create",
        "Create user",
        vec![
            Field::input("text", "name", "Name", ""),
            Field::input("password", "password", "Password", ""),
            Field::input("text", "email", "Email", "").optional(),
            Field::select("default_project_id", "Default project", popts, "").optional(),
            Field::select("domain_id", "Domain", doms, "default"),
        ],
    );
    page(d, ctx, "users", "Users", vec![form], vec![t])
}

pub async fn users_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    if form.text("action") != "create" {
        return toggle_or_delete(d, ctx, "user", "users", form).await;
    }
    match user_body(form) {
        Ok(body) => {
            let r = d
                .call(ctx, "identity", Method::POST, "/users", Some(&body))
                .await;
            flash_outcome(d, ctx, r, format!("Created user {}.", form.text("name"))).map(drop)
        }
        Err(m) => {
            d.sessions.flash(&ctx.sid, "error", m);
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ groups

pub async fn groups(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, users) = tokio::join!(
        d.get(ctx, "identity", "/groups"),
        d.get(ctx, "identity", "/users"),
    );
    let (list, err) = soft(list)?;
    let (users, _) = soft(users)?;
    let mut t = Table::new("groups", &["Name", "Description", "Members", "ID"]);
    t.error = err;
    let mut gs: Vec<&Value> = list["groups"].as_array().into_iter().flatten().collect();
    gs.sort_by_key(|g| st(g, "name"));
    // members: one call per group (the identity API has no list of all memberships)
    let mut member_tables = Vec::new();
    for g in &gs {
        let (id, name) = (st(g, "id"), st(g, "name"));
        let (members, merr) = soft(
            d.get(ctx, "identity", &format!("/groups/{}/users", seg(&id)))
                .await,
        )?;
        let names: Vec<String> = members["users"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| st(u, "name"))
            .collect();
        t.rows.push(Row {
            key: name.clone(),
            cells: vec![
                Cell::text(name.clone()),
                Cell::text(st(g, "description")),
                Cell::text(if merr.is_empty() {
                    names.join(", ")
                } else {
                    merr
                })
                .with_class("members"),
                Cell::text(id.clone()),
            ],
            actions: vec![
                RowAction::new("delete", "delete", &[("id", &id)])
                    .dangerous(format!("Delete group {name}?")),
            ],
        });
        let mut mt = Table::new(&format!("members-{id}"), &[]);
        mt.headers = vec![format!("Members of {name}")];
        mt.empty = format!("{name} has no members.");
        for u in members["users"].as_array().into_iter().flatten() {
            let (uid, uname) = (st(u, "id"), st(u, "name"));
            mt.rows.push(Row {
                key: uname.clone(),
                cells: vec![Cell::text(uname.clone())],
                actions: vec![
                    RowAction::new("remove-member", "remove", &[("id", &id), ("user_id", &uid)])
                        .dangerous(format!("Remove {uname} from {name}?")),
                ],
            });
        }
        member_tables.push(mt);
    }
    let gopts: Vec<(String, String)> = gs.iter().map(|g| (st(g, "id"), st(g, "name"))).collect();
    let doms = domains(d, ctx).await?;
    let forms = vec![
        FormSpec::post(
            "create-group",
            &section_url("groups"),
            "create",
            "Create group",
            vec![
                Field::input("text", "name", "Name", ""),
                Field::input("text", "description", "Description", "").optional(),
                Field::select("domain_id", "Domain", doms, "default"),
            ],
        ),
        FormSpec::post(
            "add-member",
            &section_url("groups"),
            "add-member",
            "Add to group",
            vec![
                Field::select("user_id", "User", options(&users, "users"), ""),
                Field::select("id", "Group", gopts, ""),
            ],
        ),
    ];
    let mut tables = vec![t];
    tables.extend(member_tables);
    page(d, ctx, "groups", "Groups", forms, tables)
}

pub async fn groups_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    let id = form.text("id");
    let gp = format!("/groups/{}", seg(&id));
    let member = format!("{gp}/users/{}", seg(&form.text("user_id")));
    let (r, ok) = match form.text("action").as_str() {
        "create" => {
            let name = form.text("name");
            let body = json!({"group": {"name": name, "description": form.text("description"),
                "domain_id": form.text("domain_id")}});
            (
                d.call(ctx, "identity", Method::POST, "/groups", Some(&body))
                    .await,
                format!("Created group {name}."),
            )
        }
        "delete" => (
            d.call(ctx, "identity", Method::DELETE, &gp, None).await,
            format!("Deleted group {id}."),
        ),
        "add-member" => (
            d.call(ctx, "identity", Method::PUT, &member, None).await,
            "Added the user to the group.".to_string(),
        ),
        "remove-member" => (
            d.call(ctx, "identity", Method::DELETE, &member, None).await,
            "Removed the user from the group.".to_string(),
        ),
        other => return Err(unknown(other)),
    };
    flash_outcome(d, ctx, r, ok).map(drop)
}

// ------------------------------------------------------------------ role assignments

/// `GET /v3/role_assignments?include_names=true` as rows (project and domain scopes; a
/// revoke button for user-on-project ones, the grants this page makes).
pub fn assignment_table(list: &Value) -> Table {
    let mut t = Table::new("role-assignments", &["Role", "User or group", "Scope"]);
    for a in list["role_assignments"].as_array().into_iter().flatten() {
        let role = st(&a["role"], "name");
        let (who, user_id) = if a.get("user").is_some() {
            (
                format!("user {}", st(&a["user"], "name")),
                st(&a["user"], "id"),
            )
        } else {
            (format!("group {}", st(&a["group"], "name")), String::new())
        };
        let (scope, project_id) = if let Some(p) = a["scope"].get("project") {
            (format!("project {}", st(p, "name")), st(p, "id"))
        } else if let Some(dm) = a["scope"].get("domain") {
            (format!("domain {}", st(dm, "name")), String::new())
        } else if a["scope"].get("system").is_some() {
            ("system".to_string(), String::new())
        } else {
            (String::new(), String::new())
        };
        let mut actions = Vec::new();
        if !user_id.is_empty() && !project_id.is_empty() {
            actions.push(
                RowAction::new(
                    "revoke",
                    "revoke",
                    &[
                        ("user_id", &user_id),
                        ("project_id", &project_id),
                        ("role_id", &st(&a["role"], "id")),
                    ],
                )
                .dangerous(format!("Revoke {role} of {who} on {scope}?")),
            );
        }
        t.rows.push(Row {
            key: format!("{role}|{who}|{scope}"),
            cells: vec![Cell::text(role), Cell::text(who), Cell::text(scope)],
            actions,
        });
    }
    t.rows.sort_by(|a, b| a.key.cmp(&b.key));
    t
}

pub async fn roles(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, users, projects, roles) = tokio::join!(
        d.get(ctx, "identity", "/role_assignments?include_names=true"),
        d.get(ctx, "identity", "/users"),
        d.get(ctx, "identity", "/projects"),
        d.get(ctx, "identity", "/roles"),
    );
    let (list, err) = soft(list)?;
    let mut t = assignment_table(&list);
    t.error = err;
    let (users, _) = soft(users)?;
    let (projects, _) = soft(projects)?;
    let (roles, _) = soft(roles)?;
    let form = FormSpec::post(
        "grant-role",
        &section_url("roles"),
        "grant",
        "Grant role",
        vec![
            Field::select("role_id", "Role", options(&roles, "roles"), ""),
            Field::select("user_id", "User", options(&users, "users"), ""),
            Field::select("project_id", "Project", options(&projects, "projects"), ""),
        ],
    );
    page(d, ctx, "roles", "Role assignments", vec![form], vec![t])
}

pub async fn roles_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    let path = format!(
        "/projects/{}/users/{}/roles/{}",
        seg(&form.text("project_id")),
        seg(&form.text("user_id")),
        seg(&form.text("role_id"))
    );
    let (method, ok) = match form.text("action").as_str() {
        "grant" => (Method::PUT, "Granted the role."),
        "revoke" => (Method::DELETE, "Revoked the role."),
        other => return Err(unknown(other)),
    };
    let r = d.call(ctx, "identity", method, &path, None).await;
    flash_outcome(d, ctx, r, ok).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_form_to_body() {
        let f = FormData::parse(b"name=ann&password=pw&domain_id=default&default_project_id=p1");
        let b = user_body(&f).unwrap();
        assert_eq!(b["user"]["default_project_id"], "p1");
        assert!(b["user"].get("email").is_none());
        let f = FormData::parse(b"name=ann&password=pw&domain_id=default&default_project_id=");
        assert!(
            user_body(&f).unwrap()["user"]
                .get("default_project_id")
                .is_none()
        );
        assert!(user_body(&FormData::parse(b"name=ann")).is_err());
    }

    #[test]
    fn assignments_with_names_and_revoke_only_for_user_on_project() {
        let t = assignment_table(&json!({"role_assignments": [
            {"role": {"id": "r1", "name": "member"}, "user": {"id": "u1", "name": "ann"},
             "scope": {"project": {"id": "p1", "name": "web"}}},
            {"role": {"id": "r2", "name": "admin"}, "group": {"id": "g", "name": "ops"},
             "scope": {"domain": {"id": "d", "name": "Default"}}}]}));
        assert_eq!(t.rows.len(), 2);
        let m = t.rows.iter().find(|r| r.key.starts_with("member")).unwrap();
        assert_eq!(m.cells[1].text, "user ann");
        assert_eq!(m.cells[2].text, "project web");
        assert!(
            m.actions[0]
                .fields
                .contains(&("project_id".into(), "p1".into()))
        );
        let a = t.rows.iter().find(|r| r.key.starts_with("admin")).unwrap();
        assert!(a.actions.is_empty());
    }

    #[test]
    fn projects_offer_the_other_state() {
        let t = project_table(
            &json!({"projects": [{"id": "p", "name": "x", "enabled": false, "domain_id": "default"}]}),
            &HashMap::from([("default".to_string(), "Default".to_string())]),
        );
        assert_eq!(t.rows[0].actions[0].name, "enable");
        assert_eq!(t.rows[0].cells[1].text, "Default");
        assert_eq!(t.rows[0].cells[3].text, "disabled");
    }
}
