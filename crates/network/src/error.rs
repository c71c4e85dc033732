//! The network service's errors: Neutron's exception types, rendered once as
//! `{"NeutronError": {"type", "message", "detail"}}` by the Network fault family.

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;

/// A Neutron exception: HTTP status, `type` (the exception's class name) and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct NetError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

impl NetError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
    /// webob's HTTPBadRequest: attribute validation, unknown attributes, bad bodies.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }
    /// "Invalid input for <attr>. Reason: <reason>." (neutron-lib's attribute validation).
    pub fn invalid_attr(attr: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad(format!("Invalid input for {attr}. Reason: {reason}."))
    }
    /// neutron-lib's InvalidInput.
    pub fn invalid_input(msg: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!("Invalid input for operation: {msg}."),
        )
    }
    pub fn network_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NetworkNotFound",
            format!("Network {id} could not be found."),
        )
    }
    pub fn subnet_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SubnetNotFound",
            format!("Subnet {id} could not be found."),
        )
    }
    pub fn security_group_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SecurityGroupNotFound",
            format!("Security group {id} does not exist"),
        )
    }
    pub fn security_group_rule_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SecurityGroupRuleNotFound",
            format!("Security group rule {id} does not exist"),
        )
    }
    /// A Neutron exception derived from InvalidInput with its own message (400, `kind`).
    pub fn invalid(kind: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, msg)
    }
    /// neutron-lib's BadRequest: "Bad <resource> request: <msg>.".
    pub fn bad_request(resource: &str, msg: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Bad {resource} request: {msg}."),
        )
    }
    pub fn router_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RouterNotFound",
            format!("Router {id} could not be found"),
        )
    }
    pub fn floatingip_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "FloatingIPNotFound",
            format!("Floating IP {id} could not be found"),
        )
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "HTTPNotFound", msg)
    }
    pub fn policy(rule: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!("{rule} is disallowed by policy"),
        )
    }
    pub fn over_quota(resource: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "OverQuota",
            format!("Quota exceeded for resources: ['{resource}']."),
        )
    }
    pub fn conflict(kind: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, msg)
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "network service error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            "Request Failed: internal server error while processing your request.",
        )
    }

    pub fn to_fault(&self) -> Fault {
        Fault::new(self.status, self.message.clone()).with_kind(self.kind)
    }
}

impl From<sea_orm::DbErr> for NetError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::internal(e)
    }
}

impl From<serde_json::Error> for NetError {
    fn from(e: serde_json::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for NetError {
    fn into_response(self) -> Response {
        self.to_fault().into_response()
    }
}
