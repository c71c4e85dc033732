//! Roles, implied roles, grants (role assignments by target) and `/v3/role_assignments`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use common::auth::Authenticated;
use serde_json::{Value, json};

use super::render::Names;
use super::resource::{extra_of, s};
use super::schema::{self, check, member};
use super::{
    Api, Base, Body, QueryMap, created, flag, list_response, no_content, ok, render, token_domain,
};
use crate::core::AssignmentQuery;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::{ProjectFilter, UserFilter};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/roles", get(list_roles).post(create_role))
        .route(
            "/roles/{id}",
            get(get_role).patch(update_role).delete(delete_role),
        )
        .route("/roles/{prior}/implies", get(list_implied))
        .route(
            "/roles/{prior}/implies/{implied}",
            get(get_implied)
                .head(check_implied)
                .put(create_implied)
                .delete(delete_implied),
        )
        .route("/role_inferences", get(role_inferences))
        .route("/role_assignments", get(role_assignments))
        .route("/projects/{t}/users/{a}/roles", get(list_pu))
        .route(
            "/projects/{t}/users/{a}/roles/{r}",
            get(check_pu).put(put_pu).delete(del_pu),
        )
        .route("/projects/{t}/groups/{a}/roles", get(list_pg))
        .route(
            "/projects/{t}/groups/{a}/roles/{r}",
            get(check_pg).put(put_pg).delete(del_pg),
        )
        .route("/domains/{t}/users/{a}/roles", get(list_du))
        .route(
            "/domains/{t}/users/{a}/roles/{r}",
            get(check_du).put(put_du).delete(del_du),
        )
        .route("/domains/{t}/groups/{a}/roles", get(list_dg))
        .route(
            "/domains/{t}/groups/{a}/roles/{r}",
            get(check_dg).put(put_dg).delete(del_dg),
        )
        .route("/system/users/{a}/roles", get(list_su))
        .route(
            "/system/users/{a}/roles/{r}",
            get(check_su).put(put_su).delete(del_su),
        )
        .route("/system/groups/{a}/roles", get(list_sg))
        .route(
            "/system/groups/{a}/roles/{r}",
            get(check_sg).put(put_sg).delete(del_sg),
        )
        .route(
            "/OS-INHERIT/domains/{t}/users/{a}/roles/inherited_to_projects",
            get(list_idu),
        )
        .route(
            "/OS-INHERIT/domains/{t}/users/{a}/roles/{r}/inherited_to_projects",
            get(check_idu).put(put_idu).delete(del_idu),
        )
        .route(
            "/OS-INHERIT/domains/{t}/groups/{a}/roles/inherited_to_projects",
            get(list_idg),
        )
        .route(
            "/OS-INHERIT/domains/{t}/groups/{a}/roles/{r}/inherited_to_projects",
            get(check_idg).put(put_idg).delete(del_idg),
        )
        .route(
            "/OS-INHERIT/projects/{t}/users/{a}/roles/{r}/inherited_to_projects",
            get(check_ipu).put(put_ipu).delete(del_ipu),
        )
        .route(
            "/OS-INHERIT/projects/{t}/groups/{a}/roles/{r}/inherited_to_projects",
            get(check_ipg).put(put_ipg).delete(del_ipg),
        )
}

// ---------------------------------------------------------------- roles

const ROLE_FIELDS: &[&str] = &["id", "name", "domain_id", "description", "options"];

fn role_target(r: &Role) -> Value {
    json!({"target": {"role": {"id": r.id, "name": r.name, "domain_id": r.domain_id}}, "role_id": r.id})
}

fn role_action(r: Option<&Role>, global: &'static str, domain: &'static str) -> &'static str {
    if r.is_some_and(|r| r.domain_id.is_some()) {
        domain
    } else {
        global
    }
}

async fn list_roles(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    let domain = q.get("domain_id").cloned();
    let action = if domain.is_some() {
        "identity:list_domain_roles"
    } else {
        "identity:list_roles"
    };
    let target = match &domain {
        Some(d) => json!({"domain_id": d, "target": {"domain_id": d}}),
        None => json!({}),
    };
    api.id.authorize(&ctx, action, &target)?;
    let roles = api
        .id
        .list_roles(q.get("name").map(String::as_str), Some(domain.as_deref()))
        .await?;
    let items = roles.iter().map(|r| render::role(&base, r)).collect();
    Ok(list_response(
        &base,
        "roles",
        "roles",
        items,
        api.id.list_limit(),
    ))
}

async fn create_role(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let r = member(&body, "role")?;
    check(&schema::ROLE_CREATE, "role", r)?;
    let domain_id = s(r, "domain_id");
    let action = if domain_id.is_some() {
        "identity:create_domain_role"
    } else {
        "identity:create_role"
    };
    api.id
        .authorize(&ctx, action, &json!({"target": {"role": r}}))?;
    let role = Role {
        id: new_id(),
        name: s(r, "name").unwrap_or_default(),
        domain_id,
        description: s(r, "description"),
        extra: extra_of(r, ROLE_FIELDS),
        options: r
            .get("options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let role = api.id.create_role(role).await?;
    Ok(created(json!({"role": render::role(&base, &role)})))
}

async fn role_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    global: &'static str,
    domain: &'static str,
) -> Result<Role> {
    let r = api.id.get_role(id).await;
    let target = r
        .as_ref()
        .map(role_target)
        .unwrap_or_else(|_| json!({"target": {"role": {"id": id}}}));
    api.id
        .authorize(ctx, role_action(r.as_ref().ok(), global, domain), &target)?;
    r
}

async fn get_role(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let r = role_for(
        &api,
        &ctx,
        &id,
        "identity:get_role",
        "identity:get_domain_role",
    )
    .await?;
    Ok(ok(json!({"role": render::role(&base, &r)})))
}

async fn update_role(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "role")?;
    check(&schema::ROLE_UPDATE, "role", patch)?;
    let old = role_for(
        &api,
        &ctx,
        &id,
        "identity:update_role",
        "identity:update_domain_role",
    )
    .await?;
    let mut r = old.clone();
    if let Some(n) = s(patch, "name") {
        r.name = n;
    }
    if patch.get("description").is_some() {
        r.description = s(patch, "description");
    }
    if let Some(m) = patch.get("options").and_then(Value::as_object) {
        r.options.extend(m.clone());
    }
    r.extra.extend(extra_of(patch, ROLE_FIELDS));
    let r = api.id.update_role(r).await?;
    Ok(ok(json!({"role": render::role(&base, &r)})))
}

async fn delete_role(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    role_for(
        &api,
        &ctx,
        &id,
        "identity:delete_role",
        "identity:delete_domain_role",
    )
    .await?;
    api.id.delete_role(&id).await?;
    Ok(no_content())
}

// ---------------------------------------------------------------- implied roles

fn inference(base: &str, prior: &Role, implies: Value) -> Value {
    json!({"role_inference": {"prior_role": render::role_ref(base, prior), "implies": implies}})
}

async fn list_implied(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(prior): Path<String>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:list_implied_roles",
        &json!({"prior_role_id": prior}),
    )?;
    let inf = api.id.role_inferences(Some(&prior)).await?;
    let (p, implied) = inf
        .into_iter()
        .next()
        .ok_or_else(|| IdentityError::not_found("role", prior.clone()))?;
    let mut v = inference(
        &base,
        &p,
        Value::Array(implied.iter().map(|r| render::role_ref(&base, r)).collect()),
    );
    if let Value::Object(m) = &mut v {
        m.insert(
            "links".into(),
            json!({"self": format!("{base}/v3/roles/{prior}/implies")}),
        );
    }
    Ok(ok(v))
}

async fn create_implied(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path((prior, implied)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:create_implied_role",
        &json!({"prior_role_id": prior, "implied_role_id": implied}),
    )?;
    let (p, i) = api.id.create_implied_role(&prior, &implied).await?;
    let mut v = inference(&base, &p, render::role_ref(&base, &i));
    if let Value::Object(m) = &mut v {
        m.insert(
            "links".into(),
            json!({"self": format!("{base}/v3/roles/{prior}/implies/{implied}")}),
        );
    }
    Ok(created(v))
}

async fn get_implied(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path((prior, implied)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:get_implied_role",
        &json!({"prior_role_id": prior, "implied_role_id": implied}),
    )?;
    let (p, i) = api.id.get_implied_role(&prior, &implied).await?;
    let mut v = inference(&base, &p, render::role_ref(&base, &i));
    if let Value::Object(m) = &mut v {
        m.insert(
            "links".into(),
            json!({"self": format!("{base}/v3/roles/{prior}/implies/{implied}")}),
        );
    }
    Ok(ok(v))
}

async fn check_implied(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((prior, implied)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:check_implied_role",
        &json!({"prior_role_id": prior, "implied_role_id": implied}),
    )?;
    api.id.get_implied_role(&prior, &implied).await?;
    Ok(no_content())
}

async fn delete_implied(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((prior, implied)): Path<(String, String)>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:delete_implied_role",
        &json!({"prior_role_id": prior, "implied_role_id": implied}),
    )?;
    api.id.delete_implied_role(&prior, &implied).await?;
    Ok(no_content())
}

async fn role_inferences(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:list_role_inference_rules", &json!({}))?;
    let items: Vec<Value> = api
        .id
        .role_inferences(None)
        .await?
        .iter()
        .map(|(p, i)| json!({"prior_role": render::role_ref(&base, p), "implies": i.iter().map(|r| render::role_ref(&base, r)).collect::<Vec<_>>()}))
        .collect();
    Ok(ok(
        json!({"role_inferences": items, "links": {"self": format!("{base}/v3/role_inferences"), "previous": null, "next": null}}),
    ))
}

// ---------------------------------------------------------------- grants

#[derive(Clone, Copy)]
enum Op {
    Check,
    Put,
    Delete,
}

async fn grant_target(api: &Api, actor: &Actor, target: &Target, role_id: Option<&str>) -> Value {
    let mut t = serde_json::Map::new();
    match actor {
        Actor::User(id) => {
            let v = api
                .id
                .get_user(id)
                .await
                .map(|u| json!({"id": u.id, "domain_id": u.domain_id}))
                .unwrap_or(json!({"id": id}));
            t.insert("user".into(), v);
        }
        Actor::Group(id) => {
            let v = api
                .id
                .get_group(id)
                .await
                .map(|g| json!({"id": g.id, "domain_id": g.domain_id}))
                .unwrap_or(json!({"id": id}));
            t.insert("group".into(), v);
        }
    }
    match target {
        Target::Project(id) => {
            let v = api
                .id
                .get_project(id)
                .await
                .map(|p| json!({"id": p.id, "domain_id": p.domain_id}))
                .unwrap_or(json!({"id": id}));
            t.insert("project".into(), v);
        }
        Target::Domain(id) => {
            t.insert("domain".into(), json!({"id": id}));
        }
        Target::System => {}
    }
    if let Some(rid) = role_id {
        let v = api
            .id
            .get_role(rid)
            .await
            .map(|r| json!({"id": r.id, "name": r.name, "domain_id": r.domain_id}))
            .unwrap_or(json!({"id": rid}));
        t.insert("role".into(), v);
    }
    json!({"target": t})
}

fn grant_action(target: &Target, actor: &Actor, op: Option<Op>) -> &'static str {
    match (target, actor, op) {
        (Target::System, Actor::User(_), None) => "identity:list_system_grants_for_user",
        (Target::System, Actor::User(_), Some(Op::Check)) => "identity:check_system_grant_for_user",
        (Target::System, Actor::User(_), Some(Op::Put)) => "identity:create_system_grant_for_user",
        (Target::System, Actor::User(_), Some(Op::Delete)) => {
            "identity:revoke_system_grant_for_user"
        }
        (Target::System, Actor::Group(_), None) => "identity:list_system_grants_for_group",
        (Target::System, Actor::Group(_), Some(Op::Check)) => {
            "identity:check_system_grant_for_group"
        }
        (Target::System, Actor::Group(_), Some(Op::Put)) => {
            "identity:create_system_grant_for_group"
        }
        (Target::System, Actor::Group(_), Some(Op::Delete)) => {
            "identity:revoke_system_grant_for_group"
        }
        (_, _, None) => "identity:list_grants",
        (_, _, Some(Op::Check)) => "identity:check_grant",
        (_, _, Some(Op::Put)) => "identity:create_grant",
        (_, _, Some(Op::Delete)) => "identity:revoke_grant",
    }
}

async fn grant(
    api: &Api,
    ctx: &common::auth::AuthContext,
    actor: Actor,
    target: Target,
    role_id: String,
    inherited: bool,
    op: Op,
) -> Result<Response> {
    let policy_target = grant_target(api, &actor, &target, Some(&role_id)).await;
    api.id
        .authorize(ctx, grant_action(&target, &actor, Some(op)), &policy_target)?;
    let a = Assignment {
        actor,
        target,
        role_id,
        inherited,
    };
    match op {
        Op::Check => api.id.check_grant(&a).await?,
        Op::Put => api.id.create_grant(&a).await?,
        Op::Delete => api.id.delete_grant(&a).await?,
    }
    Ok(no_content())
}

async fn list_grants(
    api: &Api,
    base: &str,
    ctx: &common::auth::AuthContext,
    actor: Actor,
    target: Target,
    inherited: bool,
    path: String,
) -> Result<Response> {
    let policy_target = grant_target(api, &actor, &target, None).await;
    api.id
        .authorize(ctx, grant_action(&target, &actor, None), &policy_target)?;
    let roles = api.id.list_grants(&actor, &target, inherited).await?;
    let items = roles.iter().map(|r| render::role(base, r)).collect();
    Ok(list_response(base, "roles", &path, items, None))
}

macro_rules! grant_routes {
    ($list:ident, $check:ident, $put:ident, $del:ident, $actor:ident, $target:expr, $inh:expr, $path:literal) => {
        async fn $list(
            State(api): State<Api>,
            Base(base): Base,
            Authenticated(ctx): Authenticated,
            Path((t, a)): Path<(String, String)>,
        ) -> Result<Response> {
            #[allow(clippy::redundant_closure_call)]
            let target = ($target)(t.clone());
            list_grants(
                &api,
                &base,
                &ctx,
                Actor::$actor(a.clone()),
                target,
                $inh,
                format!($path, t = t, a = a),
            )
            .await
        }
        async fn $check(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((t, a, r)): Path<(String, String, String)>,
        ) -> Result<Response> {
            #[allow(clippy::redundant_closure_call)]
            let target = ($target)(t);
            grant(&api, &ctx, Actor::$actor(a), target, r, $inh, Op::Check).await
        }
        async fn $put(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((t, a, r)): Path<(String, String, String)>,
        ) -> Result<Response> {
            #[allow(clippy::redundant_closure_call)]
            let target = ($target)(t);
            grant(&api, &ctx, Actor::$actor(a), target, r, $inh, Op::Put).await
        }
        async fn $del(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((t, a, r)): Path<(String, String, String)>,
        ) -> Result<Response> {
            #[allow(clippy::redundant_closure_call)]
            let target = ($target)(t);
            grant(&api, &ctx, Actor::$actor(a), target, r, $inh, Op::Delete).await
        }
    };
}

grant_routes!(
    list_pu,
    check_pu,
    put_pu,
    del_pu,
    User,
    Target::Project,
    false,
    "projects/{t}/users/{a}/roles"
);
grant_routes!(
    list_pg,
    check_pg,
    put_pg,
    del_pg,
    Group,
    Target::Project,
    false,
    "projects/{t}/groups/{a}/roles"
);
grant_routes!(
    list_du,
    check_du,
    put_du,
    del_du,
    User,
    Target::Domain,
    false,
    "domains/{t}/users/{a}/roles"
);
grant_routes!(
    list_dg,
    check_dg,
    put_dg,
    del_dg,
    Group,
    Target::Domain,
    false,
    "domains/{t}/groups/{a}/roles"
);
grant_routes!(
    list_idu,
    check_idu,
    put_idu,
    del_idu,
    User,
    Target::Domain,
    true,
    "OS-INHERIT/domains/{t}/users/{a}/roles/inherited_to_projects"
);
grant_routes!(
    list_idg,
    check_idg,
    put_idg,
    del_idg,
    Group,
    Target::Domain,
    true,
    "OS-INHERIT/domains/{t}/groups/{a}/roles/inherited_to_projects"
);
grant_routes!(
    _list_ipu,
    check_ipu,
    put_ipu,
    del_ipu,
    User,
    Target::Project,
    true,
    "OS-INHERIT/projects/{t}/users/{a}/roles"
);
grant_routes!(
    _list_ipg,
    check_ipg,
    put_ipg,
    del_ipg,
    Group,
    Target::Project,
    true,
    "OS-INHERIT/projects/{t}/groups/{a}/roles"
);

macro_rules! system_grant_routes {
    ($list:ident, $check:ident, $put:ident, $del:ident, $actor:ident, $path:literal) => {
        async fn $list(
            State(api): State<Api>,
            Base(base): Base,
            Authenticated(ctx): Authenticated,
            Path(a): Path<String>,
        ) -> Result<Response> {
            list_grants(
                &api,
                &base,
                &ctx,
                Actor::$actor(a.clone()),
                Target::System,
                false,
                format!($path, a = a),
            )
            .await
        }
        async fn $check(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((a, r)): Path<(String, String)>,
        ) -> Result<Response> {
            grant(
                &api,
                &ctx,
                Actor::$actor(a),
                Target::System,
                r,
                false,
                Op::Check,
            )
            .await
        }
        async fn $put(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((a, r)): Path<(String, String)>,
        ) -> Result<Response> {
            grant(
                &api,
                &ctx,
                Actor::$actor(a),
                Target::System,
                r,
                false,
                Op::Put,
            )
            .await
        }
        async fn $del(
            State(api): State<Api>,
            Authenticated(ctx): Authenticated,
            Path((a, r)): Path<(String, String)>,
        ) -> Result<Response> {
            grant(
                &api,
                &ctx,
                Actor::$actor(a),
                Target::System,
                r,
                false,
                Op::Delete,
            )
            .await
        }
    };
}

system_grant_routes!(
    list_su,
    check_su,
    put_su,
    del_su,
    User,
    "system/users/{a}/roles"
);
system_grant_routes!(
    list_sg,
    check_sg,
    put_sg,
    del_sg,
    Group,
    "system/groups/{a}/roles"
);

// ---------------------------------------------------------------- /v3/role_assignments

async fn names(api: &Api) -> Result<Names> {
    let mut n = Names::default();
    let domains = api.id.list_domains(None, None).await?;
    let dname = |id: &str| {
        domains
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    for d in &domains {
        n.domains.insert(d.id.clone(), d.name.clone());
    }
    for u in api.id.list_users(&UserFilter::default()).await? {
        n.users.insert(
            u.id.clone(),
            (u.name.clone(), u.domain_id.clone(), dname(&u.domain_id)),
        );
    }
    for g in api.id.list_groups(None, None).await? {
        n.groups.insert(
            g.id.clone(),
            (g.name.clone(), g.domain_id.clone(), dname(&g.domain_id)),
        );
    }
    for p in api.id.list_projects(&ProjectFilter::default()).await? {
        n.projects.insert(
            p.id.clone(),
            (p.name.clone(), p.domain_id.clone(), dname(&p.domain_id)),
        );
    }
    for r in api.id.list_roles(None, None).await? {
        let dom = r.domain_id.as_ref().map(|d| (d.clone(), dname(d)));
        n.roles.insert(r.id.clone(), (r.name.clone(), dom));
    }
    Ok(n)
}

async fn role_assignments(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    let include_subtree = flag(&q, "include_subtree");
    let project_id = q.get("scope.project.id").cloned();
    if include_subtree {
        let pid = project_id.clone().ok_or_else(|| {
            IdentityError::validation(
                "scope.project.id needs to be specified if include_subtree is also specified",
            )
        })?;
        let p = api.id.get_project(&pid).await;
        let target = match &p {
            Ok(p) => {
                json!({"target": {"project": {"id": p.id, "domain_id": p.domain_id}, "domain_id": p.domain_id}})
            }
            Err(_) => json!({"target": {"project": {"id": pid}}}),
        };
        api.id
            .authorize(&ctx, "identity:list_role_assignments_for_tree", &target)?;
        p?;
    } else {
        let target = match token_domain(&ctx) {
            Some(d) => json!({"target": {"domain_id": d}}),
            None => json!({}),
        };
        api.id
            .authorize(&ctx, "identity:list_role_assignments", &target)?;
    }
    let effective = flag(&q, "effective");
    if effective && q.contains_key("group.id") {
        return Err(IdentityError::validation(
            "Combining effective and group filter will always result in an empty list.",
        ));
    }
    let inherited = match q.get("scope.OS-INHERIT:inherited_to") {
        Some(v) if v == "projects" => Some(true),
        Some(_) => {
            return Err(IdentityError::validation(
                "scope.OS-INHERIT:inherited_to must be 'projects'",
            ));
        }
        None => None,
    };
    if effective && inherited.is_some() {
        return Err(IdentityError::validation(
            "Combining effective and inherited filters will always result in an empty list.",
        ));
    }
    let query = AssignmentQuery {
        user_id: q.get("user.id").cloned(),
        group_id: q.get("group.id").cloned(),
        role_id: q.get("role.id").cloned(),
        project_id,
        domain_id: q.get("scope.domain.id").cloned(),
        system: q.get("scope.system").is_some(),
        inherited,
        effective,
        include_subtree,
    };
    let mut rows = api.id.role_assignments(&query).await?;
    // A domain-scoped caller only sees its domain's assignments.
    if let Some(d) = token_domain(&ctx) {
        let projects: Vec<String> = api
            .id
            .list_projects(&ProjectFilter {
                domain_id: Some(d.clone()),
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        rows.retain(|r| match &r.assignment.target {
            Target::Domain(x) => x == &d,
            Target::Project(p) => projects.contains(p),
            Target::System => false,
        });
    }
    let names = if flag(&q, "include_names") {
        Some(names(&api).await?)
    } else {
        None
    };
    let items = rows
        .iter()
        .map(|r| render::assignment(&base, r, names.as_ref()))
        .collect();
    Ok(list_response(
        &base,
        "role_assignments",
        "role_assignments",
        items,
        None,
    ))
}
