//! The identity service's errors, mapped once to Keystone's fault body.

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A malformed or invalid request (Keystone's ValidationError family).
    #[error("{0}")]
    Validation(String),
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    /// A token that is garbage, expired, revoked or no longer valid (404 as Keystone).
    #[error("{0}")]
    TokenNotFound(String),
    #[error("Conflict occurred attempting to store {kind} - {details}.")]
    Conflict { kind: &'static str, details: String },
    /// Authentication failed; the detail is only shown with `insecure_debug`.
    #[error("The request you have made requires authentication.")]
    Unauthorized { detail: Option<String> },
    /// Authentication failed with a message Keystone shows as is (locked, disabled, expired).
    #[error("{0}")]
    UnauthorizedShown(String),
    /// Policy denied the action.
    #[error("You are not authorized to perform the requested action: {action}.")]
    PolicyDenied { action: String },
    /// A refusal that is not about who the caller is (Keystone's ForbiddenNotSecurity).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

impl IdentityError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            detail: Some(detail.into()),
        }
    }
    /// Keystone's "Expecting to find X in Y" wording for a missing piece of a request.
    pub fn expecting(attribute: &str, target: &str) -> Self {
        Self::Validation(format!(
            "Expecting to find {attribute} in {target}. The server could not comply with the \
             request since it is either malformed or otherwise incorrect. The client is assumed \
             to be in error."
        ))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } | Self::TokenNotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unauthorized { .. } | Self::UnauthorizedShown(_) => StatusCode::UNAUTHORIZED,
            Self::PolicyDenied { .. } | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Db(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The fault a client sees; internal details stay in the log.
    pub fn to_fault(&self, insecure_debug: bool) -> Fault {
        let message = match self {
            Self::Db(e) => {
                tracing::error!(error = %e, "identity database error");
                "An unexpected error prevented the server from fulfilling your request.".into()
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "identity internal error");
                "An unexpected error prevented the server from fulfilling your request.".into()
            }
            Self::Unauthorized { detail: Some(d) } if insecure_debug => {
                format!("{d} (Disable insecure_debug mode to suppress these details.)")
            }
            Self::Unauthorized { detail: Some(d) } => {
                tracing::info!(reason = %d, "authentication failed");
                self.to_string()
            }
            other => other.to_string(),
        };
        Fault::new(self.status(), message)
    }
}

/// `[DEFAULT] insecure_debug`, set once at start: error rendering has no config at hand.
static INSECURE_DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_insecure_debug(on: bool) {
    INSECURE_DEBUG.store(on, Ordering::Relaxed);
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        self.to_fault(INSECURE_DEBUG.load(Ordering::Relaxed))
            .into_response()
    }
}
