//! `/os-simple-tenant-usage`: every project's usage (admin) and one project's.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Api, Ctx, St, query_get, query_pairs};
use crate::core::ComputeService;
use crate::core::usage::{TenantUsage, isoformat, parse_period_time, summarize};
use crate::error::{ComputeError, Result};
use crate::model::Timestamp;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-simple-tenant-usage", get(list))
        .route("/os-simple-tenant-usage/{tenant}", get(show))
}

struct Period {
    start: Timestamp,
    stop: Timestamp,
    detailed: bool,
    limit: usize,
    marker: Option<String>,
}

fn period(api: &Api, ctx: &Ctx, p: &[(String, String)]) -> Result<Period> {
    let start = parse_period_time(query_get(p, "start").as_deref())?;
    let stop = parse_period_time(query_get(p, "end").as_deref())?;
    if start >= stop {
        return Err(ComputeError::bad(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    let now = chrono::Utc::now();
    let stop = stop.min(now);
    let max = api.svc.cfg.max_limit;
    let (mut limit, mut marker) = (max, None);
    if ctx.at(40) {
        if let Some(l) = query_get(p, "limit") {
            let n = l.parse::<u64>().map_err(|_| {
                ComputeError::bad(format!(
                    "Invalid input for query parameters limit. Value: {l}. '{l}' does not match '^[0-9]*$'"
                ))
            })?;
            limit = (n as usize).min(max);
        }
        marker = query_get(p, "marker");
    }
    Ok(Period {
        start,
        stop,
        detailed: query_get(p, "detailed").as_deref() == Some("1"),
        limit,
        marker,
    })
}

fn render(t: &TenantUsage, detailed: bool) -> Value {
    let mut d = json!({
        "tenant_id": t.tenant_id,
        "total_local_gb_usage": t.total_local_gb_usage,
        "total_vcpus_usage": t.total_vcpus_usage,
        "total_memory_mb_usage": t.total_memory_mb_usage,
        "total_hours": t.total_hours,
        "start": isoformat(&t.start),
        "stop": isoformat(&t.stop),
    });
    if detailed {
        d["server_usages"] = t
            .server_usages
            .iter()
            .map(|s| {
                json!({
                    "instance_id": s.instance_id,
                    "name": s.name,
                    "tenant_id": s.tenant_id,
                    "flavor": s.flavor,
                    "hours": s.hours,
                    "memory_mb": s.memory_mb,
                    "local_gb": s.local_gb,
                    "vcpus": s.vcpus,
                    "started_at": s.started_at.as_ref().map(isoformat),
                    "ended_at": s.ended_at.as_ref().map(isoformat),
                    "state": s.state,
                    "uptime": s.uptime,
                })
            })
            .collect();
    }
    d
}

/// The next-page link when a page came back full (2.40).
fn next_link(
    ctx: &Ctx,
    p: &[(String, String)],
    coll: &str,
    count: usize,
    limit: usize,
    last: Option<&str>,
) -> Option<Value> {
    let last = last?;
    if !ctx.at(40) || count == 0 || count != limit {
        return None;
    }
    let mut qs: Vec<(String, String)> = p.iter().filter(|(k, _)| k != "marker").cloned().collect();
    qs.push(("marker".into(), last.to_string()));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(qs)
        .finish();
    Some(json!([{"rel": "next", "href": format!("{}/{coll}?{query}", ctx.base)}]))
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-simple-tenant-usage:list",
        &ComputeService::own_target(&ctx.auth),
    )?;
    let p = query_pairs(q.as_deref());
    let per = period(&api, &ctx, &p)?;
    let instances = svc
        .instances_in_period(None, per.start, per.stop, per.limit, per.marker.as_deref())
        .await?;
    let usages = summarize(&instances, per.start, per.stop, chrono::Utc::now());
    let mut doc = json!({
        "tenant_usages": usages.iter().map(|t| render(t, per.detailed)).collect::<Vec<_>>(),
    });
    if let Some(l) = next_link(
        &ctx,
        &p,
        "os-simple-tenant-usage",
        instances.len(),
        per.limit,
        instances.last().map(|i| i.uuid.as_str()),
    ) {
        doc["tenant_usages_links"] = l;
    }
    Ok(Json(doc).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-simple-tenant-usage:show",
        &json!({"project_id": tenant}),
    )?;
    let p = query_pairs(q.as_deref());
    let per = period(&api, &ctx, &p)?;
    let instances = svc
        .instances_in_period(
            Some(&tenant),
            per.start,
            per.stop,
            per.limit,
            per.marker.as_deref(),
        )
        .await?;
    let usages = summarize(&instances, per.start, per.stop, chrono::Utc::now());
    let usage = usages
        .first()
        .map(|t| render(t, true))
        .unwrap_or_else(|| json!({}));
    let mut doc = json!({ "tenant_usage": usage });
    if let Some(l) = next_link(
        &ctx,
        &p,
        &format!("os-simple-tenant-usage/{tenant}"),
        instances.len(),
        per.limit,
        instances.last().map(|i| i.uuid.as_str()),
    ) {
        doc["tenant_usage_links"] = l;
    }
    Ok(Json(doc).into_response())
}
