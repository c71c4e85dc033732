//! Errors a caller sees, and the faults a server sends back in their place.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::message::Version;

/// Why a bus operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The call was delivered (or queued) but no reply came in time (oslo's `MessagingTimeout`).
    #[error("no reply from {target} within {timeout:?}")]
    Timeout {
        /// `topic` or `topic.server`.
        target: String,
        /// The timeout the caller gave.
        timeout: Duration,
    },
    /// Nobody serves the target, so the message was not delivered at all. Distinct from
    /// `Timeout` so a caller can tell "down" from "slow" without waiting (oslo's
    /// `MessageUndeliverable`, which its rabbit driver raises for mandatory publishes).
    #[error("no server is listening on {target}")]
    NoServer {
        /// `topic` or `topic.server`.
        target: String,
    },
    /// The server took the call but stopped (its subscription closed) before replying.
    #[error("the server on {target} stopped before replying")]
    Disconnected {
        /// `topic` or `topic.server`.
        target: String,
    },
    /// The handler returned an error (or panicked: kind [`Fault::PANIC`]).
    #[error("remote {kind}: {message}")]
    Remote {
        /// What went wrong, as a stable name callers can match on (oslo sends the exception
        /// class name, e.g. `NoValidHost`).
        kind: String,
        /// Human-readable detail.
        message: String,
    },
    /// The server knows the method but not in a version compatible with the sender's.
    #[error(
        "{method} {requested} is not supported by the server (it serves {})",
        list(supported)
    )]
    IncompatibleVersion {
        /// The method called.
        method: String,
        /// The version the sender spoke.
        requested: Version,
        /// The versions the server implements for the method.
        supported: Vec<Version>,
    },
    /// The sender was asked to send a message at an older version (a rolling upgrade's version
    /// cap) that the message type cannot write itself at (oslo's `RPCVersionCapError`).
    #[error(
        "{method} cannot be sent at {cap}: this code speaks {speaks} and has no backport to {cap}"
    )]
    VersionCap {
        /// The method.
        method: String,
        /// The version the sender's code speaks.
        speaks: Version,
        /// The highest version the receivers serve.
        cap: Version,
    },
    /// The server does not know the method at all.
    #[error("the server has no method {method}")]
    NoSuchMethod {
        /// The method called.
        method: String,
    },
    /// The target cannot be served or addressed (empty topic or server name).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// A typed message or reply did not (de)serialize.
    #[error("message encoding: {0}")]
    Codec(String),
    /// The transport itself failed (broker connection lost); unused in-process.
    #[error("transport: {0}")]
    Transport(String),
}

fn list(versions: &[Version]) -> String {
    let names: Vec<String> = versions.iter().map(Version::to_string).collect();
    names.join(", ")
}

/// What a server sends back instead of a reply. Serializable because over RabbitMQ it travels as
/// bytes; the caller turns it into the matching [`BusError`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The handler failed.
    Remote {
        /// Stable name of the failure.
        kind: String,
        /// Human-readable detail.
        message: String,
    },
    /// See [`BusError::IncompatibleVersion`].
    IncompatibleVersion {
        /// The method called.
        method: String,
        /// The version the sender spoke.
        requested: Version,
        /// The versions the server implements.
        supported: Vec<Version>,
    },
    /// See [`BusError::NoSuchMethod`].
    NoSuchMethod {
        /// The method called.
        method: String,
    },
}

impl Fault {
    /// Kind of the fault sent when a handler panicked.
    pub const PANIC: &'static str = "Panic";
    /// Kind of the fault sent when a payload did not match the method's message type.
    pub const MALFORMED: &'static str = "MalformedMessage";

    /// A handler failure of `kind`.
    pub fn remote(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Remote {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// A handler failure named after the error's type (its last path segment), as oslo names a
    /// remote error after the exception class. Services with meaningful kinds (`NoValidHost`)
    /// should rather implement `From<TheirError> for Fault`.
    pub fn from_error<E: std::error::Error>(error: &E) -> Self {
        let full = std::any::type_name::<E>();
        let base = full.split('<').next().unwrap_or(full);
        let kind = base.rsplit("::").next().unwrap_or(base);
        Self::remote(kind, error.to_string())
    }
}

impl From<Fault> for BusError {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Remote { kind, message } => Self::Remote { kind, message },
            Fault::IncompatibleVersion {
                method,
                requested,
                supported,
            } => Self::IncompatibleVersion {
                method,
                requested,
                supported,
            },
            Fault::NoSuchMethod { method } => Self::NoSuchMethod { method },
        }
    }
}

// A handler that calls another role and fails passes the remote kind through unchanged, so a
// `NoValidHost` from the scheduler still reads `NoValidHost` at the API.
impl From<BusError> for Fault {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Remote { kind, message } => Self::Remote { kind, message },
            other => Self::from_error(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kind_from_error_type() {
        let io = std::io::Error::other("disk full");
        assert_eq!(Fault::from_error(&io), Fault::remote("Error", "disk full"));
        let bus = BusError::NoServer {
            target: "scheduler".into(),
        };
        assert_eq!(
            Fault::from(bus),
            Fault::remote("BusError", "no server is listening on scheduler")
        );
    }

    #[test]
    fn remote_kind_passes_through() {
        let e = BusError::Remote {
            kind: "NoValidHost".into(),
            message: "no hosts".into(),
        };
        assert_eq!(Fault::from(e), Fault::remote("NoValidHost", "no hosts"));
    }

    #[test]
    fn fault_wire_form() {
        let f = Fault::IncompatibleVersion {
            method: "ping".into(),
            requested: Version::new(2, 0),
            supported: vec![Version::new(1, 3)],
        };
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"fault": "incompatible_version", "method": "ping",
                               "requested": "2.0", "supported": ["1.3"]})
        );
        assert_eq!(serde_json::from_value::<Fault>(json).unwrap(), f);
        let e = BusError::from(f);
        assert_eq!(
            e.to_string(),
            "ping 2.0 is not supported by the server (it serves 1.3)"
        );
    }
}
