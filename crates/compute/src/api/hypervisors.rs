//! `/os-hypervisors`: list, detail, show, statistics; `{pattern}/search` and
//! `{pattern}/servers` before 2.53 (query parameters from 2.53); `{id}/uptime` (2.1-2.87)
//! answers Nova's 501 for a driver without uptime, which the CLI's `hypervisor show` expects.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, St, query_get, query_pairs, render};
use crate::core::services::{NodeUsage, service_is_up};
use crate::error::{ComputeError, Result};
use crate::model::{ComputeNode, Service};
use crate::store;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-hypervisors", get(list))
        .route("/os-hypervisors/detail", get(detail))
        .route("/os-hypervisors/statistics", get(statistics))
        .route("/os-hypervisors/{id}", get(show))
        .route("/os-hypervisors/{id}/uptime", get(uptime))
        .route("/os-hypervisors/{pattern}/search", get(search))
        .route("/os-hypervisors/{pattern}/servers", get(servers))
}

/// Nova's strict boolean of `with_servers`.
fn strict_bool(field: &str, s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(ComputeError::bad(format!(
            "Invalid input for query parameters {field}. Value: {s}. '{s}' is not one of ['True', 'true', 'TRUE', 'On', 'on', 'ON', 'Yes', 'yes', 'YES', '1', 'False', 'false', 'FALSE', 'Off', 'off', 'OFF', 'No', 'no', 'NO', '0']"
        ))),
    }
}

/// The id as a marker spells it.
fn marker_of(ctx: &Ctx, n: &ComputeNode) -> String {
    if ctx.at(53) {
        n.uuid.clone()
    } else {
        n.id.to_string()
    }
}

fn api_id(ctx: &Ctx, n: &ComputeNode) -> Value {
    if ctx.at(53) {
        json!(n.uuid)
    } else {
        json!(n.id)
    }
}

/// One hypervisor as Nova's view builder renders it.
fn view(
    ctx: &Ctx,
    n: &ComputeNode,
    s: &Service,
    usage: Option<&NodeUsage>,
    servers: Option<Vec<Value>>,
    down_time: i64,
) -> Value {
    let now = chrono::Utc::now();
    let mut d = json!({
        "id": api_id(ctx, n),
        "hypervisor_hostname": n.hypervisor_hostname,
        "state": if service_is_up(s, now, down_time) { "up" } else { "down" },
        "status": if s.disabled { "disabled" } else { "enabled" },
    });
    if let Some(u) = usage {
        let r = &n.resources;
        let memory_mb = r.memory_mb as i64;
        let local_gb = r.local_gb as i64;
        d["hypervisor_type"] = json!(r.hypervisor_type);
        d["hypervisor_version"] = json!(r.hypervisor_version);
        d["host_ip"] = json!(r.host_ip);
        d["service"] = json!({
            "id": if ctx.at(53) { json!(s.uuid) } else { json!(s.id) },
            "host": n.host,
            "disabled_reason": s.disabled_reason,
        });
        d["vcpus"] = json!(r.vcpus);
        d["memory_mb"] = json!(memory_mb);
        d["local_gb"] = json!(local_gb);
        d["vcpus_used"] = json!(u.vcpus_used);
        d["memory_mb_used"] = json!(u.memory_mb_used);
        d["local_gb_used"] = json!(u.local_gb_used);
        d["free_ram_mb"] = json!(memory_mb - u.memory_mb_used);
        d["free_disk_gb"] = json!(local_gb - u.local_gb_used);
        d["current_workload"] = json!(u.current_workload);
        d["running_vms"] = json!(u.running_vms);
        d["disk_available_least"] = json!(local_gb - u.local_gb_used);
        d["cpu_info"] = if ctx.at(28) {
            if r.cpu_info.is_object() {
                r.cpu_info.clone()
            } else {
                json!({})
            }
        } else {
            json!(r.cpu_info.to_string())
        };
    }
    if let Some(list) = servers
        && !list.is_empty()
    {
        d["servers"] = json!(list);
    }
    d
}

async fn servers_on(api: &Api, host: &str) -> Result<Vec<Value>> {
    Ok(store::instances_on_host(api.svc.db.conn(), host)
        .await?
        .iter()
        .map(|i| json!({"name": render::instance_name(i), "uuid": i.uuid}))
        .collect())
}

/// Nodes whose hypervisor hostname contains `pattern` (Nova's SQL LIKE %pattern%), or 404.
fn matching(
    all: Vec<(ComputeNode, Service)>,
    pattern: &str,
) -> Result<Vec<(ComputeNode, Service)>> {
    let found: Vec<_> = all
        .into_iter()
        .filter(|(n, _)| n.hypervisor_hostname.contains(pattern))
        .collect();
    if found.is_empty() {
        return Err(ComputeError::NotFound(format!(
            "No hypervisor matching '{pattern}' could be found."
        )));
    }
    Ok(found)
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    api.svc
        .authorize(&ctx.auth, "os_compute_api:os-hypervisors:list", &json!({}))?;
    index(&api, &ctx, q, false).await
}

async fn detail(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    api.svc.authorize(
        &ctx.auth,
        "os_compute_api:os-hypervisors:list-detail",
        &json!({}),
    )?;
    index(&api, &ctx, q, true).await
}

async fn index(api: &Api, ctx: &Ctx, q: Option<String>, detailed: bool) -> Result<Response> {
    let svc = &api.svc;
    let p = query_pairs(q.as_deref());
    let (pattern, with_servers) = if ctx.at(53) {
        let ws = match query_get(&p, "with_servers") {
            Some(s) => strict_bool("with_servers", &s)?,
            None => false,
        };
        (query_get(&p, "hypervisor_hostname_pattern"), ws)
    } else {
        (None, false)
    };
    let (mut limit, mut marker) = (None, None);
    if ctx.at(33) {
        if let Some(l) = query_get(&p, "limit") {
            let n = l.parse::<u64>().map_err(|_| {
                ComputeError::bad(format!(
                    "Invalid input for query parameters limit. Value: {l}. '{l}' does not match '^[0-9]*$'"
                ))
            })?;
            limit = Some(n as usize);
        }
        marker = query_get(&p, "marker");
    }
    let all = svc.nodes_with_services().await?;
    let mut nodes = if let Some(pat) = &pattern {
        if query_get(&p, "limit").is_some() || marker.is_some() {
            return Err(ComputeError::bad(
                "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.",
            ));
        }
        matching(all, pat)?
    } else {
        all
    };
    let mut links = None;
    if pattern.is_none() && ctx.at(33) {
        if let Some(m) = &marker {
            let pos = nodes
                .iter()
                .position(|(n, _)| marker_of(ctx, n) == *m)
                .ok_or_else(|| ComputeError::bad(format!("marker [{m}] not found")))?;
            nodes.drain(..=pos);
        }
        let max = svc.cfg.max_limit;
        let lim = limit.unwrap_or(max).min(max);
        nodes.truncate(lim);
        if lim > 0
            && nodes.len() == lim
            && let Some((last, _)) = nodes.last()
        {
            let coll = if detailed {
                "os-hypervisors/detail"
            } else {
                "os-hypervisors"
            };
            let mut qs: Vec<(String, String)> =
                p.iter().filter(|(k, _)| k != "marker").cloned().collect();
            qs.push(("marker".into(), marker_of(ctx, last)));
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(qs)
                .finish();
            links = Some(json!([{"rel": "next", "href": format!("{}/{coll}?{query}", ctx.base)}]));
        }
    }
    let mut out = Vec::new();
    for (n, s) in &nodes {
        let usage = if detailed {
            Some(svc.node_usage(n).await?)
        } else {
            None
        };
        let servers = if with_servers {
            Some(servers_on(api, &n.host).await?)
        } else {
            None
        };
        out.push(view(
            ctx,
            n,
            s,
            usage.as_ref(),
            servers,
            svc.cfg.service_down_time,
        ));
    }
    let mut doc = json!({"hypervisors": out});
    if let Some(l) = links {
        doc["hypervisors_links"] = l;
    }
    Ok(Json(doc).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let svc = &api.svc;
    let p = query_pairs(q.as_deref());
    let with_servers = match query_get(&p, "with_servers") {
        Some(s) if ctx.at(53) => strict_bool("with_servers", &s)?,
        _ => false,
    };
    svc.authorize(&ctx.auth, "os_compute_api:os-hypervisors:show", &json!({}))?;
    let not_found =
        || ComputeError::NotFound(format!("Hypervisor with ID '{id}' could not be found."));
    if ctx.at(53) {
        if !v::is_uuid(&id) {
            return Err(ComputeError::bad(format!("Invalid uuid {id}")));
        }
    } else if id.parse::<i32>().is_err() {
        return Err(not_found());
    }
    let (n, s) = svc
        .nodes_with_services()
        .await?
        .into_iter()
        .find(|(n, _)| {
            if ctx.at(53) {
                n.uuid == id
            } else {
                n.id.to_string() == id
            }
        })
        .ok_or_else(not_found)?;
    let usage = svc.node_usage(&n).await?;
    let servers = if with_servers {
        Some(servers_on(&api, &n.host).await?)
    } else {
        None
    };
    Ok(Json(json!({"hypervisor": view(
        &ctx,
        &n,
        &s,
        Some(&usage),
        servers,
        svc.cfg.service_down_time,
    )}))
    .into_response())
}

async fn statistics(State(api): St, ctx: Ctx) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-hypervisors:statistics",
        &json!({}),
    )?;
    let mut t = [0i64; 12];
    for (n, s) in svc.nodes_with_services().await? {
        if s.disabled {
            continue;
        }
        let u = svc.node_usage(&n).await?;
        let r = &n.resources;
        let (mem, disk) = (r.memory_mb as i64, r.local_gb as i64);
        let row = [
            1,
            r.vcpus as i64,
            mem,
            disk,
            u.vcpus_used,
            u.memory_mb_used,
            u.local_gb_used,
            mem - u.memory_mb_used,
            disk - u.local_gb_used,
            u.current_workload,
            u.running_vms,
            disk - u.local_gb_used,
        ];
        for (a, b) in t.iter_mut().zip(row) {
            *a += b;
        }
    }
    Ok(Json(json!({"hypervisor_statistics": {
        "count": t[0], "vcpus": t[1], "memory_mb": t[2], "local_gb": t[3],
        "vcpus_used": t[4], "memory_mb_used": t[5], "local_gb_used": t[6],
        "free_ram_mb": t[7], "free_disk_gb": t[8], "current_workload": t[9],
        "running_vms": t[10], "disk_available_least": t[11],
    }}))
    .into_response())
}

/// Before 2.53: hypervisors whose hostname contains the pattern.
async fn search(State(api): St, ctx: Ctx, Path(pattern): Path<String>) -> Result<Response> {
    legacy(&api, &ctx, &pattern, false).await
}

/// Before 2.53: the same, with their servers.
async fn servers(State(api): St, ctx: Ctx, Path(pattern): Path<String>) -> Result<Response> {
    legacy(&api, &ctx, &pattern, true).await
}

async fn legacy(api: &Api, ctx: &Ctx, pattern: &str, with_servers: bool) -> Result<Response> {
    if ctx.at(53) {
        return Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let svc = &api.svc;
    let policy = if with_servers {
        "os_compute_api:os-hypervisors:servers"
    } else {
        "os_compute_api:os-hypervisors:search"
    };
    svc.authorize(&ctx.auth, policy, &json!({}))?;
    let mut out = Vec::new();
    for (n, s) in matching(svc.nodes_with_services().await?, pattern)? {
        let servers = if with_servers {
            Some(servers_on(api, &n.host).await?)
        } else {
            None
        };
        out.push(view(ctx, &n, &s, None, servers, svc.cfg.service_down_time));
    }
    Ok(Json(json!({"hypervisors": out})).into_response())
}

/// `GET /os-hypervisors/{id}/uptime`: the hypervisor is looked up as Nova does, then 501 (no
/// driver of kumo reports a host's uptime; Nova answers the same for such drivers).
async fn uptime(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-hypervisors:uptime",
        &json!({}),
    )?;
    let not_found =
        || ComputeError::NotFound(format!("Hypervisor with ID '{id}' could not be found."));
    if ctx.at(88) {
        return Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    if ctx.at(53) {
        if !v::is_uuid(&id) {
            return Err(ComputeError::bad(format!("Invalid uuid {id}")));
        }
    } else if id.parse::<i32>().is_err() {
        return Err(not_found());
    }
    let found = svc.nodes_with_services().await?.into_iter().any(|(n, _)| {
        if ctx.at(53) {
            n.uuid == id
        } else {
            n.id.to_string() == id
        }
    });
    if !found {
        return Err(not_found());
    }
    Err(ComputeError::NotImplemented(
        "The requested functionality is not supported.".into(),
    ))
}
