//! The console proxy against a real QEMU VNC server: `qemu-system-x86_64 -vnc unix:...`
//! (q35, TCG, `-S`: no guest runs, the VNC server answers anyway), the `/novnc` router
//! served on a loopback port, a websocket client. Skipped, with a message, when
//! `qemu-system-x86_64` is not installed (Debian: `apt-get install qemu-system-x86`).

use compute::ComputeService;
use compute::config::ComputeConfig;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

const QEMU: &str = "qemu-system-x86_64";
const TIMEOUT: Duration = Duration::from_secs(10);

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Kills QEMU by its PID (through the `Child`) and reaps it, whatever the test did.
struct QemuGuard {
    child: Child,
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_qemu(dir: &Path) -> QemuGuard {
    let vnc = dir.join("vnc.sock");
    let qmp = dir.join("qmp.sock");
    let log = std::fs::File::create(dir.join("qemu.log")).expect("qemu.log");
    let child = Command::new(QEMU)
        .args([
            "-machine",
            "q35,accel=tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .arg("-vnc")
        .arg(format!("unix:{}", vnc.display()))
        .arg("-S")
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn qemu");
    QemuGuard { child }
}

async fn wait_for_socket(path: &Path, qemu: &mut QemuGuard) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = qemu.child.try_wait().expect("waitpid") {
            panic!("QEMU exited early ({status}); see qemu.log in the test's temp dir");
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no VNC socket within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn service(dir: &Path) -> Arc<ComputeService> {
    let mut c = common::config::Config::new(dir);
    c.declare(compute::config::OPTS);
    c.declare(metadata::config::OPTS);
    let url = format!("sqlite://{}/compute.sqlite?mode=rwc", dir.display());
    let cfg = ComputeConfig::from_config(&c, &url).expect("config");
    ComputeService::open(cfg).await.expect("open compute")
}

/// Serve the proxy router as kumo does (nested at /novnc) on a free loopback port.
async fn serve(svc: Arc<ComputeService>) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().nest("/novnc", compute::api::novnc::router(svc));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("127.0.0.1:{}", addr.port()), task)
}

/// The HTTP status of a refused websocket handshake, or None if it was accepted.
async fn refused_status(addr: &str, token: &str) -> Option<u16> {
    let url = format!("ws://{addr}/novnc/websockify?token={token}");
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let text = String::from_utf8_lossy(body);
            assert!(
                text.contains("\"unauthorized\""),
                "an OpenStack fault body: {text}"
            );
            Some(resp.status().as_u16())
        }
        Err(e) => panic!("unexpected websocket error: {e}"),
    }
}

#[tokio::test]
async fn proxies_rfb_once_per_token() {
    if find_in_path(QEMU).is_none() {
        println!("SKIPPED: {QEMU} is not installed (apt-get install qemu-system-x86)");
        return;
    }
    // A short path: unix socket paths are limited to 108 bytes.
    let dir = tempfile::Builder::new()
        .prefix("kvnc")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut qemu = start_qemu(dir.path());
    let sock = dir.path().join("vnc.sock");
    wait_for_socket(&sock, &mut qemu).await;

    let svc = service(dir.path()).await;
    let (addr, server) = serve(svc.clone()).await;
    let target = format!("unix:{}", sock.display());
    let hour = Duration::from_secs(3600);
    let token = svc
        .issue_console_token("inst-1", "novnc", "host-1", &target, hour)
        .await
        .expect("token");

    // noVNC's request: subprotocol `binary`, which the proxy echoes.
    let mut req = format!("ws://{addr}/novnc/websockify?token={token}")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("binary"),
    );
    let (mut ws, resp) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("binary")
    );
    let first = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("no error");
    match first {
        Message::Binary(b) => assert_eq!(&b[..], b"RFB 003.008\n"),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    ws.close(None).await.expect("close");
    drop(ws);

    // One-time: the same token again, an unknown one, an expired one.
    assert_eq!(refused_status(&addr, &token).await, Some(401));
    assert_eq!(refused_status(&addr, "not-a-token").await, Some(401));
    let expired = svc
        .issue_console_token("inst-1", "novnc", "host-1", &target, Duration::ZERO)
        .await
        .expect("token");
    assert_eq!(refused_status(&addr, &expired).await, Some(401));

    server.abort();
    drop(qemu);
}

#[tokio::test]
async fn serves_novnc_files_without_traversal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("novnc");
    std::fs::create_dir_all(&www).expect("mkdir");
    std::fs::write(www.join("vnc_lite.html"), "<html>noVNC</html>").expect("write");
    std::fs::write(dir.path().join("secret"), "no").expect("write");
    let mut c = common::config::Config::parse(&format!("[vnc]\nnovnc_path = {}\n", www.display()))
        .expect("ini");
    c.set_state_dir(dir.path());
    c.declare(compute::config::OPTS);
    c.declare(metadata::config::OPTS);
    let url = format!("sqlite://{}/compute.sqlite?mode=rwc", dir.path().display());
    let cfg = ComputeConfig::from_config(&c, &url).expect("config");
    let svc = ComputeService::open(cfg).await.expect("open");
    let (addr, server) = serve(svc).await;

    let get = |path: &'static str| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        }
    };
    let page = get("/novnc/vnc_lite.html").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    assert!(page.contains("noVNC"), "{page}");
    for bad in [
        "/novnc/../secret",
        "/novnc/%2e%2e/secret",
        "/novnc/..%2fsecret",
        "/novnc/missing.js",
    ] {
        let r = get(bad).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{bad}: {r}");
        assert!(!r.contains("\r\n\r\nno"), "{bad} leaked: {r}");
    }
    // A plain GET of the websocket path is not an upgrade and does not use a token.
    let r = get("/novnc/websockify?token=x").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");

    std::fs::remove_dir_all(&www).expect("rm");
    let r = get("/novnc/vnc_lite.html").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains("apt-get install novnc"), "{r}");
    server.abort();
}
