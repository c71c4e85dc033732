//! `/resource_providers/{uuid}/inventories[/{resource_class}]` and `.../usages`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::providers::provider_url;
use super::schema::{self, parse};
use super::{Api, Ctx, JsonBody, check_accept, json, no_content};
use crate::core::inventories::last_modified;
use crate::error::{ApiError, PlacementError, codes};
use crate::model::{Inventory, ReservedRule};

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/resource_providers/{uuid}/inventories",
            get(list).post(create).put(set_all).delete(delete_all),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{resource_class}",
            get(show).put(update).delete(delete),
        )
        .route("/resource_providers/{uuid}/usages", get(usages))
}

pub fn rule(ctx: &Ctx) -> ReservedRule {
    if ctx.at(26) {
        ReservedRule::UpToTotal
    } else {
        ReservedRule::BelowTotal
    }
}

/// An inventory from a validated body, with upstream's defaults for absent fields.
pub fn inventory_from(resource_class: &str, v: &Value) -> Inventory {
    let mut inv = Inventory::new(resource_class, v["total"].as_i64().unwrap_or(0));
    if let Some(x) = v.get("reserved").and_then(Value::as_i64) {
        inv.reserved = x;
    }
    if let Some(x) = v.get("min_unit").and_then(Value::as_i64) {
        inv.min_unit = x;
    }
    if let Some(x) = v.get("max_unit").and_then(Value::as_i64) {
        inv.max_unit = x;
    }
    if let Some(x) = v.get("step_size").and_then(Value::as_i64) {
        inv.step_size = x;
    }
    if let Some(x) = v.get("allocation_ratio").and_then(Value::as_f64) {
        inv.allocation_ratio = x;
    }
    inv
}

fn fields(inv: &Inventory) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("total".into(), json!(inv.total));
    m.insert("reserved".into(), json!(inv.reserved));
    m.insert("min_unit".into(), json!(inv.min_unit));
    m.insert("max_unit".into(), json!(inv.max_unit));
    m.insert("step_size".into(), json!(inv.step_size));
    m.insert("allocation_ratio".into(), json!(inv.allocation_ratio));
    m
}

fn one(inv: &Inventory, generation: i64) -> Value {
    let mut m = fields(inv);
    // Upstream leaves the generation out when it is 0 (a falsy value).
    if generation != 0 {
        m.insert("resource_provider_generation".into(), json!(generation));
    }
    Value::Object(m)
}

fn many(invs: &[Inventory], generation: i64) -> Value {
    let by_class: Map<String, Value> = invs
        .iter()
        .map(|i| (i.resource_class.clone(), Value::Object(fields(i))))
        .collect();
    json!({"resource_provider_generation": generation, "inventories": by_class})
}

async fn list(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:inventories:list")?;
    let pi = api.p.inventories(&uuid).await.map_err(|e| match e {
        PlacementError::NotFound(_) => {
            ApiError::not_found(format!("No resource provider with uuid {uuid} found : {e}"))
        }
        other => other.into(),
    })?;
    Ok(json(
        StatusCode::OK,
        &many(&pi.inventories, pi.generation),
        &ctx,
        last_modified(&pi.inventories),
    ))
}

async fn show(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path((uuid, rc)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:inventories:show")?;
    let pi = api.p.inventories(&uuid).await.map_err(|e| match e {
        PlacementError::NotFound(_) => {
            ApiError::not_found(format!("No resource provider with uuid {uuid} found : {e}"))
        }
        other => other.into(),
    })?;
    let inv = pi
        .inventories
        .iter()
        .find(|i| i.resource_class == rc)
        .ok_or_else(|| ApiError::not_found(format!("No inventory of class {rc} for {uuid}")))?;
    Ok(json(
        StatusCode::OK,
        &one(inv, pi.generation),
        &ctx,
        inv.last_modified(),
    ))
}

async fn create(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:inventories:create")?;
    api.p.provider(&uuid).await?;
    let data = parse(&body, &schema::POST_INVENTORY)?;
    let rc = data["resource_class"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let inv = inventory_from(&rc, &data);
    let (generation, inv) =
        api.p
            .add_inventory(&uuid, inv, rule(&ctx))
            .await
            .map_err(|e| match e {
                PlacementError::ProviderConcurrentUpdate | PlacementError::Duplicate(_) => {
                    ApiError::conflict(format!("Update conflict: {e}"))
                        .with_code(codes::CONCURRENT_UPDATE)
                }
                PlacementError::InvalidInventoryCapacity { .. }
                | PlacementError::InvalidInventoryCapacityReservedCanBeTotal { .. }
                | PlacementError::ResourceClassNotFound(_)
                | PlacementError::NotFound(_) => ApiError::bad_request(format!(
                    "Unable to create inventory for resource provider {uuid}: {e}"
                )),
                other => other.into(),
            })?;
    let mut resp = json(StatusCode::CREATED, &one(&inv, generation), &ctx, None);
    let location = format!(
        "{}{}/inventories/{rc}",
        ctx.origin,
        provider_url(&ctx, &uuid)
    );
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(resp)
}

async fn set_all(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:inventories:update")?;
    api.p.provider(&uuid).await?;
    let data = parse(&body, &schema::PUT_INVENTORIES)?;
    let generation = data["resource_provider_generation"].as_i64();
    let invs: Vec<Inventory> = data["inventories"]
        .as_object()
        .map(|m| m.iter().map(|(rc, v)| inventory_from(rc, v)).collect())
        .unwrap_or_default();
    let pi = api
        .p
        .set_inventories(&uuid, generation, invs, rule(&ctx))
        .await
        .map_err(|e| match e {
            PlacementError::ResourceClassNotFound(_) => ApiError::bad_request(format!(
                "Unknown resource class in inventory for resource provider {uuid}: {e}"
            )),
            PlacementError::InventoryNotFound(_) => ApiError::conflict(format!(
                "Race condition detected when setting inventory. No inventory record with resource class for resource provider {uuid}: {e}"
            )),
            PlacementError::ProviderConcurrentUpdate => {
                ApiError::conflict(format!("update conflict: {e}")).with_code(codes::CONCURRENT_UPDATE)
            }
            PlacementError::InventoryInUse { .. } => {
                ApiError::conflict(format!("update conflict: {e}")).with_code(codes::INVENTORY_INUSE)
            }
            PlacementError::InvalidInventoryCapacity { .. }
            | PlacementError::InvalidInventoryCapacityReservedCanBeTotal { .. } => {
                ApiError::bad_request(format!(
                    "Unable to update inventory for resource provider {uuid}: {e}"
                ))
            }
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        &many(&pi.inventories, pi.generation),
        &ctx,
        None,
    ))
}

async fn update(
    State(api): State<Api>,
    ctx: Ctx,
    Path((uuid, rc)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:inventories:update")?;
    api.p.provider(&uuid).await?;
    let data = parse(&body, &schema::PUT_INVENTORY)?;
    let generation = data["resource_provider_generation"].as_i64().unwrap_or(-1);
    let inv = inventory_from(&rc, &data);
    let (generation, inv) = api
        .p
        .update_inventory(&uuid, generation, inv, rule(&ctx))
        .await
        .map_err(|e| match e {
            PlacementError::ProviderConcurrentUpdate => {
                ApiError::conflict(format!("update conflict: {e}"))
                    .with_code(codes::CONCURRENT_UPDATE)
            }
            PlacementError::InventoryNotFound(_) => ApiError::bad_request(format!(
                "No inventory record with resource class for resource provider {uuid}: {e}"
            )),
            PlacementError::InvalidInventoryCapacity { .. }
            | PlacementError::InvalidInventoryCapacityReservedCanBeTotal { .. } => {
                ApiError::bad_request(format!(
                    "Unable to update inventory for resource provider {uuid}: {e}"
                ))
            }
            other => other.into(),
        })?;
    Ok(json(StatusCode::OK, &one(&inv, generation), &ctx, None))
}

async fn delete(
    State(api): State<Api>,
    ctx: Ctx,
    Path((uuid, rc)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:inventories:delete")?;
    api.p.provider(&uuid).await?;
    api.p
        .delete_inventory(&uuid, &rc)
        .await
        .map_err(|e| match e {
            PlacementError::ProviderConcurrentUpdate | PlacementError::InventoryInUse { .. } => {
                ApiError::conflict(format!("Unable to delete inventory of class {rc}: {e}"))
                    .with_code(codes::CONCURRENT_UPDATE)
            }
            PlacementError::NotFound(_) | PlacementError::ResourceClassNotFound(_) => {
                ApiError::not_found(format!("No inventory of class {rc} found for delete: {e}"))
            }
            other => other.into(),
        })?;
    Ok(no_content())
}

async fn delete_all(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    if !ctx.at(5) {
        return Err(ApiError::templated(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method DELETE is not allowed for this resource.",
            "",
        ));
    }
    ctx.authorize(&api, "placement:resource_providers:inventories:delete")?;
    api.p.provider(&uuid).await?;
    api.p
        .set_inventories(&uuid, None, Vec::new(), rule(&ctx))
        .await
        .map_err(|e| match e {
            PlacementError::ProviderConcurrentUpdate => ApiError::conflict(format!(
                "Unable to delete inventory for resource provider {uuid} because the inventory was updated by another process. Please retry your request."
            ))
            .with_code(codes::CONCURRENT_UPDATE),
            PlacementError::InventoryInUse { .. } => {
                ApiError::conflict(e.to_string()).with_code(codes::INVENTORY_INUSE)
            }
            other => other.into(),
        })?;
    Ok(no_content())
}

async fn usages(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:usages")?;
    let u = api.p.provider_usages(&uuid).await.map_err(|e| match e {
        PlacementError::NotFound(_) => {
            ApiError::not_found(format!("No resource provider with uuid {uuid} found: {e}"))
        }
        other => other.into(),
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({"resource_provider_generation": u.generation, "usages": u.usages}),
        &ctx,
        None,
    ))
}
