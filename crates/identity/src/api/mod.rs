//! Keystone v3 over HTTP: thin handlers that parse, authorize, call the core and render.

mod assignments;
mod auth;
mod catalog;
mod credentials;
mod render;
mod resource;
mod schema;
mod users;
mod versions;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::AuthContext;
use common::{Family, Fault};
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

use crate::core::{Identity, LocalValidator};
use crate::error::{IdentityError, Result};

/// Handler state.
#[derive(Clone)]
pub struct Api {
    pub id: Arc<Identity>,
}

/// The identity router, to be mounted at `/` and at `/identity`.
pub fn router(identity: Arc<Identity>) -> Router {
    let limit = identity.cfg.max_request_body_size;
    let validator: Arc<dyn common::auth::TokenValidator> =
        Arc::new(LocalValidator(identity.clone()));
    let api = Api { id: identity };
    let api_for_challenge = api.clone();
    let v3 = Router::new()
        .route("/", get(versions::v3))
        .merge(auth::routes())
        .merge(resource::routes())
        .merge(users::routes())
        .merge(assignments::routes())
        .merge(catalog::routes())
        .merge(credentials::routes());
    Router::new()
        .route("/", get(versions::root))
        .nest("/v3", v3)
        .fallback(fallback)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            validator,
            common::auth::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(common::fault::FaultLayer::new(Family::Identity))
        .layer(axum::middleware::from_fn_with_state(
            api_for_challenge,
            www_authenticate,
        ))
}

/// Every 401 tells the client where to authenticate, as Keystone does.
async fn www_authenticate(
    State(api): State<Api>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let base = Base::from_request_parts(&mut parts, &api)
        .await
        .map(|b| b.0)
        .unwrap_or_default();
    let mut resp = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    if resp.status() == StatusCode::UNAUTHORIZED
        && let Ok(v) = http::HeaderValue::from_str(&format!("Keystone uri=\"{base}/v3\""))
    {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

async fn fallback() -> Fault {
    Fault::not_found("The resource could not be found.")
}

/// Base URL of the identity API as this client reached it (`http://host:port/identity`).
pub struct Base(pub String);

impl FromRequestParts<Api> for Base {
    type Rejection = Fault;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Api,
    ) -> std::result::Result<Self, Fault> {
        if let Some(p) = &state.id.cfg.public_endpoint {
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
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let prefix = if path.starts_with("/identity/") || path == "/identity" {
            "/identity"
        } else {
            ""
        };
        Ok(Base(format!("{proto}://{host}{prefix}")))
    }
}

/// A JSON request body (an object), with Keystone's errors for a bad one.
pub struct Body(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = IdentityError;
    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, IdentityError> {
        let ct = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                IdentityError::TooLarge("Request is too large.".into())
            } else {
                IdentityError::expecting("valid JSON", "request body")
            }
        })?;
        if let Some(ct) = &ct
            && !bytes.is_empty()
            && !ct.starts_with("application/json")
            && !ct.contains("+json")
        {
            return Err(IdentityError::expecting(
                "application/json",
                "Content-Type header",
            ));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| IdentityError::expecting("valid JSON", "request body"))?;
        if !v.is_object() {
            return Err(IdentityError::validation(
                "The request body must be a JSON object.",
            ));
        }
        Ok(Body(v))
    }
}

/// Query parameters; a bare `?effective` has an empty value.
pub type QueryMap = axum::extract::Query<HashMap<String, String>>;

/// Keystone's truthiness of a query flag: present and not "0"/"false".
pub fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    })
}

pub fn opt_bool(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>> {
    match q.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "" | "1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(v) => Err(IdentityError::validation(format!(
            "Invalid value {v:?} for boolean filter {name}."
        ))),
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

pub fn created(body: Value) -> Response {
    json_response(StatusCode::CREATED, body)
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `{"<key>": [...], "links": {...}}`, capped at the list limit with `truncated`.
pub fn list_response(
    base: &str,
    key: &str,
    path: &str,
    mut items: Vec<Value>,
    limit: Option<usize>,
) -> Response {
    let truncated = common::pagination::truncate(&mut items, limit);
    let mut body = Map::new();
    body.insert(key.into(), Value::Array(items));
    body.insert(
        "links".into(),
        json!({"self": format!("{base}/v3/{path}"), "previous": null, "next": null}),
    );
    if truncated {
        body.insert("truncated".into(), Value::Bool(true));
    }
    ok(Value::Object(body))
}

/// Authorize `action` on an entity looked up by id. The policy sees the stored entity when it
/// exists, else only its id: a caller the policy denies gets 403 whether or not the entity
/// exists, and an allowed caller then gets the lookup's 404.
pub fn guard<T>(
    api: &Api,
    ctx: &AuthContext,
    action: &str,
    found: Result<T>,
    target: fn(&T) -> Value,
    kind: &str,
    id: &str,
) -> Result<T> {
    let policy_target = match &found {
        Ok(x) => target(x),
        Err(_) => json!({"target": {kind: {"id": id}}, format!("{kind}_id"): id}),
    };
    api.id.authorize(ctx, action, &policy_target)?;
    found
}

/// The domain a domain-scoped caller is confined to when listing.
pub fn token_domain(ctx: &AuthContext) -> Option<String> {
    ctx.domain_id().map(str::to_string)
}

pub type St = State<Api>;
