//! The behaviour every [`Bus`] implementation must show, as tests any implementation can run:
//!
//! ```no_run
//! # async fn test() {
//! use std::sync::Arc;
//! bus::conformance::run_all(|| async { Arc::new(bus::InProcessBus::new()) as Arc<dyn bus::Bus> })
//!     .await;
//! # }
//! ```
//!
//! Each case gets a fresh bus from the factory and uses topics of its own (random suffixes), so a
//! shared broker is fine. Cases wait for asynchronous effects with deadlines, never fixed sleeps,
//! so a slower transport passes as long as it delivers within a few seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::bus::{Bus, BusExt};
use crate::dispatch::Dispatcher;
use crate::error::{BusError, Fault};
use crate::handler::{Handler, ServeOptions, Subscription, handler_fn};
use crate::message::{Envelope, Message, RequestMeta, Target, Version};

/// What a case returns: `Err` says what was wrong.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Short name, e.g. `call_roundtrip`.
    pub name: &'static str,
    /// Runs the case on a fresh bus.
    pub run: fn(Arc<dyn Bus>) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// How long one case may take before it counts as hung.
const CASE_DEADLINE: Duration = Duration::from_secs(30);
/// How long asynchronous effects (a cast's delivery) may take.
const SETTLE: Duration = Duration::from_secs(5);
/// A timeout for calls expected to succeed: long enough for any transport.
const CALL: Duration = Duration::from_secs(10);

macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            run: |bus| Box::pin($name(bus)),
        }
    };
}

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> Vec<Case> {
    vec![
        case!(call_roundtrip),
        case!(call_typed_roundtrip),
        case!(call_to_specific_server),
        case!(call_round_robin),
        case!(cast_delivered),
        case!(cast_to_specific_server),
        case!(fanout_reaches_all_servers),
        case!(fanout_without_servers_is_ok),
        case!(call_timeout),
        case!(no_server),
        case!(remote_error_propagation),
        case!(handler_panic_is_remote_error),
        case!(version_mismatch_major),
        case!(version_mismatch_minor),
        case!(no_such_method),
        case!(malformed_payload),
        case!(slow_handler_does_not_block_fast),
        case!(concurrency_limit_respected),
        case!(closed_subscription_stops_receiving),
        case!(dropped_subscription_stops_receiving),
        case!(in_flight_call_fails_on_close),
    ]
}

/// Run every case, each on a fresh bus from `bus_factory`; panics listing the failed cases.
pub async fn run_all<F, Fut>(bus_factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let all = cases();
    let mut failures = Vec::new();
    for case in &all {
        let bus = bus_factory().await;
        let started = Instant::now();
        // A task of its own, so a panicking case is reported like a failing one.
        let outcome = tokio::time::timeout(CASE_DEADLINE, tokio::spawn((case.run)(bus))).await;
        let outcome = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("panicked: {join}")),
            Err(_) => Err(format!("hung for {CASE_DEADLINE:?}")),
        };
        match outcome {
            Ok(()) => eprintln!(
                "bus conformance: {} ok ({:?})",
                case.name,
                started.elapsed()
            ),
            Err(why) => {
                eprintln!("bus conformance: {} FAILED: {why}", case.name);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    eprintln!(
        "bus conformance: {} of {} cases passed",
        all.len() - failures.len(),
        all.len()
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} bus conformance cases failed:\n  {}",
            failures.len(),
            all.len(),
            failures.join("\n  ")
        );
    }
}

// ---- helpers ------------------------------------------------------------------------------

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

trait Explain<T> {
    fn explain(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Debug> Explain<T> for Result<T, E> {
    fn explain(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e:?}"))
    }
}

fn unique(base: &str) -> String {
    format!("{base}-{}", uuid::Uuid::new_v4().simple())
}

const V1: Version = Version::new(1, 0);

fn envelope(method: &str, payload: Value) -> Envelope {
    Envelope::new(method, V1, payload)
}

/// Every message the test servers of one case received, with the server that got it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, Envelope)>>>);

impl Log {
    fn push(&self, server: &str, envelope: &Envelope) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((server.to_owned(), envelope.clone()));
    }

    fn servers_for(&self, method: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, e)| e.method == method)
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A server whose behaviour is chosen by method: `echo`, `fail`, `panic`, `block` (until
/// `release` is notified), `sleep` (`{"ms": N}`). Every message is logged first.
fn test_handler(name: &str, log: &Log, release: &Arc<Notify>) -> Arc<dyn Handler> {
    let name = name.to_owned();
    let log = log.clone();
    let release = release.clone();
    Arc::new(handler_fn(move |env: Envelope| {
        log.push(&name, &env);
        let name = name.clone();
        let release = release.clone();
        async move {
            match env.method.as_str() {
                "echo" => Ok(json!({
                    "server": name,
                    "payload": env.payload,
                    "request_id": env.request_id,
                    "version": env.version,
                })),
                "fail" => Err(Fault::remote("TestFailure", "asked to fail")),
                "panic" => panic!("asked to panic"),
                "block" => {
                    release.notified().await;
                    Ok(json!({"server": name}))
                }
                "sleep" => {
                    let ms = env.payload.get("ms").and_then(Value::as_u64).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({"server": name}))
                }
                other => Err(Fault::NoSuchMethod {
                    method: other.to_owned(),
                }),
            }
        }
    }))
}

struct Servers {
    topic: String,
    log: Log,
    release: Arc<Notify>,
    subs: Vec<Subscription>,
}

/// `names` servers on a fresh topic.
async fn servers(bus: &Arc<dyn Bus>, names: &[&str]) -> Result<Servers, String> {
    let topic = unique("conformance");
    let log = Log::default();
    let release = Arc::new(Notify::new());
    let mut subs = Vec::new();
    for name in names {
        let handler = test_handler(name, &log, &release);
        let sub = bus
            .serve(Target::server(&topic, *name), handler)
            .await
            .explain("serve")?;
        ensure!(
            sub.server() == *name,
            "subscription names server {:?}",
            sub.server()
        );
        subs.push(sub);
    }
    Ok(Servers {
        topic,
        log,
        release,
        subs,
    })
}

async fn eventually(what: &str, condition: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    while !condition() {
        ensure!(Instant::now() < deadline, "{what}: not within {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn server_of(reply: &Value) -> String {
    reply
        .get("server")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

// Typed messages for the dispatcher cases.

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pong {
    n: u32,
    request_id: String,
}

impl Message for Ping {
    const METHOD: &'static str = "ping";
    const VERSION: Version = Version::new(1, 3);
    type Reply = Pong;
}

async fn ping_server(bus: &Arc<dyn Bus>) -> Result<(String, Subscription), String> {
    let topic = unique("conformance-typed");
    let dispatcher = Dispatcher::new().on(|meta: RequestMeta, ping: Ping| async move {
        Ok(Pong {
            n: ping.n + 1,
            request_id: meta.request_id,
        })
    });
    let sub = bus
        .serve(Target::topic(&topic), Arc::new(dispatcher))
        .await
        .explain("serve")?;
    Ok((topic, sub))
}

async fn call_ping(bus: &Arc<dyn Bus>, topic: &str, version: Version) -> Result<Value, BusError> {
    let env = Envelope::new("ping", version, json!({"n": 1}));
    bus.call(&Target::topic(topic), env, CALL).await
}

// ---- cases --------------------------------------------------------------------------------

/// A call reaches a server with its envelope intact and returns the handler's reply.
async fn call_roundtrip(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a"]).await?;
    let env = Envelope::new("echo", Version::new(3, 7), json!({"x": [1, 2]}))
        .with_request_id("req-conformance");
    let reply = bus
        .call(&Target::topic(&s.topic), env, CALL)
        .await
        .explain("call")?;
    let expected = json!({"server": "a", "payload": {"x": [1, 2]},
                          "request_id": "req-conformance", "version": "3.7"});
    ensure!(reply == expected, "reply {reply} != {expected}");
    Ok(())
}

/// Typed call through a dispatcher: payload, reply and request id survive the trip.
async fn call_typed_roundtrip(bus: Arc<dyn Bus>) -> Result<(), String> {
    let (topic, _sub) = ping_server(&bus).await?;
    let pong = bus
        .call_typed(&Target::topic(&topic), "req-typed", &Ping { n: 41 }, CALL)
        .await
        .explain("call_typed")?;
    let expected = Pong {
        n: 42,
        request_id: "req-typed".into(),
    };
    ensure!(pong == expected, "{pong:?} != {expected:?}");
    Ok(())
}

/// A call naming a server reaches that server only.
async fn call_to_specific_server(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a", "b", "c"]).await?;
    for _ in 0..10 {
        let reply = bus
            .call(
                &Target::server(&s.topic, "b"),
                envelope("echo", Value::Null),
                CALL,
            )
            .await
            .explain("call")?;
        ensure!(server_of(&reply) == "b", "answered by {reply}");
    }
    Ok(())
}

/// Calls to a topic are spread over all of its servers.
async fn call_round_robin(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a", "b", "c"]).await?;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let reply = bus
            .call(
                &Target::topic(&s.topic),
                envelope("echo", Value::Null),
                CALL,
            )
            .await
            .explain("call")?;
        seen.push(server_of(&reply));
    }
    for name in ["a", "b", "c"] {
        ensure!(
            seen.iter().any(|s| s == name),
            "{name} never answered: {seen:?}"
        );
    }
    Ok(())
}

/// A cast reaches exactly one server of the topic.
async fn cast_delivered(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a", "b"]).await?;
    bus.cast(&Target::topic(&s.topic), envelope("echo", json!(1)))
        .await
        .explain("cast")?;
    eventually("cast delivered", || s.log.len() == 1).await?;
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(s.log.len() == 1, "delivered {} times", s.log.len());
    Ok(())
}

/// A cast naming a server reaches that server.
async fn cast_to_specific_server(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a", "b"]).await?;
    for _ in 0..4 {
        bus.cast(
            &Target::server(&s.topic, "b"),
            envelope("echo", Value::Null),
        )
        .await
        .explain("cast")?;
    }
    eventually("casts delivered", || s.log.len() == 4).await?;
    let got = s.log.servers_for("echo");
    ensure!(got.iter().all(|s| s == "b"), "delivered to {got:?}");
    Ok(())
}

/// A fanout reaches every server of the topic once, and no other topic.
async fn fanout_reaches_all_servers(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a", "b", "c"]).await?;
    let other = servers(&bus, &["x"]).await?;
    bus.fanout(&s.topic, envelope("echo", Value::Null))
        .await
        .explain("fanout")?;
    eventually("fanout delivered to all", || s.log.len() == 3).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut got = s.log.servers_for("echo");
    got.sort();
    ensure!(got == ["a", "b", "c"], "delivered to {got:?}");
    ensure!(other.log.is_empty(), "fanout leaked to another topic");
    Ok(())
}

/// Fanout to a topic nobody serves is not an error (broadcast to no one).
async fn fanout_without_servers_is_ok(bus: Arc<dyn Bus>) -> Result<(), String> {
    bus.fanout(&unique("nobody"), envelope("echo", Value::Null))
        .await
        .explain("fanout")
}

/// A call whose handler is too slow fails with `Timeout` after about the timeout.
async fn call_timeout(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a"]).await?;
    let started = Instant::now();
    let timeout = Duration::from_millis(200);
    let result = bus
        .call(
            &Target::topic(&s.topic),
            envelope("sleep", json!({"ms": 5000})),
            timeout,
        )
        .await;
    let took = started.elapsed();
    ensure!(
        matches!(&result, Err(BusError::Timeout { timeout: t, .. }) if *t == timeout),
        "expected Timeout, got {result:?}"
    );
    ensure!(
        took >= timeout && took < Duration::from_secs(2),
        "took {took:?}"
    );
    Ok(())
}

/// Nobody serving a topic, or the named server, gives `NoServer` for calls and casts.
async fn no_server(bus: Arc<dyn Bus>) -> Result<(), String> {
    let nobody = Target::topic(unique("nobody"));
    let started = Instant::now();
    let result = bus.call(&nobody, envelope("echo", Value::Null), CALL).await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "call to nobody: {result:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "NoServer took {:?}",
        started.elapsed()
    );
    let result = bus.cast(&nobody, envelope("echo", Value::Null)).await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "cast to nobody: {result:?}"
    );
    let s = servers(&bus, &["a"]).await?;
    let missing = Target::server(&s.topic, "missing");
    let result = bus
        .call(&missing, envelope("echo", Value::Null), CALL)
        .await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "call to a missing server: {result:?}"
    );
    ensure!(s.log.is_empty(), "a served a message for another server");
    Ok(())
}

/// A handler's error reaches the caller as `Remote` with its kind and message.
async fn remote_error_propagation(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a"]).await?;
    let result = bus
        .call(
            &Target::topic(&s.topic),
            envelope("fail", Value::Null),
            CALL,
        )
        .await;
    let expected = BusError::Remote {
        kind: "TestFailure".into(),
        message: "asked to fail".into(),
    };
    ensure!(result == Err(expected), "got {result:?}");
    Ok(())
}

/// A panicking handler gives the caller a `Remote` error of kind `Panic` (not a hang), and
/// the server goes on serving, also after a cast panicked.
async fn handler_panic_is_remote_error(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a"]).await?;
    let target = Target::topic(&s.topic);
    let started = Instant::now();
    let result = bus
        .call(&target, envelope("panic", Value::Null), CALL)
        .await;
    ensure!(
        matches!(&result, Err(BusError::Remote { kind, message })
            if kind == Fault::PANIC && message.contains("asked to panic")),
        "got {result:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    bus.cast(&target, envelope("panic", Value::Null))
        .await
        .explain("cast")?;
    eventually("panicking cast delivered", || s.log.len() == 2).await?;
    let reply = bus
        .call(&target, envelope("echo", Value::Null), CALL)
        .await
        .explain("call after panics")?;
    ensure!(server_of(&reply) == "a", "reply {reply}");
    Ok(())
}

fn incompatible(result: &Result<Value, BusError>, requested: Version) -> bool {
    matches!(result, Err(BusError::IncompatibleVersion { method, requested: r, supported })
        if method == "ping" && *r == requested && *supported == [Ping::VERSION])
}

/// A sender of another major version is refused with `IncompatibleVersion`.
async fn version_mismatch_major(bus: Arc<dyn Bus>) -> Result<(), String> {
    let (topic, _sub) = ping_server(&bus).await?;
    for version in [Version::new(2, 0), Version::new(0, 9)] {
        let result = call_ping(&bus, &topic, version).await;
        ensure!(incompatible(&result, version), "{version}: {result:?}");
    }
    Ok(())
}

/// A sender of a newer minor is refused; older minors and the same one are served.
async fn version_mismatch_minor(bus: Arc<dyn Bus>) -> Result<(), String> {
    let (topic, _sub) = ping_server(&bus).await?;
    let newer = Version::new(1, 4);
    let result = call_ping(&bus, &topic, newer).await;
    ensure!(incompatible(&result, newer), "{newer}: {result:?}");
    for version in [Version::new(1, 0), Version::new(1, 3)] {
        let reply = call_ping(&bus, &topic, version)
            .await
            .explain("compatible call")?;
        ensure!(reply.get("n") == Some(&json!(2)), "{version}: {reply}");
    }
    Ok(())
}

/// A method the dispatcher does not know gives `NoSuchMethod`.
async fn no_such_method(bus: Arc<dyn Bus>) -> Result<(), String> {
    let (topic, _sub) = ping_server(&bus).await?;
    let result = bus
        .call(&Target::topic(&topic), envelope("pong", Value::Null), CALL)
        .await;
    ensure!(
        result
            == Err(BusError::NoSuchMethod {
                method: "pong".into()
            }),
        "got {result:?}"
    );
    Ok(())
}

/// A payload that does not decode as the method's message gives a `MalformedMessage` error.
async fn malformed_payload(bus: Arc<dyn Bus>) -> Result<(), String> {
    let (topic, _sub) = ping_server(&bus).await?;
    let env = Envelope::new("ping", Ping::VERSION, json!({"n": "one"}));
    let result = bus.call(&Target::topic(&topic), env, CALL).await;
    ensure!(
        matches!(&result, Err(BusError::Remote { kind, .. }) if kind == Fault::MALFORMED),
        "got {result:?}"
    );
    Ok(())
}

/// While one call is stuck in its handler, another call to the same server is answered.
async fn slow_handler_does_not_block_fast(bus: Arc<dyn Bus>) -> Result<(), String> {
    let s = servers(&bus, &["a"]).await?;
    let target = Target::topic(&s.topic);
    let slow = {
        let bus = bus.clone();
        let target = target.clone();
        tokio::spawn(async move {
            bus.call(&target, envelope("block", Value::Null), CALL)
                .await
        })
    };
    eventually("slow call started", || {
        !s.log.servers_for("block").is_empty()
    })
    .await?;
    let started = Instant::now();
    bus.call(&target, envelope("echo", Value::Null), CALL)
        .await
        .explain("fast call")?;
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "fast call took {:?}",
        started.elapsed()
    );
    ensure!(!slow.is_finished(), "slow call finished early");
    s.release.notify_one();
    let slow = slow.await.explain("slow task")?;
    slow.explain("slow call")?;
    Ok(())
}

/// No more than `max_concurrency` messages are handled at once, and that many are.
async fn concurrency_limit_respected(bus: Arc<dyn Bus>) -> Result<(), String> {
    const LIMIT: usize = 2;
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (current, peak) = (current.clone(), peak.clone());
        handler_fn(move |_env| {
            let (current, peak) = (current.clone(), peak.clone());
            async move {
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                Ok(Value::Null)
            }
        })
    };
    let topic = unique("conformance-limit");
    let _sub = bus
        .serve_with(
            Target::topic(&topic),
            Arc::new(handler),
            ServeOptions::default().max_concurrency(LIMIT),
        )
        .await
        .explain("serve")?;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let bus = bus.clone();
            let target = Target::topic(&topic);
            tokio::spawn(async move { bus.call(&target, envelope("x", Value::Null), CALL).await })
        })
        .collect();
    for call in calls {
        call.await.explain("call task")?.explain("call")?;
    }
    let peak = peak.load(Ordering::SeqCst);
    ensure!(peak == LIMIT, "peak concurrency {peak}, limit {LIMIT}");
    Ok(())
}

/// After `close`, a server gets nothing more: its topic's other servers take over, and with
/// none left calls and casts fail with `NoServer`.
async fn closed_subscription_stops_receiving(bus: Arc<dyn Bus>) -> Result<(), String> {
    let mut s = servers(&bus, &["a", "b"]).await?;
    let target = Target::topic(&s.topic);
    let b = s.subs.pop().ok_or("no subscription")?;
    b.close().await;
    for _ in 0..6 {
        let reply = bus
            .call(&target, envelope("echo", Value::Null), CALL)
            .await
            .explain("call")?;
        ensure!(server_of(&reply) == "a", "answered by {reply} after close");
    }
    let result = bus
        .call(
            &Target::server(&s.topic, "b"),
            envelope("echo", Value::Null),
            CALL,
        )
        .await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "call to closed b: {result:?}"
    );
    let a = s.subs.pop().ok_or("no subscription")?;
    a.close().await;
    let before = s.log.len();
    let result = bus.call(&target, envelope("echo", Value::Null), CALL).await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "call after close: {result:?}"
    );
    let result = bus.cast(&target, envelope("echo", Value::Null)).await;
    ensure!(
        matches!(result, Err(BusError::NoServer { .. })),
        "cast after close: {result:?}"
    );
    bus.fanout(&s.topic, envelope("echo", Value::Null))
        .await
        .explain("fanout")?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(s.log.len() == before, "a closed server received a message");
    Ok(())
}

/// Dropping a subscription stops it like `close` (possibly finishing in the background).
async fn dropped_subscription_stops_receiving(bus: Arc<dyn Bus>) -> Result<(), String> {
    let mut s = servers(&bus, &["a"]).await?;
    let target = Target::topic(&s.topic);
    drop(s.subs.pop());
    let deadline = Instant::now() + SETTLE;
    loop {
        let result = bus
            .call(
                &target,
                envelope("echo", Value::Null),
                Duration::from_millis(500),
            )
            .await;
        if matches!(result, Err(BusError::NoServer { .. })) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "still served after drop: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A call in flight when its server closes fails promptly instead of hanging: `Disconnected`
/// where the transport can tell, else `Timeout` (the call here allows 3 s).
async fn in_flight_call_fails_on_close(bus: Arc<dyn Bus>) -> Result<(), String> {
    let mut s = servers(&bus, &["a"]).await?;
    let target = Target::topic(&s.topic);
    let call = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let timeout = Duration::from_secs(3);
            bus.call(&target, envelope("block", Value::Null), timeout)
                .await
        })
    };
    eventually("call in flight", || s.log.len() == 1).await?;
    let a = s.subs.pop().ok_or("no subscription")?;
    a.close().await;
    let result = call.await.explain("call task")?;
    ensure!(
        matches!(
            result,
            Err(BusError::Disconnected { .. } | BusError::Timeout { .. })
        ),
        "in-flight call: {result:?}"
    );
    Ok(())
}
