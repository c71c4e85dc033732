//! `RabbitBus` against a real RabbitMQ: the conformance suite, redelivery dedupe and a broker
//! restart. The broker is a private one (Debian's `rabbitmq-server`) on free loopback ports with
//! its own temp dirs, stopped by its pid at the end, also on failure.
//!
//! Without a RabbitMQ the test fails, saying so, unless `KUMO_SKIP_RABBITMQ=1`.
//! `bench/bus.sh` runs the ignored `bench_bus` here.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bus::{
    Bus, BusError, Envelope, InProcessBus, RabbitBus, RabbitOptions, Target, Version, conformance,
    handler_fn,
};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};

const DEFAULT_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A private RabbitMQ node: its own epmd, ports, node name and directories.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    node: String,
    server_bin: PathBuf,
    epmd: Option<Child>,
    server: Option<Child>,
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Held together so the N ports differ; released just before use.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local addr").port();
    }
    ports
}

fn signal(pid: u32, sig: &str, group: bool) {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let _ = Command::new("kill")
        .args([sig, "--", &target])
        .stderr(Stdio::null())
        .status();
}

fn wait_exit(child: &mut Child, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Broker {
    /// The server script to run, if RabbitMQ is installed.
    fn server_bin() -> Option<PathBuf> {
        let path = std::env::var_os("KUMO_RABBITMQ_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SERVER));
        path.exists().then_some(path)
    }

    /// Start a node and wait until it takes AMQP connections.
    async fn start(server_bin: PathBuf) -> Result<(Self, Duration), String> {
        let dir = tempfile::Builder::new()
            .prefix("kumo-rabbitmq-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let [port, dist_port, epmd_port] = free_ports::<3>();
        let node = format!("kumo-test-{}@localhost", uuid::Uuid::new_v4().simple());
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
        )
        .map_err(|e| format!("config: {e}"))?;
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")
            .map_err(|e| format!("plugins: {e}"))?;
        // Our own epmd on a port of our own, in the foreground, so it is ours to stop (rabbit
        // would otherwise start a daemonised one that outlives the test).
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string()])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting epmd: {e}"))?;
        let mut broker = Self {
            dir,
            port,
            dist_port,
            epmd_port,
            node,
            server_bin,
            epmd: Some(epmd),
            server: None,
        };
        let took = broker.start_server().await?;
        Ok((broker, took))
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Start (or restart, same node and data) the server; returns how long until it took a
    /// connection.
    async fn start_server(&mut self) -> Result<Duration, String> {
        use std::os::unix::process::CommandExt;
        let started = Instant::now();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.out"))
            .map_err(|e| format!("log file: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(&self.server_bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.path("enabled_plugins"),
            )
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", self.path("plugins-expand"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: the script runs beam.smp as a child; both get the signal.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.server_bin.display()))?;
        self.server = Some(child);
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Some(server) = &mut self.server
                && let Ok(Some(status)) = server.try_wait()
            {
                return Err(format!(
                    "rabbitmq-server exited ({status}) before taking connections:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok(Ok(conn)) = tokio::time::timeout(
                Duration::from_secs(2),
                Connection::connect(&self.url(), ConnectionProperties::default()),
            )
            .await
            {
                let _ = conn.close(200, "ready".into()).await;
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "rabbitmq-server took no connection within 120 s:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop the server by its pid (SIGTERM to its process group: a clean broker shutdown).
    fn stop_server(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut server) = self.server.take() {
            signal(server.id(), "-TERM", true);
            if !wait_exit(&mut server, Duration::from_secs(30)) {
                signal(server.id(), "-KILL", true);
                let _ = server.wait();
            }
            // beam.smp may outlive the script by a moment: the group must be gone before a restart.
            let deadline = Instant::now() + Duration::from_secs(30);
            while group_alive(server.id()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if group_alive(server.id()) {
                signal(server.id(), "-KILL", true);
            }
        }
        started.elapsed()
    }

    fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(self.path("server.out")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.path("log")) {
            for entry in entries.flatten() {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop_server();
        if let Some(mut epmd) = self.epmd.take() {
            signal(epmd.id(), "-TERM", false);
            if !wait_exit(&mut epmd, Duration::from_secs(5)) {
                let _ = epmd.kill();
                let _ = epmd.wait();
            }
        }
        // The temp dir goes with `self.dir`.
    }
}

/// A broker, or `None` when RabbitMQ is missing and `KUMO_SKIP_RABBITMQ=1` says that is fine.
async fn broker() -> Option<Broker> {
    let Some(bin) = Broker::server_bin() else {
        if std::env::var("KUMO_SKIP_RABBITMQ").as_deref() == Ok("1") {
            eprintln!("SKIPPED: no RabbitMQ at {DEFAULT_SERVER} and KUMO_SKIP_RABBITMQ=1");
            return None;
        }
        panic!(
            "no RabbitMQ server at {DEFAULT_SERVER} (or $KUMO_RABBITMQ_SERVER): install Debian's \
             rabbitmq-server (tests/lib/common.sh installs it with the `tests` packages), or set \
             KUMO_SKIP_RABBITMQ=1 to skip the RabbitMQ bus tests"
        );
    };
    match Broker::start(bin).await {
        Ok((broker, took)) => {
            eprintln!(
                "rabbitmq: node {} on 127.0.0.1:{} took connections after {took:.1?}",
                broker.node, broker.port
            );
            Some(broker)
        }
        Err(e) => panic!("RabbitMQ did not start: {e}"),
    }
}

fn env(method: &str, payload: Value) -> Envelope {
    Envelope::new(method, Version::new(1, 0), payload)
}

/// A handler counting what it handled; `echo` returns the count, `block` sleeps 30 s, `slow` 2 s.
fn counting(count: &Arc<AtomicUsize>) -> Arc<dyn bus::Handler> {
    counting_slow(count, &Arc::new(AtomicUsize::new(0)))
}

/// [`counting`], also counting the `slow` messages in `slow`.
fn counting_slow(count: &Arc<AtomicUsize>, slow: &Arc<AtomicUsize>) -> Arc<dyn bus::Handler> {
    let count = count.clone();
    let slow = slow.clone();
    Arc::new(handler_fn(move |env: Envelope| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if env.method == "slow" {
            slow.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            match env.method.as_str() {
                "block" => tokio::time::sleep(Duration::from_secs(30)).await,
                "slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                _ => {}
            }
            Ok(json!({"n": n, "payload": env.payload}))
        }
    }))
}

async fn wait_until(what: &str, bound: Duration, cond: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {bound:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The same message id delivered twice (as a redelivery after a broker restart would be): the
/// handler runs once, both copies are acked, and a duplicated call gets the first reply again.
async fn redelivery_is_handled_once(url: &str) -> Result<(), String> {
    let bus = RabbitBus::connect(url, "kumo-dedupe")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let count = Arc::new(AtomicUsize::new(0));
    let topic = format!("dedupe-{}", uuid::Uuid::new_v4().simple());
    let sub = bus
        .serve(Target::server(&topic, "a"), counting(&count))
        .await
        .map_err(|e| format!("serve: {e}"))?;
    let raw = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("raw connect: {e}"))?;
    let channel = raw.create_channel().await.map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&env("echo", json!("cast"))).map_err(|e| e.to_string())?;
    for _ in 0..2 {
        channel
            .basic_publish(
                "kumo-dedupe".into(),
                topic.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_message_id("dup-cast".into())
                    .with_delivery_mode(2),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
    }
    wait_until("cast handled", Duration::from_secs(5), || {
        count.load(Ordering::SeqCst) >= 1
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let handled = count.load(Ordering::SeqCst);
    if handled != 1 || bus.duplicates_skipped() != 1 {
        return Err(format!(
            "duplicated cast handled {handled} times, {} duplicates skipped",
            bus.duplicates_skipped()
        ));
    }
    // A duplicated call: both copies answered, with the one reply of the one handling.
    let replies = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = channel
        .basic_consume(
            replies.name().clone(),
            "raw".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&env("echo", json!("call"))).map_err(|e| e.to_string())?;
    for _ in 0..2 {
        channel
            .basic_publish(
                "kumo-dedupe".into(),
                format!("{topic}.a").as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_message_id("dup-call".into())
                    .with_correlation_id("c1".into())
                    .with_reply_to(replies.name().clone()),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .map_err(|_| "no reply to a duplicated call".to_owned())?
            .ok_or("reply stream ended")?
            .map_err(|e| e.to_string())?;
        bodies.push(String::from_utf8_lossy(&delivery.data).into_owned());
    }
    let expected = r#"{"ok":{"n":2,"payload":"call"}}"#;
    if bodies.iter().any(|b| b != expected) {
        return Err(format!("replies {bodies:?}, expected twice {expected}"));
    }
    if count.load(Ordering::SeqCst) != 2 {
        return Err(format!("handled {} times", count.load(Ordering::SeqCst)));
    }
    // Every copy was acked: closing the subscription requeues nothing.
    sub.close().await;
    for queue in [topic.clone(), format!("{topic}.a")] {
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if declared.message_count() != 0 {
            return Err(format!(
                "{queue} holds {} unacked copies",
                declared.message_count()
            ));
        }
    }
    let _ = raw.close(200, "done".into()).await;
    Ok(())
}

/// Stop the broker under a serving bus and a call in flight, start it again on the same port and
/// data: the call fails promptly, the subscription receives again within 10 s, calls work.
async fn broker_restart(broker: &mut Broker) -> Result<(), String> {
    let url = broker.url();
    let server = RabbitBus::connect(&url, "kumo-restart")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let client = RabbitBus::connect(&url, "kumo-restart")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let impatient = RabbitBus::connect_with(
        &url,
        "kumo-restart",
        RabbitOptions::default().outage_wait(Duration::from_millis(500)),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let count = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicUsize::new(0));
    let target = Target::server("restart", "host-1");
    let sub = server
        .serve(target.clone(), counting_slow(&count, &slow))
        .await
        .map_err(|e| format!("serve: {e}"))?;
    client
        .call(&target, env("echo", json!(0)), Duration::from_secs(5))
        .await
        .map_err(|e| format!("call before the restart: {e}"))?;
    // 50 calls in flight (their handlers block) when the broker stops.
    const IN_FLIGHT: usize = 50;
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = client.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let result = client
                    .call(&target, env("block", json!(i)), Duration::from_secs(60))
                    .await;
                (result, Instant::now())
            })
        })
        .collect();
    wait_until("blocking calls handled", Duration::from_secs(10), || {
        count.load(Ordering::SeqCst) > IN_FLIGHT
    })
    .await?;
    // A persistent cast whose handler is still running when the broker goes: its ack is lost,
    // the broker keeps it and redelivers it after the restart; it must not run twice.
    client
        .cast(&target, env("slow", json!("once")))
        .await
        .map_err(|e| format!("slow cast: {e}"))?;
    wait_until("slow cast handled", Duration::from_secs(5), || {
        slow.load(Ordering::SeqCst) == 1
    })
    .await?;
    let stopping = Instant::now();
    let stop_took = broker.stop_server();
    eprintln!("rabbitmq: stopped in {stop_took:.1?}");
    let mut slowest = Duration::ZERO;
    for call in in_flight {
        let (result, failed_at) = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| "a call in flight hangs after the broker stopped".to_owned())?
            .map_err(|e| e.to_string())?;
        let after_stop = failed_at.saturating_duration_since(stopping);
        if !matches!(result, Err(BusError::Disconnected { .. })) {
            return Err(format!(
                "call in flight at the stop: {result:?} {after_stop:?} after the stop"
            ));
        }
        slowest = slowest.max(after_stop);
    }
    eprintln!(
        "rabbitmq: the {IN_FLIGHT} calls in flight failed with Disconnected, the last one \
         {slowest:.1?} after SIGTERM to the broker"
    );
    // During the outage a call fails (after its own short timeout at most), it does not hang.
    let started = Instant::now();
    let result = client
        .call(&target, env("echo", json!(2)), Duration::from_secs(1))
        .await;
    if result.is_ok() || started.elapsed() > Duration::from_secs(3) {
        return Err(format!(
            "call during the outage: {result:?} after {:?}",
            started.elapsed()
        ));
    }
    // A publish waits for the broker up to `outage_wait`, then fails saying so.
    let started = Instant::now();
    let result = impatient.cast(&target, env("echo", json!("lost"))).await;
    let waited = started.elapsed();
    match &result {
        Err(BusError::Transport(why))
            if why.contains("unreachable") && waited < Duration::from_secs(2) => {}
        _ => {
            return Err(format!(
                "cast during the outage with outage_wait 500 ms: {result:?} after {waited:?}"
            ));
        }
    }
    eprintln!("rabbitmq: a cast with outage_wait 500 ms failed after {waited:.1?}: {result:?}");
    // Casts sent during the outage wait for the broker (up to 10 s), then go or fail: none hangs.
    let outage_casts: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    client.cast(&target, env("echo", json!(format!("outage {i}")))),
                )
                .await
            })
        })
        .collect();
    let start_took = broker.start_server().await?;
    let back = Instant::now();
    eprintln!("rabbitmq: restarted, taking connections after {start_took:.1?}");
    let before = count.load(Ordering::SeqCst);
    // Casts until the server's subscription receives one.
    let mut last = None;
    while count.load(Ordering::SeqCst) == before {
        if back.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "no delivery within 10 s of the broker's return; last cast: {last:?}"
            ));
        }
        last = Some(client.cast(&target, env("echo", json!("after"))).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = back.elapsed();
    // Duration::MAX as a timeout is a call without one (its message expires after a day).
    let reply = client
        .call(&target, env("echo", json!(3)), Duration::MAX)
        .await
        .map_err(|e| format!("call after the restart: {e}"))?;
    eprintln!(
        "rabbitmq: the subscription received again {recovery:.1?} after the broker was back; \
         a call after it answered {reply}"
    );
    let (mut sent, mut failed) = (0, Vec::new());
    for cast in outage_casts {
        match cast.await.map_err(|e| e.to_string())? {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => failed.push(e.to_string()),
            Err(_) => return Err("a cast sent during the outage hangs".into()),
        }
    }
    eprintln!(
        "rabbitmq: casts sent during the outage: {sent} delivered after the restart, {} failed {:?}",
        failed.len(),
        failed.first()
    );
    // The redelivered slow cast was recognised, not handled again, and acked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let handled = slow.load(Ordering::SeqCst);
    if handled != 1 {
        return Err(format!("the redelivered cast was handled {handled} times"));
    }
    if server.duplicates_skipped() != 1 {
        return Err(format!(
            "{} duplicates skipped, expected the one redelivery",
            server.duplicates_skipped()
        ));
    }
    sub.close().await;
    let raw = Connection::connect(&url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("raw connect: {e}"))?;
    let channel = raw.create_channel().await.map_err(|e| e.to_string())?;
    for queue in ["restart", "restart.host-1"] {
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if declared.message_count() != 0 {
            return Err(format!(
                "{queue} holds {} messages after the restart",
                declared.message_count()
            ));
        }
    }
    let _ = raw.close(200, "done".into()).await;
    eprintln!("rabbitmq: the cast in flight at the stop was redelivered and acked, handled once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_bus() {
    let Some(mut broker) = broker().await else {
        return;
    };
    let mut failures = Vec::new();
    let url = broker.url();
    let conformance = tokio::spawn(async move {
        conformance::run_all(|| {
            let url = url.clone();
            async move {
                Arc::new(
                    RabbitBus::connect(&url, "kumo-conformance")
                        .await
                        .expect("connect to RabbitMQ"),
                ) as Arc<dyn Bus>
            }
        })
        .await;
    })
    .await;
    if let Err(e) = conformance {
        failures.push(format!("conformance: {e}"));
    }
    if let Err(e) = redelivery_is_handled_once(&broker.url()).await {
        failures.push(format!("redelivery: {e}"));
    }
    if let Err(e) = broker_restart(&mut broker).await {
        failures.push(format!("broker restart: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn unreachable_broker_fails_clearly() {
    let [port] = free_ports::<1>();
    let options = RabbitOptions::default().outage_wait(Duration::from_millis(500));
    let url = format!("rabbit://guest:secret@127.0.0.1:{port}/");
    let started = Instant::now();
    let err = RabbitBus::connect_with(&url, "nova", options)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(matches!(err, BusError::Transport(_)), "{err:?}");
    assert!(
        text.contains("unreachable") && !text.contains("secret"),
        "{text}"
    );
}

// ---- bench (bench/bus.sh) -------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn measure(label: &str, bus: Arc<dyn Bus>) {
    const CALLS: usize = 2000;
    const CASTS: usize = 5000;
    const SENDERS: usize = 16;
    let count = Arc::new(AtomicUsize::new(0));
    let topic = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let _sub = bus
        .serve(Target::topic(&topic), counting(&count))
        .await
        .expect("serve");
    let target = Target::topic(&topic);
    let payload = json!({"instance": "8d1ef9a0-5a5c-4e39-a3a6-0c3f5b0b9a11"});
    for _ in 0..100 {
        bus.call(
            &target,
            env("echo", payload.clone()),
            Duration::from_secs(5),
        )
        .await
        .expect("warm-up call");
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        bus.call(
            &target,
            env("echo", payload.clone()),
            Duration::from_secs(5),
        )
        .await
        .expect("call");
        times.push(started.elapsed());
    }
    times.sort();
    let before = count.load(Ordering::SeqCst);
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let bus = bus.clone();
            let target = target.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..CASTS / SENDERS {
                    bus.cast(&target, env("echo", payload.clone()))
                        .await
                        .expect("cast");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    let sent = CASTS / SENDERS * SENDERS;
    let counter = count.clone();
    wait_until("casts handled", Duration::from_secs(120), move || {
        counter.load(Ordering::SeqCst) >= before + sent
    })
    .await
    .expect("casts");
    let elapsed = started.elapsed();
    println!(
        "bus bench {label}: call round trip p50 {:.0?} p99 {:.0?} ({CALLS} sequential calls); \
         cast throughput {:.0}/s ({sent} casts by {SENDERS} senders, confirmed and handled)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        sent as f64 / elapsed.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/bus.sh runs it"]
async fn bench_bus() {
    measure("in-process", Arc::new(InProcessBus::new())).await;
    let Some(broker) = broker().await else {
        return;
    };
    let rabbit = RabbitBus::connect(&broker.url(), "kumo-bench")
        .await
        .expect("connect");
    measure("rabbitmq", Arc::new(rabbit)).await;
}
