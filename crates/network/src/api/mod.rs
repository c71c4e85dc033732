//! Neutron v2.0 over HTTP: thin handlers that parse, call the core and render.

pub mod list;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::{Authenticated, TokenValidator};
use common::{Family, Fault};
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::core::{NetworkService, resource_body};
use crate::error::{NetError, Result};
use list::Query;

#[derive(Clone)]
pub struct Api {
    pub svc: Arc<NetworkService>,
}

type St = State<Api>;

/// The network router, to be mounted at `/network` (its catalog endpoint; clients append
/// `/v2.0`).
pub fn router(svc: Arc<NetworkService>, validator: Arc<dyn TokenValidator>) -> Router {
    let limit = svc.cfg.max_request_body_size;
    let api = Api { svc };
    let v2 = Router::new()
        .route("/", get(resources))
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension))
        .route("/networks", get(list_networks).post(create_networks))
        .route(
            "/networks/{id}",
            get(show_network).put(update_network).delete(delete_network),
        )
        .route("/subnets", get(list_subnets).post(create_subnets))
        .route(
            "/subnets/{id}",
            get(show_subnet).put(update_subnet).delete(delete_subnet),
        )
        .route("/quotas", get(list_quotas))
        .route(
            "/quotas/{project}",
            get(show_quota).put(update_quota).delete(delete_quota),
        )
        .route("/quotas/{project}/default", get(default_quota))
        .route("/quotas/{project}/details", get(quota_details))
        .route("/quotas/{project}/details.json", get(quota_details));
    Router::new()
        .route("/", get(versions))
        .nest("/v2.0", v2)
        .fallback(fallback)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(common::fault::FaultLayer::new(Family::Network))
}

async fn fallback() -> Fault {
    Fault::not_found("The resource could not be found.")
}

/// Base URL of the network API as this client reached it (`http://host:port/network`).
pub struct Base(pub String);

impl FromRequestParts<Api> for Base {
    type Rejection = Fault;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Api,
    ) -> std::result::Result<Self, Fault> {
        if let Some(p) = &state.svc.cfg.public_endpoint {
            return Ok(Base(p.clone()));
        }
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let proto = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        let full = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let prefix = match full.find("/v2.0") {
            Some(i) => full[..i].to_string(),
            None => full.trim_end_matches('/').to_string(),
        };
        Ok(Base(format!("{proto}://{host}{prefix}")))
    }
}

/// A JSON request body, with Neutron's errors for a bad one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = NetError;
    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, NetError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                NetError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "HTTPRequestEntityTooLarge",
                    "Request is too large.",
                )
            } else {
                NetError::bad("Malformed request body")
            }
        })?;
        if bytes.is_empty() {
            return Err(NetError::bad("Resource body required"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| NetError::bad("Malformed request body"))
    }
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

// ------------------------------------------------------------ discovery

/// `GET /network/`: Neutron's version list (200, one version).
async fn versions(Base(base): Base) -> Response {
    ok(json!({"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{base}/v2.0/")}],
    }]}))
}

/// `GET /network/v2.0/`: the resources of the API.
async fn resources(Base(base): Base) -> Response {
    let r = |name: &str, collection: &str| {
        json!({"name": name, "collection": collection,
            "links": [{"rel": "self", "href": format!("{base}/v2.0/{collection}")}]})
    };
    ok(
        json!({"resources": [r("network", "networks"), r("subnet", "subnets"), r("quota", "quotas")]}),
    )
}

/// The extensions kumo implements, and only those: clients and Tempest branch on this list.
const EXTENSIONS: &[(&str, &str, &str, &str)] = &[
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
        "2013-01-14T10:00:00-00:00",
    ),
    (
        "net-mtu",
        "Network MTU",
        "Provides MTU attribute for a network resource.",
        "2015-03-25T10:00:00-00:00",
    ),
    (
        "port-security",
        "Port Security",
        "Provides port security (networks only in kumo so far).",
        "2012-07-23T10:00:00-00:00",
    ),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
        "2016-09-09T09:09:09-09:09",
    ),
    (
        "quotas",
        "Quota management support",
        "Expose functions for quotas management per project",
        "2012-07-29T10:00:00-00:00",
    ),
    (
        "quota_details",
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
        "2017-02-10T10:00:00-00:00",
    ),
    (
        "pagination",
        "Pagination support",
        "Extension that indicates that pagination is enabled.",
        "2016-06-12T00:00:00-00:00",
    ),
    (
        "sorting",
        "Sorting support",
        "Extension that indicates that sorting is enabled.",
        "2016-06-12T00:00:00-00:00",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
        "2016-02-10T10:00:00-00:00",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
        "2016-04-11T10:00:00-00:00",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
        "2016-09-12T10:00:00-00:00",
    ),
];

fn extension_view(e: &(&str, &str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "updated": e.3, "links": []})
}

async fn extensions(_: Authenticated) -> Response {
    ok(json!({"extensions": EXTENSIONS.iter().map(extension_view).collect::<Vec<_>>()}))
}

async fn extension(_: Authenticated, Path(alias): Path<String>) -> Result<Response> {
    EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .map(|e| ok(json!({"extension": extension_view(e)})))
        .ok_or_else(|| NetError::not_found(format!("Extension with alias {alias} does not exist")))
}

// ------------------------------------------------------------ networks / subnets

/// The single resource or the bulk list of a create request.
fn create_bodies<'a>(
    body: &'a Value,
    one: &str,
    many: &str,
) -> Result<(Vec<&'a Map<String, Value>>, bool)> {
    if let Some(list) = body.get(many) {
        let items = list.as_array().ok_or_else(|| {
            NetError::bad(format!("Invalid input for {many}. Reason: not a list."))
        })?;
        if items.is_empty() {
            return Err(NetError::bad("Resources required"));
        }
        let mut out = Vec::new();
        for it in items {
            out.push(it.as_object().ok_or_else(|| {
                NetError::bad(format!(
                    "Invalid input for {one}. Reason: not a dictionary."
                ))
            })?);
        }
        return Ok((out, true));
    }
    Ok((vec![resource_body(body, one)?], false))
}

fn created_response(one: &str, many: &str, mut items: Vec<Value>, bulk: bool) -> Response {
    if bulk {
        created(json!({ many: items }))
    } else {
        created(json!({ one: items.pop().unwrap_or(Value::Null) }))
    }
}

async fn list_networks(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Base(base): Base,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let items = api.svc.list_networks(&ctx).await?;
    let page = list::apply(
        items,
        crate::core::NETWORK_KEYS,
        &q,
        &format!("{base}/v2.0/networks"),
        api.svc.cfg.pagination_max_limit,
        NetError::network_not_found,
    )?;
    Ok(ok(list::body("networks", page, &q.fields())))
}

async fn create_networks(
    State(api): St,
    Authenticated(ctx): Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let (bodies, bulk) = create_bodies(&body, "network", "networks")?;
    let made = api.svc.create_networks(&ctx, &bodies).await?;
    Ok(created_response("network", "networks", made, bulk))
}

async fn show_network(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let v = api.svc.get_network(&ctx, &id).await?;
    Ok(ok(json!({"network": list::select(v, &q.fields())})))
}

async fn update_network(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = resource_body(&body, "network")?;
    Ok(ok(
        json!({"network": api.svc.update_network(&ctx, &id, b).await?}),
    ))
}

async fn delete_network(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.svc.delete_network(&ctx, &id).await?;
    Ok(no_content())
}

async fn list_subnets(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Base(base): Base,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let items = api.svc.list_subnets(&ctx).await?;
    let page = list::apply(
        items,
        crate::core::SUBNET_KEYS,
        &q,
        &format!("{base}/v2.0/subnets"),
        api.svc.cfg.pagination_max_limit,
        NetError::subnet_not_found,
    )?;
    Ok(ok(list::body("subnets", page, &q.fields())))
}

async fn create_subnets(
    State(api): St,
    Authenticated(ctx): Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let (bodies, bulk) = create_bodies(&body, "subnet", "subnets")?;
    let made = api.svc.create_subnets(&ctx, &bodies).await?;
    Ok(created_response("subnet", "subnets", made, bulk))
}

async fn show_subnet(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let v = api.svc.get_subnet(&ctx, &id).await?;
    Ok(ok(json!({"subnet": list::select(v, &q.fields())})))
}

async fn update_subnet(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = resource_body(&body, "subnet")?;
    Ok(ok(
        json!({"subnet": api.svc.update_subnet(&ctx, &id, b).await?}),
    ))
}

async fn delete_subnet(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.svc.delete_subnet(&ctx, &id).await?;
    Ok(no_content())
}

// ------------------------------------------------------------ quotas

async fn list_quotas(State(api): St, Authenticated(ctx): Authenticated) -> Result<Response> {
    Ok(ok(json!({"quotas": api.svc.list_quotas(&ctx).await?})))
}

async fn show_quota(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
) -> Result<Response> {
    Ok(ok(
        json!({"quota": api.svc.get_quota(&ctx, &project).await?}),
    ))
}

async fn default_quota(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
) -> Result<Response> {
    Ok(ok(
        json!({"quota": api.svc.get_default_quota(&ctx, &project)?}),
    ))
}

async fn quota_details(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
) -> Result<Response> {
    Ok(ok(
        json!({"quota": api.svc.get_quota_details(&ctx, &project).await?}),
    ))
}

async fn update_quota(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = resource_body(&body, "quota")?;
    Ok(ok(
        json!({"quota": api.svc.update_quota(&ctx, &project, b).await?}),
    ))
}

async fn delete_quota(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
) -> Result<Response> {
    api.svc.delete_quota(&ctx, &project).await?;
    Ok(no_content())
}
