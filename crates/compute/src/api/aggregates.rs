//! `/os-aggregates`: host aggregates (admin only). List, create, show, update, delete, and
//! the `add_host`, `remove_host` and `set_metadata` actions; `uuid` from 2.41. Nova answers
//! 200 where 201/204/202 would be usual, and so does kumo.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, render};
use crate::core::aggregates::{AZ_KEY, AggregateUpdate};
use crate::error::{ComputeError, Result};
use crate::model::Aggregate;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-aggregates", get(list).post(create))
        .route("/os-aggregates/{id}", get(show).put(update).delete(delete))
        .route("/os-aggregates/{id}/action", post(action))
}

fn policy(name: &str) -> String {
    format!("os_compute_api:os-aggregates:{name}")
}

fn authorize(api: &Api, ctx: &Ctx, name: &str) -> Result<()> {
    api.svc.authorize(&ctx.auth, &policy(name), &json!({}))
}

/// Nova's `utils.validate_integer(id, 'id')`.
fn aggregate_id(id: &str) -> Result<i32> {
    id.trim()
        .parse::<i32>()
        .map_err(|_| ComputeError::bad("Invalid input received: id must be an integer"))
}

fn view(ctx: &Ctx, a: &Aggregate, with_members: bool) -> Value {
    let mut d = json!({
        "availability_zone": a.metadata.get(AZ_KEY),
        "created_at": render::naive(&a.created_at),
        "deleted": false,
        "deleted_at": null,
        "id": a.id,
        "name": a.name,
        "updated_at": a.updated_at.as_ref().map(render::naive),
    });
    if with_members {
        d["hosts"] = json!(a.hosts);
        d["metadata"] = json!(a.metadata);
    }
    if ctx.at(41) {
        d["uuid"] = json!(a.uuid);
    }
    d
}

fn one(ctx: &Ctx, a: &Aggregate) -> Response {
    Json(json!({"aggregate": view(ctx, a, true)})).into_response()
}

/// An availability zone name (Nova's `az_name`): 1-255 printable characters, no `:`, no
/// leading or trailing whitespace; or null.
fn zone_name(x: &Value) -> Result<Option<String>> {
    let s = match x {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        other => {
            return Err(v::invalid(
                "availability_zone",
                other,
                format!("{other} is not valid under any of the given schemas"),
            ));
        }
    };
    let bad = s.is_empty()
        || s.chars().count() > 255
        || s.trim() != s
        || s.chars().any(|c| c == ':' || c.is_control());
    if bad {
        return Err(v::invalid(
            "availability_zone",
            x,
            format!(
                "'{s}' is not valid under any of the given schemas: printable characters except :. Can not start or end with whitespace."
            ),
        ));
    }
    Ok(Some(s.clone()))
}

/// A name that may carry leading or trailing spaces (stripped), with at least one
/// non-space character.
fn loose_name(field: &str, x: &Value) -> Result<String> {
    let Some(s) = x.as_str() else {
        return Err(v::invalid(field, x, format!("{x} is not of type 'string'")));
    };
    if s.is_empty() {
        return Err(v::invalid(field, x, "'' is too short"));
    }
    if s.chars().count() > 255 {
        return Err(v::invalid(field, x, format!("'{s}' is too long")));
    }
    let t = s.trim();
    if t.is_empty() || t.chars().any(|c| c.is_control()) {
        return Err(v::invalid(
            field,
            x,
            format!(
                "'{s}' does not match the name pattern: printable characters with at least one non space character"
            ),
        ));
    }
    Ok(t.to_string())
}

/// Nova's `fqdn` host parameter.
fn host_name(x: &Value) -> Result<String> {
    let Some(s) = x.as_str() else {
        return Err(v::invalid(
            "host",
            x,
            format!("{x} is not of type 'string'"),
        ));
    };
    if s.is_empty() {
        return Err(v::invalid("host", x, "'' is too short"));
    }
    if s.chars().count() > 255 {
        return Err(v::invalid("host", x, format!("'{s}' is too long")));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(v::invalid(
            "host",
            x,
            format!("'{s}' does not match '^[a-zA-Z0-9-._]*$'"),
        ));
    }
    Ok(s.to_string())
}

/// `metadata_with_null`: keys `^[a-zA-Z0-9-_:. ]{1,255}$`, values strings up to 255 or
/// null (null removes the key).
fn metadata_with_null(x: &Value) -> Result<BTreeMap<String, Option<String>>> {
    let Some(o) = x.as_object() else {
        return Err(v::invalid(
            "metadata",
            x,
            format!("{x} is not of type 'object'"),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, val) in o {
        let key_ok = !k.is_empty()
            && k.chars().count() <= 255
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '));
        if !key_ok {
            return Err(v::invalid(
                "metadata",
                x,
                format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        let field = format!("metadata/{k}");
        match val {
            Value::Null => {
                out.insert(k.clone(), None);
            }
            Value::String(s) if s.chars().count() <= 255 => {
                out.insert(k.clone(), Some(s.clone()));
            }
            Value::String(s) => return Err(v::invalid(&field, val, format!("'{s}' is too long"))),
            other => {
                return Err(v::invalid(
                    &field,
                    other,
                    format!("{other} is not of type 'string', 'null'"),
                ));
            }
        }
    }
    Ok(out)
}

fn required(o: &Map<String, Value>, key: &str, parent: &Value) -> Result<Value> {
    o.get(key).cloned().ok_or_else(|| {
        ComputeError::bad(format!(
            "Invalid input for field/attribute {key}. Value: {parent}. '{key}' is a required property"
        ))
    })
}

async fn list(State(api): St, ctx: Ctx) -> Result<Response> {
    authorize(&api, &ctx, "index")?;
    let out: Vec<Value> = api
        .svc
        .aggregates()
        .await?
        .iter()
        .map(|a| view(&ctx, a, true))
        .collect();
    Ok(Json(json!({"aggregates": out})).into_response())
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    let o = body
        .as_object()
        .ok_or_else(|| v::invalid("body", &body, format!("{body} is not of type 'object'")))?;
    v::only(o, &["aggregate"])?;
    let agg = v::object(&body, "aggregate")?;
    v::only(agg, &["name", "availability_zone"])?;
    let agg_v = Value::Object(agg.clone());
    let name = v::name("name", &required(agg, "name", &agg_v)?)?;
    let zone = match agg.get("availability_zone") {
        Some(z) => zone_name(z)?,
        None => None,
    };
    authorize(&api, &ctx, "create")?;
    let a = api.svc.create_aggregate(&name, zone.as_deref()).await?;
    Ok(Json(json!({"aggregate": view(&ctx, &a, false)})).into_response())
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    authorize(&api, &ctx, "show")?;
    let id = aggregate_id(&id)?;
    let a = api.svc.aggregate(id).await?;
    Ok(one(&ctx, &a))
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let o = body
        .as_object()
        .ok_or_else(|| v::invalid("body", &body, format!("{body} is not of type 'object'")))?;
    v::only(o, &["aggregate"])?;
    let agg = v::object(&body, "aggregate")?;
    v::only(agg, &["name", "availability_zone"])?;
    if !agg.contains_key("name") && !agg.contains_key("availability_zone") {
        let agg_v = Value::Object(agg.clone());
        return Err(v::invalid(
            "aggregate",
            &agg_v,
            format!("{agg_v} is not valid under any of the given schemas"),
        ));
    }
    let up = AggregateUpdate {
        name: agg.get("name").map(|n| loose_name("name", n)).transpose()?,
        availability_zone: agg.get("availability_zone").map(zone_name).transpose()?,
    };
    authorize(&api, &ctx, "update")?;
    let id = aggregate_id(&id)?;
    let a = api.svc.update_aggregate(id, &up).await?;
    Ok(one(&ctx, &a))
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    authorize(&api, &ctx, "delete")?;
    let id = aggregate_id(&id)?;
    api.svc.delete_aggregate(id).await?;
    Ok(StatusCode::OK.into_response())
}

async fn action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let Some((name, arg)) = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(ComputeError::bad(
            "Malformed request body: one action expected",
        ));
    };
    let svc = &api.svc;
    let arg_obj = |key: &str| -> Result<&Map<String, Value>> { v::object(&body, key) };
    match name.as_str() {
        "add_host" | "remove_host" => {
            let o = arg_obj(name)?;
            v::only(o, &["host"])?;
            let host = host_name(&required(o, "host", arg)?)?;
            authorize(&api, &ctx, name)?;
            let id = aggregate_id(&id)?;
            let a = if name == "add_host" {
                svc.aggregate_add_host(id, &host, &ctx.request_id).await?
            } else {
                svc.aggregate_remove_host(id, &host, &ctx.request_id)
                    .await?
            };
            Ok(one(&ctx, &a))
        }
        "set_metadata" => {
            let o = arg_obj(name)?;
            v::only(o, &["metadata"])?;
            let md = metadata_with_null(&required(o, "metadata", arg)?)?;
            authorize(&api, &ctx, "set_metadata")?;
            let id = aggregate_id(&id)?;
            let a = svc.set_aggregate_metadata(id, &md).await?;
            Ok(one(&ctx, &a))
        }
        other => Err(ComputeError::bad(format!(
            "There is no such action: {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_nova_az_names() {
        assert_eq!(zone_name(&json!("az2")).unwrap().as_deref(), Some("az2"));
        assert_eq!(zone_name(&json!(null)).unwrap(), None);
        assert!(zone_name(&json!("a:b")).is_err());
        assert!(zone_name(&json!(" az")).is_err());
        assert!(zone_name(&json!("")).is_err());
        assert!(zone_name(&json!(3)).is_err());
    }

    #[test]
    fn metadata_null_removes_and_keys_are_checked() {
        let md = metadata_with_null(&json!({"ssd": "true", "old": null})).unwrap();
        assert_eq!(md["ssd"].as_deref(), Some("true"));
        assert_eq!(md["old"], None);
        assert!(metadata_with_null(&json!({"bad/key": "x"})).is_err());
        assert!(metadata_with_null(&json!({"k": 1})).is_err());
    }

    #[test]
    fn ids_and_hosts() {
        assert_eq!(aggregate_id("7").unwrap(), 7);
        assert!(aggregate_id("abc").is_err());
        assert!(host_name(&json!("fake-2")).is_ok());
        assert!(host_name(&json!("bad host")).is_err());
    }
}
