//! The handlers, one file per area. Thin: read the session, call the APIs, fill a template.

pub mod access;
pub mod admin;
pub mod admin_identity;
pub mod auth;
pub mod floating_ips;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod networks;
pub mod overview;
pub mod routers;
pub mod security_groups;
pub mod snapshots;
pub mod topology;
pub mod volumes;

use askama::Template;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::{Ctx, DashError, Dashboard};

/// Render a template as the response.
pub fn render(t: &impl Template) -> Result<Response, DashError> {
    Ok(Html(t.render()?).into_response())
}

/// True for requests htmx makes (they get fragments, not pages).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// 303 to `to` (after a POST).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A path segment for a URL: percent-encodes everything but unreserved characters.
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an API call's refusal says, for the page: empty on success, the API's message when it
/// refused; other failures (the session is gone, ...) pass on.
pub fn refusal<T>(r: Result<T, DashError>) -> Result<String, DashError> {
    match r {
        Ok(_) => Ok(String::new()),
        Err(DashError::Api(e)) => Ok(crate::error::api_message(&e)),
        Err(e) => Err(e),
    }
}

/// The next page's flash after a call: `ok` on success, the API's message when it refused.
pub fn flash_outcome<T>(
    d: &Dashboard,
    ctx: &Ctx,
    r: Result<T, DashError>,
    ok: impl Into<String>,
) -> Result<bool, DashError> {
    let problem = refusal(r)?;
    let accepted = problem.is_empty();
    if accepted {
        d.sessions.flash(&ctx.sid, "ok", ok.into());
    } else {
        d.sessions.flash(&ctx.sid, "error", problem);
    }
    Ok(accepted)
}
