//! `GET /servers/{id}/ips[/{network_label}]`: a server's addresses by network label, as
//! Nova's `ips` API shows them (only `version` and `addr`, unlike the server body).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::render::addresses;
use super::{Api, Ctx, St};
use crate::error::{ComputeError, Result};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/servers/{id}/ips", get(index))
        .route("/servers/{id}/ips/{label}", get(show))
}

/// `{label: [{version, addr}]}` from the server body's `addresses`.
fn by_label(addresses: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for (label, addrs) in addresses.as_object().into_iter().flatten() {
        let plain: Vec<Value> = addrs
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| json!({"version": a["version"], "addr": a["addr"]}))
            .collect();
        out.insert(label.clone(), Value::Array(plain));
    }
    out
}

async fn index(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:ips:index")
        .await?;
    Ok(Json(json!({"addresses": by_label(&addresses(&i))})).into_response())
}

async fn show(
    State(api): St,
    ctx: Ctx,
    Path((id, label)): Path<(String, String)>,
) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:ips:show")
        .await?;
    let mut all = by_label(&addresses(&i));
    let Some(addrs) = all.remove(&label) else {
        return Err(ComputeError::NotFound(
            "Instance is not a member of specified network".into(),
        ));
    };
    let mut out = Map::new();
    out.insert(label, addrs);
    Ok(Json(Value::Object(out)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_and_addr_per_label() {
        let body = json!({"private": [
            {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed",
             "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
            {"addr": "172.24.4.9", "version": 4, "OS-EXT-IPS:type": "floating",
             "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]});
        assert_eq!(
            Value::Object(by_label(&body)),
            json!({"private": [{"version": 4, "addr": "10.0.0.5"},
                               {"version": 4, "addr": "172.24.4.9"}]})
        );
        assert!(by_label(&json!({})).is_empty());
    }
}
