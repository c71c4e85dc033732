//! The message bus between the roles of a service, after oslo.messaging's RPC model.

mod bus;
mod dispatch;
mod error;
mod handler;
mod in_process;
mod message;

pub use bus::{Bus, BusExt, DEFAULT_CALL_TIMEOUT};
pub use dispatch::Dispatcher;
pub use error::{BusError, Fault};
pub use handler::{
    Handler, HandlerFn, ServeOptions, Subscription, SubscriptionHandle, handler_fn, invoke,
};
pub use in_process::InProcessBus;
pub use message::{Envelope, Message, RequestMeta, Target, Version, new_request_id};
