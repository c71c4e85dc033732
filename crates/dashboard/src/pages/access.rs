//! API access: the endpoints of the token's catalog and the token itself, for the CLI
//! (`OS_TOKEN`); the token is revoked when the user logs out.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::render;
use crate::views::Layout;
use crate::{DashError, Dashboard};

#[derive(Template)]
#[template(path = "api_access.html")]
pub struct AccessPage {
    pub layout: Layout,
    pub endpoints: Vec<(String, String)>,
    pub token: String,
    pub expires_at: String,
}

pub async fn page(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let mut endpoints: Vec<(String, String)> = ctx
        .auth
        .endpoints
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    endpoints.sort();
    render(&AccessPage {
        layout: d.layout(&ctx, "api-access"),
        endpoints,
        token: ctx.auth.token.clone(),
        expires_at: ctx.auth.expires_at.to_rfc3339(),
    })
}
