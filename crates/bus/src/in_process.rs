//! The all-in-one bus: tokio channels inside one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::bus::Bus;
use crate::error::{BusError, Fault};
use crate::handler::{Handler, ServeOptions, Subscription, SubscriptionHandle, invoke};
use crate::message::{Envelope, Target};

/// A [`Bus`] inside one process. Clones share the same topics.
///
/// Each subscription has an unbounded queue, as a broker queue is: senders never wait, and the
/// subscription's concurrency limit bounds the work, not the backlog.
#[derive(Clone, Default)]
pub struct InProcessBus {
    registry: Arc<Registry>,
}

impl InProcessBus {
    /// A bus with no servers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = self.registry.read();
        let mut servers: Vec<String> = topics
            .iter()
            .flat_map(|(topic, t)| t.servers.iter().map(move |s| format!("{topic}.{}", s.name)))
            .collect();
        servers.sort();
        f.debug_struct("InProcessBus")
            .field("servers", &servers)
            .finish()
    }
}

type ReplySender = oneshot::Sender<Result<Value, Fault>>;

struct Delivery {
    envelope: Envelope,
    // None for casts and fanouts.
    reply: Option<ReplySender>,
}

#[derive(Default)]
struct Registry {
    topics: RwLock<HashMap<String, Topic>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Topic {
    servers: Vec<Server>,
    // Shared by topic-wide and per-server picks: only fairness matters, not strict alternation.
    cursor: AtomicUsize,
}

struct Server {
    id: u64,
    name: String,
    queue: mpsc::UnboundedSender<Delivery>,
}

impl Registry {
    // A panicking writer cannot leave the map half-updated (each write is one insert or
    // remove), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Topic>> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Topic>> {
        self.topics.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deliver to one server of `target`, round robin.
    fn send_one(&self, target: &Target, delivery: Delivery) -> Result<(), BusError> {
        let no_server = || BusError::NoServer {
            target: target.to_string(),
        };
        let topics = self.read();
        let topic = topics.get(&target.topic).ok_or_else(no_server)?;
        let server = match &target.server {
            None => {
                let count = topic.servers.len();
                if count == 0 {
                    return Err(no_server());
                }
                topic
                    .servers
                    .get(topic.cursor.fetch_add(1, Ordering::Relaxed) % count)
            }
            Some(name) => {
                // Several subscriptions may share a server name (one queue, several consumers
                // over RabbitMQ); they take turns too.
                let named = || topic.servers.iter().filter(|s| &s.name == name);
                let count = named().count();
                if count == 0 {
                    return Err(no_server());
                }
                named().nth(topic.cursor.fetch_add(1, Ordering::Relaxed) % count)
            }
        };
        let server = server.ok_or_else(no_server)?;
        // A closed receiver means the subscription is closing right now: not delivered.
        server.queue.send(delivery).map_err(|_| no_server())
    }

    fn remove(&self, topic: &str, id: u64) {
        let mut topics = self.write();
        if let Some(entry) = topics.get_mut(topic) {
            entry.servers.retain(|s| s.id != id);
            if entry.servers.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn call(
        &self,
        target: &Target,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        let (reply, replied) = oneshot::channel();
        self.registry.send_one(
            target,
            Delivery {
                envelope,
                reply: Some(reply),
            },
        )?;
        match tokio::time::timeout(timeout, replied).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(fault))) => Err(fault.into()),
            // The reply sender was dropped unanswered: the subscription closed under the call.
            Ok(Err(_)) => Err(BusError::Disconnected {
                target: target.to_string(),
            }),
            Err(_) => Err(BusError::Timeout {
                target: target.to_string(),
                timeout,
            }),
        }
    }

    async fn cast(&self, target: &Target, envelope: Envelope) -> Result<(), BusError> {
        self.registry.send_one(
            target,
            Delivery {
                envelope,
                reply: None,
            },
        )
    }

    async fn fanout(&self, topic: &str, envelope: Envelope) -> Result<(), BusError> {
        let topics = self.registry.read();
        if let Some(entry) = topics.get(topic) {
            for server in &entry.servers {
                // A subscription closing right now simply misses this fanout.
                let _ = server.queue.send(Delivery {
                    envelope: envelope.clone(),
                    reply: None,
                });
            }
        }
        Ok(())
    }

    async fn serve_with(
        &self,
        target: Target,
        handler: Arc<dyn Handler>,
        options: ServeOptions,
    ) -> Result<Subscription, BusError> {
        let served = target.to_serve()?;
        let (queue, incoming) = mpsc::unbounded_channel();
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(serve_loop(
            incoming,
            handler,
            options.max_concurrency.max(1),
            Arc::new(served.clone()),
        ));
        self.registry
            .write()
            .entry(served.topic.clone())
            .or_default()
            .servers
            .push(Server {
                id,
                name: served.server.clone().unwrap_or_default(),
                queue,
            });
        let handle = InProcessSubscription {
            registry: self.registry.clone(),
            topic: served.topic.clone(),
            id,
            task: Mutex::new(Some(task)),
        };
        Ok(Subscription::new(served, Box::new(handle)))
    }
}

async fn serve_loop(
    mut incoming: mpsc::UnboundedReceiver<Delivery>,
    handler: Arc<dyn Handler>,
    limit: usize,
    target: Arc<Target>,
) {
    let permits = Arc::new(Semaphore::new(limit));
    // Owning the handler tasks here means aborting this loop aborts them too (JoinSet aborts
    // on drop), which drops their reply senders: their callers get `Disconnected` at once.
    let mut running = JoinSet::new();
    loop {
        // The permit comes first so that, at the limit, messages wait in the queue.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let Some(delivery) = incoming.recv().await else {
            break;
        };
        let handler = handler.clone();
        let target = target.clone();
        running.spawn(async move {
            deliver(handler.as_ref(), &target, delivery).await;
            drop(permit);
        });
        // Reap finished tasks so the set stays as small as the work in flight.
        while running.try_join_next().is_some() {}
    }
}

async fn deliver(handler: &dyn Handler, target: &Target, delivery: Delivery) {
    let Delivery { envelope, reply } = delivery;
    match reply {
        Some(reply) => {
            let outcome = invoke(handler, target, envelope).await;
            if reply.send(outcome).is_err() {
                tracing::debug!(%target, "reply dropped: the caller stopped waiting");
            }
        }
        None => {
            let request_id = envelope.request_id.clone();
            let method = envelope.method.clone();
            if let Err(fault) = invoke(handler, target, envelope).await {
                // Nobody waits for a cast's outcome, so the log is the only place it shows.
                tracing::warn!(%target, %request_id, %method, ?fault, "cast failed");
            }
        }
    }
}

struct InProcessSubscription {
    registry: Arc<Registry>,
    topic: String,
    id: u64,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl InProcessSubscription {
    fn stop(&self) -> Option<JoinHandle<()>> {
        // Unregister first so no new message is routed here, then stop the loop.
        self.registry.remove(&self.topic, self.id);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = &task {
            task.abort();
        }
        task
    }
}

#[async_trait]
impl SubscriptionHandle for InProcessSubscription {
    async fn close(&self) {
        if let Some(task) = self.stop() {
            // Cancelled is the expected outcome; a panic cannot happen as handlers are caught.
            let _ = task.await;
        }
    }

    fn close_now(&self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::handler_fn;
    use crate::message::Version;

    fn echo_name(name: &'static str) -> Arc<dyn Handler> {
        Arc::new(handler_fn(move |_env| async move { Ok(Value::from(name)) }))
    }

    #[tokio::test]
    async fn round_robin_is_even() {
        let bus = InProcessBus::new();
        let mut subs = Vec::new();
        for name in ["a", "b", "c"] {
            subs.push(
                bus.serve(Target::server("t", name), echo_name(name))
                    .await
                    .unwrap(),
            );
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..30 {
            let env = Envelope::new("m", Version::new(1, 0), Value::Null);
            let reply = bus
                .call(&Target::topic("t"), env, Duration::from_secs(5))
                .await
                .unwrap();
            *counts
                .entry(reply.as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|n| *n == 10), "{counts:?}");
    }

    #[tokio::test]
    async fn closing_forgets_the_topic() {
        let bus = InProcessBus::new();
        let sub = bus.serve(Target::topic("t"), echo_name("x")).await.unwrap();
        assert!(!sub.server().is_empty());
        assert!(format!("{bus:?}").contains(&format!("t.{}", sub.server())));
        sub.close().await;
        assert!(bus.registry.read().is_empty());
    }

    #[tokio::test]
    async fn empty_names_are_refused() {
        let bus = InProcessBus::new();
        let err = bus
            .serve(Target::topic(""), echo_name("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::InvalidTarget(_)));
        let err = bus
            .serve(Target::server("t", ""), echo_name("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::InvalidTarget(_)));
    }
}
