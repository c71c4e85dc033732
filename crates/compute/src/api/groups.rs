//! `/os-server-groups`: list (`all_projects`, limit/offset), show, create, delete. Below 2.64
//! a group has `policies: [one]` and an empty `metadata`; from 2.64 `policy` and `rules`.
//! 2.13 adds `project_id` and `user_id`; 2.15 the soft policies.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::keypairs::{last, query_uint};
use super::validate as v;
use super::{Api, Ctx, JsonBody, St, no_content, query_pairs};
use crate::core::groups::MAX_SERVER_PER_HOST;
use crate::error::{ComputeError, Result};
use crate::model::ServerGroup;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-server-groups", get(list).post(create))
        .route("/os-server-groups/{id}", get(show).delete(delete))
}

/// A JSON value as Python's `repr` shows it (jsonschema's messages).
pub(super) fn py(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py).collect::<Vec<_>>().join(", ")),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, x)| format!("'{k}': {}", py(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Number(n) => n.to_string(),
    }
}

pub fn render(ctx: &Ctx, g: &ServerGroup) -> Value {
    let mut v = json!({"id": g.uuid, "name": g.name, "members": g.members});
    if ctx.at(64) {
        v["policy"] = json!(g.policy);
        v["rules"] = json!(g.rules);
    } else {
        v["policies"] = json!([g.policy]);
        v["metadata"] = json!({});
    }
    if ctx.at(13) {
        v["project_id"] = json!(g.project_id);
        v["user_id"] = json!(g.user_id);
    }
    v
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let all_projects = pairs.iter().any(|(k, _)| k == "all_projects");
    let offset = last(&pairs, "offset")
        .map(|o| query_uint("offset", o))
        .transpose()?
        .unwrap_or(0);
    let limit = last(&pairs, "limit")
        .map(|l| query_uint("limit", l))
        .transpose()?;
    let groups = api
        .svc
        .groups(&ctx.auth, all_projects, offset, limit)
        .await?;
    let items: Vec<Value> = groups.iter().map(|g| render(&ctx, g)).collect();
    Ok(Json(json!({"server_groups": items})).into_response())
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let g = api.svc.group(&ctx.auth, &id).await?;
    Ok(Json(json!({"server_group": render(&ctx, &g)})).into_response())
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    api.svc.delete_group(&ctx.auth, &id).await?;
    Ok(no_content())
}

/// The policies a microversion accepts.
fn policy_enum(ctx: &Ctx) -> &'static [&'static str] {
    if ctx.at(15) {
        &[
            "anti-affinity",
            "affinity",
            "soft-anti-affinity",
            "soft-affinity",
        ]
    } else {
        &["anti-affinity", "affinity"]
    }
}

fn enum_message(x: &Value, allowed: &[&str]) -> String {
    format!(
        "{} is not one of [{}]",
        py(x),
        allowed
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The body's policy and rules per microversion (Nova's schemas).
fn policy_and_rules(
    ctx: &Ctx,
    body: &Value,
    g: &serde_json::Map<String, Value>,
) -> Result<(String, BTreeMap<String, Value>)> {
    let required = |k: &str| {
        v::invalid(
            "server_group",
            &body["server_group"],
            format!("'{k}' is a required property"),
        )
    };
    let allowed = policy_enum(ctx);
    if !ctx.at(64) {
        let p = g.get("policies").ok_or_else(|| required("policies"))?;
        let Some(items) = p.as_array() else {
            return Err(v::invalid(
                "policies",
                p,
                format!("{} is not of type 'array'", py(p)),
            ));
        };
        if items.is_empty() {
            return Err(v::invalid("policies", p, "[] is too short"));
        }
        if items.len() > 1 {
            return Err(v::invalid("policies", p, format!("{} is too long", py(p))));
        }
        let first = &items[0];
        return match first.as_str() {
            Some(s) if allowed.contains(&s) => Ok((s.to_string(), BTreeMap::new())),
            Some(_) => Err(v::invalid(
                "policies/0",
                first,
                enum_message(first, allowed),
            )),
            None => Err(v::invalid(
                "policies/0",
                first,
                format!("{} is not of type 'string'", py(first)),
            )),
        };
    }
    let p = g.get("policy").ok_or_else(|| required("policy"))?;
    let policy = match p.as_str() {
        Some(s) if allowed.contains(&s) => s.to_string(),
        Some(_) => return Err(v::invalid("policy", p, enum_message(p, allowed))),
        None => {
            return Err(v::invalid(
                "policy",
                p,
                format!("{} is not of type 'string'", py(p)),
            ));
        }
    };
    let mut rules = BTreeMap::new();
    if let Some(r) = g.get("rules") {
        let Some(o) = r.as_object() else {
            return Err(v::invalid(
                "rules",
                r,
                format!("{} is not of type 'object'", py(r)),
            ));
        };
        v::only(o, &[MAX_SERVER_PER_HOST])?;
        if let Some(m) = o.get(MAX_SERVER_PER_HOST) {
            let field = format!("rules/{MAX_SERVER_PER_HOST}");
            if let Value::String(s) = m
                && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(v::invalid(
                    &field,
                    m,
                    format!("{} does not match '^[0-9]*$'", py(m)),
                ));
            }
            let n = v::positive_int(&field, m, 1)?;
            rules.insert(MAX_SERVER_PER_HOST.to_string(), json!(n));
        }
    }
    if policy != "anti-affinity" && !rules.is_empty() {
        return Err(ComputeError::bad(
            "Only anti-affinity policy supports rules.",
        ));
    }
    Ok((policy, rules))
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    if let Some(o) = body.as_object() {
        v::only(o, &["server_group"])?;
    }
    let g = v::object(&body, "server_group")?;
    let keys: &[&str] = if ctx.at(64) {
        &["name", "policy", "rules"]
    } else {
        &["name", "policies"]
    };
    v::only(g, keys)?;
    let name = v::name(
        "name",
        g.get("name").ok_or_else(|| {
            v::invalid(
                "server_group",
                &body["server_group"],
                "'name' is a required property",
            )
        })?,
    )?;
    let (policy, rules) = policy_and_rules(&ctx, &body, g)?;
    let made = api.svc.create_group(&ctx.auth, name, policy, rules).await?;
    Ok(Json(json!({"server_group": render(&ctx, &made)})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py(&json!(["a", "b"])), "['a', 'b']");
        assert_eq!(py(&json!("x")), "'x'");
        assert_eq!(py(&json!(true)), "True");
        assert_eq!(py(&json!({"k": 1})), "{'k': 1}");
    }
}
