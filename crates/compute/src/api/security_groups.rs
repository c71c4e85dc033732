//! Nova's security-group proxy API (2.1-2.35; 404 from 2.36): `/os-security-groups` (list
//! with offset/limit/all_tenants, show, create, update, delete), `/os-security-group-rules`
//! (create, delete), and at every version `GET /servers/{id}/os-security-groups` and the
//! `addSecurityGroup` / `removeSecurityGroup` actions. Bodies are checked with Nova's schemas;
//! the rest is [`crate::core::security_groups`].

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::keypairs::{last, query_uint};
use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, query_pairs};
use crate::core::security_groups::{Caller, RuleRequest};
use crate::error::{ComputeError, Result};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-security-groups", get(list).post(create).delete(no_id))
        .route(
            "/os-security-groups/{id}",
            get(show).put(update).delete(remove),
        )
        .route("/os-security-group-rules", post(rule_create).delete(no_id))
        .route("/os-security-group-rules/{id}", delete(rule_delete))
        .route("/servers/{id}/os-security-groups", get(server_groups))
}

fn caller(ctx: &Ctx) -> Caller<'_> {
    Caller {
        auth: &ctx.auth,
        token: &ctx.token,
        request_id: &ctx.request_id,
    }
}

/// `DELETE` without an id: no such resource, as Nova's router.
async fn no_id() -> ComputeError {
    ComputeError::NotFound("The resource could not be found.".into())
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    ctx.proxy_api()?;
    let pairs = query_pairs(q.as_deref());
    let offset = last(&pairs, "offset")
        .map(|o| query_uint("offset", o))
        .transpose()?
        .unwrap_or(0);
    let max = api.svc.cfg.max_limit;
    // Nova's `limited`: no limit (or 0) is the maximum
    let limit = last(&pairs, "limit")
        .map(|l| query_uint("limit", l))
        .transpose()?
        .filter(|l| *l > 0)
        .map_or(max, |l| l.min(max));
    let all_tenants = pairs.iter().any(|(k, _)| k == "all_tenants");
    let groups = api
        .svc
        .sg_list(&caller(&ctx), all_tenants, offset, Some(limit))
        .await?;
    Ok(Json(json!({"security_groups": groups})).into_response())
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.proxy_api()?;
    let g = api.svc.sg_show(&caller(&ctx), &id).await?;
    Ok(Json(json!({"security_group": g})).into_response())
}

/// Nova's create/update schema: `security_group` with string `name` and `description` of
/// at most 255 characters (other keys ignored).
fn group_body(body: &Value) -> Result<(String, String)> {
    let Some(g) = body.get("security_group") else {
        return Err(ComputeError::bad("'security_group' is a required property"));
    };
    let Some(o) = g.as_object() else {
        return Err(v::invalid(
            "security_group",
            g,
            format!("{g} is not of type 'object'"),
        ));
    };
    let field = |k: &str| -> Result<String> {
        let x = o.get(k).ok_or_else(|| {
            v::invalid("security_group", g, format!("'{k}' is a required property"))
        })?;
        Ok(v::string(k, x, 255, false)?.unwrap_or_default())
    };
    Ok((field("name")?, field("description")?))
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    ctx.proxy_api()?;
    let (name, description) = group_body(&body)?;
    let g = api
        .svc
        .sg_create(&caller(&ctx), &name, &description)
        .await?;
    Ok(Json(json!({"security_group": g})).into_response())
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    ctx.proxy_api()?;
    let (name, description) = group_body(&body)?;
    let g = api
        .svc
        .sg_update(&caller(&ctx), &id, &name, &description)
        .await?;
    Ok(Json(json!({"security_group": g})).into_response())
}

async fn remove(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.proxy_api()?;
    api.svc.sg_delete(&caller(&ctx), &id).await?;
    Ok(accepted())
}

/// A uuid-formatted string (`{'type': 'string', 'format': 'uuid'}`), or null when `nullable`.
fn uuid_field(field: &str, x: &Value, nullable: bool) -> Result<Option<String>> {
    match x {
        Value::Null if nullable => Ok(None),
        Value::String(s) if v::is_uuid(s) => Ok(Some(s.clone())),
        Value::String(s) => Err(v::invalid(field, x, format!("'{s}' is not a 'uuid'"))),
        other => Err(v::invalid(
            field,
            other,
            if nullable {
                format!("{other} is not of type 'string', 'null'")
            } else {
                format!("{other} is not of type 'string'")
            },
        )),
    }
}

async fn rule_create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    ctx.proxy_api()?;
    let Some(r) = body.get("security_group_rule") else {
        return Err(ComputeError::bad(
            "'security_group_rule' is a required property",
        ));
    };
    let Some(o) = r.as_object() else {
        return Err(v::invalid(
            "security_group_rule",
            r,
            format!("{r} is not of type 'object'"),
        ));
    };
    let group_id = match o.get("group_id") {
        Some(g) => uuid_field("group_id", g, true)?,
        None => None,
    };
    let parent_group_id = match o.get("parent_group_id") {
        Some(p) => uuid_field("parent_group_id", p, false)?.unwrap_or_default(),
        None => {
            return Err(v::invalid(
                "security_group_rule",
                r,
                "'parent_group_id' is a required property",
            ));
        }
    };
    let get = |k: &str| o.get(k).cloned();
    let req = RuleRequest {
        parent_group_id,
        group_id,
        ip_protocol: get("ip_protocol"),
        from_port: get("from_port"),
        to_port: get("to_port"),
        cidr: get("cidr"),
    };
    let rule = api.svc.sg_rule_create(&caller(&ctx), &req).await?;
    Ok(Json(json!({"security_group_rule": rule})).into_response())
}

async fn rule_delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.proxy_api()?;
    api.svc.sg_rule_delete(&caller(&ctx), &id).await?;
    Ok(accepted())
}

async fn server_groups(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let groups = api.svc.server_security_groups(&caller(&ctx), &id).await?;
    Ok(Json(json!({"security_groups": groups})).into_response())
}

/// `addSecurityGroup` / `removeSecurityGroup` (`{"name": ...}`, 202).
pub(super) async fn server_action(
    api: &Api,
    ctx: &Ctx,
    id: &str,
    action: &str,
    arg: &Value,
) -> Result<Response> {
    let empty = Map::new();
    let o = match arg {
        Value::Object(o) => o,
        Value::Null => &empty,
        other => {
            return Err(v::invalid(
                action,
                other,
                format!("{other} is not of type 'object'"),
            ));
        }
    };
    v::only(o, &["name"])?;
    let name = match o.get("name") {
        Some(Value::String(s)) if s.is_empty() => {
            return Err(v::invalid("name", &json!(s), "'' is too short"));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(v::invalid(
                "name",
                other,
                format!("{other} is not of type 'string'"),
            ));
        }
        None => {
            return Err(v::invalid(action, arg, "'name' is a required property"));
        }
    };
    api.svc
        .change_server_security_group(&caller(ctx), id, &name, action == "addSecurityGroup")
        .await?;
    Ok(accepted())
}
