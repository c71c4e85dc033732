//! The message bus between the roles of a service, after oslo.messaging's RPC model.
//!
//! - A [`Target`] is a topic (a role: `conductor`, `compute`) and optionally one server on it.
//! - [`Bus::call`] sends to one server and waits for its reply: to the named server, or round
//!   robin among the topic's servers. [`Bus::cast`] does the same without waiting;
//!   [`Bus::fanout`] reaches every server on a topic.
//! - Failures are [`BusError`]s: `NoServer` at once when nobody serves the target (no waiting
//!   for a timeout to learn that a role is down), `Timeout` when a served call gets no reply in
//!   time, `Disconnected` when the server stopped first, and what the handler sent back:
//!   `Remote { kind, message }` for its errors (and panics, kind `Panic`), `IncompatibleVersion`
//!   and `NoSuchMethod` from the typed [`Dispatcher`].
//! - [`Bus::serve`] runs a [`Handler`] until the [`Subscription`] is closed or dropped; messages
//!   are handled concurrently up to [`ServeOptions::max_concurrency`] (default 64).
//! - Messages are [`Envelope`]s: method, version, request id (the `x-openstack-request-id` that
//!   caused them, for log correlation) and a JSON payload, so every transport carries the same
//!   bytes. [`Message`] types and [`BusExt::call_typed`] add types; versions follow oslo's rule:
//!   same major, server minor at least the sender's.
//!
//! [`InProcessBus`] is the all-in-one transport, [`RabbitBus`] the scale-out one (RabbitMQ);
//! [`conformance`] is the behaviour every transport must pass.

mod bus;
pub mod conformance;
mod dispatch;
mod error;
mod handler;
mod in_process;
mod local_first;
mod message;
mod rabbit;

pub use bus::{Bus, BusExt, DEFAULT_CALL_TIMEOUT};
pub use dispatch::Dispatcher;
pub use error::{BusError, Fault};
pub use handler::{
    Handler, HandlerFn, ServeOptions, Subscription, SubscriptionHandle, handler_fn, invoke,
};
pub use in_process::InProcessBus;
pub use local_first::LocalFirstBus;
pub use message::{Envelope, Message, RequestMeta, Target, Version, encode, new_request_id};
pub use rabbit::{RabbitBus, RabbitOptions, amqp_uris};
