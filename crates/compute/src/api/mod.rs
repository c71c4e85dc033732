//! Nova's API over HTTP: thin handlers that validate (Nova's schemas and messages), call the
//! core and render per microversion.
//!
//! Layers, outermost first: the Nova fault renderer, microversion negotiation (both headers
//! echoed with `Vary`, 406 outside 2.1-max), `x-compute-request-id`, the body limit, token
//! validation.

mod actions;
mod aggregates;
mod consoles;
mod events;
mod flavor_extras;
mod flavors;
mod groups;
mod hypervisors;
mod images;
mod interfaces;
mod ips;
mod keypairs;
mod migrations;
mod misc;
pub mod novnc;
mod quotas;
mod render;
mod security_groups;
mod server_password;
mod servers;
mod services;
mod usage;
pub(crate) mod validate;
mod volumes;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::{AuthContext, Authenticated, TokenValidator};
use common::microversion::{Microversions, Version};
use common::{Family, Fault};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::core::ComputeService;
use crate::error::{ComputeError, Result};

/// The microversions served; the max is one whose every delta from 2.1 is implemented for
/// the resources kumo has.
pub const MICROVERSIONS: Microversions = Microversions {
    service_type: "compute",
    legacy_header: Some("X-OpenStack-Nova-API-Version"),
    min: Version::new(2, 1),
    max: Version::new(2, 72),
};

/// Handler state.
#[derive(Clone)]
pub struct Api {
    pub svc: Arc<ComputeService>,
}

pub type St = axum::extract::State<Api>;

/// The compute router, mounted at `/compute` (catalog endpoint `/compute/v2.1`).
pub fn router(svc: Arc<ComputeService>, validator: Arc<dyn TokenValidator>) -> Router {
    let limit = svc.cfg.max_request_body_size;
    let api = Api { svc };
    let v21 = Router::new()
        .route("/", get(version_v21))
        .merge(servers::routes())
        .merge(actions::routes())
        .merge(aggregates::routes())
        .merge(consoles::routes())
        .merge(flavors::routes())
        .merge(flavor_extras::routes())
        .merge(keypairs::routes())
        .merge(groups::routes())
        .merge(migrations::routes())
        .merge(misc::routes())
        .merge(quotas::routes())
        .merge(services::routes())
        .merge(hypervisors::routes())
        .merge(interfaces::routes())
        .merge(volumes::routes())
        .merge(usage::routes())
        .merge(events::routes())
        .merge(server_password::routes())
        .merge(ips::routes())
        .merge(images::routes())
        .merge(security_groups::routes());
    Router::new()
        .route("/", get(versions_root))
        .nest("/v2.1", v21.clone())
        .nest("/v2", v21)
        .fallback(fallback)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(microversion))
        .layer(common::fault::FaultLayer::new(Family::Compute))
}

async fn fallback() -> Fault {
    Fault::not_found("The resource could not be found.")
}

/// The negotiated version, in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct Mv(pub Version);

async fn microversion(mut req: Request, next: Next) -> Response {
    // The id the request-id layer (outside this router) gave the request: it writes
    // x-openstack-request-id on the way out, after this layer, so take it from the request.
    let request_id = common::request_id::RequestId::from_request(&req);
    let version = match MICROVERSIONS.negotiate(req.headers()) {
        Ok(v) => v,
        Err(f) => return with_compute_request_id(f.into_response(), request_id.as_deref()),
    };
    req.extensions_mut().insert(Mv(version));
    let mut resp = next.run(req).await;
    MICROVERSIONS.response_headers(version, resp.headers_mut());
    with_compute_request_id(resp, request_id.as_deref())
}

/// Nova sends its request id under its own name too (`x-compute-request-id`), the same id as
/// `x-openstack-request-id`: Tempest's instance-action tests look the action up by it.
fn with_compute_request_id(mut resp: Response, request_id: Option<&str>) -> Response {
    let id = resp
        .headers()
        .get(common::request_id::HEADER)
        .cloned()
        .or_else(|| request_id.and_then(|id| HeaderValue::from_str(id).ok()))
        .or_else(|| {
            resp.extensions()
                .get::<common::request_id::RequestId>()
                .and_then(|id| HeaderValue::from_str(&id.0).ok())
        });
    if let Some(id) = id {
        resp.headers_mut().insert("x-compute-request-id", id);
    }
    resp
}

/// What every authenticated handler needs.
pub struct Ctx {
    pub mv: Version,
    pub auth: Arc<AuthContext>,
    pub token: String,
    pub request_id: String,
    /// `http://host:port/compute/v2.1`, for links.
    pub base: String,
    /// `http://host:port/compute`, for bookmark links.
    pub bookmark: String,
}

impl Ctx {
    /// The request's microversion is at least 2.`minor`.
    pub fn at(&self, minor: u16) -> bool {
        self.mv >= Version::new(2, minor)
    }
    /// kumo's root URL as the caller reached it (compute is mounted at `/compute`), for URLs
    /// of kumo's other endpoints such as the console proxy.
    pub fn public_base(&self) -> &str {
        self.bookmark
            .strip_suffix("/compute")
            .unwrap_or(&self.bookmark)
    }
    pub fn is_admin(&self) -> bool {
        self.auth.has_role("admin")
    }
    /// 404 from 2.36: the proxy APIs (images, security groups, ...) end at 2.35 (Nova's
    /// `MAX_PROXY_API_SUPPORT_VERSION`).
    pub fn proxy_api(&self) -> Result<()> {
        if self.at(36) {
            Err(ComputeError::NotFound(
                "The resource could not be found.".into(),
            ))
        } else {
            Ok(())
        }
    }
    /// 404 below 2.`minor`, as Nova's versioned routes answer.
    pub fn need(&self, minor: u16) -> Result<()> {
        if self.at(minor) {
            Ok(())
        } else {
            Err(ComputeError::NotFound(
                "The resource could not be found.".into(),
            ))
        }
    }
}

fn origin(parts: &Parts) -> (String, String) {
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
    let prefix = match full.find("/v2.1").or_else(|| full.find("/v2/")) {
        Some(i) => full[..i].to_string(),
        None if full.ends_with("/v2") => full.trim_end_matches("/v2").to_string(),
        None => full.trim_end_matches('/').to_string(),
    };
    let root = format!("{proto}://{host}{prefix}");
    (format!("{root}/v2.1"), root)
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Fault;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> std::result::Result<Self, Fault> {
        let Authenticated(auth) = Authenticated::from_request_parts(parts, state).await?;
        let mv = parts
            .extensions
            .get::<Mv>()
            .map_or(MICROVERSIONS.min, |m| m.0);
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let request_id = parts
            .extensions
            .get::<common::request_id::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(bus::new_request_id);
        let (base, bookmark) = origin(parts);
        Ok(Ctx {
            mv,
            auth,
            token,
            request_id,
            base,
            bookmark,
        })
    }
}

/// A query string's pairs, in order.
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|s| {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// The first value given for `key`.
pub(crate) fn query_get(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// A JSON request body, with Nova's errors for a bad one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = ComputeError;
    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, ComputeError> {
        let ctype_ok = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json") || v.contains("json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ComputeError::TooLarge("Request is too large.".into())
            } else {
                ComputeError::bad("Malformed request body")
            }
        })?;
        if !ctype_ok {
            return Err(ComputeError::bad("Unsupported Content-Type"));
        }
        if bytes.is_empty() {
            return Err(ComputeError::bad(
                "The server could not comply with the request since it is either malformed or otherwise incorrect.",
            ));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ComputeError::bad("Malformed request body"))?;
        Ok(JsonBody(v))
    }
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MICROVERSIONS.max.to_string(),
        "min_version": MICROVERSIONS.min.to_string(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{base}/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
        ],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

struct Root(String);

impl<S: Send + Sync> FromRequestParts<S> for Root {
    type Rejection = Fault;
    async fn from_request_parts(parts: &mut Parts, _s: &S) -> std::result::Result<Self, Fault> {
        Ok(Root(origin(parts).1))
    }
}

/// `GET /compute/`: the versions.
async fn versions_root(Root(root): Root) -> Response {
    let mut v21 = version_doc(&root);
    if let Some(o) = v21.as_object_mut() {
        o.remove("media-types");
    }
    let v20 = json!({
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{root}/v2/")}],
    });
    axum::Json(json!({"versions": [v20, v21]})).into_response()
}

/// `GET /compute/v2.1`: this version.
async fn version_v21(Root(root): Root) -> Response {
    axum::Json(json!({"version": version_doc(&root)})).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}
