//! Glance v2 over HTTP: thin handlers that parse, call the core and render.

mod data;
mod images;
mod render;
mod schemas;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::TokenValidator;
use common::{Family, Fault};
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::core::ImageService;
use crate::error::{ImageError, Result};

/// Handler state.
#[derive(Clone)]
pub struct Api {
    pub svc: Arc<ImageService>,
}

/// The image router, to be mounted at `/image` (its catalog endpoint).
pub fn router(svc: Arc<ImageService>, validator: Arc<dyn TokenValidator>) -> Router {
    let limit = svc.cfg.max_request_body_size;
    let max_line = svc.cfg.max_header_line;
    let api = Api { svc };
    let v2 = Router::new()
        .route("/", get(versions_v2))
        .merge(images::routes())
        .merge(schemas::routes())
        .merge(data::routes());
    Router::new()
        .route("/", get(versions_root))
        .route("/versions", get(versions_explicit))
        .nest("/v2", v2)
        .fallback(fallback)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                header_lines_ok(&req, max_line)?;
                Ok::<Response, Fault>(next.run(req).await)
            },
        ))
        .layer(common::fault::FaultLayer::new(Family::Image))
}

/// Glance's server refuses a request with a header line longer than `max_header_line`
/// before doing anything with it.
fn header_lines_ok(req: &axum::extract::Request, max: usize) -> std::result::Result<(), Fault> {
    for (name, value) in req.headers() {
        // "Name: value" as it was on the wire.
        if name.as_str().len() + 2 + value.len() > max {
            return Err(Fault::bad_request(format!(
                "Line too long: the {name} header is longer than {max} bytes."
            )));
        }
    }
    Ok(())
}

async fn fallback() -> Fault {
    Fault::not_found("The resource could not be found.")
}

/// Base URL of the image API as this client reached it (`http://host:port/image`).
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
        // The mount point: what the original path has before the path this router sees.
        let full = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let prefix = match full.find("/v2") {
            Some(i) => full[..i].to_string(),
            None if full.ends_with("/versions") => full.trim_end_matches("/versions").to_string(),
            None => full.trim_end_matches('/').to_string(),
        };
        Ok(Base(format!("{proto}://{host}{prefix}")))
    }
}

fn versions_doc(base: &str) -> Value {
    // Versions whose every change kumo implements (2.12 added /v2/images/{id}/tasks; the
    // multi-store calls of 2.8-2.11 are answered for the one store kumo has).
    let href = format!("{base}/v2/");
    let mut versions =
        vec![json!({"id": "v2.12", "status": "CURRENT", "links": [{"rel": "self", "href": href}]})];
    for minor in (0..12).rev() {
        versions.push(json!({"id": format!("v2.{minor}"), "status": "SUPPORTED",
            "links": [{"rel": "self", "href": href}]}));
    }
    json!({ "versions": versions })
}

/// `GET /image/`: the version list with 300 Multiple Choices, as Glance answers.
async fn versions_root(Base(base): Base) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(versions_doc(&base)),
    )
        .into_response()
}

/// `GET /image/versions` and `GET /image/v2`: the same list, 200.
async fn versions_explicit(Base(base): Base) -> Response {
    axum::Json(versions_doc(&base)).into_response()
}

async fn versions_v2(Base(base): Base) -> Response {
    axum::Json(versions_doc(&base)).into_response()
}

/// A JSON request body, with Glance's errors for a bad one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = ImageError;
    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, ImageError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ImageError::TooLarge("Request is too large.".into())
            } else {
                ImageError::bad("Malformed JSON in request body.")
            }
        })?;
        if bytes.is_empty() {
            return Err(ImageError::bad("Body expected in request."));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ImageError::bad("Malformed JSON in request body."))?;
        Ok(JsonBody(v))
    }
}

pub type St = State<Api>;

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn json_ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

pub fn result_response(r: Result<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}
