//! Errors: the domain's ([`PlacementError`], raised by the core, worded as upstream's
//! exceptions) and the API's ([`ApiError`]: status, detail, Placement error code), which is
//! turned into a [`common::Fault`] once and rendered by the Placement fault family.

use axum::response::{IntoResponse, Response};
use common::Fault;
use http::StatusCode;

/// Placement's machine-readable error codes (`errors[].code`, microversion 1.23+).
pub mod codes {
    pub const INVENTORY_INUSE: &str = "placement.inventory.inuse";
    pub const CONCURRENT_UPDATE: &str = "placement.concurrent_update";
    pub const DUPLICATE_NAME: &str = "placement.duplicate_name";
    pub const PROVIDER_IN_USE: &str = "placement.resource_provider.inuse";
    pub const PROVIDER_CANNOT_DELETE_PARENT: &str =
        "placement.resource_provider.cannot_delete_parent";
    pub const RESOURCE_PROVIDER_NOT_FOUND: &str = "placement.resource_provider.not_found";
    pub const ILLEGAL_DUPLICATE_QUERYPARAM: &str = "placement.query.duplicate_key";
    pub const QUERYPARAM_BAD_VALUE: &str = "placement.query.bad_value";
    pub const QUERYPARAM_MISSING_VALUE: &str = "placement.query.missing_value";
}

/// What the core reports. Messages are upstream's exception texts, because handlers embed
/// them in their details and clients (and operators) search for them.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// A lookup failed; the message says what was looked for.
    #[error("{0}")]
    NotFound(String),
    #[error("No such resource class {0}.")]
    ResourceClassNotFound(String),
    #[error("No such trait(s): {0}.")]
    TraitNotFound(String),
    #[error("No inventory of class {0} found.")]
    InventoryNotFound(String),
    #[error("Another thread concurrently updated the data. Please retry your update")]
    ConcurrentUpdate,
    #[error(
        "Another thread concurrently updated the resource provider data. Please retry your update"
    )]
    ProviderConcurrentUpdate,
    #[error("Inventory for '{resource_classes}' on resource provider '{provider}' in use.")]
    InventoryInUse {
        resource_classes: String,
        provider: String,
    },
    #[error(
        "Invalid inventory for '{resource_class}' on resource provider '{provider}'. The reserved value is greater than or equal to total."
    )]
    InvalidInventoryCapacity {
        resource_class: String,
        provider: String,
    },
    #[error(
        "Invalid inventory for '{resource_class}' on resource provider '{provider}'. The reserved value is greater than total."
    )]
    InvalidInventoryCapacityReservedCanBeTotal {
        resource_class: String,
        provider: String,
    },
    /// An allocation names a class the provider has no inventory of.
    #[error("Inventory for '{resource_class}' on resource provider '{provider}' invalid.")]
    InvalidInventory {
        resource_class: String,
        provider: String,
    },
    #[error(
        "Unable to create allocation for '{resource_class}' on resource provider '{provider}'. The requested amount would exceed the capacity."
    )]
    CapacityExceeded {
        resource_class: String,
        provider: String,
    },
    #[error(
        "Unable to create allocation for '{resource_class}' on resource provider '{provider}'. The requested amount would violate inventory constraints."
    )]
    ConstraintsViolated {
        resource_class: String,
        provider: String,
    },
    #[error(
        "Cannot delete resource provider that is a parent of another. Delete child providers first."
    )]
    CannotDeleteParent,
    #[error("Resource provider has allocations.")]
    ProviderInUse,
    #[error("Object action {action} failed because: {reason}")]
    ObjectAction {
        action: &'static str,
        reason: String,
    },
    /// A unique name or uuid is taken; the message is the handler's.
    #[error("{0}")]
    Duplicate(String),
    #[error("Resource class {0} already exists.")]
    ResourceClassExists(String),
    #[error("Cannot delete standard resource class {0}.")]
    ResourceClassCannotDeleteStandard(String),
    #[error("Cannot update standard resource class {0}.")]
    ResourceClassCannotUpdateStandard(String),
    #[error("Cannot delete resource class {0}. Class is in use in inventory.")]
    ResourceClassInUse(String),
    #[error("Cannot delete standard trait {0}.")]
    TraitCannotDeleteStandard(String),
    #[error("The trait {0} is in use by a resource provider.")]
    TraitInUse(String),
    /// A generation supplied by the client is stale; the message is the handler's.
    #[error("{0}")]
    GenerationConflict(String),
    /// The request is malformed in a way only the core can see.
    #[error("{0}")]
    BadRequest(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

pub type Result<T, E = PlacementError> = std::result::Result<T, E>;

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub code: Option<&'static str>,
    /// webob's explanation when it is templated from the request (405, 406, 415).
    pub explanation: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            code: None,
            explanation: None,
        }
    }
    /// An error whose explanation names something of the request (method, media type).
    pub fn templated(
        status: StatusCode,
        explanation: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            explanation: Some(explanation.into()),
            ..Self::new(status, detail)
        }
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error prevented the server from fulfilling your request.",
        )
    }

    /// The fault for the family renderer. The detail gets webob's preamble (the status'
    /// explanation), as the Python service's error bodies have it.
    pub fn to_fault(&self) -> Fault {
        let message = match (&self.explanation, explanation(self.status)) {
            (Some(e), _) => format!("{e} \n\n {}", self.detail),
            (None, Some(e)) => format!("{e}\n\n {}  ", self.detail),
            (None, None) => self.detail.clone(),
        };
        let mut f = Fault::new(self.status, message);
        f.kind = self.code.map(str::to_string);
        f
    }
}

/// webob's explanation text per status (what precedes the detail in upstream's bodies).
pub fn explanation(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        400 => {
            "The server could not comply with the request since it is either malformed or otherwise incorrect."
        }
        401 => {
            "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required."
        }
        403 => "Access was denied to this resource.",
        404 => "The resource could not be found.",
        409 => "There was a conflict when trying to complete your request.",
        413 => "The body of your request was too large for this server.",
        500 => "The server has either erred or is incapable of performing the requested operation.",
        503 => "The server is currently unavailable. Please try again at a later time.",
        _ => return None,
    })
}

impl From<PlacementError> for ApiError {
    /// The default mapping; handlers map errors with their own wording first.
    fn from(e: PlacementError) -> Self {
        use PlacementError as E;
        match e {
            E::Db(err) => {
                tracing::error!(error = %err, "placement database error");
                ApiError::internal()
            }
            E::NotFound(_)
            | E::ResourceClassNotFound(_)
            | E::TraitNotFound(_)
            | E::InventoryNotFound(_) => ApiError::not_found(e.to_string()),
            E::ConcurrentUpdate | E::ProviderConcurrentUpdate | E::GenerationConflict(_) => {
                ApiError::conflict(e.to_string()).with_code(codes::CONCURRENT_UPDATE)
            }
            E::InventoryInUse { .. } => {
                ApiError::conflict(e.to_string()).with_code(codes::INVENTORY_INUSE)
            }
            E::CannotDeleteParent => {
                ApiError::conflict(e.to_string()).with_code(codes::PROVIDER_CANNOT_DELETE_PARENT)
            }
            E::ProviderInUse => ApiError::conflict(e.to_string()).with_code(codes::PROVIDER_IN_USE),
            E::Duplicate(_) => ApiError::conflict(e.to_string()).with_code(codes::DUPLICATE_NAME),
            E::ResourceClassExists(_)
            | E::ResourceClassInUse(_)
            | E::TraitInUse(_)
            | E::CapacityExceeded { .. }
            | E::ConstraintsViolated { .. }
            | E::InvalidInventory { .. } => ApiError::conflict(e.to_string()),
            E::InvalidInventoryCapacity { .. }
            | E::InvalidInventoryCapacityReservedCanBeTotal { .. }
            | E::ObjectAction { .. }
            | E::ResourceClassCannotDeleteStandard(_)
            | E::ResourceClassCannotUpdateStandard(_)
            | E::TraitCannotDeleteStandard(_)
            | E::BadRequest(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_fault().into_response()
    }
}

impl IntoResponse for PlacementError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_has_webob_preamble_and_code() {
        let f = ApiError::conflict("resource provider generation conflict")
            .with_code(codes::CONCURRENT_UPDATE)
            .to_fault();
        assert_eq!(
            f.message,
            "There was a conflict when trying to complete your request.\n\n resource provider generation conflict  "
        );
        assert_eq!(f.kind.as_deref(), Some("placement.concurrent_update"));
    }

    #[test]
    fn default_mapping() {
        let e: ApiError = PlacementError::ProviderInUse.into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.code, Some(codes::PROVIDER_IN_USE));
        let e: ApiError = PlacementError::ResourceClassNotFound("CUSTOM_X".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.detail, "No such resource class CUSTOM_X.");
    }
}
