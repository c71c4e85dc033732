//! The conformance suite, the in-process specifics and the round-trip cost on `InProcessBus`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{
    Bus, BusError, BusExt, Dispatcher, Envelope, InProcessBus, Message, RequestMeta, Target,
    Version, conformance, handler_fn,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_multi_thread() {
    conformance::run_all(|| async { Arc::new(InProcessBus::new()) as Arc<dyn Bus> }).await;
}

#[tokio::test]
async fn conformance_current_thread() {
    conformance::run_all(|| async { Arc::new(InProcessBus::new()) as Arc<dyn Bus> }).await;
}

// A call to a server of this process is answered here, the rest over the wrapped bus: the
// same behaviour either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_first() {
    conformance::run_all(|| async {
        Arc::new(bus::LocalFirstBus::new(Arc::new(InProcessBus::new()))) as Arc<dyn Bus>
    })
    .await;
}

#[test]
fn conformance_case_count() {
    assert_eq!(conformance::cases().len(), 21);
}

// In-process the bus knows a server's fate exactly, so a call in flight on close must get
// `Disconnected` at once, not wait out its timeout (the suite also allows `Timeout`).
#[tokio::test]
async fn in_flight_call_is_disconnected_at_once() {
    let bus = InProcessBus::new();
    let sub = bus
        .serve(
            Target::topic("t"),
            Arc::new(handler_fn(|_env| std::future::pending())),
        )
        .await
        .unwrap();
    let call = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let env = Envelope::new("m", Version::new(1, 0), Value::Null);
            bus.call(&Target::topic("t"), env, Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    sub.close().await;
    let result = call.await.unwrap();
    assert_eq!(result, Err(BusError::Disconnected { target: "t".into() }));
    assert!(started.elapsed() < Duration::from_secs(1));
}

// Queued behind a concurrency limit of 1, a call is failed too when the server closes.
#[tokio::test]
async fn queued_call_is_disconnected_on_drop() {
    let bus = InProcessBus::new();
    let sub = bus
        .serve_with(
            Target::topic("t"),
            Arc::new(handler_fn(|_env| std::future::pending())),
            bus::ServeOptions::default().max_concurrency(1),
        )
        .await
        .unwrap();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let env = Envelope::new("m", Version::new(1, 0), Value::Null);
                bus.call(&Target::topic("t"), env, Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(sub);
    for call in calls {
        let result = tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(result, Err(BusError::Disconnected { .. })),
            "{result:?}"
        );
    }
}

#[derive(Serialize, Deserialize)]
struct Add {
    a: u64,
    b: u64,
}

impl Message for Add {
    const METHOD: &'static str = "add";
    const VERSION: Version = Version::new(1, 0);
    type Reply = u64;
}

#[derive(Serialize, Deserialize)]
struct AddV2 {
    terms: Vec<u64>,
}

impl Message for AddV2 {
    const METHOD: &'static str = "add";
    const VERSION: Version = Version::new(2, 1);
    type Reply = u64;
}

// Through a major bump a server serves both majors; each sender reaches its own handler.
#[tokio::test]
async fn dispatcher_serves_two_majors() {
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
    let dispatcher = Dispatcher::new()
        .on(|_meta: RequestMeta, m: Add| async move { Ok(m.a + m.b) })
        .on(|meta: RequestMeta, m: AddV2| async move {
            assert_eq!(meta.version, AddV2::VERSION);
            Ok(m.terms.iter().sum())
        });
    assert_eq!(
        dispatcher.methods(),
        [("add", Version::new(1, 0)), ("add", Version::new(2, 1))]
    );
    let _sub = bus
        .serve(Target::topic("math"), Arc::new(dispatcher))
        .await
        .unwrap();
    let target = Target::topic("math");
    let timeout = Duration::from_secs(5);
    let old = bus
        .call_typed(&target, "req-1", &Add { a: 1, b: 2 }, timeout)
        .await;
    assert_eq!(old, Ok(3));
    let new = AddV2 {
        terms: vec![1, 2, 3],
    };
    assert_eq!(bus.call_typed(&target, "req-2", &new, timeout).await, Ok(6));
    bus.cast_typed(&target, "req-3", &new).await.unwrap();
    bus.fanout_typed("math", "req-4", &new).await.unwrap();
}

// The cost of one call, end to end (envelope in, reply out), on this machine. Printed, not
// asserted: machines differ, and the figure belongs in the report, not in a flaky test.
fn measure(runtime: &tokio::runtime::Runtime, label: &str) {
    const CALLS: u32 = 100_000;
    runtime.block_on(async {
        let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
        let _sub = bus
            .serve(
                Target::topic("bench"),
                Arc::new(handler_fn(|env: Envelope| async move { Ok(env.payload) })),
            )
            .await
            .expect("serve");
        let target = Target::topic("bench");
        let payload = serde_json::json!({"instance": "8d1ef9a0-5a5c-4e39-a3a6-0c3f5b0b9a11"});
        // A realistic envelope: method, version, request id and a small payload, cloned per call.
        let proto = Envelope::new("ping", Version::new(1, 0), payload);
        let started = Instant::now();
        for _ in 0..CALLS {
            let env = proto.clone();
            bus.call(&target, env, Duration::from_secs(5))
                .await
                .expect("call");
        }
        let per_call = started.elapsed() / CALLS;
        println!("in-process call round trip ({label}): {per_call:?} per call over {CALLS} calls");
    });
}

#[test]
fn round_trip_cost() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    measure(&current, "current-thread runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    measure(&multi, "multi-thread runtime, 2 workers");
}
