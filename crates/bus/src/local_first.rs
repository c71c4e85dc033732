//! A bus that answers a call in this process when this process serves its target, and sends
//! everything else over the bus it wraps (RabbitMQ).
//!
//! A call waits for its reply, so a process that serves the target itself gains nothing from
//! the broker: the conductor asking the scheduler of its own process went through four
//! publishes and deliveries (request, reply, their confirms and acks) for a function call. Casts
//! and fanouts still go through the wrapped bus: a cast waits in a durable queue through a
//! crash and any server of the topic may take it, and a fanout must reach every process.
//!
//! Served targets are served on both: the wrapped bus for the other processes, the local table
//! for this one. A local call keeps what a subscription promises: the topic's servers in turn,
//! a server's `max_concurrency`, `Disconnected` for a call in flight when its server closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::bus::Bus;
use crate::error::BusError;
use crate::handler::{Handler, ServeOptions, Subscription, SubscriptionHandle, invoke};
use crate::message::{Envelope, Target};

/// See the module's documentation.
pub struct LocalFirstBus {
    remote: Arc<dyn Bus>,
    local: Arc<LocalServers>,
}

#[derive(Default)]
struct LocalServers {
    topics: RwLock<HashMap<String, LocalTopic>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct LocalTopic {
    servers: Vec<Arc<LocalServer>>,
    /// Whose turn it is among `servers` for a call to the topic.
    turn: Arc<AtomicUsize>,
}

struct LocalServer {
    id: u64,
    name: String,
    served: Target,
    handler: Arc<dyn Handler>,
    /// `max_concurrency` of the subscription.
    permits: Semaphore,
    /// Becomes true when the subscription closes: calls in flight end `Disconnected`.
    closed: watch::Sender<bool>,
}

impl LocalFirstBus {
    /// Calls to targets served here are answered here; the rest goes over `remote`.
    pub fn new(remote: Arc<dyn Bus>) -> Self {
        Self {
            remote,
            local: Arc::new(LocalServers::default()),
        }
    }
}

impl LocalServers {
    /// A server of this process for `target`: the named one, or the topic's next in turn.
    fn pick(&self, target: &Target) -> Option<Arc<LocalServer>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        let topic = topics.get(&target.topic)?;
        match &target.server {
            Some(name) => topic.servers.iter().find(|s| s.name == *name).cloned(),
            None if topic.servers.is_empty() => None,
            None => {
                let n = topic.turn.fetch_add(1, Ordering::Relaxed);
                topic.servers.get(n % topic.servers.len()).cloned()
            }
        }
    }

    fn remove(&self, topic: &str, id: u64) {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = topics.get_mut(topic) {
            t.servers.retain(|s| {
                if s.id == id {
                    s.closed.send_replace(true);
                }
                s.id != id
            });
            if t.servers.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

async fn call_here(
    server: &LocalServer,
    target: &Target,
    envelope: Envelope,
    timeout: Duration,
) -> Result<Value, BusError> {
    let mut closed = server.closed.subscribe();
    let disconnected = || BusError::Disconnected {
        target: target.to_string(),
    };
    let work = async {
        let _permit = server.permits.acquire().await.map_err(|_| disconnected())?;
        invoke(&*server.handler, &server.served, envelope)
            .await
            .map_err(BusError::from)
    };
    let outcome = tokio::time::timeout(timeout, async {
        tokio::select! {
            r = work => r,
            _ = closed.wait_for(|c| *c) => Err(disconnected()),
        }
    })
    .await;
    outcome.unwrap_or_else(|_| {
        Err(BusError::Timeout {
            target: target.to_string(),
            timeout,
        })
    })
}

#[async_trait]
impl Bus for LocalFirstBus {
    async fn call(
        &self,
        target: &Target,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        match self.local.pick(target) {
            Some(server) => call_here(&server, target, envelope, timeout).await,
            None => self.remote.call(target, envelope, timeout).await,
        }
    }

    async fn cast(&self, target: &Target, envelope: Envelope) -> Result<(), BusError> {
        self.remote.cast(target, envelope).await
    }

    async fn fanout(&self, topic: &str, envelope: Envelope) -> Result<(), BusError> {
        self.remote.fanout(topic, envelope).await
    }

    async fn serve_with(
        &self,
        target: Target,
        handler: Arc<dyn Handler>,
        options: ServeOptions,
    ) -> Result<Subscription, BusError> {
        let remote = self
            .remote
            .serve_with(target, handler.clone(), options.clone())
            .await?;
        let served = remote.target().clone();
        let id = self.local.next_id.fetch_add(1, Ordering::Relaxed);
        let server = Arc::new(LocalServer {
            id,
            name: remote.server().to_string(),
            served: served.clone(),
            handler,
            permits: Semaphore::new(options.max_concurrency.max(1)),
            closed: watch::channel(false).0,
        });
        self.local
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(served.topic.clone())
            .or_default()
            .servers
            .push(server);
        let handle = LocalFirstSubscription {
            local: self.local.clone(),
            topic: served.topic.clone(),
            id,
            remote: std::sync::Mutex::new(Some(remote)),
        };
        Ok(Subscription::new(served, Box::new(handle)))
    }
}

struct LocalFirstSubscription {
    local: Arc<LocalServers>,
    topic: String,
    id: u64,
    remote: std::sync::Mutex<Option<Subscription>>,
}

impl LocalFirstSubscription {
    fn take_remote(&self) -> Option<Subscription> {
        self.remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[async_trait]
impl SubscriptionHandle for LocalFirstSubscription {
    async fn close(&self) {
        self.local.remove(&self.topic, self.id);
        if let Some(remote) = self.take_remote() {
            remote.close().await;
        }
    }

    fn close_now(&self) {
        self.local.remove(&self.topic, self.id);
        // Dropping the wrapped subscription closes it (in the background where it must).
        drop(self.take_remote());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::handler_fn;
    use crate::in_process::InProcessBus;
    use crate::message::Version;
    use std::sync::atomic::AtomicUsize;

    /// A bus that counts what goes through it (and delivers in-process).
    struct Counting {
        inner: InProcessBus,
        calls: AtomicUsize,
        casts: AtomicUsize,
    }

    #[async_trait]
    impl Bus for Counting {
        async fn call(
            &self,
            target: &Target,
            envelope: Envelope,
            timeout: Duration,
        ) -> Result<Value, BusError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.call(target, envelope, timeout).await
        }
        async fn cast(&self, target: &Target, envelope: Envelope) -> Result<(), BusError> {
            self.casts.fetch_add(1, Ordering::SeqCst);
            self.inner.cast(target, envelope).await
        }
        async fn fanout(&self, topic: &str, envelope: Envelope) -> Result<(), BusError> {
            self.inner.fanout(topic, envelope).await
        }
        async fn serve_with(
            &self,
            target: Target,
            handler: Arc<dyn Handler>,
            options: ServeOptions,
        ) -> Result<Subscription, BusError> {
            self.inner.serve_with(target, handler, options).await
        }
    }

    /// A call to a topic served here never reaches the wrapped bus; a call to one served only
    /// elsewhere, and every cast, do.
    #[tokio::test]
    async fn calls_to_targets_served_here_stay_here() {
        let remote = Arc::new(Counting {
            inner: InProcessBus::new(),
            calls: AtomicUsize::new(0),
            casts: AtomicUsize::new(0),
        });
        let bus = LocalFirstBus::new(remote.clone());
        let seen = Arc::new(AtomicUsize::new(0));
        let handler = {
            let seen = seen.clone();
            handler_fn(move |env: Envelope| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(env.payload)
                }
            })
        };
        let _here = bus
            .serve(Target::topic("scheduler"), Arc::new(handler))
            .await
            .unwrap();
        // Served by another process (here: straight on the wrapped bus).
        let _there = remote
            .serve(
                Target::topic("elsewhere"),
                Arc::new(handler_fn(|_env| async { Ok(Value::from("there")) })),
            )
            .await
            .unwrap();
        let env = |v: i64| Envelope::new("m", Version::new(1, 0), Value::from(v));
        let t = Duration::from_secs(5);
        for i in 0..3 {
            let r = bus.call(&Target::topic("scheduler"), env(i), t).await;
            assert_eq!(r.unwrap(), Value::from(i));
        }
        assert_eq!(remote.calls.load(Ordering::SeqCst), 0);
        let r = bus.call(&Target::topic("elsewhere"), env(0), t).await;
        assert_eq!(r.unwrap(), Value::from("there"));
        assert_eq!(remote.calls.load(Ordering::SeqCst), 1);
        bus.cast(&Target::topic("scheduler"), env(9)).await.unwrap();
        assert_eq!(remote.casts.load(Ordering::SeqCst), 1);
        for _ in 0..100 {
            if seen.load(Ordering::SeqCst) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.load(Ordering::SeqCst), 4, "3 calls here and the cast");
    }
}
