//! Error responses in each OpenStack service's own fault format.
//!
//! Handlers and extractors return a [`Fault`] (status + message). The fault carries no
//! service-specific shape: the service's router is wrapped in [`FaultLayer`] for its
//! [`Family`], which renders every error response once, in the body that service's clients
//! parse (Keystone, Nova/Cinder, Neutron, Placement, Glance). Errors that axum or tower
//! produce on their own (404 for an unknown path, 405, 413 from the body limit, timeouts)
//! go through the same renderer, so no error ever leaves in a foreign format.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util_shim::BoxFuture;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use serde_json::json;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Which service's error format to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Keystone: `{"error": {"code", "title", "message"}}`.
    Identity,
    /// Nova: `{"itemNotFound": {"code", "message"}}` and friends.
    Compute,
    /// Cinder: same shape as Nova.
    Volume,
    /// Neutron: `{"NeutronError": {"type", "message", "detail"}}`.
    Network,
    /// Placement: `{"errors": [{"status", "title", "detail", "code", "request_id"}]}`.
    Placement,
    /// Glance: `{"message", "code": "404 Not Found", "title"}`, what Glance 33 (webob) answers
    /// to clients that accept JSON (checked against the real service).
    Image,
}

/// An error on its way to the client: status, a message for humans, and optionally a
/// machine type (Neutron's `type`, Placement's `code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: StatusCode,
    pub message: String,
    /// Neutron exception type (`NetworkNotFound`) or Placement error code
    /// (`placement.undefined_code`); renderers fall back to a default per status.
    pub kind: Option<String>,
}

impl Fault {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: None,
        }
    }
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The body this fault gets in `family`'s format.
    pub fn render_body(&self, family: Family, request_id: Option<&str>) -> serde_json::Value {
        let code = self.status.as_u16();
        let title = title(self.status);
        match family {
            Family::Identity => json!({
                "error": {"code": code, "title": title, "message": self.message}
            }),
            Family::Compute | Family::Volume => {
                json!({ nova_key(self.status): {"code": code, "message": self.message} })
            }
            Family::Network => json!({
                "NeutronError": {
                    "type": self.kind.clone().unwrap_or_else(|| neutron_type(self.status).to_string()),
                    "message": self.message,
                    "detail": "",
                }
            }),
            Family::Placement => json!({
                "errors": [{
                    "status": code,
                    "title": title,
                    "detail": self.message,
                    "code": self.kind.clone().unwrap_or_else(|| "placement.undefined_code".to_string()),
                    "request_id": request_id,
                }]
            }),
            Family::Image => json!({
                "code": format!("{code} {title}"),
                "title": title,
                "message": self.message,
            }),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for Fault {}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        // The body is written by the family layer; this generic body is only what a route
        // outside any family would send.
        let body = serde_json::to_vec(&json!({"error": {
            "code": self.status.as_u16(), "title": title(self.status), "message": self.message
        }}))
        .unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.extensions_mut().insert(self);
        resp
    }
}

/// The standard reason phrase, as the Python services print it in `title`.
pub fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

fn nova_key(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "HTTPMethodNotAllowed",
        406 => "HTTPNotAcceptable",
        409 => "conflictingRequest",
        413 => "overLimit",
        415 => "HTTPUnsupportedMediaType",
        429 => "overLimit",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

fn neutron_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "HTTPBadRequest",
        401 => "HTTPUnauthorized",
        403 => "HTTPForbidden",
        404 => "HTTPNotFound",
        405 => "HTTPMethodNotAllowed",
        409 => "HTTPConflict",
        413 => "HTTPRequestEntityTooLarge",
        _ => "HTTPInternalServerError",
    }
}

/// Default message for error responses produced without a [`Fault`] (router 404/405,
/// body-limit 413, timeouts), worded as the Python services word them.
fn default_message(family: Family, status: StatusCode) -> String {
    match (family, status.as_u16()) {
        (Family::Identity, 404) => "The resource could not be found.".into(),
        (Family::Identity, 405) => "The method is not allowed for the requested URL.".into(),
        (Family::Identity, 413) => "Request is too large.".into(),
        (_, 404) => "The resource could not be found.".into(),
        (_, 405) => "The method is not allowed for the requested URL.".into(),
        (_, 408) => "The request timed out.".into(),
        (_, 413) => "Request is too large.".into(),
        (_, 500) => "An unexpected error prevented the server from fulfilling your request.".into(),
        _ => title(status).to_string(),
    }
}

/// Tower layer rendering every error response of a service in its family's format.
#[derive(Clone, Copy)]
pub struct FaultLayer {
    family: Family,
}

impl FaultLayer {
    pub fn new(family: Family) -> Self {
        Self { family }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            family: self.family,
        }
    }
}

#[derive(Clone)]
pub struct FaultService<S> {
    inner: S,
    family: Family,
}

impl<S> Service<Request> for FaultService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let family = self.family;
        let request_id = crate::request_id::RequestId::from_request(&req);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(render(family, request_id.as_deref(), resp))
        })
    }
}

/// Render an error response in `family`'s format (success responses pass unchanged).
pub fn render(family: Family, request_id: Option<&str>, mut resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let fault = match resp.extensions_mut().remove::<Fault>() {
        Some(f) => f,
        None => {
            // A response somebody already rendered as JSON (e.g. a proxied body) is kept.
            let is_json = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if is_json {
                return resp;
            }
            Fault::new(status, default_message(family, status))
        }
    };
    let body = serde_json::to_vec(&fault.render_body(family, request_id)).unwrap_or_default();
    let (mut parts, _) = resp.into_parts();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    parts.extensions.insert(fault);
    Response::from_parts(parts, Body::from(body))
}

mod futures_util_shim {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_body_has_code_title_message() {
        let f = Fault::not_found("Could not find project: x.");
        assert_eq!(
            f.render_body(Family::Identity, None),
            json!({"error": {"code": 404, "title": "Not Found", "message": "Could not find project: x."}})
        );
    }

    #[test]
    fn compute_body_is_keyed_by_kind() {
        let f = Fault::conflict("Cannot 'start' instance while it is in vm_state active");
        let b = f.render_body(Family::Compute, None);
        assert_eq!(b["conflictingRequest"]["code"], 409);
        assert_eq!(
            Fault::too_large("x").render_body(Family::Volume, None)["overLimit"]["code"],
            413
        );
    }

    #[test]
    fn neutron_and_placement_shapes() {
        let b = Fault::not_found("Network x could not be found.")
            .with_kind("NetworkNotFound")
            .render_body(Family::Network, None);
        assert_eq!(b["NeutronError"]["type"], "NetworkNotFound");
        assert_eq!(b["NeutronError"]["detail"], "");
        let p = Fault::bad_request("bad").render_body(Family::Placement, Some("req-1"));
        assert_eq!(p["errors"][0]["status"], 400);
        assert_eq!(p["errors"][0]["request_id"], "req-1");
        assert_eq!(p["errors"][0]["code"], "placement.undefined_code");
    }

    #[test]
    fn image_body_is_webobs_json() {
        let b = Fault::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Invalid content type")
            .render_body(Family::Image, None);
        assert_eq!(
            b,
            json!({"code": "415 Unsupported Media Type", "title": "Unsupported Media Type",
                   "message": "Invalid content type"})
        );
    }

    #[test]
    fn plain_error_responses_are_rendered() {
        let mut resp = Response::new(Body::from("length limit exceeded"));
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        let out = render(Family::Identity, None, resp);
        assert_eq!(out.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            out.extensions().get::<Fault>().map(|f| f.message.as_str()),
            Some("Request is too large.")
        );
    }
}
