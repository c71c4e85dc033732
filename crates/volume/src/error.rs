//! The volume service's errors, mapped once to the fault bodies Cinder's clients parse
//! (`{"badRequest": {"code": 400, "message": ...}}`, `itemNotFound`, `forbidden`, `overLimit`).

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Quota exceeded: Cinder answers 413.
    #[error("{0}")]
    OverLimit(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("backend error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

impl VolumeError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
    /// Cinder's InvalidInput.
    pub fn invalid_input(reason: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("Invalid input received: {reason}"))
    }
    pub fn volume_not_found(id: &str) -> Self {
        Self::NotFound(format!("Volume {id} could not be found."))
    }
    pub fn snapshot_not_found(id: &str) -> Self {
        Self::NotFound(format!("Snapshot {id} could not be found."))
    }
    pub fn type_not_found(id: &str) -> Self {
        Self::NotFound(format!("Volume type {id} could not be found."))
    }
    pub fn attachment_not_found(id: &str) -> Self {
        Self::NotFound(format!("VolumeAttachment {id} could not be found."))
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::OverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Db(_) | Self::Io(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn to_fault(&self) -> Fault {
        let message = match self {
            Self::Db(_) | Self::Io(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "volume service error");
                "The server has either erred or is incapable of performing the requested operation."
                    .to_string()
            }
            other => other.to_string(),
        };
        Fault::new(self.status(), message)
    }
}

impl IntoResponse for VolumeError {
    fn into_response(self) -> Response {
        self.to_fault().into_response()
    }
}

impl From<common::policy::PolicyError> for VolumeError {
    fn from(e: common::policy::PolicyError) -> Self {
        Self::Forbidden(format!(
            "Policy doesn't allow {} to be performed.",
            e.action()
        ))
    }
}
