//! Users, their password, groups and memberships, application credentials, access rules.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use common::auth::Authenticated;
use serde_json::{Value, json};

use super::resource::{extra_of, s};
use super::schema::{self, check, member};
use super::{
    Api, Base, Body, QueryMap, created, guard, list_response, no_content, ok, opt_bool, render,
    token_domain,
};
use crate::core::{AppCredRequest, RoleSelector};
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::UserFilter;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/users/{id}/password", post(change_password))
        .route("/users/{id}/groups", get(groups_of_user))
        .route("/users/{id}/projects", get(projects_of_user))
        .route(
            "/users/{id}/application_credentials",
            get(list_app_creds).post(create_app_cred),
        )
        .route(
            "/users/{id}/application_credentials/{cred}",
            get(get_app_cred).delete(delete_app_cred),
        )
        .route("/users/{id}/access_rules", get(list_access_rules))
        .route(
            "/users/{id}/access_rules/{rule}",
            get(get_access_rule).delete(delete_access_rule),
        )
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{id}",
            get(get_group).patch(update_group).delete(delete_group),
        )
        .route("/groups/{id}/users", get(group_members))
        .route(
            "/groups/{id}/users/{user}",
            get(check_member).put(add_member).delete(remove_member),
        )
}

const USER_FIELDS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "enabled",
    "password",
    "default_project_id",
    "options",
    "password_expires_at",
];
const GROUP_FIELDS: &[&str] = &["id", "name", "domain_id", "description"];

fn user_target(u: &User) -> Value {
    json!({"target": {"user": {"id": u.id, "domain_id": u.domain_id, "name": u.name}}, "user_id": u.id})
}

async fn user_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    action: &str,
) -> Result<User> {
    guard(
        api,
        ctx,
        action,
        api.id.get_user(id).await,
        user_target,
        "user",
        id,
    )
}

fn check_user_options(o: &Value) -> Result<()> {
    if let Some(m) = o.get("options").and_then(Value::as_object) {
        for k in m.keys() {
            if !crate::core::users_options().contains(&k.as_str()) {
                return Err(IdentityError::validation(format!(
                    "Invalid input for field 'options': Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
        }
    }
    Ok(())
}

async fn list_users(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    let scoped = token_domain(&ctx);
    let target = match &scoped {
        Some(d) => json!({"target": {"domain_id": d}}),
        None => json!({}),
    };
    api.id.authorize(&ctx, "identity:list_users", &target)?;
    let f = UserFilter {
        name: q.get("name").cloned(),
        domain_id: q.get("domain_id").cloned().or(scoped.clone()),
        enabled: opt_bool(&q, "enabled")?,
        ids: None,
    };
    let mut users = api.id.list_users(&f).await?;
    if let Some(d) = &scoped {
        users.retain(|u| &u.domain_id == d);
    }
    let items = users.iter().map(|u| render::user(&base, u)).collect();
    Ok(list_response(
        &base,
        "users",
        "users",
        items,
        api.id.list_limit(),
    ))
}

fn caller_domain(ctx: &common::auth::AuthContext) -> String {
    ctx.domain_id()
        .or(ctx.project_domain_id())
        .map(str::to_string)
        .unwrap_or_else(|| DEFAULT_DOMAIN_ID.to_string())
}

async fn create_user(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let u = member(&body, "user")?;
    check(&schema::USER_CREATE, "user", u)?;
    check_user_options(u)?;
    let domain_id = s(u, "domain_id").unwrap_or_else(|| caller_domain(&ctx));
    let mut target = u.clone();
    if let Value::Object(m) = &mut target {
        m.insert("domain_id".into(), Value::String(domain_id.clone()));
        m.remove("password");
    }
    api.id.authorize(
        &ctx,
        "identity:create_user",
        &json!({"target": {"user": target}}),
    )?;
    let user = User {
        id: new_id(),
        name: s(u, "name").unwrap_or_default(),
        domain_id,
        enabled: u.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        default_project_id: s(u, "default_project_id"),
        extra: extra_of(u, USER_FIELDS),
        options: u
            .get("options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        created_at: Utc::now(),
        last_active_at: None,
        failed_auth_count: 0,
        failed_auth_at: None,
        password_expires_at: None,
    };
    let user = api.id.create_user(user, s(u, "password")).await?;
    Ok(created(json!({"user": render::user(&base, &user)})))
}

async fn get_user(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let u = user_for(&api, &ctx, &id, "identity:get_user").await?;
    Ok(ok(json!({"user": render::user(&base, &u)})))
}

async fn update_user(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "user")?;
    check(&schema::USER_UPDATE, "user", patch)?;
    check_user_options(patch)?;
    let old = user_for(&api, &ctx, &id, "identity:update_user").await?;
    if let Some(d) = s(patch, "domain_id")
        && d != old.domain_id
    {
        return Err(IdentityError::validation("Cannot change Domain ID"));
    }
    if let Some(pid) = s(patch, "id")
        && pid != id
    {
        return Err(IdentityError::validation("Cannot change user ID"));
    }
    let mut u = old.clone();
    if let Some(n) = s(patch, "name") {
        u.name = n;
    }
    if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
        u.enabled = e;
    }
    if patch.get("default_project_id").is_some() {
        u.default_project_id = s(patch, "default_project_id");
    }
    if let Some(m) = patch.get("options").and_then(Value::as_object) {
        for (k, v) in m {
            if v.is_null() {
                u.options.remove(k);
            } else {
                u.options.insert(k.clone(), v.clone());
            }
        }
    }
    u.extra.extend(extra_of(patch, USER_FIELDS));
    let u = api.id.update_user(u, s(patch, "password")).await?;
    Ok(ok(json!({"user": render::user(&base, &u)})))
}

async fn delete_user(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    user_for(&api, &ctx, &id, "identity:delete_user").await?;
    api.id.delete_user(&id).await?;
    Ok(no_content())
}

/// `POST /v3/users/{id}/password`: self-service, no token needed (an expired password
/// must be changeable), the original password is the proof.
async fn change_password(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let u = member(&body, "user")?;
    check(&schema::PASSWORD_CHANGE, "user", u)?;
    let original = s(u, "original_password").unwrap_or_default();
    let new = s(u, "password").unwrap_or_default();
    match api.id.change_own_password(&id, &original, &new).await {
        Err(IdentityError::NotFound { .. }) => Err(IdentityError::unauthorized("user not found")),
        other => other.map(|_| no_content()),
    }
}

async fn groups_of_user(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    user_for(&api, &ctx, &id, "identity:list_groups_for_user").await?;
    let items = api
        .id
        .groups_of_user(&id)
        .await?
        .iter()
        .map(|g| render::group(&base, g))
        .collect();
    Ok(list_response(
        &base,
        "groups",
        &format!("users/{id}/groups"),
        items,
        None,
    ))
}

async fn projects_of_user(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    q: QueryMap,
) -> Result<Response> {
    user_for(&api, &ctx, &id, "identity:list_user_projects").await?;
    let enabled = opt_bool(&q, "enabled")?;
    let items = api
        .id
        .projects_of_user(&id)
        .await?
        .iter()
        .filter(|p| enabled.is_none_or(|e| p.enabled == e))
        .filter(|p| q.get("name").is_none_or(|n| &p.name == n))
        .filter(|p| q.get("domain_id").is_none_or(|d| &p.domain_id == d))
        .map(|p| render::project(&base, p))
        .collect();
    Ok(list_response(
        &base,
        "projects",
        &format!("users/{id}/projects"),
        items,
        None,
    ))
}

// ---------------------------------------------------------------- groups

fn group_target(g: &Group) -> Value {
    json!({"target": {"group": {"id": g.id, "domain_id": g.domain_id, "name": g.name}}, "group_id": g.id})
}

async fn group_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    action: &str,
) -> Result<Group> {
    guard(
        api,
        ctx,
        action,
        api.id.get_group(id).await,
        group_target,
        "group",
        id,
    )
}

async fn list_groups(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    let scoped = token_domain(&ctx);
    let target = match &scoped {
        Some(d) => json!({"target": {"group": {"domain_id": d}}}),
        None => json!({}),
    };
    api.id.authorize(&ctx, "identity:list_groups", &target)?;
    let domain = q.get("domain_id").cloned().or(scoped.clone());
    let mut groups = api
        .id
        .list_groups(q.get("name").map(String::as_str), domain.as_deref())
        .await?;
    if let Some(d) = &scoped {
        groups.retain(|g| &g.domain_id == d);
    }
    let items = groups.iter().map(|g| render::group(&base, g)).collect();
    Ok(list_response(
        &base,
        "groups",
        "groups",
        items,
        api.id.list_limit(),
    ))
}

async fn create_group(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let g = member(&body, "group")?;
    check(&schema::GROUP_CREATE, "group", g)?;
    let domain_id = s(g, "domain_id").unwrap_or_else(|| caller_domain(&ctx));
    let mut target = g.clone();
    if let Value::Object(m) = &mut target {
        m.insert("domain_id".into(), Value::String(domain_id.clone()));
    }
    api.id.authorize(
        &ctx,
        "identity:create_group",
        &json!({"target": {"group": target}}),
    )?;
    let group = Group {
        id: new_id(),
        name: s(g, "name").unwrap_or_default(),
        domain_id,
        description: s(g, "description"),
        extra: extra_of(g, GROUP_FIELDS),
    };
    let group = api.id.create_group(group).await?;
    Ok(created(json!({"group": render::group(&base, &group)})))
}

async fn get_group(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let g = group_for(&api, &ctx, &id, "identity:get_group").await?;
    Ok(ok(json!({"group": render::group(&base, &g)})))
}

async fn update_group(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "group")?;
    check(&schema::GROUP_UPDATE, "group", patch)?;
    let old = group_for(&api, &ctx, &id, "identity:update_group").await?;
    if let Some(d) = s(patch, "domain_id")
        && d != old.domain_id
    {
        return Err(IdentityError::validation("Cannot change Domain ID"));
    }
    let mut g = old.clone();
    if let Some(n) = s(patch, "name") {
        g.name = n;
    }
    if patch.get("description").is_some() {
        g.description = s(patch, "description");
    }
    g.extra.extend(extra_of(patch, GROUP_FIELDS));
    let g = api.id.update_group(g).await?;
    Ok(ok(json!({"group": render::group(&base, &g)})))
}

async fn delete_group(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    group_for(&api, &ctx, &id, "identity:delete_group").await?;
    api.id.delete_group(&id).await?;
    Ok(no_content())
}

async fn group_members(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    group_for(&api, &ctx, &id, "identity:list_users_in_group").await?;
    let items = api
        .id
        .group_members(&id)
        .await?
        .iter()
        .map(|u| render::user(&base, u))
        .collect();
    Ok(list_response(
        &base,
        "users",
        &format!("groups/{id}/users"),
        items,
        None,
    ))
}

async fn membership_target(api: &Api, gid: &str, uid: &str) -> Value {
    let g = api.id.get_group(gid).await.ok();
    let u = api.id.get_user(uid).await.ok();
    json!({"target": {
        "group": g.map(|g| json!({"id": g.id, "domain_id": g.domain_id})).unwrap_or(json!({"id": gid})),
        "user": u.map(|u| json!({"id": u.id, "domain_id": u.domain_id})).unwrap_or(json!({"id": uid})),
    }, "user_id": uid, "group_id": gid})
}

async fn check_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((gid, uid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:check_user_in_group",
        &membership_target(&api, &gid, &uid).await,
    )?;
    if api.id.is_user_in_group(&uid, &gid).await? {
        Ok(no_content())
    } else {
        Err(IdentityError::NotFound {
            kind: "user",
            id: format!("{uid} in group {gid}"),
        })
    }
}

async fn add_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((gid, uid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:add_user_to_group",
        &membership_target(&api, &gid, &uid).await,
    )?;
    api.id.add_user_to_group(&uid, &gid).await?;
    Ok(no_content())
}

async fn remove_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((gid, uid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:remove_user_from_group",
        &membership_target(&api, &gid, &uid).await,
    )?;
    api.id.remove_user_from_group(&uid, &gid).await?;
    Ok(no_content())
}

// ---------------------------------------------------------------- application credentials

async fn app_cred_view(api: &Api, base: &str, c: &AppCred) -> Result<Value> {
    let roles = api.id.list_roles(None, None).await?;
    Ok(render::app_cred(base, c, &roles))
}

async fn list_app_creds(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(uid): Path<String>,
    q: QueryMap,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:list_application_credentials",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    let creds = api
        .id
        .list_app_creds(&uid, q.get("name").map(String::as_str))
        .await?;
    let roles = api.id.list_roles(None, None).await?;
    let items = creds
        .iter()
        .map(|c| render::app_cred(&base, c, &roles))
        .collect();
    Ok(list_response(
        &base,
        "application_credentials",
        &format!("users/{uid}/application_credentials"),
        items,
        None,
    ))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(IdentityError::validation(format!(
        "Invalid input for field 'expires_at': '{s}' is not a 'date-time'"
    )))
}

async fn create_app_cred(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(uid): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let c = member(&body, "application_credential")?;
    check(&schema::APP_CRED_CREATE, "application_credential", c)?;
    api.id.authorize(
        &ctx,
        "identity:create_application_credential",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    if ctx.app_cred.as_ref().is_some_and(|a| a.restricted) {
        return Err(IdentityError::PolicyDenied {
            action: "Using method 'application_credential' is not allowed for managing additional application credentials".into(),
        });
    }
    if ctx.user_id != uid {
        return Err(IdentityError::PolicyDenied {
            action: "identity:create_application_credential".into(),
        });
    }
    let project_id = ctx
        .project_id()
        .ok_or_else(|| {
            IdentityError::validation("Application credentials require a project-scoped token.")
        })?
        .to_string();
    let token_roles: Vec<Role> = {
        let all = api.id.list_roles(None, None).await?;
        ctx.roles
            .iter()
            .filter_map(|r| all.iter().find(|x| x.id == r.id).cloned())
            .collect()
    };
    let roles = c
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|r| match (s(r, "id"), s(r, "name")) {
                    (Some(id), _) => RoleSelector::Id(id),
                    (None, Some(n)) => RoleSelector::Name(n),
                    _ => RoleSelector::Name(String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    let access_rules = c
        .get("access_rules")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|r| AccessRule {
                    id: s(r, "id").unwrap_or_else(new_id),
                    service: s(r, "service").unwrap_or_default(),
                    path: s(r, "path").unwrap_or_default(),
                    method: s(r, "method").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let req = AppCredRequest {
        name: s(c, "name").unwrap_or_default(),
        description: s(c, "description"),
        secret: s(c, "secret"),
        expires_at: s(c, "expires_at").map(|t| parse_time(&t)).transpose()?,
        roles,
        unrestricted: c
            .get("unrestricted")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        access_rules,
    };
    let (cred, secret) = api
        .id
        .create_app_cred(&uid, &project_id, &token_roles, req)
        .await?;
    let mut v = app_cred_view(&api, &base, &cred).await?;
    if let Value::Object(m) = &mut v {
        m.insert("secret".into(), Value::String(secret));
    }
    Ok(created(json!({"application_credential": v})))
}

async fn get_app_cred(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path((uid, cid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:get_application_credential",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    let c = api.id.get_app_cred(&uid, &cid).await?;
    Ok(ok(
        json!({"application_credential": app_cred_view(&api, &base, &c).await?}),
    ))
}

async fn delete_app_cred(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((uid, cid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:delete_application_credential",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    if ctx.app_cred.as_ref().is_some_and(|a| a.restricted) {
        return Err(IdentityError::PolicyDenied {
            action: "Using method 'application_credential' is not allowed for managing additional application credentials".into(),
        });
    }
    api.id.delete_app_cred(&uid, &cid).await?;
    Ok(no_content())
}

async fn list_access_rules(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(uid): Path<String>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:list_access_rules",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    let items = api
        .id
        .access_rules_of(&uid)
        .await?
        .iter()
        .map(|r| render::access_rule(&base, &uid, r))
        .collect();
    Ok(list_response(
        &base,
        "access_rules",
        &format!("users/{uid}/access_rules"),
        items,
        None,
    ))
}

async fn get_access_rule(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path((uid, rid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:get_access_rule",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    let r = api
        .id
        .access_rules_of(&uid)
        .await?
        .into_iter()
        .find(|r| r.id == rid)
        .ok_or_else(|| IdentityError::not_found("Access Rule", rid))?;
    Ok(ok(
        json!({"access_rule": render::access_rule(&base, &uid, &r)}),
    ))
}

async fn delete_access_rule(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((uid, rid)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:delete_access_rule",
        &json!({"user_id": uid, "target": {"user": {"id": uid}}}),
    )?;
    let in_use = api
        .id
        .list_app_creds(&uid, None)
        .await?
        .iter()
        .any(|c| c.access_rules.iter().any(|r| r.id == rid));
    if in_use {
        return Err(IdentityError::Forbidden(format!(
            "Cannot delete access rule {rid}: it is used by an application credential."
        )));
    }
    Err(IdentityError::not_found("Access Rule", rid))
}
