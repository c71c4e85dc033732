//! Compute's errors, with Nova's messages, mapped once to the fault Nova's clients parse.

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Quota exceeded: Nova answers 403 with the "Quota exceeded for ..." message.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotImplemented(String),
    /// A service kumo called (image, placement, network, volume) failed.
    #[error("{service} service: {message}")]
    Upstream {
        service: &'static str,
        message: String,
    },
    #[error("no valid host was found: {0}")]
    NoValidHost(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("message bus error: {0}")]
    Bus(#[from] bus::BusError),
    #[error("hypervisor: {0}")]
    Driver(#[from] hypervisor::DriverError),
    #[error("{0}")]
    Internal(String),
    /// An operation failed in a way Nova tells the caller (a 500 whose message is shown, as
    /// `InterfaceAttachFailed`).
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = ComputeError> = std::result::Result<T, E>;

impl ComputeError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }
    pub fn instance_not_found(uuid: &str) -> Self {
        Self::NotFound(format!("Instance {uuid} could not be found."))
    }
    pub fn flavor_not_found(id: &str) -> Self {
        Self::NotFound(format!("Flavor {id} could not be found."))
    }
    /// Nova's InstanceInvalidState as the API words it.
    pub fn invalid_state(action: &str, uuid: &str, attr: &str, state: &str) -> Self {
        Self::Conflict(format!(
            "Cannot '{action}' instance {uuid} while it is in {attr} {state}"
        ))
    }
    pub fn locked(uuid: &str) -> Self {
        Self::Conflict(format!("Instance {uuid} is locked"))
    }
    pub fn policy(action: &str) -> Self {
        Self::Forbidden(format!("Policy doesn't allow {action} to be performed."))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Upstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Bus(e) if bus_unavailable(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoValidHost(_)
            | Self::Db(_)
            | Self::Bus(_)
            | Self::Driver(_)
            | Self::Internal(_)
            | Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The fault a client sees; internal details stay in the log.
    pub fn to_fault(&self) -> Fault {
        let message = match self {
            Self::Bus(e) if bus_unavailable(e) => {
                tracing::error!(error = %e, "compute could not reach its other roles");
                "The compute service's message bus is unavailable (RabbitMQ unreachable or the role gone); try again shortly.".to_string()
            }
            Self::Db(_)
            | Self::Bus(_)
            | Self::Driver(_)
            | Self::Internal(_)
            | Self::NoValidHost(_) => {
                tracing::error!(error = %self, "compute service error");
                "Unexpected API Error. Please report this at https://github.com/kumo-cloud/kumo and attach the kumo log if possible.".to_string()
            }
            Self::Upstream { service, message } => {
                tracing::error!(service, %message, "a service compute depends on failed");
                format!("The {service} service is unavailable ({message}); try again shortly.")
            }
            other => other.to_string(),
        };
        Fault::new(self.status(), message)
    }
}

/// A bus failure that says the broker or the other side is away (503: retry later), not a
/// bug (500).
fn bus_unavailable(e: &bus::BusError) -> bool {
    matches!(
        e,
        bus::BusError::Transport(_)
            | bus::BusError::Timeout { .. }
            | bus::BusError::Disconnected { .. }
            | bus::BusError::NoServer { .. }
    )
}

impl From<Fault> for ComputeError {
    fn from(f: Fault) -> Self {
        match f.status.as_u16() {
            400 => Self::BadRequest(f.message),
            401 => Self::Unauthorized(f.message),
            403 => Self::Forbidden(f.message),
            404 => Self::NotFound(f.message),
            409 => Self::Conflict(f.message),
            413 => Self::TooLarge(f.message),
            _ => Self::Internal(f.message),
        }
    }
}

impl IntoResponse for ComputeError {
    fn into_response(self) -> Response {
        self.to_fault().into_response()
    }
}
