//! `/os-quota-sets` (show, detail, defaults, update, reset) and `/os-quota-class-sets`.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, query_get, query_pairs};
use crate::core::quotas::{QuotaApi, shown_keys};
use crate::error::Result;

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/os-quota-sets/{project}",
            get(show).put(update).delete(reset),
        )
        .route("/os-quota-sets/{project}/defaults", get(defaults))
        .route("/os-quota-sets/{project}/detail", get(detail))
        .route(
            "/os-quota-class-sets/{class}",
            get(class_show).put(class_update),
        )
}

/// The `user_id` query parameter (the first one given, as Nova reads it).
fn user_id(q: &Option<String>) -> Option<String> {
    query_get(&query_pairs(q.as_deref()), "user_id").filter(|v| !v.is_empty())
}

fn render(
    api: QuotaApi,
    minor: u16,
    id: Option<&str>,
    limits: &[(&'static str, i64)],
) -> Map<String, Value> {
    let keys = shown_keys(api, minor);
    let mut out = Map::new();
    if let Some(id) = id {
        out.insert("id".into(), json!(id));
    }
    for (k, l) in limits {
        if keys.contains(k) {
            out.insert(k.to_string(), json!(l));
        }
    }
    out
}

fn mv_minor(ctx: &Ctx) -> u16 {
    ctx.mv.minor
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-sets:show",
        &json!({"project_id": project}),
    )?;
    let user = user_id(&q);
    let limits = svc.project_limits(&project, user.as_deref()).await?;
    let doc = render(QuotaApi::Sets, mv_minor(&ctx), Some(&project), &limits);
    Ok(Json(json!({"quota_set": doc})).into_response())
}

async fn detail(
    State(api): St,
    ctx: Ctx,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-sets:detail",
        &json!({"project_id": project}),
    )?;
    let user = user_id(&q);
    let keys = shown_keys(QuotaApi::Sets, mv_minor(&ctx));
    let mut doc = Map::new();
    doc.insert("id".into(), json!(project));
    for u in svc.quota_usages(&project, user.as_deref()).await? {
        if keys.contains(&u.resource) {
            doc.insert(
                u.resource.to_string(),
                json!({"in_use": u.in_use, "limit": u.limit, "reserved": 0}),
            );
        }
    }
    Ok(Json(json!({"quota_set": doc})).into_response())
}

async fn defaults(State(api): St, ctx: Ctx, Path(project): Path<String>) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-sets:defaults",
        &json!({"project_id": project}),
    )?;
    let limits = svc.class_limits("default").await?;
    let doc = render(QuotaApi::Sets, mv_minor(&ctx), Some(&project), &limits);
    Ok(Json(json!({"quota_set": doc})).into_response())
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-sets:update",
        &json!({"project_id": project}),
    )?;
    let outer = body
        .as_object()
        .ok_or_else(|| v::invalid("quota_set", &body, "is not of type 'object'"))?;
    v::only(outer, &["quota_set"])?;
    let set = v::object(&body, "quota_set")?;
    let user = user_id(&q);
    svc.update_quotas(&project, user.as_deref(), set, mv_minor(&ctx))
        .await?;
    let limits = svc.project_limits(&project, user.as_deref()).await?;
    let doc = render(QuotaApi::Sets, mv_minor(&ctx), None, &limits);
    Ok(Json(json!({"quota_set": doc})).into_response())
}

async fn reset(
    State(api): St,
    ctx: Ctx,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-sets:delete",
        &json!({"project_id": project}),
    )?;
    svc.reset_quotas(&project, user_id(&q).as_deref()).await?;
    Ok(accepted())
}

async fn class_show(State(api): St, ctx: Ctx, Path(class): Path<String>) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-class-sets:show",
        &json!({}),
    )?;
    let limits = svc.class_limits(&class).await?;
    let doc = render(QuotaApi::Classes, mv_minor(&ctx), Some(&class), &limits);
    Ok(Json(json!({"quota_class_set": doc})).into_response())
}

async fn class_update(
    State(api): St,
    ctx: Ctx,
    Path(class): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-quota-class-sets:update",
        &json!({}),
    )?;
    let outer = body
        .as_object()
        .ok_or_else(|| v::invalid("quota_class_set", &body, "is not of type 'object'"))?;
    v::only(outer, &["quota_class_set"])?;
    let set = v::object(&body, "quota_class_set")?;
    svc.update_quota_class(&class, set, mv_minor(&ctx)).await?;
    let limits = svc.class_limits(&class).await?;
    let doc = render(QuotaApi::Classes, mv_minor(&ctx), None, &limits);
    Ok(Json(json!({"quota_class_set": doc})).into_response())
}
