//! `/traits[/{name}]` and `/resource_providers/{uuid}/traits` (1.6+).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use std::collections::BTreeSet;

use super::schema::{self, parse};
use super::{
    Api, Ctx, JsonBody, Qs, cache_headers, check_accept, json, located, no_content, validate_query,
};
use crate::error::{ApiError, PlacementError, codes};
use crate::model::{Trait, TraitFilter};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/traits", get(list))
        .route("/traits/{name}", get(show).put(put).delete(delete))
        .route(
            "/resource_providers/{uuid}/traits",
            get(provider_traits)
                .put(set_provider_traits)
                .delete(delete_provider_traits),
        )
}

async fn list(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Qs(q): Qs,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:traits:list")?;
    validate_query(&q, &schema::LIST_TRAITS)?;
    let mut f = TraitFilter::default();
    if let Some(name) = q.last("name") {
        let Some((op, value)) = name.split_once(':') else {
            return Err(ApiError::bad_request(format!(
                "Badly formatted name parameter. Expected name query string parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{name}\""
            )));
        };
        match op {
            "in" => f.name_in = Some(value.split(',').map(str::to_string).collect()),
            "startswith" => f.prefix = Some(value.to_string()),
            _ => {}
        }
    }
    if let Some(a) = q.last("associated") {
        f.associated = Some(match a.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ApiError::bad_request(
                    "The query parameter \"associated\" only accepts \"true\" or \"false\"",
                ));
            }
        });
    }
    let traits = api.p.traits(&f).await?;
    let last = traits.iter().map(Trait::last_modified).max();
    let names: Vec<&str> = traits.iter().map(|t| t.name.as_str()).collect();
    Ok(json(StatusCode::OK, &json!({"traits": names}), &ctx, last))
}

async fn show(
    State(api): State<Api>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    ctx.authorize(&api, "placement:traits:show")?;
    let t = api.p.trait_(&name).await?;
    let mut resp = no_content();
    if ctx.at(15) {
        cache_headers(&mut resp, Some(t.created_at));
    }
    Ok(resp)
}

async fn put(
    State(api): State<Api>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    ctx.authorize(&api, "placement:traits:update")?;
    if !schema::CUSTOM_TRAIT.is_valid(&json!(name)) {
        return Err(ApiError::bad_request(
            "The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" and \"_\"",
        ));
    }
    let (t, created) = api.p.ensure_trait(&name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let mut resp = located(
        status,
        &format!("{}{}/traits/{name}", ctx.origin, ctx.prefix),
    );
    if ctx.at(15) {
        cache_headers(&mut resp, Some(t.created_at));
    }
    Ok(resp)
}

async fn delete(
    State(api): State<Api>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    ctx.authorize(&api, "placement:traits:delete")?;
    api.p.delete_trait(&name).await?;
    Ok(no_content())
}

async fn provider_traits(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_providers:traits:list")?;
    let t = api.p.provider_traits(&uuid).await.map_err(|e| match e {
        PlacementError::NotFound(_) => {
            ApiError::not_found(format!("No resource provider with uuid {uuid} found: {e}"))
        }
        other => other.into(),
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({"traits": t.names, "resource_provider_generation": t.generation}),
        &ctx,
        None,
    ))
}

async fn set_provider_traits(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    ctx.authorize(&api, "placement:resource_providers:traits:update")?;
    let data = parse(&body, &schema::PUT_RP_TRAITS)?;
    let generation = data["resource_provider_generation"].as_i64();
    let names: BTreeSet<String> = data["traits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let t = api
        .p
        .set_provider_traits(&uuid, generation, &names)
        .await
        .map_err(|e| match e {
            PlacementError::ProviderConcurrentUpdate => {
                ApiError::conflict(e.to_string()).with_code(codes::CONCURRENT_UPDATE)
            }
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        &json!({"traits": t.names, "resource_provider_generation": t.generation}),
        &ctx,
        None,
    ))
}

async fn delete_provider_traits(
    State(api): State<Api>,
    ctx: Ctx,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(6)?;
    ctx.authorize(&api, "placement:resource_providers:traits:delete")?;
    api.p
        .set_provider_traits(&uuid, None, &BTreeSet::new())
        .await?;
    Ok(no_content())
}
