//! Cinder v3 over HTTP: thin handlers that parse, call the core and render.
//!
//! Paths are accepted with and without the project id after `/v3` (3.67 made it optional):
//! a request rewriter drops it before routing. Microversions: `OpenStack-API-Version:
//! volume 3.x`, 3.0 by default.

mod misc;
mod render;
mod snapshots;
mod volumes;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::{AuthContext, Authenticated, TokenValidator};
use common::microversion::{Microversions, Version};
use common::{Family, Fault};
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::core::VolumeService;
use crate::error::{Result, VolumeError};

/// The microversions served (see docs/volume.md for what each delta means here).
pub const MICROVERSIONS: Microversions = Microversions {
    service_type: "volume",
    legacy_header: None,
    min: Version::new(3, 0),
    max: Version::new(3, 67),
};

#[derive(Clone)]
pub struct Api {
    pub svc: Arc<VolumeService>,
}

pub type St = State<Api>;

/// Collections directly below `/v3`: any other first segment is a project id.
const COLLECTIONS: &[&str] = &[
    "volumes",
    "snapshots",
    "types",
    "attachments",
    "os-quota-sets",
    "limits",
    "os-services",
    "os-availability-zone",
    "extensions",
    "backups",
    "messages",
    "groups",
    "group_types",
    "group_snapshots",
    "qos-specs",
    "os-volume-transfer",
    "volume-transfers",
    "scheduler-stats",
    "capabilities",
    "clusters",
    "workers",
    "resource_filters",
    "os-quota-class-sets",
    "os-hosts",
    "manageable_volumes",
    "manageable_snapshots",
    "default-types",
];

/// `/v3/<project>/rest` -> `/v3/rest`.
pub fn strip_project(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v3/")?;
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    if first.is_empty() || COLLECTIONS.contains(&first) {
        return None;
    }
    Some(match tail {
        Some(t) => format!("/v3/{t}"),
        None => "/v3".to_string(),
    })
}

fn rewrite(mut req: Request) -> Request {
    if let Some(p) = strip_project(req.uri().path()) {
        let pq = match req.uri().query() {
            Some(q) => format!("{p}?{q}"),
            None => p,
        };
        if let Ok(pq) = pq.parse::<http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// The volume router, to be mounted at `/volume`.
pub fn router(svc: Arc<VolumeService>, validator: Arc<dyn TokenValidator>) -> Router {
    let api = Api { svc };
    let v3 = Router::new()
        .route("/", get(versions_v3))
        .merge(volumes::routes())
        .merge(snapshots::routes())
        .merge(misc::routes())
        .layer(axum::middleware::from_fn(microversion));
    let inner = Router::new()
        .route("/", get(versions_root))
        .nest("/v3", v3)
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .layer(common::fault::FaultLayer::new(Family::Volume));
    let svc = tower::ServiceBuilder::new()
        .map_request(rewrite)
        .service(inner);
    Router::new().fallback_service(svc)
}

async fn fallback() -> Fault {
    Fault::not_found("The resource could not be found.")
}

/// The negotiated version, in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct Mv(pub Version);

impl Mv {
    pub fn at_least(&self, minor: u16) -> bool {
        self.0 >= Version::new(3, minor)
    }
}

async fn microversion(mut req: Request, next: Next) -> Response {
    let version = match MICROVERSIONS.negotiate(req.headers()) {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    req.extensions_mut().insert(Mv(version));
    let mut resp = next.run(req).await;
    MICROVERSIONS.response_headers(version, resp.headers_mut());
    resp
}

/// Base URL of the volume API as this client reached it (`http://host:port/volume`).
fn base_of(parts: &Parts, svc: &VolumeService) -> String {
    if let Some(p) = &svc.cfg.public_endpoint {
        return p.clone();
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
    let prefix = match full.find("/v3") {
        Some(i) => full[..i].to_string(),
        None => full.trim_end_matches('/').to_string(),
    };
    format!("{proto}://{host}{prefix}")
}

/// Everything a handler needs to know about the request.
pub struct Ctx {
    /// The project id the request's path carried after `/v3`, if any (links follow that form).
    pub url_project: Option<String>,
    pub auth: Arc<AuthContext>,
    pub token: String,
    pub mv: Mv,
    pub base: String,
    /// This request's `x-openstack-request-id` (carried into what it makes others do).
    pub request_id: String,
}

impl Ctx {
    pub fn project(&self) -> &str {
        self.auth.project_id().unwrap_or_default()
    }
}

impl FromRequestParts<Api> for Ctx {
    type Rejection = Fault;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Api,
    ) -> std::result::Result<Self, Fault> {
        let Authenticated(auth) = Authenticated::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string();
        let mv = parts
            .extensions
            .get::<Mv>()
            .copied()
            .unwrap_or(Mv(MICROVERSIONS.min));
        let full = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let url_project = full.find("/v3/").and_then(|i| {
            let rest = &full[i..];
            strip_project(rest).map(|_| {
                rest["/v3/".len()..]
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        });
        let request_id = parts
            .extensions
            .get::<common::request_id::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| common::request_id::RequestId::generate().0);
        Ok(Ctx {
            url_project,
            auth,
            token,
            mv,
            base: base_of(parts, &state.svc),
            request_id,
        })
    }
}

pub struct BaseUrl(pub String);

impl FromRequestParts<Api> for BaseUrl {
    type Rejection = Fault;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Api,
    ) -> std::result::Result<Self, Fault> {
        Ok(BaseUrl(base_of(parts, &state.svc)))
    }
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": MICROVERSIONS.max.to_string(),
        "min_version": MICROVERSIONS.min.to_string(),
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/v3/")}
        ],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.volume+json;version=3"}]
    })
}

/// `GET /volume/`: 300 Multiple Choices with the one version, as Cinder.
async fn versions_root(BaseUrl(base): BaseUrl) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": [version_doc(&base)]})),
    )
        .into_response()
}

async fn versions_v3(BaseUrl(base): BaseUrl) -> Response {
    axum::Json(json!({"versions": [version_doc(&base)]})).into_response()
}

/// A JSON request body, with Cinder's errors for a bad one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = VolumeError;
    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, VolumeError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                VolumeError::OverLimit("Request is too large.".into())
            } else {
                VolumeError::bad("Malformed request body")
            }
        })?;
        if bytes.is_empty() {
            return Err(VolumeError::bad("Malformed request body"));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| VolumeError::bad("Malformed request body"))?;
        if !v.is_object() {
            return Err(VolumeError::bad("Malformed request body"));
        }
        Ok(JsonBody(v))
    }
}

/// Query parameters in order (repeated keys kept).
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Fault;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Fault> {
        let q = parts.uri.query().unwrap_or_default();
        Ok(Params(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }
}

pub fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

pub fn accepted(v: Value) -> Response {
    (StatusCode::ACCEPTED, axum::Json(v)).into_response()
}

pub fn accepted_empty() -> Response {
    StatusCode::ACCEPTED.into_response()
}

pub fn respond(r: Result<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A boolean as Cinder reads it in bodies and queries (`true`, `True`, `1`, `yes`, ...).
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool_str(s),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

pub fn parse_bool_str(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
        "false" | "0" | "no" | "n" | "off" | "f" => Some(false),
        _ => None,
    }
}

/// A `{"k": "v"}` metadata object: string keys (1-255) and string values (<= 255).
pub fn metadata_of(v: &Value, field: &str) -> Result<crate::model::Metadata> {
    let Some(o) = v.as_object() else {
        return Err(VolumeError::bad(format!(
            "Invalid input for field/attribute {field}. Value: {v}. {v} is not of type 'object'"
        )));
    };
    let mut m = crate::model::Metadata::new();
    for (k, val) in o {
        if k.is_empty() || k.len() > 255 {
            return Err(VolumeError::bad(format!(
                "Invalid input for field/attribute {field}. Value: {v}. Metadata keys must be 1 to 255 characters"
            )));
        }
        let s = match val {
            Value::String(s) => s.clone(),
            other => {
                return Err(VolumeError::bad(format!(
                    "Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string'"
                )));
            }
        };
        if s.len() > 255 {
            return Err(VolumeError::bad(format!(
                "Invalid input for field/attribute {k}. Value: {s}. Metadata values must be at most 255 characters"
            )));
        }
        m.insert(k.clone(), s);
    }
    Ok(m)
}

/// `sort=key:dir,key2` or `sort_key`/`sort_dir`.
pub fn sort_of(p: &Params, allowed: &[&str]) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let dir_of = |d: &str| -> Result<bool> {
        match d.to_ascii_lowercase().as_str() {
            "asc" => Ok(true),
            "desc" | "" => Ok(false),
            _ => Err(VolumeError::invalid_input(
                "Unknown sort direction, must be 'desc' or 'asc'",
            )),
        }
    };
    if let Some(s) = p.get("sort") {
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            out.push((k.to_string(), dir_of(d)?));
        }
    } else if let Some(k) = p.get("sort_key") {
        let d = p.get("sort_dir").unwrap_or("desc");
        for key in k.split(',') {
            out.push((key.trim().to_string(), dir_of(d)?));
        }
    }
    for (k, _) in &out {
        if !allowed.contains(&k.as_str()) {
            return Err(VolumeError::invalid_input(format!("Invalid sort key {k}.")));
        }
    }
    Ok(out)
}

pub fn usize_param(p: &Params, name: &str) -> Result<Option<usize>> {
    match p.get(name) {
        None => Ok(None),
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n as usize)),
            Ok(_) => Err(VolumeError::invalid_input(format!("{name} must be >= 0"))),
            Err(_) => Err(VolumeError::invalid_input(format!(
                "{name} must be an integer"
            ))),
        },
    }
}

/// The caller asked for every project's resources (admins only; others are ignored).
pub fn all_tenants(p: &Params) -> bool {
    p.get("all_tenants")
        .is_some_and(|v| v.is_empty() || parse_bool_str(v).unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_optional() {
        assert_eq!(
            strip_project("/v3/abc/volumes").as_deref(),
            Some("/v3/volumes")
        );
        assert_eq!(
            strip_project("/v3/abc/volumes/1/action").as_deref(),
            Some("/v3/volumes/1/action")
        );
        assert_eq!(strip_project("/v3/volumes"), None);
        assert_eq!(strip_project("/v3/volumes/detail"), None);
        assert_eq!(strip_project("/v3/os-quota-sets/abc"), None);
        assert_eq!(strip_project("/v3/abc").as_deref(), Some("/v3"));
        assert_eq!(strip_project("/v3/"), None);
    }

    #[test]
    fn sort_params() {
        let p = Params(vec![("sort".into(), "name:asc,id".into())]);
        assert_eq!(
            sort_of(&p, &["name", "id"]).unwrap(),
            vec![("name".to_string(), true), ("id".to_string(), false)]
        );
        let p = Params(vec![("sort".into(), "name:sideways".into())]);
        assert!(sort_of(&p, &["name"]).is_err());
        let p = Params(vec![("sort_key".into(), "bogus".into())]);
        assert!(sort_of(&p, &["name"]).is_err());
    }
}
