//! Networks: the project's list (networks joined with their subnets), create a network with an
//! optional first subnet, a network's detail page (subnets, ports), add and delete a subnet,
//! delete the network. All through the network API with the user's token.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Value, json};

use super::{flash_outcome, refusal, render, see_other, seg};
use crate::views::Layout;
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/networks";

pub struct NetworkView {
    pub id: String,
    pub name: String,
    pub subnets: Vec<String>,
    pub shared: bool,
    pub external: bool,
    pub status: String,
}

/// What the subnet part of a form holds (kept to show the form again after a refusal).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubnetForm {
    pub name: String,
    pub cidr: String,
    /// "auto" (from the CIDR), "4" or "6"
    pub ip_version: String,
    pub gateway_ip: String,
    pub no_gateway: bool,
    pub enable_dhcp: bool,
    pub pool_start: String,
    pub pool_end: String,
}

impl SubnetForm {
    /// A blank form: DHCP on, IP version from the CIDR.
    pub fn blank() -> Self {
        SubnetForm {
            ip_version: "auto".into(),
            enable_dhcp: true,
            ..SubnetForm::default()
        }
    }

    pub fn from_form(f: &FormData) -> Self {
        let v = f.text("ip_version");
        SubnetForm {
            name: f.text("subnet_name"),
            cidr: f.text("cidr"),
            ip_version: if v.is_empty() { "auto".into() } else { v },
            gateway_ip: f.text("gateway_ip"),
            no_gateway: f.get("no_gateway").is_some(),
            enable_dhcp: f.get("enable_dhcp").is_some(),
            pool_start: f.text("pool_start"),
            pool_end: f.text("pool_end"),
        }
    }

    /// The IP version to send: the chosen one, else 6 for a CIDR with a colon, else 4 (an
    /// unparsable CIDR is the API's to judge, with its message).
    pub fn version(&self) -> u8 {
        match self.ip_version.as_str() {
            "6" => 6,
            "4" => 4,
            _ if self.cidr.contains(':') => 6,
            _ => 4,
        }
    }

    /// What is wrong with the form before the API is asked: only what the API cannot be asked
    /// (half an allocation pool); the rest is the API's to judge, with its message.
    pub fn problem(&self) -> Option<FormError> {
        if self.pool_start.is_empty() != self.pool_end.is_empty() {
            return Some(FormError {
                field: "pool".into(),
                message: "An allocation pool needs both its first and its last address.".into(),
            });
        }
        None
    }

    /// `POST /subnets`'s body for `network_id`.
    pub fn body(&self, network_id: &str) -> Value {
        let mut subnet = json!({
            "network_id": network_id,
            "cidr": self.cidr,
            "ip_version": self.version(),
            "enable_dhcp": self.enable_dhcp,
        });
        if !self.name.is_empty() {
            subnet["name"] = json!(self.name);
        }
        // absent: the API picks the first address; null: no gateway
        if self.no_gateway {
            subnet["gateway_ip"] = Value::Null;
        } else if !self.gateway_ip.is_empty() {
            subnet["gateway_ip"] = json!(self.gateway_ip);
        }
        if !self.pool_start.is_empty() && !self.pool_end.is_empty() {
            subnet["allocation_pools"] = json!([{"start": self.pool_start, "end": self.pool_end}]);
        }
        json!({ "subnet": subnet })
    }
}

/// The subnet form field a refusal of Neutron's is about ("Invalid input for cidr. ...",
/// "Gateway is not valid ...", "allocation pool ..."); "" for the form as a whole.
pub fn subnet_error_field(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("for cidr") || m.contains("cidr") || m.contains("overlaps") {
        "cidr"
    } else if m.contains("gateway") {
        "gateway_ip"
    } else if m.contains("allocation") || m.contains("pool") {
        "pool"
    } else if m.contains("ip_version") || m.contains("ip version") {
        "ip_version"
    } else if m.contains("dhcp") {
        "enable_dhcp"
    } else {
        ""
    }
}

/// A refusal shown on a form: the field it is about and the message.
#[derive(Debug, Clone, Default)]
pub struct FormError {
    pub field: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "networks.html")]
pub struct NetworksPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub networks: Vec<NetworkView>,
    pub error_field: String,
    pub error: String,
    pub form_name: String,
    pub form_admin_up: bool,
    pub sub: SubnetForm,
}

pub fn networks(nets: &Value, subnets: &Value) -> Vec<NetworkView> {
    let mut cidrs: HashMap<&str, Vec<String>> = HashMap::new();
    for s in subnets["subnets"].as_array().into_iter().flatten() {
        if let (Some(net), Some(cidr)) = (s["network_id"].as_str(), s["cidr"].as_str()) {
            let name = s["name"].as_str().unwrap_or_default();
            let text = if name.is_empty() {
                cidr.to_string()
            } else {
                format!("{name} {cidr}")
            };
            cidrs.entry(net).or_default().push(text);
        }
    }
    let mut out: Vec<NetworkView> = nets["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let id = n["id"].as_str().unwrap_or_default();
            NetworkView {
                id: id.into(),
                name: n["name"].as_str().unwrap_or_default().into(),
                subnets: cidrs.remove(id).unwrap_or_default(),
                shared: n["shared"] == true,
                external: n["router:external"] == true,
                status: n["status"].as_str().unwrap_or_default().into(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn list_page(
    d: &Dashboard,
    ctx: &Ctx,
    error: FormError,
    form: Option<&FormData>,
) -> Result<Response, DashError> {
    let (nets, subnets) = tokio::join!(
        d.get(ctx, "network", "/networks"),
        d.get(ctx, "network", "/subnets")
    );
    render(&NetworksPage {
        layout: d.layout(ctx, "networks"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        networks: networks(&nets?, &subnets?),
        error_field: error.field,
        error: error.message,
        form_name: form.map(|f| f.text("name")).unwrap_or_default(),
        form_admin_up: form.is_none_or(|f| f.get("admin_state_up").is_some()),
        sub: form
            .map(SubnetForm::from_form)
            .unwrap_or_else(SubnetForm::blank),
    })
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    list_page(&d, &ctx, FormError::default(), None).await
}

/// An API refusal as a form error (the field from `field_of`), other failures passed on.
fn form_error(
    r: Result<Value, DashError>,
    field_of: fn(&str) -> &'static str,
) -> Result<Result<Value, FormError>, DashError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(DashError::Api(e)) if e.status().is_some_and(|s| s < 500) => {
            let field = field_of(&e.to_string()).to_string();
            Ok(Err(FormError {
                field,
                message: crate::error::api_message(&e),
            }))
        }
        Err(e) => Err(e),
    }
}

fn network_field(message: &str) -> &'static str {
    if message.to_ascii_lowercase().contains("name") {
        "name"
    } else {
        ""
    }
}

/// Create a network, then its subnet when a CIDR is given; a refused subnet takes the network
/// just made with it (no half-made network left behind) and the form comes back with the
/// API's message next to the field.
pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let sub = SubnetForm::from_form(&form);
    let wants_subnet = !sub.cidr.is_empty();
    // checked before anything is made, so a half pool makes nothing
    if wants_subnet && let Some(e) = sub.problem() {
        return list_page(&d, &ctx, e, Some(&form)).await;
    }
    let net_body = json!({"network": {
        "name": name,
        "admin_state_up": form.get("admin_state_up").is_some(),
    }});
    let made = d
        .call(&ctx, "network", Method::POST, "/networks", Some(&net_body))
        .await;
    let net = match form_error(made, network_field)? {
        Ok(v) => v,
        Err(e) => return list_page(&d, &ctx, e, Some(&form)).await,
    };
    let net_id = net["network"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if wants_subnet {
        let body = sub.body(&net_id);
        let r = d
            .call(&ctx, "network", Method::POST, "/subnets", Some(&body))
            .await;
        if let Err(mut e) = form_error(r, subnet_error_field)? {
            let path = format!("/networks/{}", seg(&net_id));
            let undone = refusal(d.call(&ctx, "network", Method::DELETE, &path, None).await)?;
            if !undone.is_empty() {
                e.message = format!(
                    "{} The network {name} was made but could not be deleted again: {undone}",
                    e.message
                );
            }
            return list_page(&d, &ctx, e, Some(&form)).await;
        }
    }
    d.sessions
        .flash(&ctx.sid, "ok", format!("Created network {name}."));
    Ok(see_other(&format!("{PAGE}/{net_id}")))
}

pub struct SubnetView {
    pub id: String,
    pub name: String,
    pub cidr: String,
    pub ip_version: String,
    pub gateway: String,
    pub dhcp: bool,
    pub pools: Vec<String>,
}

pub fn subnet_views(list: &Value) -> Vec<SubnetView> {
    let mut out: Vec<SubnetView> = list["subnets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| SubnetView {
            id: s["id"].as_str().unwrap_or_default().into(),
            name: s["name"].as_str().unwrap_or_default().into(),
            cidr: s["cidr"].as_str().unwrap_or_default().into(),
            ip_version: s["ip_version"].as_i64().unwrap_or(4).to_string(),
            gateway: s["gateway_ip"].as_str().unwrap_or_default().into(),
            dhcp: s["enable_dhcp"] == true,
            pools: s["allocation_pools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} – {}",
                        p["start"].as_str().unwrap_or_default(),
                        p["end"].as_str().unwrap_or_default()
                    )
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    out
}

pub struct PortView {
    pub id: String,
    pub name: String,
    pub fixed_ips: Vec<String>,
    pub device_owner: String,
    pub device_id: String,
    pub status: String,
    pub mac: String,
}

pub fn port_views(list: &Value) -> Vec<PortView> {
    let mut out: Vec<PortView> = list["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| PortView {
            id: p["id"].as_str().unwrap_or_default().into(),
            name: p["name"].as_str().unwrap_or_default().into(),
            fixed_ips: p["fixed_ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["ip_address"].as_str().map(str::to_string))
                .collect(),
            device_owner: p["device_owner"].as_str().unwrap_or_default().into(),
            device_id: p["device_id"].as_str().unwrap_or_default().into(),
            status: p["status"].as_str().unwrap_or_default().into(),
            mac: p["mac_address"].as_str().unwrap_or_default().into(),
        })
        .collect();
    out.sort_by(|a, b| (&a.device_owner, &a.id).cmp(&(&b.device_owner, &b.id)));
    out
}

/// The first 8 characters of an id (the whole one goes in a title): table cells on a phone.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl PortView {
    pub fn short_id(&self) -> &str {
        short(&self.id)
    }

    pub fn short_device(&self) -> &str {
        short(&self.device_id)
    }

    /// Where the port's device has a page of its own: instances and routers.
    pub fn device_link(&self) -> String {
        if self.device_id.is_empty() {
            String::new()
        } else if self.device_owner.starts_with("compute:") {
            format!("/dashboard/project/instances/{}", self.device_id)
        } else if self.device_owner.starts_with("network:router_interface") {
            format!("/dashboard/project/routers/{}", self.device_id)
        } else {
            String::new()
        }
    }
}

#[derive(Template)]
#[template(path = "network_detail.html")]
pub struct NetworkDetailPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub id: String,
    pub name: String,
    pub status: String,
    pub admin_up: bool,
    pub shared: bool,
    pub external: bool,
    pub subnets: Vec<SubnetView>,
    pub ports: Vec<PortView>,
    pub error_field: String,
    pub error: String,
    pub sub: SubnetForm,
}

async fn detail_page(
    d: &Dashboard,
    ctx: &Ctx,
    id: &str,
    error: FormError,
    form: Option<&FormData>,
) -> Result<Response, DashError> {
    let (net_path, subnets_path, ports_path) = (
        format!("/networks/{}", seg(id)),
        format!("/subnets?network_id={}", seg(id)),
        format!("/ports?network_id={}", seg(id)),
    );
    let (net, subnets, ports) = tokio::join!(
        d.get(ctx, "network", &net_path),
        d.get(ctx, "network", &subnets_path),
        d.get(ctx, "network", &ports_path)
    );
    let net = net?;
    let n = &net["network"];
    render(&NetworkDetailPage {
        layout: d.layout(ctx, "networks"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        id: id.to_string(),
        name: n["name"].as_str().unwrap_or_default().into(),
        status: n["status"].as_str().unwrap_or_default().into(),
        admin_up: n["admin_state_up"] != false,
        shared: n["shared"] == true,
        external: n["router:external"] == true,
        subnets: subnet_views(&subnets?),
        ports: port_views(&ports?),
        error_field: error.field,
        error: error.message,
        sub: form
            .map(SubnetForm::from_form)
            .unwrap_or_else(SubnetForm::blank),
    })
}

pub async fn detail(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    detail_page(&d, &ctx, &id, FormError::default(), None).await
}

/// add_subnet (the form again with the message next to its field when refused),
/// delete_subnet, delete (the network; back to the list when done).
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let here = format!("{PAGE}/{}", seg(&id));
    match form.text("action").as_str() {
        "add_subnet" => {
            let sub = SubnetForm::from_form(&form);
            if let Some(e) = sub.problem() {
                return detail_page(&d, &ctx, &id, e, Some(&form)).await;
            }
            let body = sub.body(&id);
            let r = d
                .call(&ctx, "network", Method::POST, "/subnets", Some(&body))
                .await;
            if let Err(e) = form_error(r, subnet_error_field)? {
                return detail_page(&d, &ctx, &id, e, Some(&form)).await;
            }
            d.sessions
                .flash(&ctx.sid, "ok", format!("Added subnet {}.", sub.cidr));
            Ok(see_other(&here))
        }
        "delete_subnet" => {
            let path = format!("/subnets/{}", seg(&form.text("subnet_id")));
            let r = d.call(&ctx, "network", Method::DELETE, &path, None).await;
            flash_outcome(&d, &ctx, r, "Subnet deleted.")?;
            Ok(see_other(&here))
        }
        "delete" => {
            let path = format!("/networks/{}", seg(&id));
            let r = d.call(&ctx, "network", Method::DELETE, &path, None).await;
            let deleted = flash_outcome(&d, &ctx, r, "Network deleted.")?;
            Ok(see_other(if deleted { PAGE } else { &here }))
        }
        other => Err(DashError::NotFound(format!(
            "There is no network action called {other:?}."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_join_their_networks() {
        let nets = json!({"networks": [{"id": "n1", "name": "b", "status": "ACTIVE", "shared": false},
            {"id": "n2", "name": "a", "router:external": true}]});
        let subs = json!({"subnets": [{"network_id": "n1", "cidr": "10.0.0.0/24", "name": "s"}]});
        let v = networks(&nets, &subs);
        assert_eq!(v[0].name, "a");
        assert!(v[0].external && v[0].subnets.is_empty());
        assert_eq!(v[1].subnets, vec!["s 10.0.0.0/24".to_string()]);
    }

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn subnet_bodies() {
        let f = SubnetForm::from_form(&form(&[
            ("cidr", "10.1.0.0/24"),
            ("enable_dhcp", "1"),
            ("subnet_name", "s1"),
        ]));
        let b = f.body("n1");
        assert_eq!(
            b,
            json!({"subnet": {"network_id": "n1", "cidr": "10.1.0.0/24", "ip_version": 4,
                "enable_dhcp": true, "name": "s1"}})
        );
        // v6 from the CIDR; no gateway is null; a pool; DHCP off
        let f = SubnetForm::from_form(&form(&[
            ("cidr", "fd00::/64"),
            ("no_gateway", "1"),
            ("pool_start", "fd00::10"),
            ("pool_end", "fd00::20"),
        ]));
        let b = f.body("n1");
        assert_eq!(b["subnet"]["ip_version"], 6);
        assert!(b["subnet"]["gateway_ip"].is_null());
        assert_eq!(b["subnet"]["enable_dhcp"], false);
        assert_eq!(b["subnet"]["allocation_pools"][0]["end"], "fd00::20");
        // the chosen version wins; a given gateway is sent
        let f = SubnetForm::from_form(&form(&[
            ("cidr", "banana"),
            ("ip_version", "6"),
            ("gateway_ip", "10.0.0.9"),
        ]));
        let b = f.body("n");
        assert_eq!(
            (
                b["subnet"]["ip_version"].clone(),
                b["subnet"]["gateway_ip"].clone()
            ),
            (json!(6), json!("10.0.0.9"))
        );
        // half a pool is the form's error, on the pool field
        let f = SubnetForm::from_form(&form(&[
            ("cidr", "10.0.0.0/24"),
            ("pool_start", "10.0.0.5"),
        ]));
        assert_eq!(f.problem().map(|e| e.field).as_deref(), Some("pool"));
        assert!(SubnetForm::blank().problem().is_none());
    }

    #[test]
    fn refusals_land_on_their_field() {
        let cases = [
            (
                "Invalid input for cidr. Reason: 'banana' is not a valid IP subnet.",
                "cidr",
            ),
            (
                "Invalid input for operation: Gateway is not valid on subnet 10.0.0.0/24.",
                "gateway_ip",
            ),
            ("The allocation pool 10.0.0.5-10.0.0.1 spans beyond", "pool"),
            ("Quota exceeded for resources: ['subnet'].", ""),
        ];
        for (m, want) in cases {
            assert_eq!(subnet_error_field(m), want, "{m}");
        }
    }

    #[test]
    fn ports_and_subnets_for_the_detail_page() {
        let ports = json!({"ports": [
            {"id": "p2", "device_owner": "compute:nova", "device_id": "s1", "status": "ACTIVE",
             "mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"ip_address": "10.0.0.5"}]},
            {"id": "p1", "device_owner": "network:router_interface", "device_id": "r1",
             "fixed_ips": [{"ip_address": "10.0.0.1"}]}]});
        let p = port_views(&ports);
        assert_eq!(p[0].device_owner, "compute:nova");
        assert_eq!(p[0].device_link(), "/dashboard/project/instances/s1");
        assert_eq!(p[1].device_link(), "/dashboard/project/routers/r1");
        assert_eq!(p[0].fixed_ips, vec!["10.0.0.5".to_string()]);
        let subs = json!({"subnets": [{"id": "s", "cidr": "10.0.0.0/24", "ip_version": 4,
            "gateway_ip": null, "enable_dhcp": true,
            "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}]}]});
        let s = subnet_views(&subs);
        assert!(s[0].gateway.is_empty() && s[0].dhcp);
        assert_eq!(s[0].pools, vec!["10.0.0.2 – 10.0.0.254".to_string()]);
    }
}
