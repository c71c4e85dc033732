//! `/os-keypairs`: list (2.10 `user_id`, 2.35 limit/marker), show, create (generate or
//! import; 2.2 `type`, 2.10 `user_id`), delete.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, no_content, query_get, query_pairs, render};
use crate::core::keypairs::{CreateKeypair, SSH, X509};
use crate::error::{ComputeError, Result};
use crate::model::Keypair;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/os-keypairs", get(list).post(create))
        .route("/os-keypairs/{name}", get(show).delete(delete))
}

/// The last value of a query parameter (webob's `GET[key]`).
pub(super) fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A non-negative integer query parameter (Nova's `non_negative_integer`).
pub(super) fn query_uint(name: &str, value: &str) -> Result<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ComputeError::bad(format!(
            "Invalid input for query parameters {name}. Value: {value}. '{value}' does not match '^[0-9]*$'"
        )));
    }
    value.parse().map_err(|_| {
        ComputeError::bad(format!(
            "Invalid input for query parameters {name}. Value: {value}. {value} is too large"
        ))
    })
}

/// The owner asked for with `?user_id=` (2.10+; the first value, as Nova).
fn user_param(ctx: &Ctx, pairs: &[(String, String)]) -> Option<String> {
    if !ctx.at(10) {
        return None;
    }
    query_get(pairs, "user_id")
}

/// The key pair's short form (list, create).
fn brief(ctx: &Ctx, k: &Keypair) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if ctx.at(2) {
        v["type"] = json!(k.key_type);
    }
    v
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let user = user_param(&ctx, &pairs);
    let max = api.svc.cfg.max_limit;
    let (limit, marker) = if ctx.at(35) {
        let limit = match last(&pairs, "limit") {
            Some(l) => query_uint("limit", l)?.min(max),
            None => max,
        };
        (Some(limit), last(&pairs, "marker").map(String::from))
    } else {
        (None, None)
    };
    let keys = api
        .svc
        .keypairs(&ctx.auth, user.as_deref(), limit, marker.as_deref())
        .await?;
    let items: Vec<Value> = keys
        .iter()
        .map(|k| json!({"keypair": brief(&ctx, k)}))
        .collect();
    let mut body = json!({"keypairs": items});
    if let Some(l) = limit
        && l > 0
        && keys.len() == l
        && let Some(k) = keys.last()
    {
        let mut qs: Vec<(String, String)> =
            pairs.into_iter().filter(|(n, _)| n != "marker").collect();
        qs.push(("marker".into(), k.name.clone()));
        qs.sort();
        let enc = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(qs)
            .finish();
        body["keypairs_links"] =
            json!([{"rel": "next", "href": format!("{}/os-keypairs?{enc}", ctx.base)}]);
    }
    Ok(Json(body).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let user = user_param(&ctx, &pairs);
    let k = api.svc.keypair(&ctx.auth, &name, user.as_deref()).await?;
    let mut v = brief(&ctx, &k);
    v["user_id"] = json!(k.user_id);
    v["created_at"] = json!(render::naive(&k.created_at));
    v["updated_at"] = Value::Null;
    v["deleted_at"] = Value::Null;
    v["deleted"] = json!(false);
    v["id"] = json!(k.id);
    Ok(Json(json!({"keypair": v})).into_response())
}

/// Nova's keypair name: `name` rules, then `^[_\- a-zA-Z0-9]+$`.
fn keypair_name(v: &Value) -> Result<String> {
    let name = v::name("name", v)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '))
    {
        return Err(v::invalid(
            "name",
            v,
            format!("'{name}' does not match '^[_\\\\- a-zA-Z0-9]+$'"),
        ));
    }
    Ok(name)
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    if let Some(o) = body.as_object() {
        v::only(o, &["keypair"])?;
    }
    let k = v::object(&body, "keypair")?;
    let mut allowed = vec!["name", "public_key"];
    if ctx.at(2) {
        allowed.push("type");
    }
    if ctx.at(10) {
        allowed.push("user_id");
    }
    v::only(k, &allowed)?;
    let name = keypair_name(k.get("name").ok_or_else(|| {
        v::invalid("keypair", &body["keypair"], "'name' is a required property")
    })?)?;
    let key_type = match k.get("type") {
        None => SSH.to_string(),
        Some(Value::String(t)) if t == SSH || t == X509 => t.clone(),
        Some(other) => {
            let shown = match other {
                Value::String(t) => format!("'{t}'"),
                x => x.to_string(),
            };
            return Err(v::invalid(
                "type",
                other,
                format!("{shown} is not one of ['ssh', 'x509']"),
            ));
        }
    };
    // No length bound.
    let public_key = match k.get("public_key") {
        Some(x) => v::string("public_key", x, usize::MAX, false)?,
        None => None,
    };
    // No length bound.
    let user_id = match k.get("user_id") {
        Some(x) => v::string("user_id", x, usize::MAX, false)?,
        None => None,
    };
    let (made, private) = api
        .svc
        .create_keypair(
            &ctx.auth,
            CreateKeypair {
                name,
                key_type,
                public_key,
                user_id,
            },
        )
        .await?;
    let mut v = brief(&ctx, &made);
    v["user_id"] = json!(made.user_id);
    if let Some(p) = private {
        v["private_key"] = json!(p);
    }
    let status = if ctx.at(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"keypair": v}))).into_response())
}

async fn delete(
    State(api): St,
    ctx: Ctx,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let user = user_param(&ctx, &pairs);
    api.svc
        .delete_keypair(&ctx.auth, &name, user.as_deref())
        .await?;
    Ok(if ctx.at(2) { no_content() } else { accepted() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_names_as_nova() {
        assert_eq!(
            keypair_name(&json!("my key_1-a")).expect("ok"),
            "my key_1-a"
        );
        for bad in ["", " lead", "trail ", "a/b", "a.b", "a@b", "ключ"] {
            assert!(keypair_name(&json!(bad)).is_err(), "{bad}");
        }
        assert!(keypair_name(&json!("a".repeat(255))).is_ok());
        assert!(keypair_name(&json!("a".repeat(256))).is_err());
        assert!(keypair_name(&json!(5)).is_err());
    }

    #[test]
    fn non_negative_query_ints() {
        assert_eq!(query_uint("limit", "0").expect("0"), 0);
        assert_eq!(query_uint("limit", "12").expect("12"), 12);
        assert!(query_uint("limit", "-1").is_err());
        assert!(query_uint("limit", "x").is_err());
        assert!(query_uint("limit", "").is_err());
    }
}
