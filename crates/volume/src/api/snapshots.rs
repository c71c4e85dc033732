//! `/v3/snapshots`: CRUD, metadata, reset status.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;
use crate::core::SnapshotListParams;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/snapshots", get(list).post(create))
        .route("/snapshots/detail", get(list_detail))
        .route("/snapshots/{id}", get(show).put(update).delete(delete))
        .route("/snapshots/{id}/action", post(action))
        .route(
            "/snapshots/{id}/metadata",
            get(meta_show).post(meta_merge).put(meta_replace),
        )
        .route(
            "/snapshots/{id}/metadata/{key}",
            get(meta_item).put(meta_item_put).delete(meta_item_delete),
        )
}

fn opt_str(o: &Value, k: &str) -> Result<Option<Option<String>>> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= 255 => Ok(Some(Some(s.clone()))),
        Some(other) => Err(VolumeError::bad(format!(
            "Invalid input for field/attribute {k}. Value: {other}. {other} is not valid under any of the given schemas"
        ))),
    }
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Response {
    respond(async {
        let Some(o) = body.get("snapshot").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute snapshot. Value: None. 'snapshot' is a required property",
            ));
        };
        if o.get("volume_id") == Some(&Value::Null) {
            return Err(VolumeError::volume_not_found("None"));
        }
        let Some(volume_id) = o.get("volume_id").and_then(Value::as_str) else {
            return Err(VolumeError::bad(format!(
                "Invalid input for field/attribute snapshot. Value: {o}. 'volume_id' is a required property"
            )));
        };
        let force = match o.get("force") {
            None | Some(Value::Null) => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                VolumeError::invalid_input(format!("Invalid value '{v}' for force."))
            })?,
        };
        if ctx.mv.at_least(66) && o.get("force").is_some() && !force {
            return Err(VolumeError::invalid_input(
                "Since microversion 3.66 the 'force' flag is invalid for this request.",
            ));
        }
        let force = force || ctx.mv.at_least(66);
        let name = opt_str(o, "name")?.or(opt_str(o, "display_name")?).flatten();
        let description = opt_str(o, "description")?
            .or(opt_str(o, "display_description")?)
            .flatten();
        let metadata = match o.get("metadata") {
            None | Some(Value::Null) => Default::default(),
            Some(m) => metadata_of(m, "metadata")?,
        };
        let s = api
            .svc
            .create_snapshot(&ctx.auth, volume_id, name, description, metadata, force)
            .await?;
        Ok(accepted(json!({"snapshot": render::snapshot(&ctx, &s, false)})))
    }
    .await)
}

async fn list_any(api: Api, ctx: Ctx, p: Params, detail: bool) -> Result<Response> {
    let params = SnapshotListParams {
        all_tenants: all_tenants(&p),
        name: p.get("name").or(p.get("display_name")).map(str::to_string),
        status: p.get("status").map(str::to_string),
        volume_id: p.get("volume_id").map(str::to_string),
        sort: sort_of(
            &p,
            &["id", "name", "display_name", "size", "status", "created_at"],
        )?
        .into_iter()
        .map(|(k, d)| {
            (
                if k == "display_name" {
                    "name".into()
                } else {
                    k
                },
                d,
            )
        })
        .collect(),
        limit: usize_param(&p, "limit")?,
        marker: p.get("marker").map(str::to_string),
        offset: usize_param(&p, "offset")?.unwrap_or(0),
    };
    let (snaps, more) = api.svc.list_snapshots(&ctx.auth, &params).await?;
    let items: Vec<Value> = snaps
        .iter()
        .map(|s| render::snapshot(&ctx, s, detail))
        .collect();
    let mut out = json!({"snapshots": items});
    if more && let Some(last) = snaps.last() {
        out["snapshots_links"] = render::next_links(
            &ctx,
            "snapshots",
            if detail {
                "snapshots/detail"
            } else {
                "snapshots"
            },
            &p.0,
            &last.id,
        );
    }
    Ok(ok(out))
}

async fn list(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(list_any(api, ctx, p, false).await)
}

async fn list_detail(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(list_any(api, ctx, p, true).await)
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let s = api.svc.get_snapshot(&ctx.auth, &id).await?;
            Ok(ok(json!({"snapshot": render::snapshot(&ctx, &s, true)})))
        }
        .await,
    )
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    respond(async {
        let Some(o) = body.get("snapshot").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute snapshot. Value: None. 'snapshot' is a required property",
            ));
        };
        let name = opt_str(o, "name")?.or(opt_str(o, "display_name")?);
        let description = opt_str(o, "description")?.or(opt_str(o, "display_description")?);
        let s = api.svc.update_snapshot(&ctx.auth, &id, name, description).await?;
        Ok(ok(json!({"snapshot": render::snapshot(&ctx, &s, false)})))
    }
    .await)
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            api.svc.delete_snapshot(&ctx.auth, &id, false).await?;
            Ok(accepted_empty())
        }
        .await,
    )
}

async fn action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    respond(async {
        if let Some(args) = body.get("os-reset_status") {
            let Some(st) = args.get("status").and_then(Value::as_str) else {
                return Err(VolumeError::invalid_input("Must specify 'status'"));
            };
            api.svc.reset_snapshot_status(&ctx.auth, &id, st).await?;
            Ok(accepted_empty())
        } else if body.get("os-force_delete").is_some() {
            api.svc.get_snapshot(&ctx.auth, &id).await?;
            if !api.svc.is_admin(&ctx.auth) {
                return Err(VolumeError::Forbidden(
                    "Policy doesn't allow volume_extension:snapshot_admin_actions:force_delete to be performed.".into(),
                ));
            }
            api.svc.delete_snapshot(&ctx.auth, &id, true).await?;
            Ok(accepted_empty())
        } else {
            Err(VolumeError::bad("There is no such action"))
        }
    }
    .await)
}

fn meta_body(body: &Value, key: &str) -> Result<crate::model::Metadata> {
    match body.get(key) {
        Some(m) => metadata_of(m, key),
        None => Err(VolumeError::bad("Malformed request body")),
    }
}

async fn meta_show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let s = api.svc.get_snapshot(&ctx.auth, &id).await?;
            Ok(ok(json!({"metadata": s.metadata})))
        }
        .await,
    )
}

async fn meta_merge(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "metadata")?;
            let all = api
                .svc
                .set_snapshot_metadata(&ctx.auth, &id, m, false)
                .await?;
            Ok(ok(json!({"metadata": all})))
        }
        .await,
    )
}

async fn meta_replace(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "metadata")?;
            let all = api
                .svc
                .set_snapshot_metadata(&ctx.auth, &id, m, true)
                .await?;
            Ok(ok(json!({"metadata": all})))
        }
        .await,
    )
}

async fn meta_item(State(api): St, ctx: Ctx, Path((id, key)): Path<(String, String)>) -> Response {
    respond(
        async {
            let s = api.svc.get_snapshot(&ctx.auth, &id).await?;
            match s.metadata.get(&key) {
                Some(v) => Ok(ok(json!({"meta": {key: v}}))),
                None => Err(VolumeError::NotFound("Metadata item was not found".into())),
            }
        }
        .await,
    )
}

async fn meta_item_put(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "meta")?;
            if m.len() != 1 {
                return Err(VolumeError::bad("Request body contains too many items"));
            }
            if !m.contains_key(&key) {
                return Err(VolumeError::bad("Request body and URI mismatch"));
            }
            api.svc
                .set_snapshot_metadata(&ctx.auth, &id, m.clone(), false)
                .await?;
            Ok(ok(json!({"meta": m})))
        }
        .await,
    )
}

async fn meta_item_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            api.svc
                .delete_snapshot_metadata(&ctx.auth, &id, &key)
                .await?;
            Ok(StatusCode::OK.into_response())
        }
        .await,
    )
}
