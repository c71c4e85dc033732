//! The placement router over HTTP semantics (microversion headers, error bodies per version,
//! links under the mount point, policy), with a test token validator standing in for
//! identity.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use chrono::Utc;
use common::auth::{AuthContext, AuthFailure, RoleRef, Scope, TokenValidator};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use placement::Placement;
use placement::config::PlacementConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

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
            "admin" => Ok(Arc::new(ctx(&["admin", "member", "reader"], "p-admin"))),
            "member" => Ok(Arc::new(ctx(&["member", "reader"], "p-demo"))),
            _ => Err(AuthFailure::Invalid),
        }
    }
}

async fn app(dir: &std::path::Path) -> Router {
    let p = Placement::open(PlacementConfig::defaults(dir))
        .await
        .unwrap();
    Router::new()
        .nest("/placement", placement::api::router(p, Arc::new(Tokens)))
        .layer(axum::middleware::from_fn(common::request_id::middleware))
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: &str,
    version: &str,
    body: Option<Value>,
) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/placement{path}"))
        .header("host", "cloud.example:5000");
    if !token.is_empty() {
        req = req.header("x-auth-token", token);
    }
    if !version.is_empty() {
        req = req.header("openstack-api-version", format!("placement {version}"));
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
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

const U1: &str = "11111111-2222-4333-8444-555555555555";

#[tokio::test]
async fn versions_headers_and_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let r = call(&app, "GET", "", "", "", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["versions"][0]["max_version"], "1.39");
    assert_eq!(r.headers["openstack-api-version"], "placement 1.0");
    assert!(r.headers.get("cache-control").is_none());
    let r = call(&app, "GET", "", "", "1.15", None).await;
    assert_eq!(r.headers["cache-control"], "no-cache");

    let r = call(&app, "GET", "/resource_providers", "", "1.39", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(&app, "GET", "/resource_providers", "admin", "1.40", None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(r.body["errors"][0]["max_version"], "1.39");
    assert!(r.headers.get("openstack-api-version").is_none());
    let r = call(&app, "GET", "/resource_providers", "admin", "1.x", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // code from 1.23 only, request id always
    let r = call(
        &app,
        "GET",
        &format!("/resource_providers/{U1}"),
        "admin",
        "1.22",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["errors"][0].get("code").is_none());
    assert_eq!(
        r.body["errors"][0]["request_id"],
        r.headers["x-openstack-request-id"].to_str().unwrap()
    );
    let r = call(
        &app,
        "GET",
        &format!("/resource_providers/{U1}"),
        "admin",
        "1.23",
        None,
    )
    .await;
    assert_eq!(r.body["errors"][0]["code"], "placement.undefined_code");
    assert_eq!(r.headers["openstack-api-version"], "placement 1.23");

    // route gated by version: 404 below it; DELETE inventories: 405 below 1.5
    let r = call(
        &app,
        "GET",
        "/allocation_candidates?resources=VCPU:1",
        "admin",
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        "DELETE",
        &format!("/resource_providers/{U1}/inventories"),
        "admin",
        "1.4",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = call(&app, "GET", "/nowhere", "admin", "1.39", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn providers_links_and_locations_under_the_mount_point() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // 1.0: 201 without a body, Location absolute
    let r = call(
        &app,
        "POST",
        "/resource_providers",
        "admin",
        "1.0",
        Some(json!({"name": "a", "uuid": U1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.headers["location"],
        format!("http://cloud.example:5000/placement/resource_providers/{U1}").as_str()
    );
    let r = call(
        &app,
        "GET",
        &format!("/resource_providers/{U1}"),
        "admin",
        "1.0",
        None,
    )
    .await;
    let rels: Vec<&str> = r.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert_eq!(rels, vec!["self", "inventories", "usages"]);
    assert_eq!(
        r.body["links"][0]["href"],
        format!("/placement/resource_providers/{U1}").as_str()
    );
    assert!(r.body.get("root_provider_uuid").is_none());
    let r = call(
        &app,
        "GET",
        &format!("/resource_providers/{U1}"),
        "admin",
        "1.14",
        None,
    )
    .await;
    assert_eq!(r.body["links"].as_array().unwrap().len(), 6);
    assert_eq!(r.body["root_provider_uuid"], U1);
    // 1.20: 200 with the provider
    let r = call(
        &app,
        "POST",
        "/resource_providers",
        "admin",
        "1.20",
        Some(json!({"name": "b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["generation"], 0);
    // uuid without dashes is normalised
    let r = call(
        &app,
        "POST",
        "/resource_providers",
        "admin",
        "1.20",
        Some(json!({"name": "c", "uuid": "AAAAAAAA2222433384445555555555AA"})),
    )
    .await;
    assert_eq!(r.body["uuid"], "aaaaaaaa-2222-4333-8444-5555555555aa");
    // 415 and malformed bodies
    let req = Request::builder()
        .method("POST")
        .uri("/placement/resource_providers")
        .header("x-auth-token", "admin")
        .header("content-type", "text/plain")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let r = call(
        &app,
        "POST",
        "/resource_providers",
        "admin",
        "1.39",
        Some(json!({"name": "d", "bogus": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("JSON does not validate")
    );
}

#[tokio::test]
async fn policy_admin_only_and_readers_see_their_usage() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let r = call(&app, "GET", "/resource_providers", "member", "1.39", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("placement:resource_providers:list")
    );
    let r = call(
        &app,
        "GET",
        "/usages?project_id=p-demo",
        "member",
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"usages": {}}));
    let r = call(
        &app,
        "GET",
        "/usages?project_id=p-other",
        "member",
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // the reshaper is for services only, not even admins
    let r = call(
        &app,
        "POST",
        "/reshaper",
        "admin",
        "1.30",
        Some(json!({"inventories": {}, "allocations": {}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn candidates_request_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    call(
        &app,
        "POST",
        "/resource_providers",
        "admin",
        "1.20",
        Some(json!({"name": "cn", "uuid": U1})),
    )
    .await;
    let inv = json!({"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}, "MEMORY_MB": {"total": 1024}}});
    let r = call(
        &app,
        "PUT",
        &format!("/resource_providers/{U1}/inventories"),
        "admin",
        "1.39",
        Some(inv),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // 1.10 list format, 1.12 dict format, 1.34 mappings
    let r = call(
        &app,
        "GET",
        "/allocation_candidates?resources=VCPU:1",
        "admin",
        "1.10",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocation_requests"],
        json!([{"allocations": [{"resource_provider": {"uuid": U1}, "resources": {"VCPU": 1}}]}])
    );
    assert_eq!(
        r.body["provider_summaries"][U1],
        json!({"resources": {"VCPU": {"capacity": 4, "used": 0}}})
    );
    let r = call(
        &app,
        "GET",
        "/allocation_candidates?resources=VCPU:1",
        "admin",
        "1.34",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocation_requests"],
        json!([{"allocations": {U1: {"resources": {"VCPU": 1}}}, "mappings": {"": [U1]}}])
    );
    assert_eq!(
        r.body["provider_summaries"][U1]["resources"]["MEMORY_MB"]["capacity"],
        1024
    );
    assert_eq!(r.body["provider_summaries"][U1]["root_provider_uuid"], U1);

    for (q, v, status) in [
        ("resources=VCPU:1&resources1=VCPU:1", "1.24", 400),
        (
            "resources=VCPU:1&resources1=VCPU:1&resources2=VCPU:1",
            "1.25",
            400,
        ),
        (
            "resources=VCPU:1&resources1=VCPU:1&resources2=VCPU:1&group_policy=none",
            "1.25",
            200,
        ),
        ("resources_X=VCPU:1", "1.32", 400),
        ("resources_X=VCPU:1", "1.33", 200),
        ("required=HW_CPU_X86_AVX", "1.39", 400),
        ("resources=VCPU:1&required=!HW_CPU_X86_AVX", "1.21", 400),
        ("resources=VCPU:1&required=!HW_CPU_X86_AVX", "1.22", 200),
        (
            "resources=VCPU:1&required=in:HW_CPU_X86_AVX,HW_CPU_X86_AVX2",
            "1.38",
            400,
        ),
        (
            "resources=VCPU:1&required=in:HW_CPU_X86_AVX,HW_CPU_X86_AVX2",
            "1.39",
            200,
        ),
        ("resources=VCPU:1&root_required=HW_CPU_X86_AVX", "1.34", 400),
        (
            "resources=VCPU:1&root_required=!HW_CPU_X86_AVX",
            "1.35",
            200,
        ),
        ("resources=VCPU:1&same_subtree=_X", "1.36", 400),
        ("resources=VCPU:1&limit=1", "1.15", 400),
        ("resources=CUSTOM_NOPE:1", "1.39", 400),
        ("resources=VCPU:0", "1.39", 400),
    ] {
        let r = call(
            &app,
            "GET",
            &format!("/allocation_candidates?{q}"),
            "admin",
            v,
            None,
        )
        .await;
        assert_eq!(r.status.as_u16(), status, "{q} at {v}: {}", r.body);
    }
    let r = call(
        &app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&resources1=VCPU:1&resources2=VCPU:1",
        "admin",
        "1.39",
        None,
    )
    .await;
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"group_policy\" parameter is required")
    );
    let r = call(
        &app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&same_subtree=_X",
        "admin",
        "1.39",
        None,
    )
    .await;
    assert_eq!(r.body["errors"][0]["code"], "placement.query.bad_value");
}
