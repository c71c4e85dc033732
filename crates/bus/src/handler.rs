//! The server side: handlers, serving options and subscriptions.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use serde_json::Value;
use tracing::Instrument;

use crate::error::Fault;
use crate::message::{Envelope, Target};

/// Serves the messages of one subscription. Called concurrently, once per message.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handle one message; the `Ok` value is the reply to a call (ignored for casts and fanouts).
    async fn handle(&self, envelope: Envelope) -> Result<Value, Fault>;
}

/// A [`Handler`] made of an async closure; see [`handler_fn`].
pub struct HandlerFn<F>(F);

/// Wrap `f` as a [`Handler`]: `handler_fn(|env| async move { Ok(env.payload) })`.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Fault>> + Send + 'static,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Fault>> + Send + 'static,
{
    async fn handle(&self, envelope: Envelope) -> Result<Value, Fault> {
        (self.0)(envelope).await
    }
}

/// Run `handler` on one message the way every bus implementation must: inside a span carrying
/// the request id (so logs correlate with `x-openstack-request-id`), with a panic turned into a
/// [`Fault::PANIC`] fault so that the caller gets an error instead of waiting for its timeout.
pub async fn invoke(
    handler: &dyn Handler,
    target: &Target,
    envelope: Envelope,
) -> Result<Value, Fault> {
    let span = tracing::debug_span!(
        "rpc",
        request_id = %envelope.request_id,
        method = %envelope.method,
        target = %target,
    );
    match CatchUnwind(handler.handle(envelope))
        .instrument(span.clone())
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            span.in_scope(|| tracing::error!(%message, "bus handler panicked"));
            Err(Fault::remote(Fault::PANIC, message))
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "handler panicked".to_owned()
    }
}

// A handler's future polled under `catch_unwind`: the handler is user code, and one bad message
// must neither kill the subscription nor leave its caller hanging.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// How a subscription serves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Messages handled at once; more wait in the subscription's queue (over RabbitMQ: the
    /// consumer prefetch). At least 1.
    pub max_concurrency: usize,
}

impl ServeOptions {
    /// The default limit: enough that a few slow requests never starve fast ones.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

    /// Handle at most `limit` messages at once (0 is taken as 1).
    #[must_use]
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// The implementation side of a [`Subscription`]: how a bus stops one.
#[async_trait]
pub trait SubscriptionHandle: Send + Sync + 'static {
    /// Stop delivery, then fail what is queued or in flight (callers get `Disconnected`); returns
    /// once no new message can reach the handler.
    async fn close(&self);

    /// The same from `Drop`, where nothing can be awaited: may finish in the background.
    fn close_now(&self);
}

/// A server listening on a target. Dropping it or calling [`Subscription::close`] stops it.
#[must_use = "dropping a Subscription stops serving"]
pub struct Subscription {
    target: Target,
    handle: Option<Box<dyn SubscriptionHandle>>,
}

impl Subscription {
    /// Used by bus implementations. `target` names the server actually serving.
    pub fn new(target: Target, handle: Box<dyn SubscriptionHandle>) -> Self {
        Self {
            target,
            handle: Some(handle),
        }
    }

    /// The target served, with its server name (generated if `serve` was given none).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The server name.
    pub fn server(&self) -> &str {
        self.target.server.as_deref().unwrap_or_default()
    }

    /// Stop serving; see [`SubscriptionHandle::close`].
    pub async fn close(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.close().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.close_now();
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("target", &self.target)
            .field("open", &self.handle.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Version;

    #[tokio::test]
    async fn invoke_turns_panics_into_faults() {
        let handler = handler_fn(|env: Envelope| async move {
            if env.method == "boom" {
                panic!("boom {}", env.payload);
            }
            Ok(env.payload)
        });
        let target = Target::topic("t");
        let ok = invoke(
            &handler,
            &target,
            Envelope::new("echo", Version::new(1, 0), 1.into()),
        );
        assert_eq!(ok.await, Ok(Value::from(1)));
        let boom = invoke(
            &handler,
            &target,
            Envelope::new("boom", Version::new(1, 0), 2.into()),
        );
        assert_eq!(boom.await, Err(Fault::remote(Fault::PANIC, "boom 2")));
    }

    #[test]
    fn concurrency_is_at_least_one() {
        assert_eq!(ServeOptions::default().max_concurrency, 64);
        assert_eq!(
            ServeOptions::default().max_concurrency(0).max_concurrency,
            1
        );
    }
}
