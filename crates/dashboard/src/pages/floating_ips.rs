//! Floating IPs: the project's addresses (with the instance and fixed IP each is on), allocate
//! one from an external network, associate it with an instance's port, disassociate, release.
//! All through the network API with the user's token, as `openstack floating ip ...` does.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Value, json};

use super::{flash_outcome, render, see_other, seg};
use crate::views::{Layout, Named};
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/floating-ips";

pub struct FloatingIpRow {
    pub id: String,
    pub address: String,
    pub status: String,
    pub network: String,
    /// The port it is on: (fixed IP, instance id, instance name); empty when free.
    pub fixed_ip: String,
    pub server_id: String,
    pub server_name: String,
}

#[derive(Template)]
#[template(path = "floating_ips.html")]
pub struct FloatingIpsPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub ips: Vec<FloatingIpRow>,
    /// External networks to allocate from.
    pub pools: Vec<Named>,
    /// Instance ports to associate with: id = port id, name = "instance (fixed IP)".
    pub targets: Vec<Named>,
}

/// The instance ports of the project, keyed by port id: (fixed IP, instance id, instance name).
pub fn instance_ports(ports: &Value, servers: &Value) -> HashMap<String, (String, String, String)> {
    let names: HashMap<&str, &str> = servers["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["id"].as_str()?, s["name"].as_str().unwrap_or_default())))
        .collect();
    ports["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["device_owner"]
                .as_str()
                .is_some_and(|o| o.starts_with("compute:"))
        })
        .filter_map(|p| {
            let device = p["device_id"].as_str()?;
            let ip = p["fixed_ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["ip_address"].as_str())
                .find(|a| !a.contains(':'))?;
            let name = names.get(device).copied().unwrap_or(device);
            Some((
                p["id"].as_str()?.to_string(),
                (ip.to_string(), device.to_string(), name.to_string()),
            ))
        })
        .collect()
}

pub fn rows(
    fips: &Value,
    nets: &HashMap<String, String>,
    ports: &HashMap<String, (String, String, String)>,
) -> Vec<FloatingIpRow> {
    let mut out: Vec<FloatingIpRow> = fips["floatingips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let port = f["port_id"].as_str().unwrap_or_default();
            let (fixed_ip, server_id, server_name) =
                ports.get(port).cloned().unwrap_or_else(|| {
                    (
                        f["fixed_ip_address"].as_str().unwrap_or_default().into(),
                        String::new(),
                        String::new(),
                    )
                });
            let net = f["floating_network_id"].as_str().unwrap_or_default();
            FloatingIpRow {
                id: f["id"].as_str().unwrap_or_default().into(),
                address: f["floating_ip_address"].as_str().unwrap_or_default().into(),
                status: f["status"].as_str().unwrap_or_default().into(),
                network: nets.get(net).cloned().unwrap_or_else(|| net.to_string()),
                fixed_ip,
                server_id,
                server_name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

async fn page(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (fips, nets, ports, servers) = tokio::join!(
        d.get(ctx, "network", "/floatingips"),
        d.get(ctx, "network", "/networks"),
        d.get(ctx, "network", "/ports"),
        d.get(ctx, "compute", "/servers")
    );
    let nets = nets?;
    let ports = instance_ports(&ports?, &servers?);
    let mut names = HashMap::new();
    let mut pools = Vec::new();
    for n in nets["networks"].as_array().into_iter().flatten() {
        let id = n["id"].as_str().unwrap_or_default().to_string();
        let name = n["name"].as_str().unwrap_or_default().to_string();
        if n["router:external"] == true {
            pools.push(Named {
                id: id.clone(),
                name: name.clone(),
                extra: String::new(),
            });
        }
        names.insert(id, name);
    }
    let mut targets: Vec<Named> = ports
        .iter()
        .map(|(port, (ip, _, server))| Named {
            id: port.clone(),
            name: format!("{server} ({ip})"),
            extra: String::new(),
        })
        .collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    render(&FloatingIpsPage {
        layout: d.layout(ctx, "floating-ips"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        ips: rows(&fips?, &names, &ports),
        pools,
        targets,
    })
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    page(&d, &ctx).await
}

/// Allocate an address from the chosen external network.
pub async fn allocate(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let body = json!({"floatingip": {"floating_network_id": form.text("network_id")}});
    let r = d
        .call(&ctx, "network", Method::POST, "/floatingips", Some(&body))
        .await;
    let ok = match &r {
        Ok(v) => format!(
            "Allocated {}.",
            v["floatingip"]["floating_ip_address"]
                .as_str()
                .unwrap_or("a floating IP")
        ),
        Err(_) => String::new(),
    };
    flash_outcome(&d, &ctx, r, ok)?;
    Ok(see_other(PAGE))
}

/// associate (with the form's port), disassociate, release.
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let path = format!("/floatingips/{}", seg(&id));
    let action = form.text("action");
    let r = match action.as_str() {
        "associate" => {
            let body = json!({"floatingip": {"port_id": form.text("port_id")}});
            d.call(&ctx, "network", Method::PUT, &path, Some(&body))
                .await
        }
        "disassociate" => {
            let body = json!({"floatingip": {"port_id": null}});
            d.call(&ctx, "network", Method::PUT, &path, Some(&body))
                .await
        }
        "release" => d.call(&ctx, "network", Method::DELETE, &path, None).await,
        other => {
            return Err(DashError::NotFound(format!(
                "There is no floating IP action called {other:?}."
            )));
        }
    };
    let done = match action.as_str() {
        "associate" => "Floating IP associated.",
        "disassociate" => "Floating IP disassociated.",
        _ => "Floating IP released.",
    };
    flash_outcome(&d, &ctx, r, done.to_string())?;
    Ok(see_other(PAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_instance_and_network() {
        let servers = json!({"servers": [{"id": "s1", "name": "web"}]});
        let ports = json!({"ports": [
            {"id": "p1", "device_id": "s1", "device_owner": "compute:nova",
             "fixed_ips": [{"ip_address": "fd00::5"}, {"ip_address": "10.0.0.5"}]},
            {"id": "p2", "device_id": "r1", "device_owner": "network:router_interface",
             "fixed_ips": [{"ip_address": "10.0.0.1"}]}]});
        let ports = instance_ports(&ports, &servers);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports["p1"], ("10.0.0.5".into(), "s1".into(), "web".into()));
        let nets = HashMap::from([("ext".to_string(), "public".to_string())]);
        let fips = json!({"floatingips": [
            {"id": "f2", "floating_ip_address": "172.24.4.9", "floating_network_id": "ext",
             "port_id": null, "status": "DOWN"},
            {"id": "f1", "floating_ip_address": "172.24.4.10", "floating_network_id": "ext",
             "port_id": "p1", "fixed_ip_address": "10.0.0.5", "status": "ACTIVE"}]});
        let r = rows(&fips, &nets, &ports);
        assert_eq!(r[0].address, "172.24.4.10");
        assert_eq!(
            (r[0].server_name.as_str(), r[0].network.as_str()),
            ("web", "public")
        );
        assert!(r[1].server_id.is_empty() && r[1].fixed_ip.is_empty());
    }
}
