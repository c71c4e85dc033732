//! The volume router over HTTP, mounted as kumo mounts it, with a test token validator standing
//! in for identity and the real file backend (qemu-img): a volume's life through the
//! attachments API, Cinder's error bodies, paths with and without the project id.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use chrono::Utc;
use common::auth::{AuthContext, AuthFailure, RoleRef, Scope, TokenValidator};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use volume::VolumeService;
use volume::config::VolumeConfig;

struct Tokens;

fn ctx(roles: &[&str], project: &str) -> AuthContext {
    AuthContext {
        user_id: "u1".into(),
        user_name: "user".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        scope: Scope::Project {
            id: project.into(),
            name: project.into(),
            domain_id: "default".into(),
            domain_name: "Default".into(),
        },
        roles: roles
            .iter()
            .map(|r| RoleRef {
                id: (*r).into(),
                name: (*r).into(),
            })
            .collect(),
        methods: vec!["password".into()],
        audit_ids: vec![],
        issued_at: Utc::now(),
        expires_at: Utc::now(),
        app_cred: None,
        is_admin_project: false,
    }
}

#[async_trait::async_trait]
impl TokenValidator for Tokens {
    async fn validate(&self, token: &str) -> Result<Arc<AuthContext>, AuthFailure> {
        match token {
            "admin" => Ok(Arc::new(ctx(&["admin", "member", "reader"], "padmin"))),
            "member" => Ok(Arc::new(ctx(&["member", "reader"], "pdemo"))),
            _ => Err(AuthFailure::Invalid),
        }
    }
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/volume{path}"))
        .header("host", "cloud.example:5000")
        .header("openstack-api-version", "volume 3.44");
    if !token.is_empty() {
        req = req.header("x-auth-token", token);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn wait_status(app: &Router, id: &str, want: &str) -> Value {
    for _ in 0..500 {
        let (s, b) = call(app, "GET", &format!("/v3/volumes/{id}"), "member", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["volume"]["status"] == want {
            return b["volume"].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("volume {id} never {want}");
}

fn have_qemu_img() -> bool {
    std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn volume_story_over_http() {
    if !have_qemu_img() {
        eprintln!("no qemu-img: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = VolumeConfig::defaults(dir.path());
    // The connector below is of this host: the volume's file.
    cfg.target.own_host = "h1".into();
    let svc = VolumeService::open(cfg).await.unwrap();
    let app = Router::new().nest("/volume", volume::api::router(svc, Arc::new(Tokens)));

    // discovery is anonymous; everything else needs a token
    let (s, b) = call(&app, "GET", "", "", None).await;
    assert_eq!(s, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(b["versions"][0]["min_version"], "3.0");
    let (s, b) = call(&app, "GET", "/v3/volumes", "", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // bad input: Cinder's bodies
    let (s, b) = call(
        &app,
        "POST",
        "/v3/pdemo/volumes",
        "member",
        Some(json!({"volume": {"size": 0}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["badRequest"]["code"], 400);
    let (s, b) = call(&app, "GET", "/v3/volumes/nope", "member", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        b["itemNotFound"]["message"],
        "Volume nope could not be found."
    );

    // create, with and without the project id in the path
    let (s, b) = call(
        &app,
        "POST",
        "/v3/pdemo/volumes",
        "member",
        Some(json!({"volume": {"size": 1, "name": "v"}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["volume"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["volume"]["status"], "creating");
    let v = wait_status(&app, &id, "available").await;
    assert_eq!(v["volume_type"], "__DEFAULT__");
    assert!(
        dir.path()
            .join(format!("volumes/volume-{id}.qcow2"))
            .is_file()
    );
    // another project's member does not see it; the admin does, with the host
    let (s, _) = call(&app, "GET", &format!("/v3/volumes/{id}"), "admin", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = call(
        &app,
        "GET",
        "/v3/volumes/detail?all_tenants=1",
        "admin",
        None,
    )
    .await;
    assert_eq!(b["volumes"][0]["os-vol-host-attr:host"], "kumo@file#file");

    // attachments: reserved -> connection info -> in-use -> available
    let (s, b) = call(
        &app,
        "POST",
        "/v3/attachments",
        "member",
        Some(json!({"attachment": {"volume_uuid": id, "instance_uuid": "i-1"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let att = b["attachment"]["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "reserved").await;
    let (s, b) = call(&app, "DELETE", &format!("/v3/volumes/{id}"), "member", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["badRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid volume:")
    );
    let (s, b) = call(
        &app,
        "PUT",
        &format!("/v3/attachments/{att}"),
        "member",
        Some(json!({"attachment": {"connector": {"host": "h1", "mountpoint": "/dev/vdb"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let data = &b["attachment"]["connection_info"]["data"];
    assert_eq!(
        b["attachment"]["connection_info"]["driver_volume_type"],
        "local"
    );
    assert_eq!(data["format"], "qcow2");
    assert_eq!(data["access_mode"], "rw");
    assert!(std::path::Path::new(data["device_path"].as_str().unwrap()).is_file());
    let (s, _) = call(
        &app,
        "POST",
        &format!("/v3/attachments/{att}/action"),
        "member",
        Some(json!({"os-complete": null})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = wait_status(&app, &id, "in-use").await;
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");
    assert_eq!(v["attachments"][0]["server_id"], "i-1");
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/v3/attachments/{att}"),
        "member",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_status(&app, &id, "available").await;

    // delete: 202, then 404 for good
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/v3/pdemo/volumes/{id}"),
        "member",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    for _ in 0..500 {
        let (s, _) = call(&app, "GET", &format!("/v3/volumes/{id}"), "member", None).await;
        if s == StatusCode::NOT_FOUND {
            assert!(
                !dir.path()
                    .join(format!("volumes/volume-{id}.qcow2"))
                    .exists()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("volume {id} never went away");
}

/// What a restart makes of volumes left in transient statuses (set here with os-reset_status).
#[tokio::test]
async fn restart_recovers_transient_statuses() {
    if !have_qemu_img() {
        eprintln!("no qemu-img: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let svc = VolumeService::open(VolumeConfig::defaults(dir.path()))
            .await
            .unwrap();
        let app = Router::new().nest("/volume", volume::api::router(svc, Arc::new(Tokens)));
        for _ in 0..4 {
            let (s, b) = call(
                &app,
                "POST",
                "/v3/volumes",
                "member",
                Some(json!({"volume": {"size": 1}})),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
            let id = b["volume"]["id"].as_str().unwrap().to_string();
            wait_status(&app, &id, "available").await;
            ids.push(id);
        }
        for (id, st) in ids
            .iter()
            .zip(["creating", "deleting", "attaching", "in-use"])
        {
            let (s, b) = call(
                &app,
                "POST",
                &format!("/v3/volumes/{id}/action"),
                "admin",
                Some(json!({"os-reset_status": {"status": st}})),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        }
        // the delete had finished on the backend
        std::fs::remove_file(dir.path().join(format!("volumes/volume-{}.qcow2", ids[1]))).unwrap();
    }
    let svc = VolumeService::open(VolumeConfig::defaults(dir.path()))
        .await
        .unwrap();
    let app = Router::new().nest("/volume", volume::api::router(svc, Arc::new(Tokens)));
    let status = |i: usize| {
        let app = app.clone();
        let id = ids[i].clone();
        async move {
            let (s, b) = call(&app, "GET", &format!("/v3/volumes/{id}"), "member", None).await;
            (
                s,
                b["volume"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    // creating with complete data -> available
    assert_eq!(status(0).await, (StatusCode::OK, "available".into()));
    // deleting with no data left -> gone
    assert_eq!(status(1).await.0, StatusCode::NOT_FOUND);
    // attaching / in-use without a completed attachment -> available, never in-use
    assert_eq!(status(2).await, (StatusCode::OK, "available".into()));
    assert_eq!(status(3).await, (StatusCode::OK, "available".into()));
}

fn have_storage_daemon() -> bool {
    have_qemu_img()
        && std::process::Command::new("qemu-storage-daemon")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The first export port of a test: below the ephemeral range, so no client socket of this
/// machine sits on it (the exports skip ports something listens on).
fn first_port() -> u16 {
    20000 + (std::process::id() % 10000) as u16
}

/// The export really serves the volume: `qemu-img info` over NBD reads its size, with the TLS
/// pre-shared key of the connection info (`data`), or without TLS when `tls` is false.
fn nbd_size(data: &Value, tls: bool) -> Option<String> {
    let port = data["port"].as_u64()?;
    let name = data["name"].as_str()?;
    let keys = tempfile::tempdir().ok()?;
    let mut args: Vec<String> = vec!["info".into(), "--output=json".into()];
    let mut opts = format!(
        "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export={name}"
    );
    if tls {
        let (user, key) = (
            data["auth_username"].as_str()?,
            data["auth_password"].as_str()?,
        );
        std::fs::write(keys.path().join("keys.psk"), format!("{user}:{key}\n")).ok()?;
        args.extend([
            "--object".into(),
            format!(
                "tls-creds-psk,id=t,endpoint=client,dir={},username={user}",
                keys.path().display()
            ),
        ]);
        opts.push_str(",tls-creds=t");
    }
    args.extend(["--image-opts".into(), opts]);
    let out = std::process::Command::new("qemu-img")
        .args(&args)
        .output()
        .ok()?;
    let info: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(info["virtual-size"].to_string())
}

fn nbd_config(
    dir: &std::path::Path,
    port: u16,
    protocol: volume::target::TargetProtocol,
) -> VolumeConfig {
    let mut cfg = VolumeConfig::defaults(dir);
    cfg.target.own_host = "hosta".into();
    cfg.target.address = "127.0.0.1".into();
    cfg.target.first_port = port;
    cfg.target.protocol = protocol;
    cfg
}

/// Kills the daemons of a test's exports when it ends, also when it fails (by the pids their
/// pid files name, checked by the targets).
struct StopExports(volume::target::NbdTargets);

impl Drop for StopExports {
    fn drop(&mut self) {
        for r in self.0.recorded() {
            if let Some(pid) = self.0.pid(&r.volume_id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

async fn open_app(cfg: VolumeConfig) -> (Arc<VolumeService>, Router) {
    let svc = VolumeService::open(cfg).await.unwrap();
    let app = Router::new().nest(
        "/volume",
        volume::api::router(svc.clone(), Arc::new(Tokens)),
    );
    (svc, app)
}

/// Create an attachment and connect it from `host`: the connection info.
async fn connect_from(app: &Router, id: &str, host: &str) -> (String, Value) {
    let (s, b) = call(
        app,
        "POST",
        "/v3/attachments",
        "member",
        Some(json!({"attachment": {"volume_uuid": id, "instance_uuid": "i-1"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let att = b["attachment"]["id"].as_str().unwrap().to_string();
    let (s, b) = call(
        app,
        "PUT",
        &format!("/v3/attachments/{att}"),
        "member",
        Some(json!({"attachment": {"connector": {"host": host, "mountpoint": "/dev/vdb"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (att, b["attachment"]["connection_info"].clone())
}

async fn call_ok(app: &Router, method: &str, path: &str, body: Option<Value>) {
    let (s, b) = call(app, method, path, "member", body).await;
    assert!(s.is_success(), "{method} {path}: {s} {b}");
}

/// A connector of another host gets an NBD export of its own qemu-storage-daemon, one of this
/// host the file; the export survives a restart (and is started again when its daemon was
/// killed), an export no completed attachment needs is stopped at start, and the detach stops it.
#[tokio::test]
async fn other_hosts_get_nbd_exports() {
    use volume::target::TargetProtocol;
    if !have_storage_daemon() {
        eprintln!("no qemu-img or qemu-storage-daemon: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = first_port();
    let _stop = StopExports(volume::target::NbdTargets::new(
        nbd_config(dir.path(), first, TargetProtocol::Auto).target,
    ));
    let (svc, app) = open_app(nbd_config(dir.path(), first, TargetProtocol::Auto)).await;
    let (s, b) = call(
        &app,
        "POST",
        "/v3/volumes",
        "member",
        Some(json!({"volume": {"size": 1}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["volume"]["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "available").await;

    // this host: the file, no export
    let (att, ci) = connect_from(&app, &id, "hosta").await;
    assert_eq!(ci["driver_volume_type"], "local", "{ci}");
    assert!(svc.targets.pid(&id).is_none());
    call_ok(&app, "DELETE", &format!("/v3/attachments/{att}"), None).await;

    // another host: an NBD export serving the volume's contents (raw)
    let (att, ci) = connect_from(&app, &id, "hostb").await;
    assert_eq!(ci["driver_volume_type"], "nbd", "{ci}");
    let data = &ci["data"];
    assert_eq!(data["host"], "127.0.0.1");
    assert_eq!(data["name"], format!("volume-{id}"));
    assert_eq!(data["format"], "raw");
    assert_eq!(data["access_mode"], "rw");
    let port = data["port"].as_u64().unwrap();
    assert!(port >= u64::from(first), "{ci}");
    let pid = svc.targets.pid(&id).expect("the export's daemon runs");
    assert_eq!(data["auth_method"], "tls-psk", "{ci}");
    assert_eq!(data["auth_username"], format!("volume-{id}"));
    assert_eq!(data["auth_password"].as_str().unwrap().len(), 64, "{ci}");
    assert_eq!(nbd_size(data, true).as_deref(), Some("1073741824"));
    assert_eq!(nbd_size(data, false), None, "no TLS, no export");
    let mut wrong = data.clone();
    wrong["auth_password"] = json!("00".repeat(32));
    assert_eq!(nbd_size(&wrong, true), None, "a wrong key, no export");
    call_ok(
        &app,
        "POST",
        &format!("/v3/attachments/{att}/action"),
        Some(json!({"os-complete": null})),
    )
    .await;
    wait_status(&app, &id, "in-use").await;

    // a restart keeps the running daemon; after its daemon was killed, the volume is
    // exported again on the port the attachment was told
    drop((svc, app));
    let (svc, app) = open_app(nbd_config(dir.path(), first, TargetProtocol::Auto)).await;
    assert_eq!(
        svc.targets.pid(&id),
        Some(pid),
        "the daemon outlives a restart"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for _ in 0..500 {
        if !volume::target::process_running(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop((svc, app));
    let (svc, app) = open_app(nbd_config(dir.path(), first, TargetProtocol::Auto)).await;
    let again = svc.targets.pid(&id).expect("re-exported at start");
    assert_ne!(again, pid);
    assert_eq!(
        nbd_size(data, true).as_deref(),
        Some("1073741824"),
        "the same port and key after the restart"
    );

    // the detach stops the export: daemon gone, nothing listens, files removed
    call_ok(&app, "DELETE", &format!("/v3/attachments/{att}"), None).await;
    wait_status(&app, &id, "available").await;
    assert!(svc.targets.pid(&id).is_none());
    assert!(
        !volume::target::process_running(again),
        "daemon {again} still alive"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
        "something listens on {port} after the detach"
    );
    assert!(!svc.targets.is_recorded(&id));
    assert!(
        !dir.path().join(format!("volume-exports/{id}.tls")).exists(),
        "the export's key is removed with it"
    );

    // an export whose attachment never completed does not survive a restart
    let (_att, ci) = connect_from(&app, &id, "hostb").await;
    assert_eq!(ci["driver_volume_type"], "nbd", "{ci}");
    let orphan = svc.targets.pid(&id).expect("exported");
    drop((svc, app));
    let (svc, app) = open_app(nbd_config(dir.path(), first, TargetProtocol::Auto)).await;
    assert!(svc.targets.pid(&id).is_none());
    assert!(
        !volume::target::process_running(orphan),
        "orphan daemon {orphan} still alive"
    );
    wait_status(&app, &id, "available").await;
    drop((svc, app));

    // target_protocol = nbd: this host's connector gets an export too; the legacy detach
    // (os-detach) stops it
    let (svc, app) = open_app(nbd_config(dir.path(), first, TargetProtocol::Nbd)).await;
    let (s, b) = call(
        &app,
        "POST",
        &format!("/v3/volumes/{id}/action"),
        "member",
        Some(json!({"os-initialize_connection": {"connector": {"host": "hosta"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["connection_info"]["driver_volume_type"], "nbd", "{b}");
    let legacy = svc.targets.pid(&id).expect("exported");
    call_ok(
        &app,
        "POST",
        &format!("/v3/volumes/{id}/action"),
        Some(json!({"os-attach": {"instance_uuid": "i-2", "mountpoint": "/dev/vdc"}})),
    )
    .await;
    wait_status(&app, &id, "in-use").await;
    call_ok(
        &app,
        "POST",
        &format!("/v3/volumes/{id}/action"),
        Some(json!({"os-detach": {}})),
    )
    .await;
    wait_status(&app, &id, "available").await;
    assert!(svc.targets.pid(&id).is_none());
    assert!(
        !volume::target::process_running(legacy),
        "daemon {legacy} still alive"
    );
}
