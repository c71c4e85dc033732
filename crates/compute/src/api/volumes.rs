//! `/servers/{id}/os-volume_attachments`: list (limit/offset), show, attach (200 with the
//! attachment, as Nova), update (2.85 `delete_on_termination`; a swap is refused) and detach
//! (202), with Nova's schema (`tag` from 2.49, `delete_on_termination` from 2.79) and views
//! (`tag` from 2.70, `delete_on_termination` from 2.79, `attachment_id`/`bdm_uuid` from 2.89).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::keypairs::{last, query_uint};
use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, query_pairs};
use crate::core::volumes::AttachRequest;
use crate::error::Result;
use crate::model::{Instance, VolumeAttachment};

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/servers/{id}/os-volume_attachments",
            get(list).post(create),
        )
        .route(
            "/servers/{id}/os-volume_attachments/{volume_id}",
            get(show).put(update).delete(delete),
        )
}

/// One attachment as Nova shows it at the request's microversion.
pub fn view(ctx: &Ctx, i: &Instance, a: &VolumeAttachment) -> Value {
    let mut o = json!({"serverId": i.uuid, "volumeId": a.volume_id, "device": a.device});
    if !ctx.at(89) {
        o["id"] = json!(a.volume_id);
    }
    if ctx.at(70) {
        o["tag"] = json!(a.tag);
    }
    if ctx.at(79) {
        o["delete_on_termination"] = json!(a.delete_on_termination);
    }
    if ctx.at(89) {
        o["attachment_id"] = json!(a.attachment_id);
        o["bdm_uuid"] = json!(a.id);
    }
    o
}

async fn list(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let offset = last(&pairs, "offset")
        .map(|o| query_uint("offset", o))
        .transpose()?
        .unwrap_or(0);
    let limit = last(&pairs, "limit")
        .map(|l| query_uint("limit", l))
        .transpose()?;
    let (i, all) = api.svc.volume_attachments(&ctx.auth, &id).await?;
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|a| view(&ctx, &i, a))
        .collect();
    Ok(Json(json!({"volumeAttachments": items})).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path((id, volume_id)): Path<(String, String)>,
) -> Result<Response> {
    let (i, a) = api
        .svc
        .volume_attachment(&ctx.auth, &id, &volume_id)
        .await?;
    Ok(Json(json!({"volumeAttachment": view(&ctx, &i, &a)})).into_response())
}

fn body_object(body: &Value) -> Result<&serde_json::Map<String, Value>> {
    let Some(o) = body.as_object() else {
        return Err(v::invalid(
            "body",
            body,
            format!("{body} is not of type 'object'"),
        ));
    };
    v::only(o, &["volumeAttachment"])?;
    let Some(a) = o.get("volumeAttachment") else {
        return Err(v::invalid(
            "body",
            body,
            "'volumeAttachment' is a required property",
        ));
    };
    a.as_object().ok_or_else(|| {
        v::invalid(
            "volumeAttachment",
            a,
            format!("{a} is not of type 'object'"),
        )
    })
}

fn volume_uuid(a: &serde_json::Map<String, Value>, field: &str) -> Result<String> {
    match a.get(field) {
        Some(Value::String(s)) if v::is_uuid(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err(v::invalid(
            field,
            &json!(s),
            format!("'{s}' is not a 'uuid'"),
        )),
        Some(other) => Err(v::invalid(
            field,
            other,
            format!("{other} is not of type 'string'"),
        )),
        None => Err(v::invalid(
            "volumeAttachment",
            &json!(a),
            format!("'{field}' is a required property"),
        )),
    }
}

/// Nova's device pattern (a hint only: the next free `/dev/vdX` is used).
fn check_device(a: &serde_json::Map<String, Value>) -> Result<()> {
    match a.get("device") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(d)) => {
            let ok = d
                .strip_prefix("/dev/")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
            if ok {
                Ok(())
            } else {
                Err(v::invalid(
                    "device",
                    &json!(d),
                    format!(
                        "'{d}' does not match '(^/dev/x{{0,1}}[a-z]{{0,1}}d{{0,1}})([a-z]+)[0-9]*$'"
                    ),
                ))
            }
        }
        Some(other) => Err(v::invalid(
            "device",
            other,
            format!("{other} is not of type 'string', 'null'"),
        )),
    }
}

/// Nova's `volumes.create_volume_attachment` schema (v2.49 `tag`, v2.79
/// `delete_on_termination`).
pub fn attach_request(mv_minor: u16, body: &Value) -> Result<AttachRequest> {
    let a = body_object(body)?;
    let mut allowed = vec!["volumeId", "device"];
    if mv_minor >= 49 {
        allowed.push("tag");
    }
    if mv_minor >= 79 {
        allowed.push("delete_on_termination");
    }
    v::only(a, &allowed)?;
    let volume_id = volume_uuid(a, "volumeId")?;
    check_device(a)?;
    let tag = a.get("tag").map(|t| v::tag("tag", t)).transpose()?;
    let delete_on_termination = a
        .get("delete_on_termination")
        .map(|d| v::boolean("delete_on_termination", d))
        .transpose()?
        .unwrap_or(false);
    Ok(AttachRequest {
        volume_id,
        tag,
        delete_on_termination,
    })
}

async fn create(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let req = attach_request(ctx.mv.minor, &body)?;
    let (i, a) = api
        .svc
        .attach_volume(&ctx.auth, &id, req, &ctx.token, &ctx.request_id)
        .await?;
    Ok(Json(json!({"volumeAttachment": view(&ctx, &i, &a)})).into_response())
}

/// `PUT`: `volumeId` (the same volume, or another for a swap) and, from 2.85,
/// `delete_on_termination`.
async fn update(
    State(api): St,
    ctx: Ctx,
    Path((id, volume_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let a = body_object(&body)?;
    let mut allowed = vec!["volumeId"];
    if ctx.at(85) {
        allowed.extend(["id", "serverId", "device", "tag", "delete_on_termination"]);
    }
    v::only(a, &allowed)?;
    let new_volume = volume_uuid(a, "volumeId")?;
    let dot = a
        .get("delete_on_termination")
        .map(|d| v::boolean("delete_on_termination", d))
        .transpose()?;
    api.svc
        .update_volume_attachment(&ctx.auth, &id, &volume_id, &new_volume, dot)
        .await?;
    Ok(accepted())
}

async fn delete(
    State(api): St,
    ctx: Ctx,
    Path((id, volume_id)): Path<(String, String)>,
) -> Result<Response> {
    api.svc
        .detach_volume(&ctx.auth, &id, &volume_id, &ctx.token, &ctx.request_id)
        .await?;
    Ok(accepted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_novas_schema() {
        let vol = "3df201cf-2451-44f2-8d25-a4ca826fc1f3";
        let r = attach_request(
            72,
            &json!({"volumeAttachment": {"volumeId": vol, "device": "/dev/vdb", "tag": "data"}}),
        )
        .expect("valid");
        assert_eq!(r.volume_id, vol);
        assert_eq!(r.tag.as_deref(), Some("data"));
        assert!(!r.delete_on_termination);
        let e = attach_request(
            48,
            &json!({"volumeAttachment": {"volumeId": vol, "tag": "t"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'tag' was unexpected"), "{e}");
        let e = attach_request(
            72,
            &json!({"volumeAttachment": {"volumeId": vol, "delete_on_termination": true}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("was unexpected"), "{e}");
        assert!(
            attach_request(
                79,
                &json!({"volumeAttachment": {"volumeId": vol, "delete_on_termination": true}})
            )
            .expect("2.79")
            .delete_on_termination
        );
        assert!(attach_request(2, &json!({"volumeAttachment": {"volumeId": "x"}})).is_err());
        assert!(attach_request(2, &json!({"volumeAttachment": {}})).is_err());
        assert!(
            attach_request(
                2,
                &json!({"volumeAttachment": {"volumeId": vol, "device": "vdb"}})
            )
            .is_err()
        );
        assert!(
            attach_request(
                2,
                &json!({"volumeAttachment": {"volumeId": vol, "device": null}})
            )
            .is_ok()
        );
    }
}
