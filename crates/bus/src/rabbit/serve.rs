//! The server side over RabbitMQ: consumers, concurrency, acks, dedupe and closing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer, ExchangeKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::AbortHandle;

use super::{Conn, Inner, WireReply, declare_exchange, lock, queue_args};
use crate::error::Fault;
use crate::handler::{Handler, SubscriptionHandle, invoke};
use crate::message::{Envelope, Target};

/// One subscription, shared by its [`RabbitSubscription`], the bus's registry (so the supervisor
/// can restart it on a new connection) and its consumer tasks.
pub(super) struct SubShared {
    id: u64,
    target: Target,
    handler: Arc<dyn Handler>,
    limit: usize,
    permits: Arc<Semaphore>,
    dedupe: Mutex<Dedupe>,
    closed: AtomicBool,
    // Held while (re)starting, so the supervisor and `serve` never start it twice.
    starting: tokio::sync::Mutex<()>,
    state: Mutex<Consuming>,
    in_flight: Mutex<HashMap<u64, Arc<InFlight>>>,
    next_delivery: AtomicU64,
}

#[derive(Default)]
struct Consuming {
    generation: u64,
    channel: Option<Channel>,
    tags: Vec<String>,
    pumps: Vec<AbortHandle>,
}

/// A message being handled. Whoever takes the acker (the handler when done, or `close`) settles it.
struct InFlight {
    acker: Mutex<Option<Acker>>,
    // (reply_to, correlation_id) of a call.
    reply: Option<(String, String)>,
    task: Mutex<Option<AbortHandle>>,
}

impl InFlight {
    fn claim(&self) -> Option<Acker> {
        lock(&self.acker).take()
    }
}

// What a subscription remembers of a message id: `None` while it is handled, then the encoded
// reply (for calls) or `Some(None)` (casts and fanouts).
type Outcome = Option<Option<Arc<Vec<u8>>>>;

/// The recent message ids of one subscription, oldest first out.
struct Dedupe {
    seen: HashMap<String, Arc<watch::Sender<Outcome>>>,
    order: VecDeque<String>,
    window: usize,
}

enum Seen {
    New(Arc<watch::Sender<Outcome>>),
    Again(watch::Receiver<Outcome>),
}

impl Dedupe {
    fn new(window: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            window: window.max(1),
        }
    }

    fn begin(&mut self, id: &str) -> Seen {
        if let Some(slot) = self.seen.get(id) {
            return Seen::Again(slot.subscribe());
        }
        let (slot, _) = watch::channel(None);
        let slot = Arc::new(slot);
        self.seen.insert(id.to_owned(), slot.clone());
        self.order.push_back(id.to_owned());
        while self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Seen::New(slot)
    }
}

impl SubShared {
    pub(super) fn new(
        id: u64,
        target: Target,
        handler: Arc<dyn Handler>,
        limit: usize,
        dedupe_window: usize,
    ) -> Self {
        Self {
            id,
            target,
            handler,
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            dedupe: Mutex::new(Dedupe::new(dedupe_window)),
            closed: AtomicBool::new(false),
            starting: tokio::sync::Mutex::new(()),
            state: Mutex::new(Consuming::default()),
            in_flight: Mutex::new(HashMap::new()),
            next_delivery: AtomicU64::new(0),
        }
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// Consume on `conn` unless already doing so: declare and bind the queues, start consumers.
    pub(super) async fn ensure_started(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        conn: &Arc<Conn>,
    ) -> Result<(), lapin::Error> {
        let _starting = self.starting.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        {
            let state = lock(&self.state);
            let healthy = state
                .channel
                .as_ref()
                .is_some_and(|c| c.status().connected());
            if state.generation == conn.generation && healthy {
                return Ok(());
            }
        }
        let old = std::mem::take(&mut *lock(&self.state));
        for pump in &old.pumps {
            pump.abort();
        }
        if old.generation != 0 {
            tracing::info!(target = %self.target, "resubscribing");
        }
        let channel = conn.connection.create_channel().await?;
        let prefetch = u16::try_from(self.limit).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let args = queue_args(inner.options.queue_expiry);
        let topic = self.target.topic.as_str();
        let server_queue = self.target.to_string();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for queue in [topic, server_queue.as_str()] {
            channel
                .queue_declare(queue.into(), durable, args.clone())
                .await?;
            channel
                .queue_bind(
                    queue.into(),
                    inner.exchange.as_str().into(),
                    queue.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        // A fresh name on every start: the old exclusive queue may outlive its connection a moment.
        let fanout_exchange = format!("{topic}_fanout");
        let fanout_queue = format!("{fanout_exchange}_{}", uuid::Uuid::new_v4().simple());
        declare_exchange(&channel, &fanout_exchange, ExchangeKind::Fanout).await?;
        channel
            .queue_declare(
                fanout_queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                fanout_queue.as_str().into(),
                fanout_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut tags = Vec::new();
        let mut pumps = Vec::new();
        let tag_base = uuid::Uuid::new_v4().simple().to_string();
        for (n, queue) in [topic, server_queue.as_str(), fanout_queue.as_str()]
            .into_iter()
            .enumerate()
        {
            let tag = format!("{tag_base}-{n}");
            let consumer = channel
                .basic_consume(
                    queue.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            tags.push(tag);
            pumps.push(tokio::spawn(pump(self.clone(), inner.clone(), consumer)).abort_handle());
        }
        *lock(&self.state) = Consuming {
            generation: conn.generation,
            channel: Some(channel),
            tags,
            pumps,
        };
        Ok(())
    }

    fn dispatch(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
    ) {
        let key = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        let props = &delivery.properties;
        let reply = match (props.reply_to(), props.correlation_id()) {
            (Some(to), Some(id)) => Some((to.to_string(), id.to_string())),
            _ => None,
        };
        let message_id = props.message_id().as_ref().map(ToString::to_string);
        let Delivery {
            data,
            acker,
            redelivered,
            ..
        } = delivery;
        let flight = Arc::new(InFlight {
            acker: Mutex::new(Some(acker)),
            reply,
            task: Mutex::new(None),
        });
        lock(&self.in_flight).insert(key, flight.clone());
        let sub = self.clone();
        let inner = inner.clone();
        let task = {
            let flight = flight.clone();
            tokio::spawn(async move {
                let reply = sub
                    .process(
                        &inner,
                        &data,
                        message_id,
                        redelivered,
                        flight.reply.is_some(),
                    )
                    .await;
                if let Some(acker) = flight.claim() {
                    if let (Some((to, id)), Some(reply)) = (&flight.reply, reply) {
                        inner.send_reply_bytes(to, id, &reply).await;
                    }
                    if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                        // The channel died under the handler: the broker redelivers the message
                        // and the dedupe set recognises it.
                        tracing::debug!(target = %sub.target, error = %e, "ack failed");
                    }
                }
                lock(&sub.in_flight).remove(&key);
                drop(permit);
            })
        };
        *lock(&flight.task) = Some(task.abort_handle());
    }

    /// Handle one message body, once per message id; returns the encoded reply for calls.
    async fn process(
        &self,
        inner: &Inner,
        data: &[u8],
        message_id: Option<String>,
        redelivered: bool,
        is_call: bool,
    ) -> Option<Arc<Vec<u8>>> {
        let seen = message_id.as_deref().map(|id| lock(&self.dedupe).begin(id));
        let slot = match (&message_id, seen) {
            (Some(id), Some(seen)) => match seen {
                Seen::New(slot) => Some(slot),
                Seen::Again(mut done) => {
                    inner.duplicates.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target = %self.target, message_id = %id, redelivered,
                        "duplicate delivery: not handled again");
                    let outcome = done
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|o| o.clone());
                    return outcome.flatten();
                }
            },
            _ => None,
        };
        let outcome = match serde_json::from_slice::<Envelope>(data) {
            Ok(envelope) => {
                let request_id = envelope.request_id.clone();
                let method = envelope.method.clone();
                let outcome = invoke(self.handler.as_ref(), &self.target, envelope).await;
                if let (false, Err(fault)) = (is_call, &outcome) {
                    tracing::warn!(target = %self.target, %request_id, %method, ?fault, "cast failed");
                }
                outcome
            }
            Err(e) => {
                tracing::warn!(target = %self.target, error = %e, "undecodable message dropped");
                Err(Fault::remote(Fault::MALFORMED, format!("envelope: {e}")))
            }
        };
        let reply = is_call.then(|| Arc::new(WireReply::from_outcome(outcome).encode()));
        if let Some(slot) = slot {
            slot.send_replace(Some(reply.clone()));
        }
        reply
    }

    /// Stop consuming, fail the calls in flight (`Disconnected`), give casts back to the queue.
    pub(super) async fn close(&self, inner: &Inner) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&inner.subs).remove(&self.id);
        let _starting = self.starting.lock().await;
        let state = std::mem::take(&mut *lock(&self.state));
        for pump in &state.pumps {
            pump.abort();
        }
        if let Some(channel) = &state.channel {
            for tag in &state.tags {
                if let Err(e) = channel
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await
                {
                    tracing::debug!(target = %self.target, error = %e, "cancel failed");
                }
            }
        }
        let flights: Vec<Arc<InFlight>> = lock(&self.in_flight).drain().map(|(_, f)| f).collect();
        for flight in flights {
            let Some(acker) = flight.claim() else {
                continue;
            };
            if let Some(task) = lock(&flight.task).take() {
                task.abort();
            }
            match &flight.reply {
                Some((to, id)) => {
                    inner
                        .send_reply_bytes(to, id, &WireReply::Disconnected.encode())
                        .await;
                    let _ = acker.ack(BasicAckOptions::default()).await;
                }
                // A cast goes back to the queue for the topic's other servers.
                None => {
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    let _ = acker.nack(requeue).await;
                }
            }
        }
        if let Some(channel) = state.channel {
            // Messages prefetched but not started are requeued by the broker with the channel.
            let _ = channel.close(200, "subscription closed".into()).await;
        }
    }
}

/// Feed one consumer's deliveries to the handler, at most `limit` at once per subscription.
async fn pump(sub: Arc<SubShared>, inner: Arc<Inner>, mut consumer: Consumer) {
    while let Some(delivery) = consumer.next().await {
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::debug!(target = %sub.target, error = %e, "consumer ended");
                break;
            }
        };
        let Ok(permit) = sub.permits.clone().acquire_owned().await else {
            break;
        };
        sub.dispatch(&inner, delivery, permit);
    }
}

/// The [`SubscriptionHandle`] of a RabbitMQ subscription; keeps its bus alive.
pub(super) struct RabbitSubscription {
    sub: Arc<SubShared>,
    bus: Arc<super::BusHandle>,
}

impl RabbitSubscription {
    pub(super) fn new(sub: Arc<SubShared>, bus: Arc<super::BusHandle>) -> Self {
        Self { sub, bus }
    }
}

#[async_trait]
impl SubscriptionHandle for RabbitSubscription {
    async fn close(&self) {
        self.sub.close(&self.bus.inner).await;
    }

    fn close_now(&self) {
        let sub = self.sub.clone();
        let bus = self.bus.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { sub.close(&bus.inner).await });
            }
            Err(_) => {
                // No runtime to close on: stop the consumers; the broker requeues what they held
                // when the channel goes with the connection.
                sub.closed.store(true, Ordering::SeqCst);
                lock(&bus.inner.subs).remove(&sub.id);
                for pump in &lock(&sub.state).pumps {
                    pump.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_remembers_a_window_of_ids() {
        let mut dedupe = Dedupe::new(2);
        let Seen::New(first) = dedupe.begin("a") else {
            panic!("a is new");
        };
        let Seen::Again(again) = dedupe.begin("a") else {
            panic!("a was seen");
        };
        assert_eq!(*again.borrow(), None, "still being handled");
        first.send_replace(Some(Some(Arc::new(b"reply".to_vec()))));
        assert_eq!(
            again
                .borrow()
                .clone()
                .flatten()
                .as_deref()
                .map(Vec::as_slice),
            Some(&b"reply"[..])
        );
        assert!(matches!(dedupe.begin("b"), Seen::New(_)));
        assert!(matches!(dedupe.begin("c"), Seen::New(_)));
        // "a" fell out of the window of 2.
        assert!(matches!(dedupe.begin("a"), Seen::New(_)));
        assert!(matches!(dedupe.begin("c"), Seen::Again(_)));
    }
}
