//! The image service's errors, mapped once to the fault Glance's clients parse.

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Malformed request, schema violation, bad filter (Glance's 400s).
    #[error("{0}")]
    BadRequest(String),
    /// Policy denial, read-only or reserved attribute, protected image (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Wrong state or duplicate (409).
    #[error("{0}")]
    Conflict(String),
    /// The image went away while its data was being written (410, as Glance).
    #[error("{0}")]
    Gone(String),
    /// Size cap or quota (413).
    #[error("{0}")]
    TooLarge(String),
    /// Wrong Content-Type, or data that does not match the image's disk_format (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("store error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }
    pub fn image_not_found(id: &str) -> Self {
        Self::NotFound(format!("No image found with ID {id}"))
    }
    pub fn transition(from: &str, to: &str) -> Self {
        Self::Conflict(format!(
            "Image status transition from {from} to {to} is not allowed"
        ))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Db(_) | Self::Io(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The fault a client sees; internal details stay in the log.
    pub fn to_fault(&self) -> Fault {
        let message = match self {
            Self::Db(_) | Self::Io(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "image service error");
                "The server has either erred or is incapable of performing the requested operation."
                    .to_string()
            }
            other => other.to_string(),
        };
        Fault::new(self.status(), message)
    }
}

impl IntoResponse for ImageError {
    fn into_response(self) -> Response {
        self.to_fault().into_response()
    }
}

impl From<common::policy::PolicyError> for ImageError {
    fn from(e: common::policy::PolicyError) -> Self {
        Self::Forbidden(format!(
            "You are not authorized to complete {} action.",
            e.action()
        ))
    }
}
