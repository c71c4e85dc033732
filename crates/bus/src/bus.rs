//! The `Bus` trait every implementation provides, and typed helpers on top of it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::BusError;
use crate::handler::{Handler, ServeOptions, Subscription};
use crate::message::{Envelope, Message, Target};

/// oslo.messaging's `rpc_response_timeout` default, for callers without a better figure.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Call, cast and fanout between a service's roles. Object safe: hold it as `Arc<dyn Bus>`.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Send `envelope` to one server of `target` and wait for its reply.
    ///
    /// Errors: [`BusError::NoServer`] at once if nobody serves the target, [`BusError::Timeout`]
    /// after `timeout`, [`BusError::Disconnected`] if the server stopped before replying, and the
    /// server's [`Fault`](crate::Fault) as `Remote`, `IncompatibleVersion` or `NoSuchMethod`.
    async fn call(
        &self,
        target: &Target,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Value, BusError>;

    /// Send `envelope` to one server of `target` without waiting for it to be handled. Fails
    /// with [`BusError::NoServer`] if nobody serves the target; handler errors are only logged.
    async fn cast(&self, target: &Target, envelope: Envelope) -> Result<(), BusError>;

    /// Send `envelope` to every server on `topic`; none listening is not an error.
    async fn fanout(&self, topic: &str, envelope: Envelope) -> Result<(), BusError>;

    /// Serve `target` with `handler`. The subscription receives calls and casts to the topic
    /// (round robin with the topic's other servers), those addressed to its server name, and
    /// every fanout on the topic. Without a server name in `target`, a unique one is generated.
    async fn serve_with(
        &self,
        target: Target,
        handler: Arc<dyn Handler>,
        options: ServeOptions,
    ) -> Result<Subscription, BusError>;

    /// [`Bus::serve_with`] with default options.
    async fn serve(
        &self,
        target: Target,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, BusError> {
        self.serve_with(target, handler, ServeOptions::default())
            .await
    }
}

/// Typed call, cast and fanout of [`Message`]s, for every [`Bus`] (including `dyn Bus`).
pub trait BusExt: Bus {
    /// Call with a typed message and decode its typed reply. `request_id` is the
    /// `x-openstack-request-id` of the work this call is part of.
    fn call_typed<'a, M: Message>(
        &'a self,
        target: &'a Target,
        request_id: &'a str,
        message: &'a M,
        timeout: Duration,
    ) -> impl Future<Output = Result<M::Reply, BusError>> + Send + 'a {
        async move {
            let envelope = Envelope::for_message(message, request_id)?;
            let reply = self.call(target, envelope, timeout).await?;
            serde_json::from_value(reply)
                .map_err(|e| BusError::Codec(format!("decoding the reply to {}: {e}", M::METHOD)))
        }
    }

    /// Cast a typed message.
    fn cast_typed<'a, M: Message>(
        &'a self,
        target: &'a Target,
        request_id: &'a str,
        message: &'a M,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'a {
        async move {
            let envelope = Envelope::for_message(message, request_id)?;
            self.cast(target, envelope).await
        }
    }

    /// Cast a typed message to receivers that serve at most `cap` (a rolling upgrade's version
    /// cap): see [`Envelope::for_message_at`].
    fn cast_typed_at<'a, M: Message>(
        &'a self,
        target: &'a Target,
        request_id: &'a str,
        message: &'a M,
        cap: crate::message::Version,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'a {
        async move {
            let envelope = Envelope::for_message_at(message, cap, request_id)?;
            self.cast(target, envelope).await
        }
    }

    /// Fan a typed message out to every server on `topic`.
    fn fanout_typed<'a, M: Message>(
        &'a self,
        topic: &'a str,
        request_id: &'a str,
        message: &'a M,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'a {
        async move {
            let envelope = Envelope::for_message(message, request_id)?;
            self.fanout(topic, envelope).await
        }
    }
}

impl<B: Bus + ?Sized> BusExt for B {}
