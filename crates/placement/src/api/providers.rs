//! `/resource_providers` and a provider's aggregates.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::schema::{self, parse};
use super::{
    Api, Ctx, JsonBody, Qs, check_accept, json, located, no_content, query, validate_query,
};
use crate::core::providers::ParentChange;
use crate::error::{ApiError, PlacementError, codes};
use crate::model::{ProviderFilter, ResourceProvider};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/resource_providers", get(list).post(create))
        .route(
            "/resource_providers/{uuid}",
            get(show).put(update).delete(delete),
        )
        .route(
            "/resource_providers/{uuid}/aggregates",
            get(aggregates).put(set_aggregates),
        )
}

pub fn provider_url(ctx: &Ctx, uuid: &str) -> String {
    format!("{}/resource_providers/{uuid}", ctx.prefix)
}

/// A provider as the API shows it at the request's version, serialised directly (lists of
/// hundreds of providers are on Nova's hot path).
struct Rendered<'a> {
    ctx: &'a Ctx,
    rp: &'a ResourceProvider,
}

/// `{prefix}/resource_providers/{uuid}[/{rel}]`, written straight into the output.
struct Href<'a>(&'a str, &'a str, Option<&'a str>);

impl Serialize for Href<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.2 {
            Some(rel) => s.collect_str(&format_args!(
                "{}/resource_providers/{}/{rel}",
                self.0, self.1
            )),
            None => s.collect_str(&format_args!("{}/resource_providers/{}", self.0, self.1)),
        }
    }
}

struct Link<'a>(&'a str, Href<'a>);

impl Serialize for Link<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("rel", self.0)?;
        m.serialize_entry("href", &self.1)?;
        m.end()
    }
}

struct Links<'a>(&'a Ctx, &'a str);

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ctx, uuid) = (self.0, self.1);
        let mut rels = vec!["inventories", "usages"];
        if ctx.at(1) {
            rels.push("aggregates");
        }
        if ctx.at(6) {
            rels.push("traits");
        }
        if ctx.at(11) {
            rels.push("allocations");
        }
        let mut seq = s.serialize_seq(Some(rels.len() + 1))?;
        seq.serialize_element(&Link("self", Href(&ctx.prefix, uuid, None)))?;
        for r in rels {
            seq.serialize_element(&Link(r, Href(&ctx.prefix, uuid, Some(r))))?;
        }
        seq.end()
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ctx, rp) = (self.ctx, self.rp);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("uuid", &rp.uuid)?;
        m.serialize_entry("name", &rp.name)?;
        m.serialize_entry("generation", &rp.generation)?;
        m.serialize_entry("links", &Links(ctx, &rp.uuid))?;
        if ctx.at(14) {
            m.serialize_entry("parent_provider_uuid", &rp.parent_provider_uuid)?;
            m.serialize_entry("root_provider_uuid", &rp.root_provider_uuid)?;
        }
        m.end()
    }
}

fn render<'a>(ctx: &'a Ctx, rp: &'a ResourceProvider) -> Rendered<'a> {
    Rendered { ctx, rp }
}

async fn list(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Qs(q): Qs,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:list")?;
    let s = if ctx.at(18) {
        &schema::GET_RPS_1_18
    } else if ctx.at(14) {
        &schema::GET_RPS_1_14
    } else if ctx.at(4) {
        &schema::GET_RPS_1_4
    } else if ctx.at(3) {
        &schema::GET_RPS_1_3
    } else {
        &schema::GET_RPS_1_0
    };
    validate_query(&q, s)?;
    let mut f = ProviderFilter::default();
    if q.has("member_of") {
        (f.member_of, f.forbidden_aggs) = query::member_of_params(&q, "", ctx.mv)?;
    }
    if q.has("required") {
        let (required, forbidden) = query::traits_params(&q, "", ctx.mv)?;
        f.required_traits = required;
        f.forbidden_traits = forbidden;
    }
    f.uuid = q.last("uuid").map(str::to_string);
    f.name = q.last("name").map(str::to_string);
    f.in_tree = q.last("in_tree").map(str::to_string);
    if let Some(r) = q.last("resources") {
        f.resources = query::resources(r)?;
    }
    let rps = api.p.list_providers(&f).await.map_err(|e| match e {
        PlacementError::ResourceClassNotFound(_) => ApiError::bad_request(format!(
            "Invalid resource class in resources parameter: {e}"
        )),
        PlacementError::TraitNotFound(_) => {
            ApiError::bad_request(format!("Invalid trait(s) in \"required\" parameter: {e}"))
        }
        other => other.into(),
    })?;
    let last = rps.iter().map(ResourceProvider::last_modified).max();
    let list: Vec<Rendered<'_>> = rps.iter().map(|rp| render(&ctx, rp)).collect();
    let body = BTreeMap::from([("resource_providers", list)]);
    Ok(json(StatusCode::OK, &body, &ctx, last))
}

async fn create(
    State(api): State<Api>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:create")?;
    let s = if ctx.at(14) {
        &schema::POST_RP_1_14
    } else {
        &schema::POST_RP
    };
    let data = parse(&body, s)?;
    let name = data["name"].as_str().unwrap_or_default().to_string();
    let uuid = match data.get("uuid").and_then(Value::as_str) {
        // "Normalize UUID with no proper dashes into dashed one", as upstream.
        Some(u) => uuid::Uuid::parse_str(u)
            .map(|x| x.hyphenated().to_string())
            .map_err(|_| ApiError::bad_request(format!("Malformed uuid: {u}")))?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let parent = data
        .get("parent_provider_uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let rp = api
        .p
        .create_provider(&uuid, &name, parent.as_deref())
        .await
        .map_err(|e| match e {
            PlacementError::ObjectAction { .. } => ApiError::bad_request(format!(
                "Unable to create resource provider \"{name}\", {uuid}: {e}"
            )),
            other => other.into(),
        })?;
    let location = format!("{}{}", ctx.origin, provider_url(&ctx, &rp.uuid));
    if ctx.at(20) {
        let mut resp = json(
            StatusCode::OK,
            &render(&ctx, &rp),
            &ctx,
            Some(rp.last_modified()),
        );
        if let Ok(v) = http::HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        Ok(resp)
    } else {
        Ok(located(StatusCode::CREATED, &location))
    }
}

async fn show(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:show")?;
    let rp = api.p.provider(&uuid).await?;
    Ok(json(
        StatusCode::OK,
        &render(&ctx, &rp),
        &ctx,
        Some(rp.last_modified()),
    ))
}

async fn update(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:update")?;
    api.p.provider(&uuid).await?;
    let s = if ctx.at(14) {
        &schema::PUT_RP_1_14
    } else {
        &schema::PUT_RP
    };
    let data = parse(&body, s)?;
    let name = data["name"].as_str().unwrap_or_default().to_string();
    let parent = match data.get("parent_provider_uuid") {
        None => ParentChange::Keep,
        Some(v) => ParentChange::Set(v.as_str().map(str::to_string)),
    };
    let rp = api
        .p
        .update_provider(&uuid, &name, parent, ctx.at(37))
        .await
        .map_err(|e| match e {
            PlacementError::ObjectAction { .. } => {
                ApiError::bad_request(format!("Unable to save resource provider {uuid}: {e}"))
            }
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        &render(&ctx, &rp),
        &ctx,
        Some(rp.last_modified()),
    ))
}

async fn delete(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    ctx.authorize(&api, "placement:resource_providers:delete")?;
    api.p.delete_provider(&uuid).await.map_err(|e| match e {
        PlacementError::ProviderInUse => {
            ApiError::conflict(format!("Unable to delete resource provider {uuid}: {e}"))
                .with_code(codes::PROVIDER_IN_USE)
        }
        PlacementError::CannotDeleteParent => ApiError::conflict(format!(
            "Unable to delete parent resource provider {uuid}: It has child resource providers."
        ))
        .with_code(codes::PROVIDER_CANNOT_DELETE_PARENT),
        other => other.into(),
    })?;
    Ok(no_content())
}

fn aggregates_body(ctx: &Ctx, generation: i64, aggregates: &[String]) -> Value {
    let mut v = json!({"aggregates": aggregates});
    if ctx.at(19) {
        v["resource_provider_generation"] = json!(generation);
    }
    v
}

async fn aggregates(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    check_accept(&headers)?;
    ctx.need(1)?;
    ctx.authorize(&api, "placement:resource_providers:aggregates:list")?;
    let t = api.p.provider_aggregates(&uuid).await?;
    Ok(json(
        StatusCode::OK,
        &aggregates_body(&ctx, t.generation, &t.names),
        &ctx,
        None,
    ))
}

async fn set_aggregates(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.need(1)?;
    ctx.authorize(&api, "placement:resource_providers:aggregates:update")?;
    api.p.provider(&uuid).await?;
    let (generation, list) = if ctx.at(19) {
        let data = parse(&body, &schema::PUT_AGGREGATES_1_19)?;
        (
            data["resource_provider_generation"].as_i64(),
            data["aggregates"].clone(),
        )
    } else {
        (None, parse(&body, &schema::PUT_AGGREGATES_1_1)?)
    };
    let aggregates: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let t = api
        .p
        .set_provider_aggregates(&uuid, generation, &aggregates)
        .await
        .map_err(|e| match e {
            PlacementError::ProviderConcurrentUpdate => {
                ApiError::conflict(format!("Update conflict: {e}"))
                    .with_code(codes::CONCURRENT_UPDATE)
            }
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        &aggregates_body(&ctx, t.generation, &t.names),
        &ctx,
        None,
    ))
}
