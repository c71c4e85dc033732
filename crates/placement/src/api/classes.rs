//! `/resource_classes[/{name}]` (1.2+).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::schema::{self, parse};
use super::{Api, Ctx, JsonBody, check_accept, json, located, no_content};
use crate::error::{ApiError, PlacementError};
use crate::model::ResourceClass;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/resource_classes", get(list).post(create))
        .route(
            "/resource_classes/{name}",
            get(show).put(update).delete(delete),
        )
}

fn url(ctx: &Ctx, name: &str) -> String {
    format!("{}/resource_classes/{name}", ctx.prefix)
}

fn render(ctx: &Ctx, rc: &ResourceClass) -> Value {
    json!({"name": rc.name, "links": [{"rel": "self", "href": url(ctx, &rc.name)}]})
}

async fn list(State(api): State<Api>, ctx: Ctx, headers: HeaderMap) -> Result<Response, ApiError> {
    ctx.need(2)?;
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_classes:list")?;
    let rcs = api.p.resource_classes().await?;
    let last = rcs.iter().map(ResourceClass::last_modified).max();
    let body =
        json!({"resource_classes": rcs.iter().map(|rc| render(&ctx, rc)).collect::<Vec<_>>()});
    Ok(json(StatusCode::OK, &body, &ctx, last))
}

async fn create(
    State(api): State<Api>,
    ctx: Ctx,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    ctx.need(2)?;
    ctx.authorize(&api, "placement:resource_classes:create")?;
    let data = parse(&body, &schema::RESOURCE_CLASS)?;
    let name = data["name"].as_str().unwrap_or_default();
    api.p
        .create_resource_class(name)
        .await
        .map_err(|e| match e {
            PlacementError::ResourceClassExists(_) => {
                ApiError::conflict(format!("Conflicting resource class already exists: {name}"))
            }
            other => other.into(),
        })?;
    Ok(located(
        StatusCode::CREATED,
        &format!("{}{}", ctx.origin, url(&ctx, name)),
    ))
}

async fn show(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(2)?;
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:resource_classes:show")?;
    let rc = api.p.resource_class(&name).await?;
    Ok(json(
        StatusCode::OK,
        &render(&ctx, &rc),
        &ctx,
        Some(rc.last_modified()),
    ))
}

async fn update(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ctx.need(2)?;
    if ctx.at(7) {
        // Bodiless create-or-verify.
        ctx.authorize(&api, "placement:resource_classes:update")?;
        schema::validate(
            &json!({"name": name}),
            &schema::RESOURCE_CLASS,
            "JSON does not validate",
        )?;
        let (_, created) = api.p.ensure_resource_class(&name).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        };
        return Ok(located(
            status,
            &format!("{}{}", ctx.origin, url(&ctx, &name)),
        ));
    }
    super::require_json(&headers)?;
    ctx.authorize(&api, "placement:resource_classes:update")?;
    let data = parse(&body, &schema::RESOURCE_CLASS)?;
    let new_name = data["name"].as_str().unwrap_or_default().to_string();
    let rc = api
        .p
        .rename_resource_class(&name, &new_name)
        .await
        .map_err(|e| match e {
            PlacementError::ResourceClassExists(_) => {
                ApiError::conflict(format!("Resource class already exists: {new_name}"))
            }
            PlacementError::ResourceClassCannotUpdateStandard(_) => {
                ApiError::bad_request(format!("Cannot update standard resource class {name}"))
            }
            other => other.into(),
        })?;
    let mut resp = json(StatusCode::OK, &render(&ctx, &rc), &ctx, None);
    // Upstream's rename answer carries no cache headers.
    resp.headers_mut().remove(http::header::CACHE_CONTROL);
    resp.headers_mut().remove(http::header::LAST_MODIFIED);
    Ok(resp)
}

async fn delete(
    State(api): State<Api>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    ctx.need(2)?;
    ctx.authorize(&api, "placement:resource_classes:delete")?;
    api.p
        .delete_resource_class(&name)
        .await
        .map_err(|e| match e {
            PlacementError::ResourceClassCannotDeleteStandard(_) => {
                ApiError::bad_request(format!("Error in delete resource class: {e}"))
            }
            PlacementError::ResourceClassInUse(_) => {
                ApiError::conflict(format!("Error in delete resource class: {e}"))
            }
            other => other.into(),
        })?;
    Ok(no_content())
}
