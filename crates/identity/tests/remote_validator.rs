//! `identity::remote::RemoteValidator` against a fake identity service (a tiny axum server on
//! a free loopback port): the token body, the cache (single flight, expiry, eviction, the
//! negative cache), a clear racing a validation, the service token's renewal, and failures.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::auth::{AuthFailure, Scope, TokenValidator};
use identity::remote::{RemoteConfig, RemoteValidator, parse_token_body};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the fake identity knows and counts.
#[derive(Default)]
struct Fake {
    /// The service token it accepts now (a new one per login).
    service_token: Mutex<String>,
    logins: AtomicU64,
    /// GET /v3/auth/tokens per subject.
    asked: Mutex<HashMap<String, u64>>,
    /// Subjects starting with `slow` wait for this.
    gate: tokio::sync::Notify,
    /// Answer 503 to validations.
    down: AtomicBool,
    /// Answer 403 to validations (the service user lacks the policy).
    forbidden: AtomicBool,
}

impl Fake {
    fn asked(&self, subject: &str) -> u64 {
        self.asked.lock().get(subject).copied().unwrap_or(0)
    }
}

fn body_of(subject: &str, expires_in: chrono::Duration) -> Value {
    let now = chrono::Utc::now();
    json!({"token": {
        "methods": ["password"],
        "user": {"id": format!("u-{subject}"), "name": "alice",
                 "domain": {"id": "default", "name": "Default"}, "password_expires_at": null},
        "audit_ids": ["aud1"],
        "issued_at": now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "expires_at": (now + expires_in).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "is_domain": false,
        "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
        "is_admin_project": false,
    }})
}

async fn login(State(f): State<Arc<Fake>>) -> Response {
    let n = f.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("svc-{n}");
    *f.service_token.lock() = token.clone();
    let mut r = (
        StatusCode::CREATED,
        axum::Json(body_of("svc", chrono::Duration::hours(1))),
    )
        .into_response();
    if let Ok(v) = token.parse() {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

async fn validate(State(f): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if header("x-auth-token") != *f.service_token.lock() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let subject = header("x-subject-token");
    *f.asked.lock().entry(subject.clone()).or_default() += 1;
    if f.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if f.forbidden.load(Ordering::SeqCst) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if subject.starts_with("slow") {
        f.gate.notified().await;
    }
    if subject.starts_with("bad") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let expires_in = if subject.starts_with("short") {
        chrono::Duration::milliseconds(700)
    } else {
        chrono::Duration::hours(1)
    };
    axum::Json(body_of(&subject, expires_in)).into_response()
}

/// The fake identity on a free port; its auth_url.
async fn fake_identity() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/identity/v3/auth/tokens", post(login).get(validate))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, format!("http://{addr}/identity"))
}

fn config(auth_url: &str) -> RemoteConfig {
    RemoteConfig {
        auth_url: auth_url.to_string(),
        username: "nova".into(),
        password: "secret".into(),
        project_name: "service".into(),
        cache_time: Duration::from_secs(300),
        cache_size: 10_000,
        request_timeout: Duration::from_secs(2),
    }
}

#[test]
fn the_token_body_becomes_the_auth_context() {
    let ctx = parse_token_body(&body_of("t", chrono::Duration::hours(1))).expect("parses");
    assert_eq!(ctx.user_id, "u-t");
    assert_eq!(
        (ctx.user_domain_id.as_str(), ctx.user_domain_name.as_str()),
        ("default", "Default")
    );
    assert_eq!(
        ctx.scope,
        Scope::Project {
            id: "p1".into(),
            name: "demo".into(),
            domain_id: "default".into(),
            domain_name: "Default".into()
        }
    );
    assert!(ctx.has_role("member") && ctx.has_role("reader") && !ctx.has_role("admin"));
    assert_eq!(ctx.methods, ["password"]);
    assert_eq!(ctx.audit_ids, ["aud1"]);
    assert!(!ctx.is_admin_project);
    assert!(ctx.expires_at > ctx.issued_at);
    assert!(ctx.app_cred.is_none());

    let mut v = body_of("t", chrono::Duration::hours(1));
    let t = v["token"].as_object_mut().expect("object");
    t.remove("project");
    t.remove("is_admin_project");
    t.insert("system".into(), json!({"all": true}));
    t.insert(
        "application_credential".into(),
        json!({"id": "ac1", "name": "ci", "restricted": false}),
    );
    let ctx = parse_token_body(&v).expect("parses");
    assert!(ctx.is_system() && !ctx.is_admin_project);
    let ac = ctx.app_cred.expect("app cred");
    assert_eq!(
        (ac.id.as_str(), ac.name.as_str(), ac.restricted),
        ("ac1", "ci", false)
    );

    let t = v["token"].as_object_mut().expect("object");
    t.remove("system");
    t.insert("domain".into(), json!({"id": "d1", "name": "dom"}));
    let ctx = parse_token_body(&v).expect("parses");
    assert_eq!(ctx.domain_id(), Some("d1"));

    let t = v["token"].as_object_mut().expect("object");
    t.remove("domain");
    t.remove("roles");
    assert_eq!(parse_token_body(&v).expect("parses").scope, Scope::Unscoped);

    // A project token without is_admin_project: Keystone without an admin project configured.
    let mut v = body_of("t", chrono::Duration::hours(1));
    v["token"]
        .as_object_mut()
        .expect("object")
        .remove("is_admin_project");
    assert!(parse_token_body(&v).expect("parses").is_admin_project);

    for broken in [
        json!({}),
        json!({"token": {"user": {"id": "u"}}}),
        {
            let mut v = body_of("t", chrono::Duration::hours(1));
            v["token"]["expires_at"] = json!("soon");
            v
        },
        {
            let mut v = body_of("t", chrono::Duration::hours(1));
            v["token"]["project"]["domain"] = json!(null);
            v
        },
    ] {
        assert!(parse_token_body(&broken).is_err(), "{broken}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_make_one_request_and_hits_make_none() {
    let (fake, url) = fake_identity().await;
    let v = Arc::new(RemoteValidator::new(config(&url)));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move { v.validate("slow-one").await }));
    }
    // Every task is waiting on the one request before identity answers it.
    while fake.asked("slow-one") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.gate.notify_waiters();
    for t in tasks {
        let ctx = t.await.expect("joined").expect("valid");
        assert_eq!(ctx.user_id, "u-slow-one");
    }
    for _ in 0..20 {
        assert!(v.validate("slow-one").await.is_ok());
    }
    assert_eq!(fake.asked("slow-one"), 1);
    assert_eq!(v.stats().validations, 1);
    assert_eq!(v.stats().logins, 1);
}

#[tokio::test]
async fn entries_end_with_the_cache_time_and_with_the_token() {
    let (fake, url) = fake_identity().await;
    let mut cfg = config(&url);
    cfg.cache_time = Duration::from_millis(300);
    let v = RemoteValidator::new(cfg);
    assert!(v.validate("good").await.is_ok());
    assert!(v.validate("good").await.is_ok());
    assert_eq!(fake.asked("good"), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(v.validate("good").await.is_ok());
    assert_eq!(fake.asked("good"), 2, "asked again after token_cache_time");

    // A token that expires before the cache time is refused from then on, without asking.
    let v = RemoteValidator::new(config(&url));
    assert!(v.validate("short").await.is_ok());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = fake.asked("short");
    assert!(
        v.validate("short").await.is_ok(),
        "the fake still says valid"
    );
    assert_eq!(
        fake.asked("short"),
        asked + 1,
        "an expired entry is not served"
    );
}

#[tokio::test]
async fn refused_tokens_are_remembered_briefly() {
    let (fake, url) = fake_identity().await;
    let v = RemoteValidator::new(config(&url));
    for _ in 0..5 {
        assert_eq!(
            v.validate("bad-token").await.err(),
            Some(AuthFailure::Invalid)
        );
    }
    assert_eq!(fake.asked("bad-token"), 1);
    tokio::time::sleep(identity::remote::NEGATIVE_CACHE_TIME + Duration::from_millis(100)).await;
    assert_eq!(
        v.validate("bad-token").await.err(),
        Some(AuthFailure::Invalid)
    );
    assert_eq!(fake.asked("bad-token"), 2);
}

#[tokio::test]
async fn the_cache_stays_bounded() {
    let (_fake, url) = fake_identity().await;
    let mut cfg = config(&url);
    cfg.cache_size = 8;
    let v = RemoteValidator::new(cfg);
    for i in 0..50 {
        assert!(v.validate(&format!("tok-{i}")).await.is_ok());
        assert!(v.cached() <= 8, "{} entries", v.cached());
    }
    // The newest is still cached.
    let before = v.stats().validations;
    assert!(v.validate("tok-49").await.is_ok());
    assert_eq!(v.stats().validations, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_in_flight_across_a_clear_is_not_kept() {
    let (fake, url) = fake_identity().await;
    let v = Arc::new(RemoteValidator::new(config(&url)));
    let first = {
        let v = v.clone();
        tokio::spawn(async move { v.validate("slow-race").await })
    };
    while fake.asked("slow-race") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // identity changed (say the token was revoked) while its validation was under way
    v.clear();
    fake.gate.notify_waiters();
    assert!(first.await.expect("joined").is_ok());
    // the answer from before the clear must not be served after it: identity is asked again
    let second = {
        let v = v.clone();
        tokio::spawn(async move { v.validate("slow-race").await })
    };
    while fake.asked("slow-race") < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.gate.notify_waiters();
    assert!(second.await.expect("joined").is_ok());
    assert_eq!(fake.asked("slow-race"), 2);

    // and a clear drops answered entries too
    assert!(v.validate("plain").await.is_ok());
    v.clear();
    assert!(v.validate("plain").await.is_ok());
    assert_eq!(fake.asked("plain"), 2);
}

#[tokio::test]
async fn a_refused_service_token_is_renewed_once() {
    let (fake, url) = fake_identity().await;
    let v = RemoteValidator::new(config(&url));
    assert!(v.validate("a").await.is_ok());
    // identity forgot our token (revoked, expired): a new login, then the validation
    *fake.service_token.lock() = "someone-else".into();
    assert!(v.validate("b").await.is_ok());
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
    assert_eq!(v.stats().logins, 2);
}

#[tokio::test]
async fn identity_failures_are_unavailable_and_not_cached() {
    let (fake, url) = fake_identity().await;
    let v = RemoteValidator::new(config(&url));
    fake.down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        match v.validate("t").await {
            Err(AuthFailure::Unavailable(m)) => assert!(m.contains("503"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fake.asked("t"), 2, "an unavailable answer is not cached");
    fake.down.store(false, Ordering::SeqCst);
    assert!(v.validate("t").await.is_ok());

    fake.forbidden.store(true, Ordering::SeqCst);
    match v.validate("u").await {
        Err(AuthFailure::Unavailable(m)) => {
            assert!(
                m.contains("identity:validate_token") && m.contains("nova"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_or_silent_identity_is_unavailable_in_bounded_time() {
    // nothing listens there
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let v = RemoteValidator::new(config(&format!("http://{closed}/identity")));
    assert!(matches!(
        v.validate("t").await,
        Err(AuthFailure::Unavailable(_))
    ));

    // it accepts connections and never answers (a stopped process)
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let mut cfg = config(&format!("http://{addr}/identity"));
    cfg.request_timeout = Duration::from_millis(500);
    let v = RemoteValidator::new(cfg);
    let t0 = Instant::now();
    match v.validate("t").await {
        Err(AuthFailure::Unavailable(m)) => assert!(m.contains("no answer in time"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    held.abort();
}
