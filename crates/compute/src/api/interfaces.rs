//! `/servers/{id}/os-interface`: list, show, attach (200 with the attachment, as Nova) and
//! detach (202) a server's port interfaces, with Nova's schema (`tag` from 2.49) and views
//! (`tag` from 2.70).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted};
use crate::core::interfaces::{attachment_view, tag_of};
use crate::error::Result;
use crate::model::Instance;
use crate::neutron::Requested;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/servers/{id}/os-interface", get(list).post(create))
        .route(
            "/servers/{id}/os-interface/{port_id}",
            get(show).delete(delete),
        )
}

/// The attachment of a port, with its tag from 2.70.
fn view(ctx: &Ctx, i: &Instance, port: &Value) -> Value {
    let port_id = port["id"].as_str().unwrap_or_default();
    attachment_view(port, ctx.at(70).then(|| tag_of(i, port_id)))
}

async fn list(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let (i, ports) = api
        .svc
        .interfaces(&ctx.auth, &id, &ctx.token, &ctx.request_id)
        .await?;
    let items: Vec<Value> = ports.iter().map(|p| view(&ctx, &i, p)).collect();
    Ok(Json(json!({"interfaceAttachments": items})).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path((id, port_id)): Path<(String, String)>,
) -> Result<Response> {
    let (i, port) = api
        .svc
        .interface(&ctx.auth, &id, &port_id, &ctx.token, &ctx.request_id)
        .await?;
    Ok(Json(json!({"interfaceAttachment": view(&ctx, &i, &port)})).into_response())
}

/// Nova's `attach_interfaces.create` schema (`create_v249`, with `tag`, from 2.49).
fn attach_request(with_tag: bool, body: &Value) -> Result<Requested> {
    let Some(o) = body.as_object() else {
        return Err(v::invalid(
            "body",
            body,
            format!("{body} is not of type 'object'"),
        ));
    };
    v::only(o, &["interfaceAttachment"])?;
    let Some(a) = o.get("interfaceAttachment") else {
        return Ok(Requested::default());
    };
    let Some(a) = a.as_object() else {
        return Err(v::invalid(
            "interfaceAttachment",
            a,
            format!("{a} is not of type 'object'"),
        ));
    };
    let mut allowed = vec!["net_id", "port_id", "fixed_ips"];
    if with_tag {
        allowed.push("tag");
    }
    v::only(a, &allowed)?;
    let uuid = |field: &str| -> Result<Option<String>> {
        match a.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if v::is_uuid(s) => Ok(Some(s.clone())),
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
        }
    };
    let network_id = uuid("net_id")?;
    let port_id = uuid("port_id")?;
    let fixed_ip = match a.get("fixed_ips") {
        None => None,
        Some(Value::Array(items)) => {
            let [item] = items.as_slice() else {
                let why = if items.is_empty() {
                    "[] is too short"
                } else {
                    "is too long"
                };
                return Err(v::invalid("fixed_ips", &json!(items), why));
            };
            let Some(ip) = item.as_object() else {
                return Err(v::invalid(
                    "0",
                    item,
                    format!("{item} is not of type 'object'"),
                ));
            };
            v::only(ip, &["ip_address"])?;
            match ip.get("ip_address") {
                Some(Value::String(s)) if s.parse::<std::net::IpAddr>().is_ok() => Some(s.clone()),
                Some(other) => {
                    return Err(v::invalid(
                        "ip_address",
                        other,
                        format!("{other} is not valid under any of the given schemas"),
                    ));
                }
                None => {
                    return Err(v::invalid("0", item, "'ip_address' is a required property"));
                }
            }
        }
        Some(other) => {
            return Err(v::invalid(
                "fixed_ips",
                other,
                format!("{other} is not of type 'array'"),
            ));
        }
    };
    let tag = a.get("tag").map(|t| v::tag("tag", t)).transpose()?;
    Ok(Requested {
        network_id,
        port_id,
        fixed_ip,
        tag,
    })
}

async fn create(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let req = attach_request(ctx.at(49), &body)?;
    let (i, port) = api
        .svc
        .attach_interface(&ctx.auth, &id, req, &ctx.token, &ctx.request_id)
        .await?;
    Ok(Json(json!({"interfaceAttachment": view(&ctx, &i, &port)})).into_response())
}

async fn delete(
    State(api): St,
    ctx: Ctx,
    Path((id, port_id)): Path<(String, String)>,
) -> Result<Response> {
    api.svc
        .detach_interface(&ctx.auth, &id, &port_id, &ctx.token, &ctx.request_id)
        .await?;
    Ok(accepted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<Requested>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(r) => panic!("accepted: {r:?}"),
        }
    }

    #[test]
    fn bodies_follow_novas_schema() {
        let net = "3df201cf-2451-44f2-8d25-a4ca826fc1f3";
        let r = attach_request(
            true,
            &json!({"interfaceAttachment": {"net_id": net,
                "fixed_ips": [{"ip_address": "10.0.0.9"}], "tag": "eth1"}}),
        )
        .expect("valid");
        assert_eq!(r.network_id.as_deref(), Some(net));
        assert_eq!(r.fixed_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(r.tag.as_deref(), Some("eth1"));
        assert_eq!(
            attach_request(false, &json!({})).expect("no body is fine"),
            Requested::default()
        );
        assert!(
            err(attach_request(
                false,
                &json!({"interfaceAttachment": {"net_id": net, "tag": "t"}})
            ))
            .contains("'tag' was unexpected")
        );
        assert!(
            err(attach_request(
                true,
                &json!({"interfaceAttachment": {"port_id": "nope"}})
            ))
            .contains("'nope' is not a 'uuid'")
        );
        assert!(
            err(attach_request(
                true,
                &json!({"interfaceAttachment": {"net_id": net, "fixed_ips": []}})
            ))
            .contains("is too short")
        );
        assert!(
            err(attach_request(
                true,
                &json!({"interfaceAttachment": {"net_id": net,
                    "fixed_ips": [{"ip_address": "10.0.0.300"}]}})
            ))
            .contains("not valid under any of the given schemas")
        );
        assert!(
            err(attach_request(true, &json!({"interfaceAttachment": "x"})))
                .contains("is not of type 'object'")
        );
        assert!(
            err(attach_request(
                true,
                &json!({"interfaceAttachment": {}, "extra": 1})
            ))
            .contains("'extra' was unexpected")
        );
    }
}
