//! `x-openstack-request-id` on every response and in every log line.
//!
//! Each request gets a fresh `req-<uuid>`. A caller-supplied `X-OpenStack-Request-ID` of the
//! same form is kept as the *global* request id, as oslo.middleware does, so a chain of
//! service-to-service calls can be followed in the logs.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use std::time::Instant;
use tracing::Instrument;

pub const HEADER: &str = "x-openstack-request-id";

/// The local request id, available to handlers as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The id a caller passed in `X-OpenStack-Request-ID`, when it is well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        Self(format!("req-{}", uuid::Uuid::new_v4()))
    }

    pub fn from_request(req: &Request) -> Option<String> {
        req.extensions().get::<RequestId>().map(|r| r.0.clone())
    }
}

fn is_request_id(s: &str) -> bool {
    s.strip_prefix("req-")
        .is_some_and(|rest| uuid::Uuid::parse_str(rest).is_ok())
}

/// Middleware: assign the id, run the request inside a span carrying it, log the outcome,
/// and echo the id in the response.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    let global = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_request_id(v))
        .map(|v| GlobalRequestId(v.to_string()));
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        global_request_id = global.as_ref().map(|g| g.0.as_str()).unwrap_or(""),
    );
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    req.extensions_mut().insert(id.clone());
    if let Some(g) = global {
        req.extensions_mut().insert(g);
    }
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(%method, %path, status, elapsed_ms, "request failed");
        } else {
            tracing::info!(%method, %path, status, elapsed_ms, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_openstack_form() {
        let id = RequestId::generate();
        assert!(is_request_id(&id.0), "{}", id.0);
        assert!(!is_request_id("req-nope"));
        assert!(!is_request_id("1234"));
    }
}
