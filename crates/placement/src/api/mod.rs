//! Placement over HTTP: thin handlers that parse (per microversion), authorize, call the
//! core and render.
//!
//! Layers, outermost first: microversion negotiation (headers on every response, `code`
//! removed from error bodies before 1.23, 406/400 for a bad version), the Placement fault
//! renderer, the body limit, token validation.

mod allocations;
mod candidates;
mod classes;
mod inventories;
mod providers;
pub(crate) mod query;
mod root;
pub(crate) mod schema;
mod traits;

use axum::Router;
use axum::body::{Body as AxumBody, Bytes};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::{AuthContext, Authenticated, TokenValidator};
use common::microversion::{Microversions, Version};
use common::{Family, Fault};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LAST_MODIFIED};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use std::sync::Arc;

use crate::core::Placement;
use crate::error::ApiError;
use crate::model::Timestamp;
pub use query::Query;

/// The microversions this implementation serves, every one complete.
pub const MICROVERSIONS: Microversions = Microversions {
    service_type: "placement",
    legacy_header: None,
    min: Version::new(1, 0),
    max: Version::new(1, 39),
};

/// Handler state.
#[derive(Clone)]
pub struct Api {
    pub p: Arc<Placement>,
}

/// The placement router, to be mounted at `/placement` (or `/`).
pub fn router(placement: Arc<Placement>, validator: Arc<dyn TokenValidator>) -> Router {
    let limit = placement.cfg.max_request_body_size;
    let api = Api { p: placement };
    Router::new()
        .route("/", get(root::home))
        .merge(providers::routes())
        .merge(inventories::routes())
        .merge(classes::routes())
        .merge(traits::routes())
        .merge(allocations::routes())
        .merge(candidates::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(common::fault::FaultLayer::new(Family::Placement))
        .layer(axum::middleware::from_fn(microversion))
}

async fn not_found() -> ApiError {
    ApiError::not_found("")
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::templated(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "The method {} is not allowed for this resource.",
            req.method()
        ),
        "The method specified is not allowed for this resource.",
    )
}

/// The negotiated microversion, in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct Mv(pub Version);

/// Where the router is mounted (`/placement`), for links.
#[derive(Debug, Clone)]
pub struct Prefix(pub String);

fn requested_version(headers: &HeaderMap) -> String {
    for value in headers.get_all("openstack-api-version") {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut words = item.split_whitespace();
            if let (Some(svc), Some(ver)) = (words.next(), words.next())
                && svc.eq_ignore_ascii_case("placement")
            {
                return ver.to_string();
            }
        }
    }
    String::new()
}

/// Negotiate the microversion, echo it on every response, and shape error bodies as the
/// request's version wants them.
async fn microversion(mut req: Request, next: Next) -> Response {
    let request_id = common::request_id::RequestId::from_request(&req);
    let prefix = match req.extensions().get::<OriginalUri>() {
        Some(orig) => orig
            .path()
            .strip_suffix(req.uri().path())
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string(),
        None => String::new(),
    };
    let version = match MICROVERSIONS.negotiate(req.headers()) {
        Ok(v) => v,
        Err(f) => {
            let raw = requested_version(req.headers());
            let err = if f.status == StatusCode::NOT_ACCEPTABLE {
                ApiError::templated(
                    StatusCode::NOT_ACCEPTABLE,
                    "The resource could not be generated that was acceptable to your browser (content of type application/json.",
                    format!("Invalid microversion: Unacceptable version header: {raw}"),
                )
            } else {
                let bad = raw
                    .split('.')
                    .find(|p| p.parse::<u64>().is_err())
                    .map(|p| format!("; invalid literal for int() with base 10: '{p}'"))
                    .unwrap_or_default();
                ApiError::bad_request(format!(
                    "Invalid microversion: invalid version string: {raw}{bad}"
                ))
            };
            let resp = common::fault::render(
                Family::Placement,
                request_id.as_deref(),
                err.into_response(),
            );
            return reshape_error(resp, None, true).await;
        }
    };
    // webob refuses a body without a type before anything else.
    let has_body = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    if has_body && !req.headers().contains_key(CONTENT_TYPE) {
        let resp = common::fault::render(
            Family::Placement,
            request_id.as_deref(),
            ApiError::bad_request("content-type header required when content-length > 0")
                .into_response(),
        );
        let mut resp = reshape_error(resp, Some(version), false).await;
        MICROVERSIONS.response_headers(version, resp.headers_mut());
        return resp;
    }
    req.extensions_mut().insert(Mv(version));
    req.extensions_mut().insert(Prefix(prefix));
    let resp = next.run(req).await;
    let mut resp = if resp.status().is_client_error() || resp.status().is_server_error() {
        reshape_error(resp, Some(version), false).await
    } else {
        resp
    };
    MICROVERSIONS.response_headers(version, resp.headers_mut());
    resp
}

/// Error bodies: no `code` before 1.23; the version range on a 406 for a bad version.
async fn reshape_error(resp: Response, version: Option<Version>, version_range: bool) -> Response {
    let with_code = version.is_some_and(|v| v >= Version::new(1, 23));
    if with_code && !version_range {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, AxumBody::empty());
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, AxumBody::from(bytes));
    };
    if let Some(errors) = v.get_mut("errors").and_then(|e| e.as_array_mut()) {
        for e in errors {
            let Some(obj) = e.as_object_mut() else {
                continue;
            };
            if !with_code {
                obj.remove("code");
            }
            if version_range && parts.status == StatusCode::NOT_ACCEPTABLE {
                obj.insert("max_version".into(), MICROVERSIONS.max.to_string().into());
                obj.insert("min_version".into(), MICROVERSIONS.min.to_string().into());
            }
        }
    }
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, AxumBody::from(out))
}

/// What every authenticated handler needs: the caller, the version, the mount prefix.
pub struct Ctx {
    pub mv: Version,
    pub prefix: String,
    pub auth: Arc<AuthContext>,
    /// `http://host:port` as the client reached us, for `Location`.
    pub origin: String,
}

impl Ctx {
    /// The request's microversion is at least 1.`minor`.
    pub fn at(&self, minor: u16) -> bool {
        self.mv >= Version::new(1, minor)
    }

    /// 404 (or `status`) below 1.`minor`, as upstream's version_handler answers.
    pub fn need(&self, minor: u16) -> Result<(), ApiError> {
        if self.at(minor) {
            Ok(())
        } else {
            Err(ApiError::not_found(""))
        }
    }

    pub fn authorize(&self, api: &Api, action: &str) -> Result<(), ApiError> {
        api.p
            .authorize(&self.auth, action, None)
            .map_err(|d| ApiError::forbidden(d.to_string()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Authenticated(auth) = Authenticated::from_request_parts(parts, state)
            .await
            .map_err(|f: Fault| ApiError::new(f.status, f.message).into_response())?;
        let mv = parts
            .extensions
            .get::<Mv>()
            .map_or(MICROVERSIONS.min, |m| m.0);
        let prefix = parts
            .extensions
            .get::<Prefix>()
            .map(|p| p.0.clone())
            .unwrap_or_default();
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
        Ok(Ctx {
            mv,
            prefix,
            auth,
            origin: format!("{proto}://{host}"),
        })
    }
}

/// The query string.
pub struct Qs(pub Query);

impl<S: Send + Sync> FromRequestParts<S> for Qs {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Qs(Query::parse(parts.uri.query())))
    }
}

/// A request body that must be `application/json` (415 otherwise), not yet parsed:
/// handlers authorize first, then validate against their version's schema.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large.")
            } else {
                ApiError::bad_request(format!("Malformed JSON: {e}"))
            }
        })?;
        Ok(JsonBody(bytes))
    }
}

/// 415 unless the body is `application/json` (parameters such as charset allowed).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" {
        return Ok(());
    }
    let shown = if ct.is_empty() { "None" } else { ct };
    Err(ApiError::templated(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("The request media type {shown} is not supported by this server."),
        format!("The media type {shown} is not supported, use application/json"),
    ))
}

/// 406 when the client's `Accept` excludes JSON (GET handlers).
pub fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    if accept.trim().is_empty() {
        return Ok(());
    }
    let ok = accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero && matches!(mime.as_str(), "application/json" | "application/*" | "*/*")
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::templated(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "The resource could not be generated that was acceptable to your browser (content of type {accept}."
            ),
            "Only application/json is provided",
        ))
    }
}

fn http_date(t: Timestamp) -> Option<HeaderValue> {
    HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::from(t))).ok()
}

/// A JSON response; from 1.15 with `Cache-Control: no-cache` and `Last-Modified` (now when
/// the resource has no modification time of its own).
pub fn json<T: Serialize>(
    status: StatusCode,
    body: &T,
    ctx: &Ctx,
    last_modified: Option<Timestamp>,
) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a placement response");
            return ApiError::internal().into_response();
        }
    };
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if ctx.at(15) {
        cache_headers(&mut resp, last_modified);
    }
    resp
}

pub fn cache_headers(resp: &mut Response, last_modified: Option<Timestamp>) {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(v) = http_date(last_modified.unwrap_or_else(chrono::Utc::now)) {
        resp.headers_mut().insert(LAST_MODIFIED, v);
    }
}

/// 204 without a body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// An empty response with a `Location`.
pub fn located(status: StatusCode, location: &str) -> Response {
    let mut resp = status.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// Validate a query string against a schema, as upstream does (last values).
pub fn validate_query(q: &Query, schema: &jsonschema::Validator) -> Result<(), ApiError> {
    schema::validate(&q.as_object(), schema, "Invalid query string parameters")
}
