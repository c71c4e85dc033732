//! Remote consoles: `POST /servers/{id}/remote-consoles` (2.6+), the older
//! `os-get<Protocol>Console` actions (2.1-2.5, dispatched from `actions.rs`) and the admin's
//! `GET /os-console-auth-tokens/{token}`. Schemas and messages as nova's remote_consoles.py
//! and console_auth_tokens.py.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St};
use crate::console::ConsoleTarget;
use crate::core::ComputeService;
use crate::error::{ComputeError, Result};

const POLICY: &str = "os_compute_api:os-remote-consoles";
const TOKENS_POLICY: &str = "os_compute_api:os-console-auth-tokens";

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/servers/{id}/remote-consoles", post(create))
        .route("/os-console-auth-tokens/{token}", get(show_token))
}

/// Python's repr of a JSON scalar, as jsonschema's messages print it.
fn repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// A required enum member of `o` (jsonschema's `required` and `enum` messages).
fn member(parent: &str, o: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<String> {
    let Some(val) = o.get(key) else {
        return Err(v::invalid(
            parent,
            &Value::Object(o.clone()),
            format!("'{key}' is a required property"),
        ));
    };
    match val.as_str() {
        Some(s) if allowed.contains(&s) => Ok(s.to_string()),
        _ => {
            let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
            Err(v::invalid(
                key,
                val,
                format!("{} is not one of [{}]", repr(val), list.join(", ")),
            ))
        }
    }
}

/// nova's `create_v26` / `create_v28` schemas: `(protocol, type)`.
pub(crate) fn create_body(body: &Value, at_2_8: bool) -> Result<(String, String)> {
    let top = body
        .as_object()
        .ok_or_else(|| v::invalid("body", body, format!("{body} is not of type 'object'")))?;
    v::only(top, &["remote_console"])?;
    let rc = v::object(body, "remote_console")?;
    v::only(rc, &["protocol", "type"])?;
    let (protocols, types): (&[&str], &[&str]) = if at_2_8 {
        (
            &["vnc", "spice", "rdp", "serial", "mks"],
            &[
                "novnc",
                "xvpvnc",
                "rdp-html5",
                "spice-html5",
                "serial",
                "webmks",
            ],
        )
    } else {
        (
            &["vnc", "spice", "rdp", "serial"],
            &["novnc", "xvpvnc", "rdp-html5", "spice-html5", "serial"],
        )
    };
    let protocol = member("remote_console", rc, "protocol", protocols)?;
    let console_type = member("remote_console", rc, "type", types)?;
    Ok((protocol, console_type))
}

/// The protocol and allowed types of a legacy console action.
pub(crate) fn legacy_action(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match name {
        "os-getVNCConsole" => ("vnc", &["novnc", "xvpvnc"]),
        "os-getSPICEConsole" => ("spice", &["spice-html5"]),
        "os-getRDPConsole" => ("rdp", &["rdp-html5"]),
        "os-getSerialConsole" => ("serial", &["serial"]),
        _ => return None,
    })
}

/// nova's `get_vnc_console` (and siblings) schema: `{"type": <enum>}`, nothing else.
pub(crate) fn legacy_body(name: &str, arg: &Value, allowed: &[&str]) -> Result<String> {
    let o = arg
        .as_object()
        .ok_or_else(|| v::invalid(name, arg, format!("{arg} is not of type 'object'")))?;
    v::only(o, &["type"])?;
    member(name, o, "type", allowed)
}

/// `POST /servers/{id}/remote-consoles` (2.6+).
async fn create(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    ctx.need(6)?;
    let (protocol, console_type) = create_body(&body, ctx.at(8))?;
    let i = api.svc.instance_for(&ctx.auth, &id, POLICY).await?;
    let url = api
        .svc
        .get_console_url(
            &i,
            &protocol,
            &console_type,
            &ctx.request_id,
            ctx.public_base(),
        )
        .await?;
    Ok(Json(json!({"remote_console": {
        "protocol": protocol, "type": console_type, "url": url,
    }}))
    .into_response())
}

/// `POST /servers/{id}/action` with `os-getVNCConsole` & co (2.1-2.5; 404 from 2.6, where
/// Nova routes them no more).
pub(super) async fn legacy(
    api: &Api,
    ctx: &Ctx,
    id: &str,
    name: &str,
    arg: &Value,
) -> Result<Response> {
    let Some((protocol, allowed)) = legacy_action(name) else {
        return Err(ComputeError::bad(format!(
            "There is no such action: {name}"
        )));
    };
    if ctx.at(6) {
        return Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let console_type = legacy_body(name, arg, allowed)?;
    // Nova checks these actions' policy against the caller's own project, then loads the
    // instance as the caller may see it.
    api.svc
        .authorize(&ctx.auth, POLICY, &ComputeService::own_target(&ctx.auth))?;
    let i = api.svc.instance_for(&ctx.auth, id, POLICY).await?;
    let url = api
        .svc
        .get_console_url(
            &i,
            protocol,
            &console_type,
            &ctx.request_id,
            ctx.public_base(),
        )
        .await?;
    Ok(Json(json!({"console": {"type": console_type, "url": url}})).into_response())
}

/// `GET /os-console-auth-tokens/{token}` (admin): what a token opens, without using it.
/// Below 2.31 Nova shows only RDP tokens (401 for the others).
async fn show_token(State(api): St, ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    api.svc.authorize(
        &ctx.auth,
        TOKENS_POLICY,
        &ComputeService::own_target(&ctx.auth),
    )?;
    let a = api
        .svc
        .show_console_token(&token)
        .await?
        .ok_or_else(|| ComputeError::NotFound("Token not found".into()))?;
    if !ctx.at(31) && a.console_type != "rdp-html5" {
        return Err(ComputeError::Unauthorized(
            "The requested console type details are not accessible".into(),
        ));
    }
    // A unix socket shows as its path with no port.
    let (host, port) = ConsoleTarget::parse(&a.target)
        .map(|t| t.host_port())
        .unwrap_or((a.target.clone(), None));
    Ok(Json(json!({"console": {
        "instance_uuid": a.instance_uuid,
        "host": host,
        "port": port,
        "internal_access_path": Value::Null,
    }}))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.status().as_u16(), 400, "{e}");
                e.to_string()
            }
            Ok(x) => panic!("accepted: {x:?}"),
        }
    }

    #[test]
    fn create_body_follows_novas_schemas() {
        let ok = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
        assert_eq!(
            create_body(&ok, false).ok(),
            Some(("vnc".into(), "novnc".into()))
        );
        assert_eq!(
            err(create_body(
                &json!({"remote_console": {"protocol": "foo", "type": "novnc"}}),
                false
            )),
            "Invalid input for field/attribute protocol. Value: foo. 'foo' is not one of ['vnc', 'spice', 'rdp', 'serial']"
        );
        // mks arrives with 2.8.
        assert!(
            create_body(
                &json!({"remote_console": {"protocol": "mks", "type": "webmks"}}),
                false
            )
            .is_err()
        );
        assert!(
            create_body(
                &json!({"remote_console": {"protocol": "mks", "type": "webmks"}}),
                true
            )
            .is_ok()
        );
        assert_eq!(
            err(create_body(
                &json!({"remote_console": {"protocol": "vnc"}}),
                false
            )),
            "Invalid input for field/attribute remote_console. Value: {\"protocol\":\"vnc\"}. 'type' is a required property"
        );
        assert_eq!(
            err(create_body(
                &json!({"remote_console": {"protocol": "vnc", "type": 1}}),
                false
            )),
            "Invalid input for field/attribute type. Value: 1. 1 is not one of ['novnc', 'xvpvnc', 'rdp-html5', 'spice-html5', 'serial']"
        );
        assert!(
            err(create_body(
                &json!({"remote_console": {"protocol": "vnc", "type": "novnc", "x": 1}}),
                false
            ))
            .contains("Additional properties are not allowed ('x' was unexpected)")
        );
        assert!(
            err(create_body(&json!({"console": {}}), false)).contains("'console' was unexpected")
        );
        assert!(
            err(create_body(&json!({}), false)).contains("'remote_console' is a required property")
        );
    }

    #[test]
    fn legacy_bodies_follow_novas_schemas() {
        let (p, allowed) = legacy_action("os-getVNCConsole").expect("known");
        assert_eq!(p, "vnc");
        assert_eq!(
            legacy_body("os-getVNCConsole", &json!({"type": "novnc"}), allowed).ok(),
            Some("novnc".into())
        );
        assert_eq!(
            err(legacy_body(
                "os-getVNCConsole",
                &json!({"type": "spice-html5"}),
                allowed
            )),
            "Invalid input for field/attribute type. Value: spice-html5. 'spice-html5' is not one of ['novnc', 'xvpvnc']"
        );
        assert!(
            err(legacy_body("os-getVNCConsole", &json!({}), allowed))
                .contains("'type' is a required property")
        );
        assert!(
            err(legacy_body("os-getVNCConsole", &json!(null), allowed))
                .contains("is not of type 'object'")
        );
        assert!(legacy_action("os-getFooConsole").is_none());
    }
}
