//! `POST /os-server-external-events`: events from other services (network, volume) for
//! servers, delivered to the servers' hosts.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{Value, json};

use super::{Api, Ctx, JsonBody, St};
use crate::core::events::{overall, validate};
use crate::error::Result;

pub fn routes() -> Router<Api> {
    Router::new().route("/os-server-external-events", post(create))
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    let svc = &api.svc;
    let events = validate(&body, ctx.mv.minor)?;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-server-external-events:create",
        &json!({}),
    )?;
    let by = (
        ctx.auth.user_id.as_str(),
        ctx.auth.project_id().unwrap_or_default(),
    );
    let results = svc
        .external_events(events, &ctx.request_id, Some(by))
        .await?;
    let codes: Vec<u16> = results.iter().map(|r| r.code).collect();
    let status = StatusCode::from_u16(overall(&codes)).unwrap_or(StatusCode::MULTI_STATUS);
    let events: Vec<Value> = results.into_iter().map(|r| Value::Object(r.body)).collect();
    Ok((status, Json(json!({ "events": events }))).into_response())
}
