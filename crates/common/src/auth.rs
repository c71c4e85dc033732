//! Who is calling: token validation behind a trait, and the request's auth context.
//!
//! The [`middleware`] validates `X-Auth-Token` once per request through a
//! [`TokenValidator`] (the identity service's own, in-process, by default; a remote one
//! that asks Keystone over HTTP in scale-out) and leaves the outcome in the request's
//! extensions. Handlers that need a caller take the [`Authenticated`] extractor, which
//! answers 401 when there is none; public routes (version documents, token issue) ignore it.

use axum::extract::{FromRequestParts, Request};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use http::request::Parts;
use std::sync::Arc;

use crate::fault::Fault;

pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";
pub const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Unscoped,
    Project {
        id: String,
        name: String,
        domain_id: String,
        domain_name: String,
    },
    Domain {
        id: String,
        name: String,
    },
    /// System scope; Keystone only knows `all`.
    System,
}

/// An application credential a token was issued through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredRef {
    pub id: String,
    pub name: String,
    pub restricted: bool,
}

/// The validated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    pub user_domain_name: String,
    pub scope: Scope,
    /// Effective roles on the scope (implied roles included).
    pub roles: Vec<RoleRef>,
    pub methods: Vec<String>,
    pub audit_ids: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub app_cred: Option<AppCredRef>,
    /// The project is the cloud's admin project (oslo's `is_admin_project`).
    pub is_admin_project: bool,
}

impl AuthContext {
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.name.eq_ignore_ascii_case(name))
    }
    pub fn project_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project { id, .. } => Some(id),
            _ => None,
        }
    }
    pub fn project_domain_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project { domain_id, .. } => Some(domain_id),
            _ => None,
        }
    }
    pub fn domain_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Domain { id, .. } => Some(id),
            _ => None,
        }
    }
    pub fn is_system(&self) -> bool {
        matches!(self.scope, Scope::System)
    }
}

/// The body of `POST /v3/auth/tokens` with which a service user (`[service_user]`, in the
/// `default` domain) logs in, scoped to its project.
pub fn service_login_body(username: &str, password: &str, project_name: &str) -> serde_json::Value {
    serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": username, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project_name, "domain": {"id": "default"}}}
    }})
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Garbage, expired, revoked, or its user/project is gone or disabled.
    #[error("The request you have made requires authentication.")]
    Invalid,
    /// The validator itself failed (identity unreachable, database error).
    #[error("token validation failed: {0}")]
    Unavailable(String),
}

/// Validates a token and tells who it belongs to.
#[async_trait::async_trait]
pub trait TokenValidator: Send + Sync + 'static {
    async fn validate(&self, token: &str) -> Result<Arc<AuthContext>, AuthFailure>;
}

/// The outcome of validating a request's `X-Auth-Token`, stored in request extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    Authenticated(Arc<AuthContext>),
    Rejected(AuthFailure),
}

/// Middleware: validate `X-Auth-Token` (if any) and store the [`Caller`].
pub async fn middleware(
    axum::extract::State(validator): axum::extract::State<Arc<dyn TokenValidator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(AUTH_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let caller = match token {
        None => Caller::Anonymous,
        Some(t) => match validator.validate(&t).await {
            Ok(ctx) => Caller::Authenticated(ctx),
            Err(e) => {
                tracing::info!(reason = %e, "rejected X-Auth-Token");
                Caller::Rejected(e)
            }
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Extractor for handlers that need a caller: 401 otherwise.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<AuthContext>);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Fault;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Fault> {
        match parts.extensions.get::<Caller>() {
            Some(Caller::Authenticated(ctx)) => Ok(Self(ctx.clone())),
            Some(Caller::Rejected(AuthFailure::Unavailable(msg))) => {
                tracing::error!(%msg, "token validation unavailable");
                Err(Fault::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "The identity service could not validate the token; try again shortly.",
                ))
            }
            _ => Err(Fault::unauthorized(
                "The request you have made requires authentication.",
            )),
        }
    }
}

impl std::ops::Deref for Authenticated {
    type Target = AuthContext;
    fn deref(&self) -> &AuthContext {
        &self.0
    }
}
