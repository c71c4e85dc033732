//! Domains, projects and project tags.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::Authenticated;
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};

use super::schema::{self, check, member};
use super::{
    Api, Base, Body, QueryMap, created, guard, list_response, no_content, ok, opt_bool, render,
    token_domain,
};
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::ProjectFilter;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/domains", get(list_domains).post(create_domain))
        .route(
            "/domains/{id}",
            get(get_domain).patch(update_domain).delete(delete_domain),
        )
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{id}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route(
            "/projects/{id}/tags",
            get(list_tags).put(replace_tags).delete(delete_tags),
        )
        .route(
            "/projects/{id}/tags/{tag}",
            get(check_tag).put(add_tag).delete(delete_tag),
        )
}

/// Split a request object into known fields and Keystone's free-form `extra`.
pub fn extra_of(v: &Value, known: &[&str]) -> Extra {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !known.contains(&k.as_str()) && k.as_str() != "links")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn options_of(v: &Value) -> Extra {
    v.get("options")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn merge_options(old: &Extra, new: &Value) -> Extra {
    let mut o = old.clone();
    if let Some(m) = new.get("options").and_then(Value::as_object) {
        for (k, v) in m {
            if v.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    o
}

fn merge_extra(old: &Extra, patch: &Value, known: &[&str]) -> Extra {
    let mut e = old.clone();
    e.extend(extra_of(patch, known));
    e
}

// ---------------------------------------------------------------- domains

const DOMAIN_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "tags",
    "options",
    "explicit_domain_id",
];

async fn list_domains(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    let scoped = token_domain(&ctx);
    let target = match &scoped {
        Some(d) => json!({"target": {"domain": {"id": d}}}),
        None => json!({}),
    };
    api.id.authorize(&ctx, "identity:list_domains", &target)?;
    let mut domains = api
        .id
        .list_domains(q.get("name").map(String::as_str), opt_bool(&q, "enabled")?)
        .await?;
    if let Some(d) = scoped {
        domains.retain(|x| x.id == d);
    }
    let items = domains.iter().map(|d| render::domain(&base, d)).collect();
    Ok(list_response(
        &base,
        "domains",
        "domains",
        items,
        api.id.list_limit(),
    ))
}

fn domain_target(d: &Domain) -> Value {
    json!({"target": {"domain": {"id": d.id, "name": d.name, "enabled": d.enabled}}, "domain_id": d.id})
}

async fn create_domain(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let d = member(&body, "domain")?;
    check(&schema::DOMAIN_CREATE, "domain", d)?;
    api.id.authorize(
        &ctx,
        "identity:create_domain",
        &json!({"target": {"domain": d}}),
    )?;
    let domain = Domain {
        id: s(d, "explicit_domain_id").unwrap_or_else(new_id),
        name: s(d, "name").unwrap_or_default(),
        description: s(d, "description"),
        enabled: d.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        extra: extra_of(d, DOMAIN_FIELDS),
        options: options_of(d),
    };
    let domain = api.id.create_domain(domain).await?;
    Ok(created(json!({"domain": render::domain(&base, &domain)})))
}

async fn get_domain(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let d = domain_for(&api, &ctx, &id, "identity:get_domain").await?;
    Ok(ok(json!({"domain": render::domain(&base, &d)})))
}

async fn update_domain(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "domain")?;
    check(&schema::DOMAIN_UPDATE, "domain", patch)?;
    let old = domain_for(&api, &ctx, &id, "identity:update_domain").await?;
    if let Some(pid) = s(patch, "id")
        && pid != id
    {
        return Err(IdentityError::validation("Cannot change Domain ID"));
    }
    let mut d = old.clone();
    if let Some(n) = s(patch, "name") {
        d.name = n;
    }
    if patch.get("description").is_some() {
        d.description = s(patch, "description");
    }
    if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
        d.enabled = e;
    }
    d.options = merge_options(&old.options, patch);
    d.extra = merge_extra(&old.extra, patch, DOMAIN_FIELDS);
    let d = api.id.update_domain(d).await?;
    Ok(ok(json!({"domain": render::domain(&base, &d)})))
}

async fn delete_domain(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    domain_for(&api, &ctx, &id, "identity:delete_domain").await?;
    api.id.delete_domain(&id).await?;
    Ok(no_content())
}

// ---------------------------------------------------------------- projects

const PROJECT_FIELDS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "parent_id",
    "description",
    "enabled",
    "is_domain",
    "tags",
    "options",
];

fn project_target(p: &Project) -> Value {
    json!({"target": {"project": {"id": p.id, "domain_id": p.domain_id, "name": p.name, "parent_id": p.parent_id}}, "project_id": p.id})
}

fn csv(q: &HashMap<String, String>, key: &str) -> Option<Vec<String>> {
    q.get(key).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// Keystone's tag filters on a project list.
fn tag_filter(p: &Project, q: &HashMap<String, String>) -> bool {
    let has = |t: &String| p.tags.contains(t);
    if let Some(all) = csv(q, "tags")
        && !all.iter().all(has)
    {
        return false;
    }
    if let Some(any) = csv(q, "tags-any")
        && !any.iter().any(has)
    {
        return false;
    }
    if let Some(all) = csv(q, "not-tags")
        && all.iter().all(has)
    {
        return false;
    }
    if let Some(any) = csv(q, "not-tags-any")
        && any.iter().any(has)
    {
        return false;
    }
    true
}

async fn list_projects(
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
    api.id.authorize(&ctx, "identity:list_projects", &target)?;
    let is_domain = opt_bool(&q, "is_domain")?;
    if is_domain == Some(true) {
        let domains = api
            .id
            .list_domains(q.get("name").map(String::as_str), opt_bool(&q, "enabled")?)
            .await?;
        let items = domains
            .iter()
            .filter(|d| scoped.as_ref().is_none_or(|s| s == &d.id))
            .map(|d| render::domain_as_project(&base, d))
            .collect();
        return Ok(list_response(
            &base,
            "projects",
            "projects",
            items,
            api.id.list_limit(),
        ));
    }
    let mut f = ProjectFilter {
        name: q.get("name").cloned(),
        domain_id: q.get("domain_id").cloned().or(scoped.clone()),
        enabled: opt_bool(&q, "enabled")?,
        ..Default::default()
    };
    if let Some(parent) = q.get("parent_id") {
        // A domain as parent means the domain's top-level projects.
        f.parent_id = Some(if api.id.get_domain(parent).await.is_ok() {
            None
        } else {
            Some(parent.clone())
        });
        if f.parent_id == Some(None) {
            f.domain_id = Some(parent.clone());
        }
    }
    let mut projects = api.id.list_projects(&f).await?;
    if let Some(d) = &scoped {
        projects.retain(|p| &p.domain_id == d);
    }
    projects.retain(|p| tag_filter(p, &q));
    let items = projects.iter().map(|p| render::project(&base, p)).collect();
    Ok(list_response(
        &base,
        "projects",
        "projects",
        items,
        api.id.list_limit(),
    ))
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn create_project(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let p = member(&body, "project")?;
    check(&schema::PROJECT_CREATE, "project", p)?;
    let mut target_project = p.clone();
    // The project's domain: given, else the parent's, else the caller's, else default.
    let parent_id = s(p, "parent_id");
    let mut domain_id = s(p, "domain_id");
    if domain_id.is_none()
        && let Some(pid) = &parent_id
    {
        domain_id = match api.id.get_project(pid).await {
            Ok(parent) => Some(parent.domain_id),
            Err(_) => api.id.get_domain(pid).await.ok().map(|d| d.id),
        };
    }
    let domain_id = domain_id
        .or_else(|| ctx.domain_id().map(str::to_string))
        .or_else(|| ctx.project_domain_id().map(str::to_string))
        .unwrap_or_else(|| DEFAULT_DOMAIN_ID.to_string());
    if let Value::Object(m) = &mut target_project {
        m.insert("domain_id".into(), Value::String(domain_id.clone()));
    }
    api.id.authorize(
        &ctx,
        "identity:create_project",
        &json!({"target": {"project": target_project}}),
    )?;
    if p.get("is_domain").and_then(Value::as_bool) == Some(true) {
        let d = Domain {
            id: new_id(),
            name: s(p, "name").unwrap_or_default(),
            description: s(p, "description"),
            enabled: p.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            extra: extra_of(p, PROJECT_FIELDS),
            options: options_of(p),
        };
        let d = api.id.create_domain(d).await?;
        return Ok(created(
            json!({"project": render::domain_as_project(&base, &d)}),
        ));
    }
    let mut tags: Vec<String> = str_list(p.get("tags").unwrap_or(&Value::Null));
    tags.dedup();
    let project = Project {
        id: new_id(),
        name: s(p, "name").unwrap_or_default(),
        domain_id,
        parent_id,
        description: s(p, "description"),
        enabled: p.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        extra: extra_of(p, PROJECT_FIELDS),
        options: options_of(p),
        tags,
    };
    let project = api.id.create_project(project).await?;
    Ok(created(
        json!({"project": render::project(&base, &project)}),
    ))
}

async fn get_project(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    q: QueryMap,
) -> Result<Response> {
    let p = project_for(&api, &ctx, &id, "identity:get_project").await?;
    let mut v = render::project(&base, &p);
    let parents_list = super::flag(&q, "parents_as_list");
    let parents_ids = super::flag(&q, "parents_as_ids");
    let subtree_list = super::flag(&q, "subtree_as_list");
    let subtree_ids = super::flag(&q, "subtree_as_ids");
    if parents_list && parents_ids {
        return Err(IdentityError::validation(
            "Cannot use parents_as_list and parents_as_ids query params at the same time.",
        ));
    }
    if subtree_list && subtree_ids {
        return Err(IdentityError::validation(
            "Cannot use subtree_as_list and subtree_as_ids query params at the same time.",
        ));
    }
    if let Value::Object(m) = &mut v {
        if parents_list || parents_ids {
            let parents = api.id.project_parents(&p).await?;
            m.insert(
                "parents".into(),
                if parents_list {
                    Value::Array(
                        parents
                            .iter()
                            .map(|x| json!({"project": render::project(&base, x)}))
                            .collect(),
                    )
                } else {
                    nested_ids(
                        &parents
                            .iter()
                            .map(|x| x.id.clone())
                            .chain(std::iter::once(p.domain_id.clone()))
                            .collect::<Vec<_>>(),
                    )
                },
            );
        }
        if subtree_list || subtree_ids {
            let sub = api.id.project_subtree(&p).await?;
            m.insert(
                "subtree".into(),
                if subtree_list {
                    Value::Array(
                        sub.iter()
                            .map(|x| json!({"project": render::project(&base, x)}))
                            .collect(),
                    )
                } else {
                    subtree_tree(&p.id, &sub)
                },
            );
        }
    }
    Ok(ok(json!({"project": v})))
}

/// Keystone's `parents_as_ids` shape: `{"parent": {"grandparent": null}}`.
fn nested_ids(chain: &[String]) -> Value {
    let mut v = Value::Null;
    for id in chain.iter().rev() {
        let mut m = Map::new();
        m.insert(id.clone(), v);
        v = Value::Object(m);
    }
    v
}

fn subtree_tree(root: &str, all: &[Project]) -> Value {
    let children: Vec<&Project> = all
        .iter()
        .filter(|p| p.parent_id.as_deref() == Some(root))
        .collect();
    if children.is_empty() {
        return Value::Null;
    }
    let mut m = Map::new();
    for c in children {
        m.insert(c.id.clone(), subtree_tree(&c.id, all));
    }
    Value::Object(m)
}

async fn update_project(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "project")?;
    check(&schema::PROJECT_UPDATE, "project", patch)?;
    let old = project_for(&api, &ctx, &id, "identity:update_project").await?;
    if let Some(d) = s(patch, "domain_id")
        && d != old.domain_id
    {
        return Err(IdentityError::validation(
            "Update of `domain_id` is not allowed.",
        ));
    }
    if let Some(pid) = s(patch, "id")
        && pid != id
    {
        return Err(IdentityError::validation("Cannot change project ID"));
    }
    let mut p = old.clone();
    if let Some(n) = s(patch, "name") {
        p.name = n.trim().to_string();
    }
    if patch.get("description").is_some() {
        p.description = s(patch, "description");
    }
    if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
        p.enabled = e;
    }
    if let Some(t) = patch.get("tags") {
        p.tags = str_list(t);
    }
    p.options = merge_options(&old.options, patch);
    p.extra = merge_extra(&old.extra, patch, PROJECT_FIELDS);
    let p = api.id.update_project(p).await?;
    Ok(ok(json!({"project": render::project(&base, &p)})))
}

async fn delete_project(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    project_for(&api, &ctx, &id, "identity:delete_project").await?;
    api.id.delete_project(&id, false).await?;
    Ok(no_content())
}

// ---------------------------------------------------------------- tags

async fn project_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    action: &str,
) -> Result<Project> {
    guard(
        api,
        ctx,
        action,
        api.id.get_project(id).await,
        project_target,
        "project",
        id,
    )
}

async fn domain_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    action: &str,
) -> Result<Domain> {
    guard(
        api,
        ctx,
        action,
        api.id.get_domain(id).await,
        domain_target,
        "domain",
        id,
    )
}

fn check_tag_value(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > 255 || tag.contains(',') || tag.contains('/') {
        return Err(IdentityError::validation(format!(
            "Invalid input for field 'tags': '{tag}' does not match '^[^,/]*$' or is too long"
        )));
    }
    Ok(())
}

async fn list_tags(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = project_for(&api, &ctx, &id, "identity:list_project_tags").await?;
    Ok(ok(json!({"tags": p.tags})))
}

async fn replace_tags(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let mut p = project_for(&api, &ctx, &id, "identity:update_project_tags").await?;
    let tags = body
        .get("tags")
        .filter(|t| t.is_array())
        .ok_or_else(|| IdentityError::validation("'tags' is a required property"))?;
    let tags: Vec<String> = str_list(tags);
    for t in &tags {
        check_tag_value(t)?;
    }
    if tags.len() > 80 {
        return Err(IdentityError::validation(
            "Invalid input for field 'tags': too many tags (80 at most)",
        ));
    }
    let uniq: BTreeSet<&String> = tags.iter().collect();
    p.tags = uniq.into_iter().cloned().collect();
    let p = api.id.update_project(p).await?;
    Ok(ok(json!({"tags": p.tags})))
}

async fn delete_tags(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let mut p = project_for(&api, &ctx, &id, "identity:delete_project_tags").await?;
    p.tags.clear();
    api.id.update_project(p).await?;
    Ok(no_content())
}

async fn check_tag(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    let p = project_for(&api, &ctx, &id, "identity:get_project_tag").await?;
    if p.tags.contains(&tag) {
        Ok(no_content())
    } else {
        Err(IdentityError::not_found("project tag", tag))
    }
}

async fn add_tag(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    let mut p = project_for(&api, &ctx, &id, "identity:create_project_tag").await?;
    check_tag_value(&tag)?;
    if !p.tags.contains(&tag) {
        if p.tags.len() >= 80 {
            return Err(IdentityError::validation(
                "Invalid input for field 'tags': too many tags (80 at most)",
            ));
        }
        p.tags.push(tag.clone());
    }
    let p = api.id.update_project(p).await?;
    let mut resp = (StatusCode::CREATED, axum::Json(json!({"tags": p.tags}))).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&format!("{base}/v3/projects/{id}/tags/{tag}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(resp)
}

async fn delete_tag(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    let mut p = project_for(&api, &ctx, &id, "identity:delete_project_tag").await?;
    if !p.tags.contains(&tag) {
        return Err(IdentityError::not_found("project tag", tag));
    }
    p.tags.retain(|t| t != &tag);
    api.id.update_project(p).await?;
    Ok(no_content())
}
