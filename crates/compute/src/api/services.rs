//! `/os-services` (list, update: by uuid from 2.53, by action and host/binary before,
//! delete) and `/os-availability-zone/detail`.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, no_content, query_get, query_pairs, render};
use crate::core::ComputeService;
use crate::core::aggregates::HostAggregates;
use crate::core::services::{ServiceChange, service_is_up};
use crate::error::{ComputeError, Result};
use crate::model::Service;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-services", get(list))
        .route("/os-services/{id}", put(update).delete(delete))
        .route("/os-availability-zone/detail", get(zones_detail))
}

fn view(aggs: &HostAggregates, ctx: &Ctx, s: &Service, down_time: i64) -> Value {
    let now = chrono::Utc::now();
    let mut d = json!({
        "binary": s.binary,
        "host": s.host,
        "id": if ctx.at(53) { json!(s.uuid) } else { json!(s.id) },
        "zone": ComputeService::service_zone(aggs, s),
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if service_is_up(s, now, down_time) { "up" } else { "down" },
        "updated_at": s.last_seen_up.or(s.updated_at).map(|t| render::naive(&t)),
        "disabled_reason": s.disabled_reason,
    });
    if ctx.at(11) {
        d["forced_down"] = json!(s.forced_down);
    }
    d
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(&ctx.auth, "os_compute_api:os-services:list", &json!({}))?;
    let pairs = query_pairs(q.as_deref());
    let host = query_get(&pairs, "host");
    let binary = query_get(&pairs, "binary");
    let aggs = svc.host_aggregates().await?;
    let out: Vec<Value> = svc
        .services(host.as_deref(), binary.as_deref())
        .await?
        .iter()
        .map(|s| view(&aggs, &ctx, s, svc.cfg.service_down_time))
        .collect();
    Ok(Json(json!({"services": out})).into_response())
}

/// A string property of 1-255 characters.
fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(v::invalid(key, &json!(s), "'' should be non-empty"))
        }
        Some(x) => v::string(key, x, 255, false),
    }
}

fn required(o: &Map<String, Value>, body: &Value, key: &str) -> Result<String> {
    text(o, key)?.ok_or_else(|| {
        ComputeError::bad(format!(
            "Invalid input for field/attribute {key}. Value: {body}. '{key}' is a required property"
        ))
    })
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let svc = &api.svc;
    let o = body
        .as_object()
        .ok_or_else(|| v::invalid("body", &body, format!("{body} is not of type 'object'")))?;
    if !ctx.at(53) {
        return update_legacy(&api, &ctx, &id, &body, o).await;
    }
    v::only(o, &["status", "disabled_reason", "forced_down"])?;
    let status = match o.get("status") {
        None => None,
        Some(Value::String(s)) if s == "enabled" || s == "disabled" => Some(s.clone()),
        Some(x) => {
            return Err(v::invalid(
                "status",
                x,
                format!("{x} is not one of ['enabled', 'disabled']"),
            ));
        }
    };
    let reason = text(o, "disabled_reason")?;
    let forced_down = o
        .get("forced_down")
        .map(|x| v::boolean("forced_down", x))
        .transpose()?;
    if !v::is_uuid(&id) {
        return Err(ComputeError::bad(format!("Invalid uuid {id}")));
    }
    svc.authorize(&ctx.auth, "os_compute_api:os-services:update", &json!({}))?;
    let s = svc
        .service_by_api_id(&id)
        .await?
        .ok_or_else(|| ComputeError::NotFound(format!("Service {id} could not be found.")))?;
    if s.binary != "nova-compute" {
        return Err(ComputeError::bad(format!(
            "Updating a {} service is not supported. Only nova-compute services can be updated.",
            s.binary
        )));
    }
    let mut change = ServiceChange {
        forced_down,
        ..Default::default()
    };
    match status.as_deref() {
        Some("enabled") => {
            if reason.is_some() {
                return Err(ComputeError::bad(
                    "Specifying 'disabled_reason' with status 'enabled' is invalid.",
                ));
            }
            change.disabled = Some(false);
        }
        Some(_) => {
            change.disabled = Some(true);
            change.disabled_reason = reason;
        }
        None => {}
    }
    if change.disabled.is_none() && change.forced_down.is_none() {
        return Err(ComputeError::bad(
            "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
        ));
    }
    let s = svc.update_service(s, &change).await?;
    let mut d = view(
        &svc.host_aggregates().await?,
        &ctx,
        &s,
        svc.cfg.service_down_time,
    );
    d["forced_down"] = json!(s.forced_down);
    Ok(Json(json!({"service": d})).into_response())
}

/// Before 2.53: `PUT /os-services/{enable|disable|disable-log-reason|force-down}` with the
/// host and binary in the body.
async fn update_legacy(
    api: &Api,
    ctx: &Ctx,
    action: &str,
    body: &Value,
    o: &Map<String, Value>,
) -> Result<Response> {
    let svc = &api.svc;
    let mut allowed = vec!["host", "binary", "disabled_reason"];
    if ctx.at(11) {
        allowed.push("forced_down");
    }
    v::only(o, &allowed)?;
    let host = required(o, body, "host")?;
    let binary = required(o, body, "binary")?;
    let reason = text(o, "disabled_reason")?;
    let forced = o
        .get("forced_down")
        .map(|x| v::boolean("forced_down", x))
        .transpose()?;
    svc.authorize(&ctx.auth, "os_compute_api:os-services:update", &json!({}))?;
    let (change, mut out) = match action {
        "enable" => (
            ServiceChange {
                disabled: Some(false),
                ..Default::default()
            },
            json!({"host": host, "binary": binary, "status": "enabled"}),
        ),
        "disable" => (
            ServiceChange {
                disabled: Some(true),
                ..Default::default()
            },
            json!({"host": host, "binary": binary, "status": "disabled"}),
        ),
        "disable-log-reason" => {
            let Some(r) = reason else {
                return Err(ComputeError::bad("Missing disabled reason field"));
            };
            (
                ServiceChange {
                    disabled: Some(true),
                    disabled_reason: Some(r.clone()),
                    ..Default::default()
                },
                json!({"host": host, "binary": binary, "status": "disabled",
                    "disabled_reason": r}),
            )
        }
        "force-down" if ctx.at(11) => {
            let Some(f) = forced else {
                return Err(ComputeError::bad("Missing forced_down field"));
            };
            (
                ServiceChange {
                    forced_down: Some(f),
                    ..Default::default()
                },
                json!({"host": host, "binary": binary, "forced_down": f}),
            )
        }
        _ => return Err(ComputeError::NotFound("Unknown action".into())),
    };
    svc.update_service_by_host(&host, &binary, &change).await?;
    if let Some(o) = out.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    Ok(Json(json!({"service": out})).into_response())
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(&ctx.auth, "os_compute_api:os-services:delete", &json!({}))?;
    if ctx.at(53) {
        if !v::is_uuid(&id) {
            return Err(ComputeError::bad(format!("Invalid uuid {id}")));
        }
    } else if id.parse::<i64>().is_err() {
        return Err(ComputeError::bad(
            "Invalid input received: id must be an integer",
        ));
    }
    let s = svc
        .service_by_api_id(&id)
        .await?
        .ok_or_else(|| ComputeError::NotFound(format!("Service {id} not found.")))?;
    svc.delete_service(&s).await?;
    Ok(no_content())
}

/// `GET /os-availability-zone/detail`: every zone with its hosts and their services; zones
/// whose services are all disabled are listed as not available.
async fn zones_detail(State(api): St, ctx: Ctx) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-availability-zone:detail",
        &json!({}),
    )?;
    let now = chrono::Utc::now();
    let mut available: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    let mut disabled_zones: Vec<String> = Vec::new();
    let aggs = svc.host_aggregates().await?;
    for s in svc.services(None, None).await? {
        let zone = ComputeService::service_zone(&aggs, &s);
        if s.disabled {
            disabled_zones.push(zone);
            continue;
        }
        available
            .entry(zone)
            .or_default()
            .entry(s.host.clone())
            .or_default()
            .insert(
                s.binary.clone(),
                json!({
                    "available": service_is_up(&s, now, svc.cfg.service_down_time),
                    "active": true,
                    "updated_at": s.last_seen_up.or(s.updated_at).map(|t| render::naive(&t)),
                }),
            );
    }
    disabled_zones.sort();
    disabled_zones.dedup();
    disabled_zones.retain(|z| !available.contains_key(z));
    let mut out: Vec<Value> = available
        .into_iter()
        .map(|(zone, hosts)| {
            json!({"zoneName": zone, "zoneState": {"available": true}, "hosts": hosts})
        })
        .collect();
    out.extend(
        disabled_zones.into_iter().map(
            |zone| json!({"zoneName": zone, "zoneState": {"available": false}, "hosts": null}),
        ),
    );
    Ok(Json(json!({"availabilityZoneInfo": out})).into_response())
}
