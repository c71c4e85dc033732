//! The scale-out bus: RabbitMQ through lapin, in the shape of oslo.messaging's rabbit driver.
//!
//! Layout on the broker, for a bus on exchange `nova` (see `docs/bus.md`):
//! - `nova`: a durable topic exchange, one per service;
//! - queue `<topic>` (durable, bound with key `<topic>`): shared by every server of the role, so
//!   the broker hands its messages round robin to their consumers;
//! - queue `<topic>.<server>` (durable, key `<topic>.<server>`): one server, e.g. `compute.node-1`;
//! - exchange `<topic>_fanout` (durable fanout) with one auto-delete, exclusive queue per
//!   subscription, `<topic>_fanout_<uuid>`;
//! - queue `reply_<uuid>` (auto-delete), one per bus instance: replies to its calls, published on
//!   the default exchange and routed back to the waiting call by correlation id.
//!
//! Every publish waits for its publisher confirm. Servers ack a message after its handler ran (a
//! crash before that redelivers it) and remember recent message ids, so a redelivery is not
//! handled twice (a call's duplicate gets the first reply again). A supervisor task reconnects
//! with capped exponential backoff, re-declares and re-consumes every live subscription, and
//! fails calls that were waiting on the lost connection.

mod serve;
mod url;

pub use url::amqp_uris;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, Event,
    ExchangeKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::error::{BusError, Fault};
use crate::handler::{Handler, ServeOptions, Subscription};
use crate::message::{Envelope, Target};

use serve::SubShared;

/// How a [`RabbitBus`] behaves around the broker; the defaults suit a LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RabbitOptions {
    /// How long `connect`, `serve` and every publish wait for the broker while it is unreachable
    /// before failing with [`BusError::Transport`]. A call waits at most its own timeout.
    pub outage_wait: Duration,
    /// First pause between reconnect attempts; doubled after each failure...
    pub reconnect_min: Duration,
    /// ... up to this.
    pub reconnect_max: Duration,
    /// Right after a reconnect, servers in other processes may not have re-consumed yet: for this
    /// long a target without consumers is probed again before `NoServer` is returned.
    pub reconnect_grace: Duration,
    /// Durable queues unused (no consumer, no publish) this long are deleted by the broker
    /// (`x-expires`), so servers that never come back leave no queue behind.
    pub queue_expiry: Duration,
    /// Message ids each subscription remembers to recognise redeliveries.
    pub dedupe_window: usize,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            outage_wait: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            reconnect_grace: Duration::from_secs(5),
            queue_expiry: Duration::from_secs(30 * 60),
            dedupe_window: 1024,
        }
    }
}

impl RabbitOptions {
    /// Set [`RabbitOptions::outage_wait`].
    #[must_use]
    pub fn outage_wait(mut self, wait: Duration) -> Self {
        self.outage_wait = wait;
        self
    }

    /// Set the reconnect backoff: `min` doubled after each failure up to `max`.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}

/// A [`Bus`] over RabbitMQ. Clones share one connection; the connection closes when the last
/// clone and the last of its subscriptions are dropped.
#[derive(Clone)]
pub struct RabbitBus {
    handle: Arc<BusHandle>,
}

impl std::fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.handle.inner;
        f.debug_struct("RabbitBus")
            .field("exchange", &inner.exchange)
            .field("reply_queue", &inner.reply_queue)
            .field("connected", &inner.link.borrow().conn().is_some())
            .finish()
    }
}

// Dropping the last handle stops the supervisor, which closes the connection.
struct BusHandle {
    inner: Arc<Inner>,
}

impl Drop for BusHandle {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl RabbitBus {
    /// Connect to the broker at `url` (an `amqp://` URI or oslo's `rabbit://` transport URL, see
    /// [`amqp_uris`]) and use the topic exchange `exchange` (the service: `nova`, `cinder`).
    pub async fn connect(url: &str, exchange: &str) -> Result<Self, BusError> {
        Self::connect_with(url, exchange, RabbitOptions::default()).await
    }

    /// [`RabbitBus::connect`] with explicit options. Waits up to `options.outage_wait` for the
    /// first connection.
    pub async fn connect_with(
        url: &str,
        exchange: &str,
        options: RabbitOptions,
    ) -> Result<Self, BusError> {
        let uris = amqp_uris(url)?;
        if exchange.is_empty() {
            return Err(BusError::Transport("empty exchange name".into()));
        }
        let (link, _) = watch::channel(Link::Down);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            uris,
            shown_url: url::redact(url),
            exchange: exchange.to_owned(),
            reply_queue: format!("reply_{}", uuid::Uuid::new_v4().simple()),
            options,
            link,
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last_error: Mutex::new(String::from("not connected yet")),
            shutdown,
        });
        tokio::spawn(supervise(inner.clone(), shutdown_rx));
        let bus = Self {
            handle: Arc::new(BusHandle { inner }),
        };
        bus.handle
            .inner
            .current(bus.handle.inner.options.outage_wait)
            .await?;
        Ok(bus)
    }

    /// The name of this bus's reply queue (`reply_<uuid>`).
    pub fn reply_queue(&self) -> &str {
        &self.handle.inner.reply_queue
    }

    /// Deliveries recognised as duplicates (redeliveries of handled message ids) and not handled
    /// again, over all of this bus's subscriptions.
    pub fn duplicates_skipped(&self) -> u64 {
        self.handle.inner.duplicates.load(Ordering::Relaxed)
    }

    /// Whether the bus is connected right now.
    pub fn is_connected(&self) -> bool {
        self.handle.inner.link.borrow().conn().is_some()
    }
}

/// How a reply travels: the handler's outcome, or word that the server stopped first.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireReply {
    Ok(Value),
    Fault(Fault),
    Disconnected,
}

impl WireReply {
    fn encode(&self) -> Vec<u8> {
        // A reply is a JSON value or a fault of strings: it always encodes.
        serde_json::to_vec(self).unwrap_or_else(|_| b"\"disconnected\"".to_vec())
    }

    fn from_outcome(outcome: Result<Value, Fault>) -> Self {
        match outcome {
            Ok(value) => Self::Ok(value),
            Err(fault) => Self::Fault(fault),
        }
    }
}

#[derive(Clone)]
enum Link {
    Down,
    Up(Arc<Conn>),
}

impl Link {
    fn conn(&self) -> Option<Arc<Conn>> {
        match self {
            Self::Down => None,
            Self::Up(conn) => Some(conn.clone()),
        }
    }
}

/// One live connection and its channels.
struct Conn {
    generation: u64,
    connected_at: Instant,
    connection: Connection,
    // In confirm mode; replaced if a channel error closes it.
    publish: tokio::sync::Mutex<Channel>,
    // Channels for passive declares: a 404 closes the channel, so each probe takes its own.
    probes: Mutex<Vec<Channel>>,
    // Fanout exchanges declared on this connection (never auto-deleted, so once is enough).
    fanouts: Mutex<HashSet<String>>,
    // Kept so the reply consumer's channel lives as long as the connection.
    _replies: Channel,
}

impl Conn {
    async fn publish_channel(&self) -> Result<Channel, lapin::Error> {
        let mut channel = self.publish.lock().await;
        if !channel.status().connected() {
            let fresh = self.connection.create_channel().await?;
            fresh
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            *channel = fresh;
        }
        Ok(channel.clone())
    }

    async fn probe_channel(&self) -> Result<Channel, lapin::Error> {
        let reused = lock(&self.probes).pop();
        match reused {
            Some(channel) if channel.status().connected() => Ok(channel),
            _ => self.connection.create_channel().await,
        }
    }
}

struct Pending {
    target: String,
    reply: oneshot::Sender<Result<Value, BusError>>,
}

struct Inner {
    uris: Vec<String>,
    shown_url: String,
    exchange: String,
    reply_queue: String,
    options: RabbitOptions,
    link: watch::Sender<Link>,
    pending: Mutex<HashMap<String, Pending>>,
    subs: Mutex<HashMap<u64, Arc<SubShared>>>,
    next_id: AtomicU64,
    duplicates: AtomicU64,
    last_error: Mutex<String>,
    shutdown: watch::Sender<bool>,
}

// Every lock here guards plain data changed in single statements: a panic elsewhere cannot leave
// it half-updated, so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn transport(what: &str, error: &lapin::Error) -> BusError {
    BusError::Transport(format!("{what}: {error}"))
}

/// `timeout` from now, or about forever for absurd timeouts (`Duration::MAX`).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// A call's message expires with the call, but after a day at most (RabbitMQ refuses very large
/// per-message TTLs, closing the channel).
const MAX_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

fn nacked(routing_key: &str) -> BusError {
    BusError::Transport(format!(
        "the broker refused the message to {routing_key} (nack)"
    ))
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}

fn queue_args(expiry: Duration) -> FieldTable {
    let mut args = FieldTable::default();
    let ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX).max(1);
    args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    args
}

fn props(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_app_id("kumo".into())
}

enum Published {
    Delivered,
    Returned,
    // The broker could not take the message (e.g. its disk filled).
    Nacked,
}

impl Inner {
    /// The live connection, waiting up to `bound` for one during an outage.
    async fn current(&self, bound: Duration) -> Result<Arc<Conn>, BusError> {
        self.newer_than(0, bound).await
    }

    /// A live connection of a generation above `generation` (0: any), waiting up to `bound`.
    async fn newer_than(&self, generation: u64, bound: Duration) -> Result<Arc<Conn>, BusError> {
        let fresh = |link: &Link| matches!(link, Link::Up(c) if c.generation > generation);
        if let Some(conn) = Some(self.link.borrow().clone())
            .filter(fresh)
            .and_then(|l| l.conn())
        {
            return Ok(conn);
        }
        let mut rx = self.link.subscribe();
        let waited = tokio::time::timeout(bound, async {
            rx.wait_for(fresh).await.ok().and_then(|link| link.conn())
        })
        .await;
        match waited {
            Ok(Some(conn)) => Ok(conn),
            _ => Err(BusError::Transport(format!(
                "RabbitMQ at {} unreachable for {bound:?}: {}",
                self.shown_url,
                lock(&self.last_error)
            ))),
        }
    }

    /// `NoServer` unless some consumer serves `target`'s queue.
    ///
    /// The queues are durable, so a publish to a target whose servers are all gone would be
    /// routed and confirmed, then wait in the queue: `mandatory` alone cannot tell "down" from
    /// "slow". The queue's consumer count can: a passive declare returns it (404 when the queue
    /// was never declared). One round trip, and exact at the time of the publish; a server that
    /// stops between the check and the publish leaves the message queued for its return (a call
    /// then times out; its message expires with it).
    async fn ensure_served(&self, conn: &Conn, target: &Target) -> Result<(), BusError> {
        let queue = target.to_string();
        let grace_until = (conn.generation > 1)
            .then(|| conn.connected_at + self.options.reconnect_grace)
            .filter(|until| *until > Instant::now());
        loop {
            let channel = conn
                .probe_channel()
                .await
                .map_err(|e| transport("opening a channel", &e))?;
            let consumers = match channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
            {
                Ok(declared) => {
                    lock(&conn.probes).push(channel);
                    declared.consumer_count()
                }
                // The broker closed that channel with the 404; it is simply dropped.
                Err(e) if is_not_found(&e) => 0,
                Err(e) => return Err(transport(&format!("checking queue {queue}"), &e)),
            };
            if consumers > 0 {
                return Ok(());
            }
            match grace_until {
                Some(until) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return Err(BusError::NoServer { target: queue }),
            }
        }
    }

    async fn publish(
        &self,
        conn: &Conn,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<Published, lapin::Error> {
        let channel = conn.publish_channel().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Ok(Published::Returned),
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Published::Delivered),
            Confirmation::Nack(None) => Ok(Published::Nacked),
        }
    }

    /// Publish a cast or fanout, retrying on the next connection if the broker went away before
    /// confirming (same message id: a server that got the first copy skips the second).
    async fn publish_reliably(
        &self,
        target: Option<&Target>,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let deadline = deadline_after(self.options.outage_wait);
        let mut conn = self.current(self.options.outage_wait).await?;
        loop {
            if let Some(target) = target {
                self.ensure_served(&conn, target).await?;
            } else {
                self.declare_fanout(&conn, exchange).await?;
            }
            let mandatory = target.is_some();
            match self
                .publish(
                    &conn,
                    exchange,
                    routing_key,
                    body,
                    properties.clone(),
                    mandatory,
                )
                .await
            {
                Ok(Published::Delivered) => return Ok(()),
                Ok(Published::Returned) => {
                    return Err(BusError::NoServer {
                        target: routing_key.to_owned(),
                    });
                }
                Ok(Published::Nacked) => return Err(nacked(routing_key)),
                Err(e) if !conn.connection.status().connected() => {
                    tracing::warn!(routing_key, error = %e, "publish lost with the connection; retrying");
                    let left = deadline.saturating_duration_since(Instant::now());
                    conn = self.newer_than(conn.generation, left).await?;
                }
                Err(e) => return Err(transport(&format!("publishing to {routing_key}"), &e)),
            }
        }
    }

    async fn declare_fanout(&self, conn: &Conn, exchange: &str) -> Result<(), BusError> {
        if lock(&conn.fanouts).contains(exchange) {
            return Ok(());
        }
        let channel = conn
            .publish_channel()
            .await
            .map_err(|e| transport("opening a channel", &e))?;
        declare_exchange(&channel, exchange, ExchangeKind::Fanout)
            .await
            .map_err(|e| transport(&format!("declaring exchange {exchange}"), &e))?;
        lock(&conn.fanouts).insert(exchange.to_owned());
        Ok(())
    }

    /// Send a server's reply to a call. Best effort: the caller may be gone.
    async fn send_reply_bytes(&self, reply_to: &str, correlation_id: &str, reply: &[u8]) {
        let conn = match self.current(Duration::from_secs(5)).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(reply_to, error = %e, "reply dropped: no connection");
                return;
            }
        };
        let properties = props(&uuid::Uuid::new_v4().simple().to_string())
            .with_correlation_id(correlation_id.into())
            .with_delivery_mode(1);
        if let Err(e) = self
            .publish(&conn, "", reply_to, reply, properties, false)
            .await
        {
            tracing::warn!(reply_to, error = %e, "reply not sent");
        }
    }

    fn route_reply(&self, delivery: &Delivery) {
        let Some(correlation_id) = delivery.properties.correlation_id() else {
            tracing::debug!("reply without correlation id dropped");
            return;
        };
        let Some(pending) = lock(&self.pending).remove(correlation_id.as_str()) else {
            tracing::debug!(%correlation_id, "reply for no waiting call (timed out or duplicate)");
            return;
        };
        let result = match serde_json::from_slice::<WireReply>(&delivery.data) {
            Ok(WireReply::Ok(value)) => Ok(value),
            Ok(WireReply::Fault(fault)) => Err(fault.into()),
            Ok(WireReply::Disconnected) => Err(BusError::Disconnected {
                target: pending.target,
            }),
            Err(e) => Err(BusError::Codec(format!("decoding a reply: {e}"))),
        };
        // The caller may have stopped waiting this very moment.
        let _ = pending.reply.send(result);
    }

    /// Fail every call waiting for a reply: their replies cannot come over a lost connection.
    fn fail_pending(&self) {
        let pending: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        if !pending.is_empty() {
            tracing::warn!(
                calls = pending.len(),
                "connection lost: failing the calls in flight"
            );
        }
        for p in pending {
            let _ = p
                .reply
                .send(Err(BusError::Disconnected { target: p.target }));
        }
    }

    /// Connect to `uri`, set up the publishing channel, the exchange and the reply queue.
    async fn establish(
        self: &Arc<Self>,
        uri: &str,
        generation: u64,
    ) -> Result<(Arc<Conn>, Events), lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(
            format!("kumo-bus {} {}", self.exchange, self.reply_queue).into(),
        );
        let connection = Connection::connect(uri, properties).await?;
        let events: Events = Box::pin(connection.events_listener());
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_exchange(&publish, &self.exchange, ExchangeKind::Topic).await?;
        let replies = connection.create_channel().await?;
        // Not exclusive: after a connection loss the broker may still hold the old connection for
        // a moment, and an exclusive queue would refuse the redeclare until it lets go.
        replies
            .queue_declare(
                self.reply_queue.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                queue_args(self.options.queue_expiry),
            )
            .await?;
        let mut consumer = replies
            .basic_consume(
                self.reply_queue.as_str().into(),
                ShortString::from("replies"),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                match inner.upgrade() {
                    Some(inner) => inner.route_reply(&delivery),
                    None => break,
                }
            }
        });
        let conn = Arc::new(Conn {
            generation,
            connected_at: Instant::now(),
            connection,
            publish: tokio::sync::Mutex::new(publish),
            probes: Mutex::new(Vec::new()),
            fanouts: Mutex::new(HashSet::new()),
            _replies: replies,
        });
        Ok((conn, events))
    }

    /// (Re)start every live subscription not consuming on `conn`.
    async fn heal(self: &Arc<Self>, conn: &Arc<Conn>) {
        let subs: Vec<Arc<SubShared>> = lock(&self.subs).values().cloned().collect();
        for sub in subs {
            if let Err(e) = sub.ensure_started(self, conn).await {
                tracing::warn!(target = %sub.target(), error = %e, "resubscribing failed; will retry");
            }
        }
    }
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = Event> + Send>>;

/// How often the supervisor checks the connection and the subscriptions' channels.
const HEAL_INTERVAL: Duration = Duration::from_millis(250);

/// Keep the bus connected: connect, watch, and on loss reconnect with capped exponential backoff.
async fn supervise(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut generation = 0;
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        generation += 1;
        let uri = &inner.uris[failures as usize % inner.uris.len()];
        match inner.establish(uri, generation).await {
            Ok((conn, mut events)) => {
                if failures > 0 || generation > 1 {
                    tracing::info!(url = %inner.shown_url, exchange = %inner.exchange, "bus reconnected to RabbitMQ");
                }
                failures = 0;
                inner.heal(&conn).await;
                inner.link.send_replace(Link::Up(conn.clone()));
                let lost = loop {
                    tokio::select! {
                        changed = shutdown.changed() => {
                            if changed.is_err() || *shutdown.borrow() {
                                break None;
                            }
                        }
                        event = events.next() => match event {
                            // Channel errors (a probe's 404) come here too: only a dead
                            // connection counts.
                            Some(Event::Error(e)) if !conn.connection.status().connected() => {
                                break Some(e.to_string());
                            }
                            Some(Event::Error(e)) => {
                                tracing::debug!(error = %e, "channel error");
                            }
                            None => break Some("connection gone".to_owned()),
                            Some(_) => {}
                        },
                        () = tokio::time::sleep(HEAL_INTERVAL) => {
                            if !conn.connection.status().connected() {
                                break Some("connection closed".to_owned());
                            }
                            inner.heal(&conn).await;
                        }
                    }
                };
                inner.link.send_replace(Link::Down);
                inner.fail_pending();
                match lost {
                    Some(why) => {
                        tracing::warn!(url = %inner.shown_url, %why, "bus lost its RabbitMQ connection; reconnecting");
                        *lock(&inner.last_error) = why;
                    }
                    None => {
                        let _ = conn.connection.close(200, "bus dropped".into()).await;
                        return;
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = inner
                    .options
                    .reconnect_min
                    .saturating_mul(2u32.saturating_pow(failures.min(16) - 1))
                    .min(inner.options.reconnect_max);
                tracing::warn!(url = %inner.shown_url, error = %e, ?pause, "cannot reach RabbitMQ");
                *lock(&inner.last_error) = e.to_string();
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

// Removes a call's pending entry however the call ends (reply, timeout, error, cancellation).
struct PendingGuard<'a> {
    inner: &'a Inner,
    correlation_id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.correlation_id);
    }
}

#[async_trait]
impl Bus for RabbitBus {
    async fn call(
        &self,
        target: &Target,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        let inner = &self.handle.inner;
        let deadline = deadline_after(timeout);
        let timed_out = || BusError::Timeout {
            target: target.to_string(),
            timeout,
        };
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| BusError::Codec(format!("encoding {}: {e}", envelope.method)))?;
        let conn = inner
            .current(inner.options.outage_wait.min(timeout))
            .await?;
        tokio::time::timeout_at(deadline, inner.ensure_served(&conn, target))
            .await
            .map_err(|_| timed_out())??;
        let correlation_id = uuid::Uuid::new_v4().simple().to_string();
        let (reply, replied) = oneshot::channel();
        lock(&inner.pending).insert(
            correlation_id.clone(),
            Pending {
                target: target.to_string(),
                reply,
            },
        );
        let _guard = PendingGuard {
            inner,
            correlation_id: correlation_id.clone(),
        };
        // Transient and expiring with the call: a call nobody waits for any more must not be
        // handled later (after a broker restart, or from a queue whose server came back).
        let expiration = timeout.min(MAX_EXPIRATION).as_millis().max(1).to_string();
        let properties = props(&correlation_id)
            .with_correlation_id(correlation_id.as_str().into())
            .with_reply_to(inner.reply_queue.as_str().into())
            .with_expiration(expiration.into())
            .with_delivery_mode(1);
        let routing_key = target.to_string();
        let published = tokio::time::timeout_at(
            deadline,
            inner.publish(
                &conn,
                &inner.exchange,
                &routing_key,
                &body,
                properties,
                true,
            ),
        )
        .await
        .map_err(|_| timed_out())?;
        match published {
            Ok(Published::Delivered) => {}
            Ok(Published::Returned) => {
                return Err(BusError::NoServer {
                    target: routing_key,
                });
            }
            Ok(Published::Nacked) => return Err(nacked(&routing_key)),
            Err(e) if !conn.connection.status().connected() => {
                tracing::warn!(%target, error = %e, "call lost with the connection");
                return Err(BusError::Disconnected {
                    target: routing_key,
                });
            }
            Err(e) => return Err(transport(&format!("publishing to {routing_key}"), &e)),
        }
        match tokio::time::timeout_at(deadline, replied).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BusError::Disconnected {
                target: routing_key,
            }),
            Err(_) => Err(timed_out()),
        }
    }

    async fn cast(&self, target: &Target, envelope: Envelope) -> Result<(), BusError> {
        let inner = &self.handle.inner;
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| BusError::Codec(format!("encoding {}: {e}", envelope.method)))?;
        // Persistent: a cast to a durable queue survives a broker restart.
        let properties = props(&uuid::Uuid::new_v4().simple().to_string()).with_delivery_mode(2);
        inner
            .publish_reliably(
                Some(target),
                &inner.exchange,
                &target.to_string(),
                &body,
                properties,
            )
            .await
    }

    async fn fanout(&self, topic: &str, envelope: Envelope) -> Result<(), BusError> {
        let inner = &self.handle.inner;
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| BusError::Codec(format!("encoding {}: {e}", envelope.method)))?;
        let properties = props(&uuid::Uuid::new_v4().simple().to_string()).with_delivery_mode(1);
        inner
            .publish_reliably(None, &format!("{topic}_fanout"), "", &body, properties)
            .await
    }

    async fn serve_with(
        &self,
        target: Target,
        handler: Arc<dyn Handler>,
        options: ServeOptions,
    ) -> Result<Subscription, BusError> {
        let served = target.to_serve()?;
        let inner = &self.handle.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(SubShared::new(
            id,
            served.clone(),
            handler,
            options.max_concurrency.max(1),
            inner.options.dedupe_window,
        ));
        lock(&inner.subs).insert(id, sub.clone());
        let started = async {
            let conn = inner.current(inner.options.outage_wait).await?;
            sub.ensure_started(inner, &conn)
                .await
                .map_err(|e| transport(&format!("subscribing {served}"), &e))
        };
        if let Err(e) = started.await {
            sub.close(inner).await;
            return Err(e);
        }
        let handle = serve::RabbitSubscription::new(sub, self.handle.clone());
        Ok(Subscription::new(served, Box::new(handle)))
    }
}
