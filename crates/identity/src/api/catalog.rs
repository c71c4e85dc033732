//! Regions, services and endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use common::auth::Authenticated;
use serde_json::{Value, json};

use super::resource::{extra_of, s};
use super::schema::{self, check, member};
use super::{Api, Base, Body, QueryMap, created, list_response, no_content, ok, render};
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::EndpointFilter;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/regions", get(list_regions).post(create_region))
        .route(
            "/regions/{id}",
            get(get_region)
                .put(put_region)
                .patch(update_region)
                .delete(delete_region),
        )
        .route("/services", get(list_services).post(create_service))
        .route(
            "/services/{id}",
            get(get_service)
                .patch(update_service)
                .delete(delete_service),
        )
        .route("/endpoints", get(list_endpoints).post(create_endpoint))
        .route(
            "/endpoints/{id}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
}

const REGION_FIELDS: &[&str] = &["id", "description", "parent_region_id"];
const SERVICE_FIELDS: &[&str] = &["id", "type", "name", "description", "enabled"];
const ENDPOINT_FIELDS: &[&str] = &[
    "id",
    "interface",
    "service_id",
    "url",
    "region_id",
    "region",
    "enabled",
    "legacy_endpoint_id",
];

async fn list_regions(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:list_regions", &json!({}))?;
    let items = api
        .id
        .list_regions(q.get("parent_region_id").map(String::as_str))
        .await?
        .iter()
        .map(|r| render::region(&base, r))
        .collect();
    Ok(list_response(
        &base,
        "regions",
        "regions",
        items,
        api.id.list_limit(),
    ))
}

async fn make_region(
    api: &Api,
    base: &str,
    ctx: &common::auth::AuthContext,
    r: &Value,
    id: Option<String>,
) -> Result<Response> {
    check(&schema::REGION_CREATE, "region", r)?;
    api.id.authorize(
        ctx,
        "identity:create_region",
        &json!({"target": {"region": r}}),
    )?;
    if let (Some(path_id), Some(body_id)) = (&id, s(r, "id"))
        && path_id != &body_id
    {
        return Err(IdentityError::validation(
            "Conflicting region IDs specified: the URL and the body differ.",
        ));
    }
    let region = Region {
        id: id.or_else(|| s(r, "id")).unwrap_or_else(new_id),
        description: s(r, "description").unwrap_or_default(),
        parent_region_id: s(r, "parent_region_id"),
        extra: extra_of(r, REGION_FIELDS),
    };
    let region = api.id.create_region(region).await?;
    Ok(created(json!({"region": render::region(base, &region)})))
}

async fn create_region(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    make_region(&api, &base, &ctx, member(&body, "region")?, None).await
}

async fn put_region(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    make_region(&api, &base, &ctx, member(&body, "region")?, Some(id)).await
}

async fn get_region(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:get_region", &json!({"region_id": id}))?;
    Ok(ok(
        json!({"region": render::region(&base, &api.id.get_region(&id).await?)}),
    ))
}

async fn update_region(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "region")?;
    check(&schema::REGION_UPDATE, "region", patch)?;
    api.id
        .authorize(&ctx, "identity:update_region", &json!({"region_id": id}))?;
    let mut r = api.id.get_region(&id).await?;
    if patch.get("description").is_some() {
        r.description = s(patch, "description").unwrap_or_default();
    }
    if patch.get("parent_region_id").is_some() {
        r.parent_region_id = s(patch, "parent_region_id");
    }
    r.extra.extend(extra_of(patch, REGION_FIELDS));
    let r = api.id.update_region(r).await?;
    Ok(ok(json!({"region": render::region(&base, &r)})))
}

async fn delete_region(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:delete_region", &json!({"region_id": id}))?;
    api.id.delete_region(&id).await?;
    Ok(no_content())
}

async fn list_services(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:list_services", &json!({}))?;
    let items = api
        .id
        .list_services(
            q.get("type").map(String::as_str),
            q.get("name").map(String::as_str),
        )
        .await?
        .iter()
        .map(|s| render::service(&base, s))
        .collect();
    Ok(list_response(
        &base,
        "services",
        "services",
        items,
        api.id.list_limit(),
    ))
}

async fn create_service(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let v = member(&body, "service")?;
    check(&schema::SERVICE_CREATE, "service", v)?;
    api.id.authorize(
        &ctx,
        "identity:create_service",
        &json!({"target": {"service": v}}),
    )?;
    let svc = Service {
        id: new_id(),
        service_type: s(v, "type").unwrap_or_default(),
        name: s(v, "name"),
        description: s(v, "description"),
        enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        extra: extra_of(v, SERVICE_FIELDS),
    };
    let svc = api.id.create_service(svc).await?;
    Ok(created(json!({"service": render::service(&base, &svc)})))
}

async fn get_service(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:get_service", &json!({"service_id": id}))?;
    Ok(ok(
        json!({"service": render::service(&base, &api.id.get_service(&id).await?)}),
    ))
}

async fn update_service(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "service")?;
    check(&schema::SERVICE_UPDATE, "service", patch)?;
    api.id
        .authorize(&ctx, "identity:update_service", &json!({"service_id": id}))?;
    let mut svc = api.id.get_service(&id).await?;
    if let Some(t) = s(patch, "type") {
        svc.service_type = t;
    }
    if patch.get("name").is_some() {
        svc.name = s(patch, "name");
    }
    if patch.get("description").is_some() {
        svc.description = s(patch, "description");
    }
    if let Some(e) = patch.get("enabled").and_then(Value::as_bool) {
        svc.enabled = e;
    }
    svc.extra.extend(extra_of(patch, SERVICE_FIELDS));
    let svc = api.id.update_service(svc).await?;
    Ok(ok(json!({"service": render::service(&base, &svc)})))
}

async fn delete_service(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:delete_service", &json!({"service_id": id}))?;
    api.id.delete_service(&id).await?;
    Ok(no_content())
}

async fn list_endpoints(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:list_endpoints", &json!({}))?;
    let f = EndpointFilter {
        interface: q.get("interface").cloned(),
        service_id: q.get("service_id").cloned(),
        region_id: q.get("region_id").or(q.get("region")).cloned(),
    };
    let items = api
        .id
        .list_endpoints(&f)
        .await?
        .iter()
        .map(|e| render::endpoint(&base, e))
        .collect();
    Ok(list_response(
        &base,
        "endpoints",
        "endpoints",
        items,
        api.id.list_limit(),
    ))
}

async fn create_endpoint(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let v = member(&body, "endpoint")?;
    check(&schema::ENDPOINT_CREATE, "endpoint", v)?;
    api.id.authorize(
        &ctx,
        "identity:create_endpoint",
        &json!({"target": {"endpoint": v}}),
    )?;
    let e = Endpoint {
        id: new_id(),
        interface: s(v, "interface").unwrap_or_default(),
        service_id: s(v, "service_id").unwrap_or_default(),
        url: s(v, "url").unwrap_or_default(),
        region_id: s(v, "region_id").or_else(|| s(v, "region")),
        enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        extra: extra_of(v, ENDPOINT_FIELDS),
    };
    let e = api.id.create_endpoint(e).await?;
    Ok(created(json!({"endpoint": render::endpoint(&base, &e)})))
}

async fn get_endpoint(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:get_endpoint", &json!({"endpoint_id": id}))?;
    Ok(ok(
        json!({"endpoint": render::endpoint(&base, &api.id.get_endpoint(&id).await?)}),
    ))
}

async fn update_endpoint(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "endpoint")?;
    check(&schema::ENDPOINT_UPDATE, "endpoint", patch)?;
    api.id.authorize(
        &ctx,
        "identity:update_endpoint",
        &json!({"endpoint_id": id}),
    )?;
    let mut e = api.id.get_endpoint(&id).await?;
    if let Some(x) = s(patch, "interface") {
        e.interface = x;
    }
    if let Some(x) = s(patch, "service_id") {
        e.service_id = x;
    }
    if let Some(x) = s(patch, "url") {
        e.url = x;
    }
    if patch.get("region_id").is_some() || patch.get("region").is_some() {
        e.region_id = s(patch, "region_id").or_else(|| s(patch, "region"));
    }
    if let Some(x) = patch.get("enabled").and_then(Value::as_bool) {
        e.enabled = x;
    }
    e.extra.extend(extra_of(patch, ENDPOINT_FIELDS));
    let e = api.id.update_endpoint(e).await?;
    Ok(ok(json!({"endpoint": render::endpoint(&base, &e)})))
}

async fn delete_endpoint(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id.authorize(
        &ctx,
        "identity:delete_endpoint",
        &json!({"endpoint_id": id}),
    )?;
    api.id.delete_endpoint(&id).await?;
    Ok(no_content())
}
