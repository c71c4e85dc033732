//! `/allocations`, `/allocations/{consumer_uuid}`, `/resource_providers/{uuid}/allocations`,
//! `/usages` and `/reshaper`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::inventories::inventory_from;
use super::schema::{self, is_uuid_like, parse};
use super::{Api, Ctx, JsonBody, Qs, check_accept, json, no_content, validate_query};
use crate::core::reshaper::{ReshapeError, ReshapeInventories};
use crate::error::{ApiError, PlacementError, codes};
use crate::model::{ConsumerTypeFilter, ConsumerWrite, UNKNOWN_CONSUMER_TYPE, WriteRules};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/allocations", post(post_allocations))
        .route(
            "/allocations/{consumer_uuid}",
            get(for_consumer).put(put_allocations).delete(delete),
        )
        .route("/resource_providers/{uuid}/allocations", get(for_provider))
        .route("/usages", get(usages))
        .route("/reshaper", post(reshape))
}

fn rules(ctx: &Ctx) -> WriteRules {
    WriteRules {
        check_consumer_generation: ctx.at(28),
        set_consumer_type: ctx.at(38),
    }
}

/// `{rp_uuid: {"resources": {rc: n}}}` (1.12+) as amounts by provider and class.
fn allocations_dict(v: &Value) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    if let Some(m) = v.as_object() {
        for (rp, a) in m {
            let res = a["resources"]
                .as_object()
                .map(|r| {
                    r.iter()
                        .map(|(rc, n)| (rc.clone(), n.as_i64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(rp.clone(), res);
        }
    }
    out
}

/// The list format before 1.12: `[{"resource_provider": {"uuid"}, "resources": {...}}]`.
fn allocations_list(v: &Value) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for a in v.as_array().into_iter().flatten() {
        let rp = a["resource_provider"]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let res: BTreeMap<String, i64> = a["resources"]
            .as_object()
            .map(|r| {
                r.iter()
                    .map(|(rc, n)| (rc.clone(), n.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        // A later entry for the same provider replaces the earlier one, as upstream.
        out.insert(rp, res);
    }
    out
}

/// One consumer's write from a validated body (dict format).
fn consumer_write(uuid: &str, d: &Value) -> ConsumerWrite {
    ConsumerWrite {
        consumer_uuid: uuid.to_string(),
        project_id: d
            .get("project_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        user_id: d.get("user_id").and_then(Value::as_str).map(str::to_string),
        consumer_generation: d.get("consumer_generation").and_then(Value::as_i64),
        consumer_type: d
            .get("consumer_type")
            .and_then(Value::as_str)
            .map(str::to_string),
        allocations: allocations_dict(&d["allocations"]),
    }
}

/// The errors of an allocation write, worded as upstream's handlers word them.
fn write_error(e: PlacementError, not_found_prefix: &str) -> ApiError {
    match e {
        PlacementError::NotFound(_) | PlacementError::ResourceClassNotFound(_) => {
            ApiError::bad_request(format!("{not_found_prefix}{e}"))
        }
        PlacementError::CapacityExceeded { .. }
        | PlacementError::ConstraintsViolated { .. }
        | PlacementError::InvalidInventory { .. } => {
            ApiError::conflict(format!("Unable to allocate inventory: {e}"))
        }
        PlacementError::ConcurrentUpdate | PlacementError::ProviderConcurrentUpdate => {
            ApiError::conflict(format!(
                "Inventory and/or allocations changed while attempting to allocate: {e}"
            ))
            .with_code(codes::CONCURRENT_UPDATE)
        }
        other => other.into(),
    }
}

async fn put_allocations(
    State(api): State<Api>,
    ctx: Ctx,
    Path(consumer): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:allocations:update")?;
    if !is_uuid_like(&consumer) {
        return Err(ApiError::bad_request(format!(
            "Malformed consumer_uuid: {consumer}"
        )));
    }
    let consumer = uuid::Uuid::parse_str(&consumer)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request(format!("Malformed consumer_uuid: {consumer}")))?;
    let s = if ctx.at(38) {
        &schema::PUT_ALLOCATIONS_1_38
    } else if ctx.at(34) {
        &schema::PUT_ALLOCATIONS_1_34
    } else if ctx.at(28) {
        &schema::PUT_ALLOCATIONS_1_28
    } else if ctx.at(12) {
        &schema::PUT_ALLOCATIONS_1_12
    } else if ctx.at(8) {
        &schema::PUT_ALLOCATIONS_1_8
    } else {
        &schema::PUT_ALLOCATIONS_1_0
    };
    let data = parse(&body, s)?;
    let mut write = consumer_write(&consumer, &data);
    if !ctx.at(12) {
        write.allocations = allocations_list(&data["allocations"]);
    }
    api.p
        .write_allocations(&[write], rules(&ctx))
        .await
        .map_err(|e| {
            write_error(
                e,
                &format!("Unable to allocate inventory for consumer {consumer}: "),
            )
        })?;
    Ok(no_content())
}

async fn post_allocations(
    State(api): State<Api>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.need(13)?;
    ctx.authorize(&api, "placement:allocations:manage")?;
    let s = if ctx.at(38) {
        &schema::POST_ALLOCATIONS_1_38
    } else if ctx.at(34) {
        &schema::POST_ALLOCATIONS_1_34
    } else if ctx.at(28) {
        &schema::POST_ALLOCATIONS_1_28
    } else {
        &schema::POST_ALLOCATIONS_1_13
    };
    let data = parse(&body, s)?;
    let writes: Vec<ConsumerWrite> = data
        .as_object()
        .map(|m| m.iter().map(|(c, d)| consumer_write(c, d)).collect())
        .unwrap_or_default();
    api.p
        .write_allocations(&writes, rules(&ctx))
        .await
        .map_err(|e| write_error(e, "Unable to allocate inventory "))?;
    Ok(no_content())
}

async fn for_consumer(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(consumer): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:allocations:list")?;
    let ca = api.p.consumer_allocations(&consumer).await?;
    let mut by_rp: Map<String, Value> = Map::new();
    for a in &ca.allocations {
        let entry = by_rp
            .entry(a.provider_uuid.clone())
            .or_insert_with(|| json!({"resources": {}}));
        entry["resources"][&a.resource_class] = json!(a.used);
        entry["generation"] = json!(a.provider_generation);
    }
    let mut out = json!({"allocations": by_rp});
    if let Some(c) = ca.consumer.as_ref().filter(|_| ctx.at(12)) {
        out["project_id"] = json!(c.project_id);
        out["user_id"] = json!(c.user_id);
        if ctx.at(28) {
            out["consumer_generation"] = json!(c.generation);
        }
        if ctx.at(38) {
            out["consumer_type"] =
                json!(c.consumer_type.as_deref().unwrap_or(UNKNOWN_CONSUMER_TYPE));
        }
    }
    let last = ca.allocations.iter().map(|a| a.last_modified).max();
    Ok(json(StatusCode::OK, &out, &ctx, last))
}

async fn for_provider(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:allocations:list")?;
    let pa = api
        .p
        .provider_allocations(&uuid)
        .await
        .map_err(|e| match e {
            PlacementError::NotFound(_) => {
                ApiError::not_found(format!("Resource provider '{uuid}' not found: {e}"))
            }
            other => other.into(),
        })?;
    let mut by_consumer: Map<String, Value> = Map::new();
    for a in &pa.allocations {
        let entry = by_consumer
            .entry(a.consumer_uuid.clone())
            .or_insert_with(|| json!({"resources": {}}));
        entry["resources"][&a.resource_class] = json!(a.used);
        if ctx.at(28) {
            entry["consumer_generation"] = json!(a.consumer_generation);
        }
    }
    let last = pa.allocations.iter().map(|a| a.last_modified).max();
    Ok(json(
        StatusCode::OK,
        &json!({"allocations": by_consumer, "resource_provider_generation": pa.provider_generation}),
        &ctx,
        last,
    ))
}

async fn delete(
    State(api): State<Api>,
    ctx: Ctx,
    Path(consumer): Path<String>,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:allocations:delete")?;
    api.p.delete_consumer_allocations(&consumer).await?;
    Ok(no_content())
}

async fn usages(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Qs(q): Qs,
) -> Result<Response, ApiError> {
    ctx.need(9)?;
    check_accept(&headers)?;
    let project = q.last("project_id").map(str::to_string);
    api.p
        .authorize(&ctx.auth, "placement:usages", project.as_deref())
        .map_err(|d| ApiError::forbidden(d.to_string()))?;
    let by_type = ctx.at(38);
    validate_query(
        &q,
        if by_type {
            &schema::GET_USAGES_1_38
        } else {
            &schema::GET_USAGES_1_9
        },
    )?;
    let filter = if !by_type {
        ConsumerTypeFilter::None
    } else {
        match q.last("consumer_type") {
            None => ConsumerTypeFilter::PerType,
            Some("all") => ConsumerTypeFilter::All,
            Some("unknown") => ConsumerTypeFilter::Unknown,
            Some(t) => ConsumerTypeFilter::Named(t.to_string()),
        }
    };
    let usages = api
        .p
        .usages(
            project.as_deref().unwrap_or_default(),
            q.last("user_id"),
            &filter,
        )
        .await?;
    let mut out = Map::new();
    for u in &usages {
        match &u.consumer_type {
            None => {
                out.insert(u.resource_class.clone(), json!(u.usage));
            }
            Some(t) => {
                let group = out.entry(t.clone()).or_insert_with(|| json!({}));
                group[&u.resource_class] = json!(u.usage);
                group["consumer_count"] = json!(u.consumer_count);
            }
        }
    }
    Ok(json(StatusCode::OK, &json!({"usages": out}), &ctx, None))
}

async fn reshape(
    State(api): State<Api>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.need(30)?;
    ctx.authorize(&api, "placement:reshaper:reshape")?;
    let s = if ctx.at(38) {
        &schema::RESHAPER_1_38
    } else if ctx.at(34) {
        &schema::RESHAPER_1_34
    } else {
        &schema::RESHAPER_1_30
    };
    let data = parse(&body, s)?;
    let mut inventories = BTreeMap::new();
    for (rp, d) in data["inventories"].as_object().into_iter().flatten() {
        inventories.insert(
            rp.clone(),
            ReshapeInventories {
                generation: d["resource_provider_generation"].as_i64().unwrap_or(-1),
                inventories: d["inventories"]
                    .as_object()
                    .map(|m| m.iter().map(|(rc, v)| inventory_from(rc, v)).collect())
                    .unwrap_or_default(),
            },
        );
    }
    let writes: Vec<ConsumerWrite> = data["allocations"]
        .as_object()
        .map(|m| m.iter().map(|(c, d)| consumer_write(c, d)).collect())
        .unwrap_or_default();
    api.p
        .reshape(&inventories, &writes, rules(&ctx))
        .await
        .map_err(|e| match e {
            ReshapeError::ProviderNotFound(rp) => ApiError::bad_request(format!(
                "Resource provider {rp} in inventories not found: No resource provider with uuid {rp} found"
            ))
            .with_code(codes::RESOURCE_PROVIDER_NOT_FOUND),
            ReshapeError::Generation { .. } => {
                ApiError::conflict(e.to_string()).with_code(codes::CONCURRENT_UPDATE)
            }
            ReshapeError::Placement(p) => match p {
                PlacementError::ConcurrentUpdate | PlacementError::ProviderConcurrentUpdate => {
                    ApiError::conflict(format!("update conflict: {p}"))
                        .with_code(codes::CONCURRENT_UPDATE)
                }
                PlacementError::NotFound(_)
                | PlacementError::ResourceClassNotFound(_)
                | PlacementError::InventoryNotFound(_) => {
                    ApiError::bad_request(format!("malformed reshaper data: {p}"))
                }
                PlacementError::InventoryInUse { .. } => {
                    ApiError::conflict(format!("update conflict: {p}"))
                        .with_code(codes::INVENTORY_INUSE)
                }
                PlacementError::CapacityExceeded { .. }
                | PlacementError::ConstraintsViolated { .. }
                | PlacementError::InvalidInventory { .. } => {
                    ApiError::conflict(format!("Unable to allocate inventory: {p}"))
                }
                other => other.into(),
            },
        })?;
    Ok(no_content())
}
