//! What changes a flavor after create: `PUT /flavors/{id}` (2.55 description), extra specs
//! (`/flavors/{id}/os-extra_specs[/{key}]`) and the projects of a private flavor
//! (`/flavors/{id}/os-flavor-access`, actions `addTenantAccess`/`removeTenantAccess`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, render};
use crate::error::{ComputeError, Result};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/flavors/{id}", put(update))
        .route("/flavors/{id}/action", post(action))
        .route("/flavors/{id}/os-flavor-access", get(access_list))
        .route(
            "/flavors/{id}/os-extra_specs",
            get(specs_index).post(specs_create),
        )
        .route(
            "/flavors/{id}/os-extra_specs/{key}",
            get(spec_show).put(spec_update).delete(spec_delete),
        )
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    ctx.need(55)?;
    if let Some(o) = body.as_object() {
        v::only(o, &["flavor"])?;
    }
    let f = v::object(&body, "flavor")?;
    v::only(f, &["description"])?;
    let d = f.get("description").ok_or_else(|| {
        v::invalid(
            "flavor",
            &body["flavor"],
            "'description' is a required property",
        )
    })?;
    let description = v::string("description", d, 65535, true)?;
    let flavor = api
        .svc
        .update_flavor_description(&ctx.auth, &id, description)
        .await?;
    let mut shown = render::flavor(&ctx, &flavor, true);
    if let Some(o) = shown.as_object_mut()
        && !api.svc.sees_extra_specs(&ctx.auth)
    {
        o.remove("extra_specs");
    }
    Ok(Json(json!({"flavor": shown})).into_response())
}

// ------------------------------------------------------------------ extra specs

const SPEC_KEY_RE: &str = "^[a-zA-Z0-9-_:. ]{1,255}$";

fn spec_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.chars().count() <= 255
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '))
}

/// Extra specs as Nova's schema takes them: keys `^[a-zA-Z0-9-_:. ]{1,255}$`, values strings
/// of at most 255 characters or numbers (stored as their text). `field` names the map in
/// messages (`extra_specs`, or None for the PUT body itself).
pub fn extra_specs(field: Option<&str>, m: &Value) -> Result<BTreeMap<String, String>> {
    let err = |path: Option<String>, value: &Value, reason: String| match path {
        Some(p) => v::invalid(&p, value, reason),
        None => ComputeError::bad(reason),
    };
    let Some(o) = m.as_object() else {
        return Err(err(
            field.map(String::from),
            m,
            format!("{m} is not of type 'object'"),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, val) in o {
        if !spec_key_ok(k) {
            return Err(err(
                field.map(String::from),
                m,
                format!("'{k}' does not match any of the regexes: '{SPEC_KEY_RE}'"),
            ));
        }
        let path = Some(match field {
            Some(f) => format!("{f}/{k}"),
            None => k.clone(),
        });
        let text = match val {
            Value::String(s) if s.chars().count() <= 255 => s.clone(),
            Value::String(s) => return Err(err(path, val, format!("'{s}' is too long"))),
            Value::Number(n) => {
                let s = n.to_string();
                if s.len() > 255 {
                    return Err(ComputeError::bad(
                        "extra_specs value has more than 255 characters.",
                    ));
                }
                s
            }
            other => {
                return Err(err(
                    path,
                    other,
                    format!("{other} is not of type 'string', 'number'"),
                ));
            }
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

async fn specs_index(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let specs = api.svc.extra_specs(&ctx.auth, &id).await?;
    Ok(Json(json!({"extra_specs": specs})).into_response())
}

async fn specs_create(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    if let Some(o) = body.as_object() {
        v::only(o, &["extra_specs"])?;
    }
    let m = body
        .get("extra_specs")
        .ok_or_else(|| ComputeError::bad("'extra_specs' is a required property".to_string()))?;
    let specs = extra_specs(Some("extra_specs"), m)?;
    api.svc
        .set_extra_specs(&ctx.auth, &id, &specs, false)
        .await?;
    // Nova answers with the body it was given.
    Ok(Json(json!({"extra_specs": m})).into_response())
}

async fn spec_show(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response> {
    let value = api.svc.extra_spec(&ctx.auth, &id, &key).await?;
    let mut m = Map::new();
    m.insert(key, json!(value));
    Ok(Json(Value::Object(m)).into_response())
}

async fn spec_update(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    match body.as_object().map(Map::len) {
        Some(0) => {
            return Err(ComputeError::bad(
                "{} does not have enough properties".to_string(),
            ));
        }
        Some(n) if n > 1 => {
            return Err(ComputeError::bad(format!(
                "{} has too many properties",
                super::groups::py(&body)
            )));
        }
        _ => {}
    }
    let specs = extra_specs(None, &body)?;
    if !specs.contains_key(&key) {
        return Err(ComputeError::bad("Request body and URI mismatch"));
    }
    api.svc
        .set_extra_specs(&ctx.auth, &id, &specs, true)
        .await?;
    Ok(Json(body).into_response())
}

async fn spec_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response> {
    api.svc.delete_extra_spec(&ctx.auth, &id, &key).await?;
    // Nova answers 200 with no body.
    Ok(http::StatusCode::OK.into_response())
}

// ------------------------------------------------------------------ access

fn access_body(flavorid: &str, projects: &[String]) -> Response {
    let items: Vec<Value> = projects
        .iter()
        .map(|p| json!({"flavor_id": flavorid, "tenant_id": p}))
        .collect();
    Json(json!({"flavor_access": items})).into_response()
}

async fn access_list(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let projects = api.svc.flavor_access(&ctx.auth, &id).await?;
    Ok(access_body(&id, &projects))
}

/// `{"tenant": "..."}` of an access action.
fn tenant(action: &str, arg: &Value) -> Result<String> {
    let Some(o) = arg.as_object() else {
        return Err(v::invalid(
            action,
            arg,
            format!("{arg} is not of type 'object'"),
        ));
    };
    v::only(o, &["tenant"])?;
    let t = o
        .get("tenant")
        .ok_or_else(|| v::invalid(action, arg, "'tenant' is a required property"))?;
    match t {
        Value::String(s) if s.is_empty() => Err(v::invalid("tenant", t, "'' is too short")),
        Value::String(s) if s.chars().count() > 255 => {
            Err(v::invalid("tenant", t, format!("'{s}' is too long")))
        }
        Value::String(s) => Ok(s.clone()),
        other => Err(v::invalid(
            "tenant",
            other,
            format!("{other} is not of type 'string'"),
        )),
    }
}

async fn action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let Some(obj) = body.as_object().filter(|o| o.len() == 1) else {
        return Err(ComputeError::bad(
            "Malformed request body: one action expected",
        ));
    };
    let Some((name, arg)) = obj.iter().next() else {
        return Err(ComputeError::bad("Malformed request body"));
    };
    let projects = match name.as_str() {
        "addTenantAccess" => {
            let t = tenant(name, arg)?;
            api.svc
                .add_flavor_access(&ctx.auth, &id, &t, ctx.at(7))
                .await?
        }
        "removeTenantAccess" => {
            let t = tenant(name, arg)?;
            api.svc.remove_flavor_access(&ctx.auth, &id, &t).await?
        }
        other => {
            return Err(ComputeError::bad(format!(
                "There is no such action: {other}"
            )));
        }
    };
    Ok(access_body(&id, &projects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_spec_keys_and_values() {
        let ok = extra_specs(
            Some("extra_specs"),
            &json!({"hw:cpu_policy": "dedicated", "quota:n": 5, "x.y z-1_": 1.5}),
        )
        .expect("valid");
        assert_eq!(ok["quota:n"], "5");
        assert_eq!(ok["x.y z-1_"], "1.5");
        let e = extra_specs(Some("extra_specs"), &json!({"a/b": "1"})).expect_err("bad key");
        assert!(
            e.to_string()
                .contains("'a/b' does not match any of the regexes")
        );
        assert!(extra_specs(Some("extra_specs"), &json!({"k": true})).is_err());
        assert!(extra_specs(Some("extra_specs"), &json!({"k": "v".repeat(256)})).is_err());
        assert!(extra_specs(Some("extra_specs"), &json!({"": "v"})).is_err());
        assert!(extra_specs(Some("extra_specs"), &json!(["k"])).is_err());
    }
}
