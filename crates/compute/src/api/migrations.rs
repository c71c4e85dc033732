//! `GET /os-migrations` (admin): the migration records (evacuations so far), filtered by
//! host, status, instance_uuid, migration_type and source_compute as Nova's; a project's
//! own only without the all-projects policy, host fields only with the host policy.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Api, Ctx, St, query_get, query_pairs, render};
use crate::error::Result;
use crate::model::Migration;

pub fn routes() -> Router<Api> {
    Router::new().route("/os-migrations", get(list))
}

fn view(ctx: &Ctx, m: &Migration, hosts: bool) -> Value {
    let mut d = json!({
        "id": m.id,
        "instance_uuid": m.instance_uuid,
        "status": m.status,
        "source_compute": m.source_compute,
        "source_node": m.source_node,
        "dest_compute": m.dest_compute,
        "dest_node": m.dest_node,
        "dest_host": null,
        "old_instance_type_id": null,
        "new_instance_type_id": null,
        "created_at": render::naive(&m.created_at),
        "updated_at": render::naive(&m.updated_at),
    });
    if !hosts {
        // Nova hides where a migration ran from callers without the host policy.
        for k in ["source_compute", "source_node", "dest_compute", "dest_node"] {
            d[k] = Value::Null;
        }
    }
    if ctx.at(23) {
        d["migration_type"] = json!(m.migration_type);
    }
    if ctx.at(59) {
        d["uuid"] = json!(m.uuid);
    }
    d
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(&ctx.auth, "os_compute_api:os-migrations:index", &json!({}))?;
    let all_projects = svc.allowed(
        &ctx.auth,
        "os_compute_api:os-migrations:index:all_projects",
        &json!({}),
    );
    let hosts = svc.allowed(
        &ctx.auth,
        "os_compute_api:os-migrations:index:host",
        &json!({}),
    );
    let own = ctx.auth.project_id().map(str::to_string);
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| query_get(&pairs, k).filter(|v| !v.is_empty());
    let host = get("host");
    let status = get("status");
    let instance = get("instance_uuid");
    let kind = get("migration_type");
    let source = get("source_compute");
    let out: Vec<Value> = svc
        .migrations()
        .await?
        .iter()
        .filter(|m| {
            host.as_ref().is_none_or(|h| {
                m.source_compute.as_ref() == Some(h) || m.dest_compute.as_ref() == Some(h)
            })
        })
        .filter(|m| all_projects || own.as_deref() == Some(m.project_id.as_str()))
        .filter(|m| status.as_ref().is_none_or(|s| m.status == *s))
        .filter(|m| instance.as_ref().is_none_or(|u| m.instance_uuid == *u))
        .filter(|m| kind.as_ref().is_none_or(|k| m.migration_type == *k))
        .filter(|m| {
            source
                .as_ref()
                .is_none_or(|s| m.source_compute.as_ref() == Some(s))
        })
        .map(|m| view(&ctx, m, hosts))
        .collect();
    Ok(Json(json!({"migrations": out})).into_response())
}
