//! `GET/DELETE /servers/{id}/os-server-password`: the encrypted password a guest posted to
//! the metadata service (`nova get-password`), and clearing it so the guest may post again.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use super::{Api, Ctx, St};
use crate::error::Result;

pub fn routes() -> Router<Api> {
    Router::new().route("/servers/{id}/os-server-password", get(show).delete(clear))
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:os-server-password:show")
        .await?;
    Ok(Json(json!({"password": i.guest_password})).into_response())
}

async fn clear(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:os-server-password:clear")
        .await?;
    api.svc
        .update_instance(&i.uuid, None, |x| {
            x.guest_password.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
