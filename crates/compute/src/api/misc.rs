//! Limits and availability zones (quotas: quotas.rs; services: services.rs; hypervisors:
//! hypervisors.rs).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Api, Ctx, St};
use crate::core::ComputeService;
use crate::error::Result;
use crate::store;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/limits", get(limits))
        .route("/os-availability-zone", get(zones))
}

async fn limits(State(api): St, ctx: Ctx) -> Result<Response> {
    let svc = &api.svc;
    let own = ComputeService::own_target(&ctx.auth);
    svc.authorize(&ctx.auth, "os_compute_api:limits", &own)?;
    let project = ctx.auth.project_id().unwrap_or_default().to_string();
    let (n, cores, ram) = store::project_usage(svc.db.conn(), &project, None).await?;
    let l = |r: &'static str| {
        let svc = svc.clone();
        let project = project.clone();
        async move { svc.quota_limit(&project, r).await }
    };
    let groups = store::list_groups(svc.db.conn(), Some(&project))
        .await?
        .len();
    let mut abs = json!({
        "maxTotalInstances": l("instances").await?,
        "maxTotalCores": l("cores").await?,
        "maxTotalRAMSize": l("ram").await?,
        "maxServerMeta": l("metadata_items").await?,
        "maxTotalKeypairs": l("key_pairs").await?,
        "maxServerGroups": l("server_groups").await?,
        "maxServerGroupMembers": l("server_group_members").await?,
        "totalInstancesUsed": n,
        "totalCoresUsed": cores,
        "totalRAMUsed": ram,
        "totalServerGroupsUsed": groups,
    });
    if !ctx.at(57) {
        abs["maxPersonality"] = json!(l("injected_files").await?);
        abs["maxPersonalitySize"] = json!(l("injected_file_content_bytes").await?);
    }
    if !ctx.at(36) {
        for (k, val) in [
            ("maxSecurityGroups", 10),
            ("maxSecurityGroupRules", 20),
            ("maxTotalFloatingIps", 10),
            ("totalSecurityGroupsUsed", 0),
            ("totalFloatingIpsUsed", 0),
        ] {
            abs[k] = json!(val);
        }
    }
    if !ctx.at(39) {
        abs["maxImageMeta"] = json!(128);
    }
    Ok(Json(json!({"limits": {"absolute": abs, "rate": []}})).into_response())
}

async fn zones(State(api): St, ctx: Ctx) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-availability-zone:list",
        &ComputeService::own_target(&ctx.auth),
    )?;
    let items: Vec<Value> = svc
        .availability_zones()
        .await?
        .into_iter()
        .map(|(z, _)| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": null}))
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": items})).into_response())
}
