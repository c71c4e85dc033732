//! Key pairs: list, create (the private key is downloaded once), import, delete.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use reqwest::Method;
use serde_json::json;

use super::{flash_outcome, is_htmx, render, see_other, seg};
use crate::views::{self, KeypairView, Layout};
use crate::{DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/keypairs";

#[derive(Template)]
#[template(path = "keypairs.html")]
pub struct KeypairsPage {
    pub layout: Layout,
    pub keypairs: Vec<KeypairView>,
    /// the name of a created key pair whose private key waits for its download
    pub pending: String,
    /// the field an error belongs to ("name", "public_key", or "" for the form) and the message
    pub error_field: String,
    pub error: String,
    pub form_name: String,
    pub form_public_key: String,
}

#[derive(Template)]
#[template(
    source = "<tr><td colspan=\"4\" class=\"problem\">{{ message }}</td></tr>",
    ext = "html"
)]
pub struct KeypairRowError {
    pub message: String,
}

async fn page(
    d: &Dashboard,
    ctx: &crate::Ctx,
    error: Option<(String, String)>,
    form: Option<&FormData>,
) -> Result<Response, DashError> {
    let list = d.get(ctx, "compute", "/os-keypairs").await?;
    let pending = d
        .sessions
        .get(&ctx.sid)
        .and_then(|s| s.pending_key.map(|(n, _)| n))
        .unwrap_or_default();
    let (error_field, error) = error.unwrap_or_default();
    render(&KeypairsPage {
        layout: d.layout(ctx, "keypairs"),
        keypairs: views::keypairs(&list),
        pending,
        error_field,
        error,
        form_name: form.map(|f| f.text("name")).unwrap_or_default(),
        form_public_key: form.map(|f| f.text("public_key")).unwrap_or_default(),
    })
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    page(&d, &ctx, None, None).await
}

/// Which form field an API message is about.
fn field_of(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("public key") || m.contains("public_key") || m.contains("keypair data") {
        "public_key"
    } else if m.contains("name") || m.contains("already exists") {
        "name"
    } else {
        ""
    }
}

async fn create_or_import(
    d: Arc<Dashboard>,
    headers: HeaderMap,
    body: Bytes,
    import: bool,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let mut kp = json!({"name": name});
    if import {
        kp["public_key"] = json!(form.text("public_key"));
    }
    let r = d
        .call(
            &ctx,
            "compute",
            Method::POST,
            "/os-keypairs",
            Some(&json!({"keypair": kp})),
        )
        .await;
    match r {
        Ok(v) => {
            if let Some(private) = v["keypair"]["private_key"].as_str() {
                let pem = private.to_string();
                let n = name.clone();
                d.sessions
                    .update(&ctx.sid, |s| s.pending_key = Some((n, pem)));
                d.sessions.flash(
                    &ctx.sid,
                    "ok",
                    format!(
                        "Key pair {name} created. Download its private key now: it is shown only once."
                    ),
                );
            } else {
                d.sessions
                    .flash(&ctx.sid, "ok", format!("Key pair {name} imported."));
            }
            Ok(see_other(PAGE))
        }
        Err(DashError::Api(e)) if e.status().is_some_and(|s| s < 500) => {
            let message = crate::error::api_message(&e);
            let field = field_of(&e.to_string()).to_string();
            page(&d, &ctx, Some((field, message)), Some(&form)).await
        }
        Err(e) => Err(e),
    }
}

pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    create_or_import(d, headers, body, false).await
}

pub async fn import(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    create_or_import(d, headers, body, true).await
}

/// The private key of the key pair just created, once.
pub async fn download(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let mut taken = None;
    d.sessions
        .update(&ctx.sid, |s| taken = s.pending_key.take());
    let Some((name, pem)) = taken else {
        return Err(DashError::NotFound(
            "There is no private key to download: it is given only once, right after the key pair is created.".into(),
        ));
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut resp = pem.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.pem\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub async fn delete(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let r = d
        .call(
            &ctx,
            "compute",
            Method::DELETE,
            &format!("/os-keypairs/{}", seg(&name)),
            None,
        )
        .await;
    if is_htmx(&headers) {
        // the row goes away, or says why it could not
        return match r {
            Ok(_) => Ok(Html(String::new()).into_response()),
            Err(DashError::Api(e)) => render(&KeypairRowError {
                message: crate::error::api_message(&e),
            }),
            Err(e) => Err(e),
        };
    }
    flash_outcome(&d, &ctx, r, format!("Key pair {name} deleted."))?;
    Ok(see_other(PAGE))
}
