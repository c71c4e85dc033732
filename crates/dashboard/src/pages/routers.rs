//! Routers: the project's list (status, external gateway, admin state), create (with an
//! optional gateway on an external network), a router's detail page (its gateway and its
//! interfaces: ports with a `network:router_interface*` owner), add and remove an interface,
//! set and clear the gateway, delete. All through the network API with the user's token, as
//! `openstack router ...` does.

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

const PAGE: &str = "/dashboard/project/routers";

pub struct RouterView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub admin_up: bool,
    /// the external network's name (its id when not visible), "" without a gateway
    pub gateway: String,
    pub gateway_network_id: String,
    pub gateway_ips: Vec<String>,
}

impl RouterView {
    pub fn from_json(r: &Value, net_names: &HashMap<String, String>) -> Self {
        let gw = &r["external_gateway_info"];
        let gw_net = gw["network_id"].as_str().unwrap_or_default().to_string();
        RouterView {
            id: r["id"].as_str().unwrap_or_default().into(),
            name: r["name"].as_str().unwrap_or_default().into(),
            status: r["status"].as_str().unwrap_or_default().into(),
            admin_up: r["admin_state_up"] != false,
            gateway: net_names
                .get(&gw_net)
                .cloned()
                .unwrap_or_else(|| gw_net.clone()),
            gateway_network_id: gw_net,
            gateway_ips: gw["external_fixed_ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["ip_address"].as_str().map(str::to_string))
                .collect(),
        }
    }

    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// Network id -> name, and the external networks (gateway choices), from `GET /networks`.
pub fn network_names(nets: &Value) -> (HashMap<String, String>, Vec<Named>) {
    let mut names = HashMap::new();
    let mut external = Vec::new();
    for n in nets["networks"].as_array().into_iter().flatten() {
        let id = n["id"].as_str().unwrap_or_default().to_string();
        let name = n["name"].as_str().unwrap_or_default().to_string();
        if n["router:external"] == true {
            external.push(Named {
                id: id.clone(),
                name: name.clone(),
                extra: String::new(),
            });
        }
        names.insert(id, name);
    }
    external.sort_by(|a, b| a.name.cmp(&b.name));
    (names, external)
}

/// `POST /routers`'s body: a gateway only when an external network was chosen.
pub fn create_body(name: &str, external_network: &str) -> Value {
    let mut router = json!({"name": name});
    if !external_network.is_empty() {
        router["external_gateway_info"] = json!({"network_id": external_network});
    }
    json!({ "router": router })
}

#[derive(Template)]
#[template(path = "routers.html")]
pub struct RoutersPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub routers: Vec<RouterView>,
    pub external: Vec<Named>,
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let (routers, nets) = tokio::join!(
        d.get(&ctx, "network", "/routers"),
        d.get(&ctx, "network", "/networks")
    );
    let (names, external) = network_names(&nets?);
    let mut routers: Vec<RouterView> = routers?["routers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| RouterView::from_json(r, &names))
        .collect();
    routers.sort_by(|a, b| a.name.cmp(&b.name));
    render(&RoutersPage {
        layout: d.layout(&ctx, "routers"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        routers,
        external,
    })
}

pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let body = create_body(&name, &form.text("external_network_id"));
    match d
        .call(&ctx, "network", Method::POST, "/routers", Some(&body))
        .await
    {
        Ok(v) => {
            d.sessions
                .flash(&ctx.sid, "ok", format!("Created router {name}."));
            let id = v["router"]["id"].as_str().unwrap_or_default();
            Ok(see_other(&format!("{PAGE}/{}", seg(id))))
        }
        r => {
            flash_outcome(&d, &ctx, r, "")?;
            Ok(see_other(PAGE))
        }
    }
}

/// One interface of a router: its port and the subnets it is on.
pub struct InterfaceView {
    pub port_id: String,
    pub subnet_id: String,
    pub subnet: String,
    pub network_id: String,
    pub network: String,
    pub ip: String,
    pub status: String,
}

impl InterfaceView {
    pub fn short_port(&self) -> &str {
        super::networks::short(&self.port_id)
    }
}

/// The router's interfaces among its ports (`device_owner` `network:router_interface*`; the
/// gateway port is not one), one per fixed IP, named from the subnet list.
pub fn interfaces(
    ports: &Value,
    subnets: &HashMap<String, (String, String)>,
    net_names: &HashMap<String, String>,
) -> Vec<InterfaceView> {
    let mut out = Vec::new();
    for p in ports["ports"].as_array().into_iter().flatten() {
        let owner = p["device_owner"].as_str().unwrap_or_default();
        if !owner.starts_with("network:router_interface") {
            continue;
        }
        let network_id = p["network_id"].as_str().unwrap_or_default().to_string();
        for f in p["fixed_ips"].as_array().into_iter().flatten() {
            let subnet_id = f["subnet_id"].as_str().unwrap_or_default().to_string();
            let subnet = subnets
                .get(&subnet_id)
                .map(|(label, _)| label.clone())
                .unwrap_or_else(|| subnet_id.clone());
            out.push(InterfaceView {
                port_id: p["id"].as_str().unwrap_or_default().into(),
                subnet_id,
                subnet,
                network: net_names
                    .get(&network_id)
                    .cloned()
                    .unwrap_or_else(|| network_id.clone()),
                network_id: network_id.clone(),
                ip: f["ip_address"].as_str().unwrap_or_default().into(),
                status: p["status"].as_str().unwrap_or_default().into(),
            });
        }
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

/// Subnet id -> ("name CIDR", network id).
pub fn subnet_labels(subnets: &Value) -> HashMap<String, (String, String)> {
    subnets["subnets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let cidr = s["cidr"].as_str().unwrap_or_default();
            let name = s["name"].as_str().unwrap_or_default();
            let label = if name.is_empty() {
                cidr.to_string()
            } else {
                format!("{name} {cidr}")
            };
            Some((
                s["id"].as_str()?.to_string(),
                (label, s["network_id"].as_str().unwrap_or_default().into()),
            ))
        })
        .collect()
}

#[derive(Template)]
#[template(path = "router_detail.html")]
pub struct RouterDetailPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub r: RouterView,
    pub interfaces: Vec<InterfaceView>,
    /// subnets to add an interface on: not external, not already an interface
    pub subnet_choices: Vec<Named>,
    pub external: Vec<Named>,
}

async fn detail_page(d: &Dashboard, ctx: &Ctx, id: &str) -> Result<Response, DashError> {
    let (router_path, ports_path) = (
        format!("/routers/{}", seg(id)),
        format!("/ports?device_id={}", seg(id)),
    );
    let (router, ports, subnets, nets) = tokio::join!(
        d.get(ctx, "network", &router_path),
        d.get(ctx, "network", &ports_path),
        d.get(ctx, "network", "/subnets"),
        d.get(ctx, "network", "/networks")
    );
    let (names, external) = network_names(&nets?);
    let labels = subnet_labels(&subnets?);
    let r = RouterView::from_json(&router?["router"], &names);
    let interfaces = interfaces(&ports?, &labels, &names);
    let external_ids: Vec<&str> = external.iter().map(|n| n.id.as_str()).collect();
    let mut subnet_choices: Vec<Named> = labels
        .iter()
        .filter(|(sid, (_, net))| {
            !external_ids.contains(&net.as_str())
                && !interfaces.iter().any(|i| &i.subnet_id == *sid)
        })
        .map(|(sid, (label, net))| Named {
            id: sid.clone(),
            name: format!(
                "{} ({label})",
                names.get(net).map(String::as_str).unwrap_or(net)
            ),
            extra: String::new(),
        })
        .collect();
    subnet_choices.sort_by(|a, b| a.name.cmp(&b.name));
    render(&RouterDetailPage {
        layout: d.layout(ctx, "routers"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        r,
        interfaces,
        subnet_choices,
        external,
    })
}

pub async fn detail(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    detail_page(&d, &ctx, &id).await
}

/// add_interface, remove_interface, set_gateway, clear_gateway, delete; the outcome is the
/// next page's flash (the API's message when refused).
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let rp = format!("/routers/{}", seg(&id));
    let here = format!("{PAGE}/{}", seg(&id));
    let action = form.text("action");
    let (method, path, body, done) = match action.as_str() {
        "add_interface" => (
            Method::PUT,
            format!("{rp}/add_router_interface"),
            Some(json!({"subnet_id": form.text("subnet_id")})),
            "Interface added.",
        ),
        "remove_interface" => (
            Method::PUT,
            format!("{rp}/remove_router_interface"),
            Some(json!({"port_id": form.text("port_id")})),
            "Interface removed.",
        ),
        "set_gateway" => (
            Method::PUT,
            rp.clone(),
            Some(json!({"router": {"external_gateway_info":
                {"network_id": form.text("network_id")}}})),
            "Gateway set.",
        ),
        "clear_gateway" => (
            Method::PUT,
            rp.clone(),
            Some(json!({"router": {"external_gateway_info": {}}})),
            "Gateway cleared.",
        ),
        "delete" => (Method::DELETE, rp.clone(), None, "Router deleted."),
        other => {
            return Err(DashError::NotFound(format!(
                "There is no router action called {other:?}."
            )));
        }
    };
    let r = d.call(&ctx, "network", method, &path, body.as_ref()).await;
    // a deleted router's page is gone: back to the list
    let accepted = flash_outcome(&d, &ctx, r, done)?;
    Ok(see_other(if accepted && action == "delete" {
        PAGE
    } else {
        &here
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_name_their_gateway() {
        let nets = json!({"networks": [{"id": "e", "name": "public", "router:external": true},
            {"id": "n", "name": "private"}]});
        let (names, external) = network_names(&nets);
        assert_eq!(external.len(), 1);
        assert_eq!(external[0].name, "public");
        let r = RouterView::from_json(
            &json!({"id": "r", "name": "", "status": "ACTIVE", "admin_state_up": true,
                "external_gateway_info": {"network_id": "e",
                    "external_fixed_ips": [{"subnet_id": "x", "ip_address": "172.24.4.5"}]}}),
            &names,
        );
        assert_eq!((r.gateway.as_str(), r.display_name()), ("public", "r"));
        assert_eq!(r.gateway_ips, vec!["172.24.4.5".to_string()]);
        let bare =
            RouterView::from_json(&json!({"id": "r2", "external_gateway_info": null}), &names);
        assert!(bare.gateway.is_empty() && bare.admin_up);
    }

    #[test]
    fn create_bodies() {
        assert_eq!(create_body("r", ""), json!({"router": {"name": "r"}}));
        assert_eq!(
            create_body("r", "e"),
            json!({"router": {"name": "r", "external_gateway_info": {"network_id": "e"}}})
        );
    }

    #[test]
    fn interfaces_are_the_router_interface_ports() {
        let subnets = subnet_labels(&json!({"subnets": [
            {"id": "s1", "name": "a", "cidr": "10.0.0.0/24", "network_id": "n"}]}));
        let names = HashMap::from([("n".to_string(), "private".to_string())]);
        let ports = json!({"ports": [
            {"id": "p1", "device_owner": "network:router_interface", "network_id": "n",
             "status": "ACTIVE", "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.1"}]},
            {"id": "p2", "device_owner": "network:router_gateway", "network_id": "e",
             "fixed_ips": [{"subnet_id": "x", "ip_address": "172.24.4.5"}]}]});
        let i = interfaces(&ports, &subnets, &names);
        assert_eq!(i.len(), 1);
        assert_eq!(
            (
                i[0].subnet.as_str(),
                i[0].network.as_str(),
                i[0].ip.as_str()
            ),
            ("a 10.0.0.0/24", "private", "10.0.0.1")
        );
    }
}
