//! Neutron v2.0 over HTTP: thin handlers that parse, call the core and render.

pub mod list;
pub mod resource;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use common::auth::{Authenticated, TokenValidator};
use common::{Family, Fault};
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::core::{NetworkService, resource_body};
use crate::error::{NetError, Result};

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
    let mut v2 = Router::new()
        .route("/", get(resources))
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension))
        .route("/quotas", get(list_quotas))
        .route(
            "/quotas/{project}",
            get(show_quota).put(update_quota).delete(delete_quota),
        )
        .route("/quotas/{project}/default", get(default_quota))
        .route("/quotas/{project}/details", get(quota_details))
        .route("/quotas/{project}/details.json", get(quota_details))
        .route(
            "/auto-allocated-topology/{project}",
            get(get_auto_allocated_topology).delete(delete_auto_allocated_topology),
        );
    v2 = resource::routes::<resource::Networks>(v2);
    v2 = resource::routes::<resource::Agents>(v2);
    v2 = resource::routes::<resource::Subnets>(v2);
    v2 = resource::routes::<resource::Ports>(v2);
    v2 = resource::routes::<resource::SubnetPools>(v2);
    v2 = resource::routes::<resource::SecurityGroups>(v2);
    v2 = resource::routes::<resource::SecurityGroupRules>(v2);
    v2 = resource::routes::<resource::Routers>(v2);
    v2 = resource::routes::<resource::FloatingIps>(v2);
    v2 = v2
        .route(
            "/routers/{id}/add_router_interface",
            put(add_router_interface),
        )
        .route(
            "/routers/{id}/remove_router_interface",
            put(remove_router_interface),
        )
        .route("/routers/{id}/add_extraroutes", put(add_extraroutes))
        .route("/routers/{id}/remove_extraroutes", put(remove_extraroutes));
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
    ok(json!({"resources": [
        r("network", "networks"),
        r("subnet", "subnets"),
        r("subnetpool", "subnetpools"),
        r("port", "ports"),
        r("router", "routers"),
        r("floatingip", "floatingips"),
        r("quota", "quotas"),
        r("security_group", "security-groups"),
        r("security_group_rule", "security-group-rules"),
    ]}))
}

/// The extensions kumo implements, and only those: clients and Tempest branch on this list.
const EXTENSIONS: &[(&str, &str, &str, &str)] = &[
    (
        "agent",
        "agent",
        "The agent management extension.",
        "2013-02-03T10:00:00-00:00",
    ),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
        "2013-01-14T10:00:00-00:00",
    ),
    (
        "subnet_allocation",
        "Subnet Allocation",
        "Enables allocation of subnets from a subnet pool",
        "2015-03-30T10:00:00-00:00",
    ),
    (
        "default-subnetpools",
        "Default Subnetpools",
        "Provides ability to mark and use a subnetpool as the default.",
        "2016-02-18T18:00:00-00:00",
    ),
    (
        "auto-allocated-topology",
        "Auto Allocated Topology Services",
        "Auto Allocated Topology Services.",
        "2016-01-01T00:00:00-00:00",
    ),
    (
        "provider",
        "Provider Network",
        "Expose mapping of virtual networks to physical networks",
        "2012-09-07T10:00:00-00:00",
    ),
    (
        "subnet-external-network",
        "Subnet External Network",
        "Informs if the subnet is associated to an external network.",
        "2023-02-15T10:00:00-00:00",
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
        "Provides port security",
        "2012-07-23T10:00:00-00:00",
    ),
    (
        "allowed-address-pairs",
        "Allowed Address Pairs",
        "Provides allowed address pairs",
        "2013-07-23T10:00:00-00:00",
    ),
    (
        "binding",
        "Port Binding",
        "Expose port bindings of a virtual port to external application",
        "2014-02-03T10:00:00-00:00",
    ),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.",
        "2012-07-20T10:00:00-00:00",
    ),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway",
        "2013-03-28T10:00:00-00:00",
    ),
    (
        "extraroute",
        "Neutron Extra Route",
        "Extra routes configuration for L3 router",
        "2013-02-01T10:00:00-00:00",
    ),
    (
        "extraroute-atomic",
        "Atomically add/remove extra routes",
        "Edit extra routes of a router on server side by atomically adding/removing extra routes",
        "2019-07-10T00:00:00+00:00",
    ),
    (
        "revision-if-match",
        "If-Match constraints based on revision_number",
        "Extension indicating that If-Match based on revision_number is supported.",
        "2016-12-11T00:00:00-00:00",
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
        "security-group",
        "security-group",
        "The security groups extension.",
        "2012-10-05T10:00:00-00:00",
    ),
    (
        "security-groups-normalized-cidr",
        "Normalized CIDR field for security group rules",
        "Add new field with normalized remote_ip_prefix cidr in SG rule",
        "2020-07-28T10:00:00-00:00",
    ),
    (
        "security-groups-rules-belongs-to-default-sg",
        "Security group rule belongs to the project's default security group",
        "Flag to determine if the security group rule belongs to the project's default security group",
        "2023-05-23T10:00:00-00:00",
    ),
    (
        "stateful-security-group",
        "Stateful security group",
        "Indicates if the security group is stateful or not",
        "2019-11-26T09:00:00-00:00",
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

// ------------------------------------------------------------ auto-allocated topology

/// `GET /auto-allocated-topology/{project}[?fields=dry-run]`.
async fn get_auto_allocated_topology(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let fields: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let t = api
        .svc
        .get_auto_allocated_topology(&ctx, &project, &fields)
        .await?;
    Ok(ok(json!({ "auto_allocated_topology": t })))
}

async fn delete_auto_allocated_topology(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(project): Path<String>,
) -> Result<Response> {
    api.svc
        .delete_auto_allocated_topology(&ctx, &project)
        .await?;
    Ok(no_content())
}

// ------------------------------------------------------------ router actions

/// The body of `add_router_interface`/`remove_router_interface`: `{subnet_id|port_id}`.
fn interface_body(body: &Value) -> Result<&serde_json::Map<String, Value>> {
    body.as_object().ok_or_else(|| {
        NetError::bad_request("router", "Either subnet_id or port_id must be specified")
    })
}

async fn add_router_interface(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = interface_body(&body)?;
    Ok(ok(api.svc.add_router_interface(&ctx, &id, b).await?))
}

async fn remove_router_interface(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = interface_body(&body)?;
    Ok(ok(api.svc.remove_router_interface(&ctx, &id, b).await?))
}

async fn add_extraroutes(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = resource_body(&body, "router")?;
    let r = api.svc.edit_extraroutes(&ctx, &id, b, true).await?;
    Ok(ok(json!({ "router": r })))
}

async fn remove_extraroutes(
    State(api): St,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let b = resource_body(&body, "router")?;
    let r = api.svc.edit_extraroutes(&ctx, &id, b, false).await?;
    Ok(ok(json!({ "router": r })))
}
