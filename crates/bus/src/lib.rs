//! The message bus between the roles of a service, after oslo.messaging's RPC model.

mod error;
mod message;

pub use error::{BusError, Fault};
pub use message::{Envelope, Message, RequestMeta, Target, Version, new_request_id};
