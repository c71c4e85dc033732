//! The network step of a build over the network service's REST API, as Nova's
//! `nova/network/neutron.py`: the API checks the requested networks and ports with the
//! caller's token (`validate_networks`), the compute agent creates the ports with the
//! caller's token (or takes the caller's own), binds them to its host with compute's service
//! token, and builds the instance's network_info (Nova's VIF model) from what the network
//! service answered; delete removes the ports Nova made and unbinds the caller's.
//!
//! The waits for `network-vif-plugged` are registered here, before the binding that makes
//! the network agent wire the port, and awaited by the compute agent
//! ([`crate::manager::ComputeAgent`]) after the ports are recorded on the instance.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::clients::{Answer, ServiceClients};
use crate::core::ComputeService;
use crate::error::{ComputeError, Result};
use crate::hooks::{Allocation, NetworkHook, NetworkRequest};
use crate::model::Instance;

/// The event a port's network agent sends once the port is wired.
pub const VIF_PLUGGED: &str = "network-vif-plugged";

/// Nova's message when `auto` finds several networks (validate_networks).
pub const AMBIGUOUS: &str =
    "Multiple possible networks found, use a Network ID to be more specific.";

/// Nova's UnableToAutoAllocateNetwork.
fn cannot_auto_allocate(project_id: &str) -> ComputeError {
    ComputeError::bad(format!(
        "Unable to automatically allocate a network for project {project_id}"
    ))
}

/// The network hook of a cloud with a network service.
pub struct NeutronNetwork;

/// One entry of a create request's `networks` list (and what an interface attach asks for).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Requested {
    pub network_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub tag: Option<String>,
}

/// What `networks` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// `none`: no port.
    Nothing,
    /// `auto` (explicit, 2.37+): the one available network, else an error.
    Auto,
    /// Nothing said (before 2.37): the one available network, none if there is none.
    Default,
    List(Vec<Requested>),
}

pub fn ask_of(requested: &Value) -> Ask {
    match requested {
        Value::String(s) if s == "none" => Ask::Nothing,
        Value::String(s) if s == "auto" => Ask::Auto,
        Value::Array(items) => Ask::List(
            items
                .iter()
                .map(|n| {
                    let s = |k: &str| n.get(k).and_then(Value::as_str).map(str::to_string);
                    Requested {
                        network_id: s("uuid"),
                        port_id: s("port"),
                        fixed_ip: s("fixed_ip"),
                        tag: s("tag"),
                    }
                })
                .collect(),
        ),
        _ => Ask::Default,
    }
}

/// The networks a request that names none may use (Nova's `_get_available_networks`): the
/// project's own unshared networks and the shared ones; external networks are not.
pub fn available_networks(all: &[Value], project_id: &str) -> Vec<Value> {
    all.iter()
        .filter(|n| n["router:external"] != json!(true))
        .filter(|n| {
            n["shared"] == json!(true)
                || n["project_id"].as_str().or(n["tenant_id"].as_str()) == Some(project_id)
        })
        .cloned()
        .collect()
}

/// `device_owner` of an instance's ports.
pub fn device_owner(i: &Instance, default_zone: &str) -> String {
    let zone = i
        .host_availability_zone
        .as_deref()
        .or(i.availability_zone.as_deref())
        .filter(|z| !z.is_empty())
        .unwrap_or(default_zone);
    format!("compute:{zone}")
}

/// The body that creates the port of one requested network.
pub fn port_create_body(
    network_id: &str,
    fixed_ip: Option<&str>,
    instance_uuid: &str,
    owner: &str,
    security_groups: Option<&[String]>,
) -> Value {
    let mut p = json!({
        "network_id": network_id,
        "device_id": instance_uuid,
        "device_owner": owner,
    });
    if let Some(ip) = fixed_ip {
        p["fixed_ips"] = json!([{ "ip_address": ip }]);
    }
    if let Some(groups) = security_groups {
        p["security_groups"] = json!(groups);
    }
    json!({ "port": p })
}

fn version_of(addr: &str) -> u8 {
    if addr.contains(':') { 6 } else { 4 }
}

/// Marks the caller's port `pid` as the server's (device_id, device_owner), with the
/// caller's token, before it is bound.
async fn take_port(net: &Net<'_>, pid: &str, server: &str, owner: &str, token: &str) -> Result<()> {
    let body = json!({"port": {"device_id": server, "device_owner": owner}});
    let a = net
        .call(
            Method::PUT,
            &format!("/ports/{pid}"),
            Some(&body),
            Some(token),
        )
        .await?;
    if !a.status.is_success() {
        return Err(refused(&format!("taking port {pid}"), &a));
    }
    Ok(())
}

/// The port `pid` as the caller sees it (the API's answer, `{"port": …}`), refused when a
/// device already holds it: Nova's first checks before a port is used. `not_found` makes the
/// error for a missing port (400 in a create's validation, 404 on an attach).
async fn free_port(
    net: &Net<'_>,
    pid: &str,
    token: &str,
    not_found: fn(String) -> ComputeError,
) -> Result<Value> {
    let a = net.get(&format!("/ports/{pid}"), Some(token)).await?;
    if a.status == StatusCode::NOT_FOUND {
        return Err(not_found(format!("Port id {pid} could not be found.")));
    }
    if !a.status.is_success() {
        return Err(refused(&format!("GET port {pid}"), &a));
    }
    if a.body["port"]["device_id"]
        .as_str()
        .is_some_and(|d| !d.is_empty())
    {
        return Err(ComputeError::conflict(format!(
            "Port {pid} is still in use."
        )));
    }
    Ok(a.body)
}

/// One Nova VIF from a bound port, its network and the network's subnets.
pub fn vif_of(
    port: &Value,
    network: &Value,
    subnets: &[Value],
    preserve_on_delete: bool,
    tag: Option<&str>,
) -> Value {
    let id = port["id"].as_str().unwrap_or_default();
    let details = port
        .get("binding:vif_details")
        .filter(|d| d.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let devname = details["devname"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            // Nova's own name of a port's tap when the binding names none.
            format!("tap{}", id.chars().take(11).collect::<String>())
        });
    let mut by_subnet: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in port["fixed_ips"].as_array().into_iter().flatten() {
        let addr = f["ip_address"].as_str().unwrap_or_default();
        by_subnet
            .entry(f["subnet_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(
                json!({"address": addr, "type": "fixed", "version": version_of(addr),
                         "meta": {}, "floating_ips": []}),
            );
    }
    let subnets: Vec<Value> = subnets
        .iter()
        .filter_map(|s| {
            let sid = s["id"].as_str().unwrap_or_default();
            let ips = by_subnet.remove(sid)?;
            let version = s["ip_version"].as_u64().unwrap_or(4);
            let gateway = match s["gateway_ip"].as_str() {
                Some(g) => json!({"address": g, "type": "gateway", "version": version, "meta": {}}),
                None => json!({"address": null, "type": "gateway", "version": null, "meta": {}}),
            };
            let dns: Vec<Value> = s["dns_nameservers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|a| json!({"address": a, "type": "dns", "version": version_of(a), "meta": {}}))
                .collect();
            let routes: Vec<Value> = s["host_routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    json!({"cidr": r["destination"], "meta": {},
                        "gateway": {"address": r["nexthop"], "type": "gateway", "meta": {}}})
                })
                .collect();
            Some(json!({
                "id": sid, "cidr": s["cidr"], "version": version, "gateway": gateway,
                "dns": dns, "routes": routes, "ips": ips,
                "meta": {"enable_dhcp": s["enable_dhcp"]},
            }))
        })
        .collect();
    let mut vif = json!({
        "id": id,
        "address": port["mac_address"],
        "type": port["binding:vif_type"].as_str().unwrap_or("bridge"),
        "devname": devname,
        "vnic_type": port["binding:vnic_type"].as_str().unwrap_or("normal"),
        "details": details,
        "active": port["status"] == "ACTIVE",
        "preserve_on_delete": preserve_on_delete,
        "network": {
            "id": network["id"],
            "label": network["name"],
            "bridge": details["bridge_name"],
            "subnets": subnets,
            "meta": {"mtu": network["mtu"], "tenant_id": network["project_id"]},
        },
    });
    if let Some(t) = tag {
        vif["tag"] = json!(t);
    }
    vif
}

/// The ports of an instance that are the caller's (kept, unbound on delete): those its
/// request named and those its network_info marks `preserve_on_delete`.
pub fn preserved_ports(i: &Instance) -> Vec<String> {
    let mut out: Vec<String> = match ask_of(&i.requested_networks) {
        Ask::List(l) => l.into_iter().filter_map(|r| r.port_id).collect(),
        _ => vec![],
    };
    for vif in i.network_info.as_array().into_iter().flatten() {
        if vif["preserve_on_delete"] == json!(true)
            && let Some(id) = vif["id"].as_str()
            && !out.iter().any(|p| p == id)
        {
            out.push(id.to_string());
        }
    }
    out
}

/// What the network service said, for a fault.
pub(crate) fn said(a: &Answer) -> String {
    a.body["NeutronError"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", a.status, a.body))
}

/// The network service's refusal as compute's error.
fn refused(what: &str, a: &Answer) -> ComputeError {
    let m = said(a);
    match a.status {
        StatusCode::BAD_REQUEST => ComputeError::bad(m),
        StatusCode::CONFLICT => ComputeError::conflict(m),
        StatusCode::FORBIDDEN => ComputeError::Forbidden(m),
        StatusCode::NOT_FOUND => ComputeError::bad(m),
        s => ComputeError::Upstream {
            service: "network",
            message: format!("{what}: {s} {m}"),
        },
    }
}

struct Net<'a> {
    c: &'a ServiceClients,
    rid: &'a str,
}

impl Net<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Answer> {
        self.c.network(method, path, body, token, self.rid).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        self.call(Method::GET, path, None, token).await
    }

    async fn list(&self, path: &str, key: &str, token: Option<&str>) -> Result<Vec<Value>> {
        let a = self.get(path, token).await?;
        if !a.status.is_success() {
            return Err(refused(&format!("GET {path}"), &a));
        }
        Ok(a.body[key].as_array().cloned().unwrap_or_default())
    }

    /// Whether the project's topology can be auto-allocated (Nova's
    /// `_can_auto_allocate_network`: the dry run of the network service, with the caller's
    /// token; its 409, or no such API, means no).
    async fn can_auto_allocate(&self, project_id: &str, token: &str) -> Result<bool> {
        let a = self
            .get(
                &format!("/auto-allocated-topology/{project_id}?fields=dry-run"),
                Some(token),
            )
            .await?;
        if !a.status.is_success() {
            tracing::debug!(project = %project_id, "no network auto-allocation: {}", said(&a));
        }
        Ok(a.status.is_success())
    }

    /// The project's auto-allocated network, made on first use (Nova's
    /// `_auto_allocate_network`, with the caller's token).
    async fn auto_allocate(&self, project_id: &str, token: &str) -> Result<String> {
        let a = self
            .get(
                &format!("/auto-allocated-topology/{project_id}"),
                Some(token),
            )
            .await?;
        if a.status == StatusCode::CONFLICT {
            return Err(cannot_auto_allocate(project_id));
        }
        if !a.status.is_success() {
            return Err(refused("auto-allocating a network", &a));
        }
        a.body["auto_allocated_topology"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| cannot_auto_allocate(project_id))
    }

    async fn available(&self, project_id: &str, token: &str) -> Result<Vec<Value>> {
        let all = self.list("/networks", "networks", Some(token)).await?;
        Ok(available_networks(&all, project_id))
    }

    /// Security group names to ids with the caller's token; None when the network service
    /// has no security groups (the endpoint answers 404).
    async fn group_ids(&self, names: &[String], token: &str) -> Result<Option<Vec<String>>> {
        if names.iter().all(|n| n == "default") {
            // The network service gives a port its project's default group by itself.
            return Ok(None);
        }
        let mut ids = Vec::new();
        for name in names {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("name", name)
                .finish();
            let a = self
                .get(&format!("/security-groups?{q}"), Some(token))
                .await?;
            if a.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !a.status.is_success() {
                return Err(refused("listing security groups", &a));
            }
            let found: Vec<&Value> = a.body["security_groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["name"].as_str() == Some(name.as_str()) || g["id"] == json!(name))
                .collect();
            match found.as_slice() {
                [] if name == "default" => {}
                [] => {
                    return Err(ComputeError::bad(format!(
                        "Security group {name} not found."
                    )));
                }
                [g] => ids.push(g["id"].as_str().unwrap_or_default().to_string()),
                _ => {
                    return Err(ComputeError::conflict(format!(
                        "Multiple security groups found matching '{name}'. Use an ID to be more specific."
                    )));
                }
            }
        }
        Ok(Some(ids))
    }

    /// A network and its subnets as compute sees them, once per network for `cache`.
    async fn network_and_subnets(
        &self,
        nid: &str,
        cache: &mut BTreeMap<String, (Value, Vec<Value>)>,
    ) -> Result<(Value, Vec<Value>)> {
        if let Some(found) = cache.get(nid) {
            return Ok(found.clone());
        }
        let n = self.get(&format!("/networks/{nid}"), None).await?;
        if !n.status.is_success() {
            return Err(refused(&format!("GET network {nid}"), &n));
        }
        let subnets = self
            .list(&format!("/subnets?network_id={nid}"), "subnets", None)
            .await?;
        let found = (n.body["network"].clone(), subnets);
        cache.insert(nid.to_string(), found.clone());
        Ok(found)
    }

    /// The VIF of a port as the network service shows it now.
    async fn vif(
        &self,
        port: &Value,
        preserve: bool,
        tag: Option<&str>,
        cache: &mut BTreeMap<String, (Value, Vec<Value>)>,
    ) -> Result<Value> {
        let nid = port["network_id"].as_str().unwrap_or_default();
        let (n, subnets) = self.network_and_subnets(nid, cache).await?;
        Ok(vif_of(port, &n, &subnets, preserve, tag))
    }

    /// Bind port `pid` to `host` as compute; its VIF from what the binding answered.
    async fn bind(
        &self,
        host: &str,
        pid: &str,
        preserve: bool,
        tag: Option<&str>,
        cache: &mut BTreeMap<String, (Value, Vec<Value>)>,
    ) -> Result<Value> {
        let body = json!({"port": {"binding:host_id": host}});
        let a = self
            .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
            .await?;
        if !a.status.is_success() {
            return Err(refused(&format!("binding port {pid} to {host}"), &a));
        }
        let port = &a.body["port"];
        if port["binding:vif_type"] == "binding_failed" {
            return Err(ComputeError::Internal(format!(
                "Binding failed for port {pid}, please check neutron logs for more information."
            )));
        }
        self.vif(port, preserve, tag, cache).await
    }

    /// Delete ports (compute's token; gone is fine).
    async fn delete_ports(&self, ids: &[String]) {
        for id in ids {
            match self
                .call(Method::DELETE, &format!("/ports/{id}"), None, None)
                .await
            {
                Ok(a) if a.status.is_success() || a.status == StatusCode::NOT_FOUND => {}
                Ok(a) => {
                    tracing::warn!(port = %id, status = %a.status, "port not deleted: {}", said(&a))
                }
                Err(e) => tracing::warn!(port = %id, error = %e, "port not deleted"),
            }
        }
    }

    /// Give the caller's ports back: no device, no host (as Nova's `_unbind_ports`).
    async fn unbind_ports(&self, ids: &[String]) -> Result<()> {
        let body = json!({"port": {"device_id": "", "device_owner": "", "binding:host_id": ""}});
        for id in ids {
            let a = self
                .call(Method::PUT, &format!("/ports/{id}"), Some(&body), None)
                .await?;
            if !a.status.is_success() && a.status != StatusCode::NOT_FOUND {
                return Err(refused(&format!("unbinding port {id}"), &a));
            }
        }
        Ok(())
    }
}

impl NeutronNetwork {
    /// The requested networks of an instance as ports to make or take.
    async fn resolve(&self, net: &Net<'_>, i: &Instance, token: &str) -> Result<Vec<Requested>> {
        let ask = ask_of(&i.requested_networks);
        match ask {
            Ask::Nothing => Ok(vec![]),
            Ask::List(l) => Ok(l),
            Ask::Auto | Ask::Default => {
                let nets = net.available(&i.project_id, token).await?;
                match nets.as_slice() {
                    [] if ask == Ask::Auto => Ok(vec![Requested {
                        network_id: Some(net.auto_allocate(&i.project_id, token).await?),
                        ..Default::default()
                    }]),
                    [] => Ok(vec![]),
                    [n] => Ok(vec![Requested {
                        network_id: n["id"].as_str().map(str::to_string),
                        ..Default::default()
                    }]),
                    _ => Err(ComputeError::conflict(AMBIGUOUS)),
                }
            }
        }
    }

    /// The port of an interface attach, as the caller (Nova's checks of
    /// `_validate_requested_port_ids` / `_validate_requested_network_ids` with attach's
    /// errors): theirs taken, or one made on the network. Returns (port id, the caller's).
    async fn attach_port(
        &self,
        svc: &ComputeService,
        net: &Net<'_>,
        i: &Instance,
        req: &Requested,
        token: &str,
    ) -> Result<(String, bool)> {
        let owner = device_owner(i, &svc.cfg.default_availability_zone);
        if let Some(pid) = &req.port_id {
            let port = free_port(net, pid, token, ComputeError::NotFound).await?;
            let p = &port["port"];
            if p["fixed_ips"].as_array().is_none_or(Vec::is_empty) {
                return Err(ComputeError::bad(format!(
                    "Port {pid} requires a FixedIP in order to be used."
                )));
            }
            take_port(net, pid, &i.uuid, &owner, token).await?;
            return Ok((pid.clone(), true));
        }
        let nid = match &req.network_id {
            Some(nid) => {
                let a = net.get(&format!("/networks/{nid}"), Some(token)).await?;
                if a.status == StatusCode::NOT_FOUND {
                    return Err(ComputeError::NotFound(format!(
                        "Network {nid} could not be found."
                    )));
                }
                if !a.status.is_success() {
                    return Err(refused(&format!("GET network {nid}"), &a));
                }
                nid.clone()
            }
            None => {
                let nets = net.available(&i.project_id, token).await?;
                match nets.as_slice() {
                    [n] => n["id"].as_str().unwrap_or_default().to_string(),
                    [] => {
                        return Err(ComputeError::bad(format!(
                            "No specific network was requested and none are available for project '{}'.",
                            i.project_id
                        )));
                    }
                    _ => {
                        return Err(ComputeError::bad(
                            "More than one possible network found. Specify network ID(s) to select which one(s) to connect to.",
                        ));
                    }
                }
            }
        };
        let groups = net.group_ids(&i.security_groups, token).await?;
        let body = port_create_body(
            &nid,
            req.fixed_ip.as_deref(),
            &i.uuid,
            &owner,
            groups.as_deref(),
        );
        let a = net
            .call(Method::POST, "/ports", Some(&body), Some(token))
            .await?;
        if !a.status.is_success() {
            let ip = req.fixed_ip.as_deref().unwrap_or_default();
            return Err(match a.body["NeutronError"]["type"].as_str() {
                Some("IpAddressAlreadyAllocated") => ComputeError::conflict(format!(
                    "Fixed IP address {ip} is already in use on instance {}.",
                    i.uuid
                )),
                Some("IpAddressGenerationFailure") => ComputeError::bad(format!(
                    "No fixed IP addresses available for network: {nid}"
                )),
                _ => refused(&format!("creating a port on network {nid}"), &a),
            });
        }
        let pid = a.body["port"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tracing::info!(instance = %i.uuid, port = %pid, network = %nid, "port created for an interface attach");
        Ok((pid, false))
    }

    /// A port's VIF after its addresses changed, keeping what the instance's network info
    /// said of it (the caller's or not, its tag).
    async fn refreshed_vif(&self, net: &Net<'_>, i: &Instance, port: &Value) -> Result<Value> {
        let pid = port["id"].as_str().unwrap_or_default();
        let old = i
            .network_info
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["id"].as_str() == Some(pid));
        let preserve = old.is_some_and(|v| v["preserve_on_delete"] == json!(true))
            || preserved_ports(i).iter().any(|p| p == pid);
        let tag = old.and_then(|v| v["tag"].as_str());
        net.vif(port, preserve, tag, &mut BTreeMap::new()).await
    }

    async fn allocate_ports(
        &self,
        svc: &ComputeService,
        net: &Net<'_>,
        i: &Instance,
        token: &str,
        created: &mut Vec<String>,
        taken: &mut Vec<String>,
    ) -> Result<Allocation> {
        let host =
            i.host.clone().filter(|h| !h.is_empty()).ok_or_else(|| {
                ComputeError::Internal(format!("instance {} has no host", i.uuid))
            })?;
        let wanted = self.resolve(net, i, token).await?;
        if wanted.is_empty() {
            return Ok(Allocation::default());
        }
        let owner = device_owner(i, &svc.cfg.default_availability_zone);
        let groups = if wanted.iter().any(|r| r.port_id.is_none()) {
            net.group_ids(&i.security_groups, token).await?
        } else {
            None
        };
        // 1. The ports, as the caller.
        let mut ports: Vec<(String, bool, Option<String>)> = Vec::new();
        for r in &wanted {
            if let Some(pid) = &r.port_id {
                take_port(net, pid, &i.uuid, &owner, token).await?;
                taken.push(pid.clone());
                ports.push((pid.clone(), true, r.tag.clone()));
            } else {
                let nid = r.network_id.as_deref().unwrap_or_default();
                let body = port_create_body(
                    nid,
                    r.fixed_ip.as_deref(),
                    &i.uuid,
                    &owner,
                    groups.as_deref(),
                );
                let a = net
                    .call(Method::POST, "/ports", Some(&body), Some(token))
                    .await?;
                if !a.status.is_success() {
                    return Err(refused(&format!("creating a port on network {nid}"), &a));
                }
                let pid = a.body["port"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                tracing::info!(instance = %i.uuid, port = %pid, network = %nid, "port created");
                created.push(pid.clone());
                ports.push((pid, false, r.tag.clone()));
            }
        }
        // 2. Wait for the plug events from before the binding that causes them.
        let mut waiters: BTreeMap<String, crate::core::events::EventWaiter> = ports
            .iter()
            .map(|(pid, _, _)| {
                (
                    pid.clone(),
                    svc.events.prepare(&i.uuid, VIF_PLUGGED, Some(pid)),
                )
            })
            .collect();
        // 3. Bind to this host as compute, then the VIFs from what the binding answered.
        let mut nets: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
        let mut vifs = Vec::new();
        let mut pending = Vec::new();
        for (pid, preserve, tag) in ports {
            let vif = net
                .bind(&host, &pid, preserve, tag.as_deref(), &mut nets)
                .await?;
            if vif["active"] == json!(true) {
                waiters.remove(&pid);
            } else if let Some(w) = waiters.remove(&pid) {
                pending.push((pid.clone(), w));
            }
            vifs.push(vif);
        }
        Ok(Allocation {
            network_info: Value::Array(vifs),
            waiters: pending,
        })
    }
}

/// A port's `binding:profile` without a live migration's `migrating_to`, when it has one.
fn without_migrating_to(port: &Value) -> Option<Value> {
    let mut profile = port["binding:profile"].as_object()?.clone();
    profile.remove("migrating_to")?;
    Some(Value::Object(profile))
}

#[async_trait]
impl NetworkHook for NeutronNetwork {
    async fn prepare_migration(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        dest: &str,
        rid: &str,
    ) -> Result<Value> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        // Where the destination's Linux bridge agent makes taps (its host namespace).
        let namespace = net
            .list(&format!("/agents?host={dest}"), "agents", None)
            .await?
            .into_iter()
            .filter(|a| a["host"] == dest && a["agent_type"] == "Linux bridge agent")
            .find_map(|a| {
                a["configurations"]["namespace"]
                    .as_str()
                    .map(str::to_string)
            });
        let mut vifs = instance.network_info.clone();
        // No agent of its own there: the host shares this data plane (all-in-one), as a
        // binding to it would say.
        if let Some(ns) = &namespace {
            for v in vifs.as_array_mut().into_iter().flatten() {
                if v["details"]["namespace"].is_string() {
                    v["details"]["namespace"] = json!(ns);
                }
            }
        }
        let ports = net
            .list(
                &format!("/ports?device_id={}", instance.uuid),
                "ports",
                None,
            )
            .await?;
        for p in &ports {
            let pid = p["id"].as_str().unwrap_or_default();
            let mut profile = p["binding:profile"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            profile.insert("migrating_to".into(), json!(dest));
            let body = json!({"port": {"binding:profile": profile}});
            let a = net
                .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
                .await?;
            if !a.status.is_success() {
                return Err(refused(
                    &format!("marking port {pid} as migrating to {dest}"),
                    &a,
                ));
            }
        }
        tracing::info!(instance = %instance.uuid, %dest, ports = ports.len(), "ports marked as migrating");
        Ok(vifs)
    }

    async fn abort_migration(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        rid: &str,
    ) -> Result<()> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let ports = net
            .list(
                &format!("/ports?device_id={}", instance.uuid),
                "ports",
                None,
            )
            .await?;
        for p in &ports {
            let Some(profile) = without_migrating_to(p) else {
                continue;
            };
            let pid = p["id"].as_str().unwrap_or_default();
            let body = json!({"port": {"binding:profile": profile}});
            let a = net
                .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
                .await?;
            if !a.status.is_success() {
                return Err(refused(&format!("unmarking port {pid}"), &a));
            }
        }
        Ok(())
    }

    async fn validate(
        &self,
        svc: &ComputeService,
        req: &NetworkRequest<'_>,
        user_token: &str,
        rid: &str,
    ) -> Result<()> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let ask = ask_of(req.requested);
        let mut names_networks = false;
        match &ask {
            Ask::Nothing => return Ok(()),
            Ask::Auto | Ask::Default => {
                let nets = net.available(req.project_id, user_token).await?;
                if nets.len() > 1 {
                    return Err(ComputeError::conflict(AMBIGUOUS));
                }
                if nets.is_empty()
                    && ask == Ask::Auto
                    && !net.can_auto_allocate(req.project_id, user_token).await?
                {
                    return Err(cannot_auto_allocate(req.project_id));
                }
                names_networks = !nets.is_empty();
            }
            Ask::List(list) => {
                for r in list {
                    if let Some(pid) = &r.port_id {
                        let port =
                            free_port(&net, pid, user_token, ComputeError::BadRequest).await?;
                        let p = &port["port"];
                        if req.max_count > 1 {
                            return Err(ComputeError::bad(
                                "Unable to launch multiple instances with a single configured port ID. Please launch your instance one by one with different ports.",
                            ));
                        }
                        if p["fixed_ips"].as_array().is_none_or(Vec::is_empty) {
                            return Err(ComputeError::bad(format!(
                                "Port {pid} requires a FixedIP in order to be used."
                            )));
                        }
                    } else if let Some(nid) = &r.network_id {
                        let a = net
                            .get(&format!("/networks/{nid}"), Some(user_token))
                            .await?;
                        if a.status == StatusCode::NOT_FOUND {
                            return Err(ComputeError::bad(format!(
                                "Network {nid} could not be found."
                            )));
                        }
                        if !a.status.is_success() {
                            return Err(refused(&format!("GET network {nid}"), &a));
                        }
                        if r.fixed_ip.is_some() && req.max_count > 1 {
                            return Err(ComputeError::bad(
                                "max_count cannot be greater than 1 if an fixed_ip is specified.",
                            ));
                        }
                        names_networks = true;
                    }
                }
            }
        }
        if names_networks {
            net.group_ids(req.security_groups, user_token).await?;
        }
        Ok(())
    }

    async fn allocate(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        user_token: &str,
        rid: &str,
    ) -> Result<Allocation> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let mut created = Vec::new();
        let mut taken = Vec::new();
        let r = self
            .allocate_ports(svc, &net, instance, user_token, &mut created, &mut taken)
            .await;
        if r.is_err() {
            // Nothing half made stays behind (Nova's cleanup in allocate_for_instance).
            net.delete_ports(&created).await;
            let _ = net.unbind_ports(&taken).await;
        }
        r
    }

    async fn deallocate(&self, svc: &ComputeService, instance: &Instance, rid: &str) -> Result<()> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let ports = net
            .list(
                &format!("/ports?device_id={}", instance.uuid),
                "ports",
                None,
            )
            .await?;
        let keep = preserved_ports(instance);
        let (kept, gone): (Vec<String>, Vec<String>) = ports
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .partition(|id| keep.contains(id));
        net.delete_ports(&gone).await;
        net.unbind_ports(&kept).await?;
        if !gone.is_empty() || !kept.is_empty() {
            tracing::info!(instance = %instance.uuid, deleted = ?gone, unbound = ?kept, "ports released");
        }
        Ok(())
    }
    async fn unbind_for_offload(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        rid: &str,
    ) -> Result<()> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let body = json!({"port": {"binding:host_id": ""}});
        for vif in instance.network_info.as_array().into_iter().flatten() {
            let Some(pid) = vif["id"].as_str() else {
                continue;
            };
            let a = net
                .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
                .await?;
            // As Nova: a port gone is fine, another failure is logged and the offload goes on.
            if !a.status.is_success() && a.status != StatusCode::NOT_FOUND {
                tracing::warn!(instance = %instance.uuid, port = %pid, "port not unbound at shelve offload: {}", said(&a));
            }
        }
        tracing::info!(instance = %instance.uuid, "ports unbound for shelve offload");
        Ok(())
    }

    async fn bind_on_host(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        rid: &str,
    ) -> Result<Allocation> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let i = instance;
        let host =
            i.host.clone().filter(|h| !h.is_empty()).ok_or_else(|| {
                ComputeError::Internal(format!("instance {} has no host", i.uuid))
            })?;
        let owner = device_owner(i, &svc.cfg.default_availability_zone);
        let mut ports = net
            .list(&format!("/ports?device_id={}", i.uuid), "ports", None)
            .await?;
        // In the order of the network info (the guest's NICs keep their order).
        let old: Vec<&Value> = i.network_info.as_array().into_iter().flatten().collect();
        let position = |p: &Value| {
            old.iter()
                .position(|v| v["id"] == p["id"])
                .unwrap_or(usize::MAX)
        };
        ports.sort_by_key(position);
        let mut waiters: BTreeMap<String, crate::core::events::EventWaiter> = ports
            .iter()
            .filter_map(|p| p["id"].as_str())
            .map(|pid| {
                (
                    pid.to_string(),
                    svc.events.prepare(&i.uuid, VIF_PLUGGED, Some(pid)),
                )
            })
            .collect();
        let preserved = preserved_ports(i);
        let mut nets = BTreeMap::new();
        let mut vifs = Vec::new();
        let mut pending = Vec::new();
        for p in &ports {
            let pid = p["id"].as_str().unwrap_or_default();
            let mut body = json!({"port": {"binding:host_id": host, "device_owner": owner}});
            if let Some(profile) = without_migrating_to(p) {
                // A live migration's mark has served its purpose once the port moves.
                body["port"]["binding:profile"] = profile;
            }
            let a = net
                .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
                .await?;
            if !a.status.is_success() {
                return Err(refused(&format!("binding port {pid} to {host}"), &a));
            }
            let port = &a.body["port"];
            if port["binding:vif_type"] == "binding_failed" {
                return Err(ComputeError::Internal(format!(
                    "Binding failed for port {pid}, please check neutron logs for more information."
                )));
            }
            let was = old.iter().find(|v| v["id"].as_str() == Some(pid));
            let preserve = was.is_some_and(|v| v["preserve_on_delete"] == json!(true))
                || preserved.iter().any(|k| k == pid);
            let tag = was.and_then(|v| v["tag"].as_str());
            let vif = net.vif(port, preserve, tag, &mut nets).await?;
            match waiters.remove(pid) {
                Some(w) if vif["active"] != json!(true) => pending.push((pid.to_string(), w)),
                _ => {}
            }
            vifs.push(vif);
        }
        tracing::info!(instance = %i.uuid, %host, ports = vifs.len(), "ports bound for unshelve");
        Ok(Allocation {
            network_info: Value::Array(vifs),
            waiters: pending,
        })
    }

    async fn allocate_port(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        req: &Requested,
        user_token: &str,
        rid: &str,
    ) -> Result<(Value, Option<crate::core::events::EventWaiter>)> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let i = instance;
        let host =
            i.host.clone().filter(|h| !h.is_empty()).ok_or_else(|| {
                ComputeError::Internal(format!("instance {} has no host", i.uuid))
            })?;
        let (pid, preserve) = self.attach_port(svc, &net, i, req, user_token).await?;
        // The plug event is awaited from before the binding that causes it.
        let waiter = svc.events.prepare(&i.uuid, VIF_PLUGGED, Some(&pid));
        match net
            .bind(
                &host,
                &pid,
                preserve,
                req.tag.as_deref(),
                &mut BTreeMap::new(),
            )
            .await
        {
            Ok(vif) => {
                let waiter = (vif["active"] != json!(true)).then_some(waiter);
                Ok((vif, waiter))
            }
            Err(e) => {
                // Nothing half made stays behind.
                if preserve {
                    let _ = net.unbind_ports(std::slice::from_ref(&pid)).await;
                } else {
                    net.delete_ports(std::slice::from_ref(&pid)).await;
                }
                Err(e)
            }
        }
    }

    async fn deallocate_port(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        port_id: &str,
        preserve: bool,
        rid: &str,
    ) -> Result<()> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let ids = [port_id.to_string()];
        if preserve {
            net.unbind_ports(&ids).await?;
            tracing::info!(instance = %instance.uuid, port = %port_id, "port unbound (the caller's: kept)");
        } else {
            let a = net
                .call(Method::DELETE, &format!("/ports/{port_id}"), None, None)
                .await?;
            if !a.status.is_success() && a.status != StatusCode::NOT_FOUND {
                return Err(refused(&format!("deleting port {port_id}"), &a));
            }
            tracing::info!(instance = %instance.uuid, port = %port_id, "port deleted");
        }
        Ok(())
    }

    async fn list_ports(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        user_token: &str,
        rid: &str,
    ) -> Result<Vec<Value>> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        net.list(
            &format!("/ports?device_id={}", instance.uuid),
            "ports",
            Some(user_token),
        )
        .await
    }

    async fn show_port(
        &self,
        svc: &ComputeService,
        port_id: &str,
        user_token: &str,
        rid: &str,
    ) -> Result<Option<Value>> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let a = net
            .get(&format!("/ports/{port_id}"), Some(user_token))
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(refused(&format!("GET port {port_id}"), &a));
        }
        Ok(Some(a.body["port"].clone()))
    }

    /// As Nova's `add_fixed_ip_to_instance`: a fixed IP on one of the network's subnets for
    /// the instance's port on that network (compute's token).
    async fn add_fixed_ip(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        network_id: &str,
        rid: &str,
    ) -> Result<Value> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let subnets = net
            .list(
                &format!("/subnets?network_id={network_id}"),
                "subnets",
                None,
            )
            .await?;
        let ports = net
            .list(
                &format!("/ports?device_id={}&network_id={network_id}", instance.uuid),
                "ports",
                None,
            )
            .await?;
        for p in &ports {
            let pid = p["id"].as_str().unwrap_or_default();
            for sub in &subnets {
                let mut fixed = p["fixed_ips"].as_array().cloned().unwrap_or_default();
                fixed.push(json!({"subnet_id": sub["id"]}));
                let body = json!({"port": {"fixed_ips": fixed}});
                let a = net
                    .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
                    .await?;
                if a.status.is_success() {
                    tracing::info!(instance = %instance.uuid, port = %pid, subnet = %sub["id"], "fixed IP added");
                    return self.refreshed_vif(&net, instance, &a.body["port"]).await;
                }
                tracing::debug!(port = %pid, subnet = %sub["id"], "no fixed IP there: {}", said(&a));
            }
        }
        Err(ComputeError::bad(crate::hooks::no_network_for(
            &instance.uuid,
        )))
    }

    /// As Nova's `remove_fixed_ip_from_instance`: the address off the instance's port that
    /// holds it.
    async fn remove_fixed_ip(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        address: &str,
        rid: &str,
    ) -> Result<Value> {
        let net = Net {
            c: svc.clients()?,
            rid,
        };
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("device_id", &instance.uuid)
            .append_pair("fixed_ips", &format!("ip_address={address}"))
            .finish();
        let ports = net.list(&format!("/ports?{q}"), "ports", None).await?;
        let Some(p) = ports.first() else {
            return Err(ComputeError::bad(crate::hooks::no_fixed_ip(
                &instance.uuid,
                address,
            )));
        };
        let pid = p["id"].as_str().unwrap_or_default();
        let kept: Vec<Value> = p["fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["ip_address"].as_str() != Some(address))
            .cloned()
            .collect();
        let body = json!({"port": {"fixed_ips": kept}});
        let a = net
            .call(Method::PUT, &format!("/ports/{pid}"), Some(&body), None)
            .await?;
        if !a.status.is_success() {
            return Err(refused(&format!("removing {address} from port {pid}"), &a));
        }
        tracing::info!(instance = %instance.uuid, port = %pid, %address, "fixed IP removed");
        self.refreshed_vif(&net, instance, &a.body["port"]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(requested: Value, network_info: Value) -> Instance {
        serde_json::from_value(json!({
            "uuid": "i1", "project_id": "p", "user_id": "u", "display_name": "vm",
            "hostname": "vm", "vm_state": "building", "host": "h1",
            "requested_networks": requested, "network_info": network_info,
            "flavor": {"flavorid": "1", "name": "f", "memory_mb": 64, "vcpus": 1, "root_gb": 1,
                       "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0, "is_public": true},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn asks() {
        assert_eq!(ask_of(&json!("none")), Ask::Nothing);
        assert_eq!(ask_of(&json!("auto")), Ask::Auto);
        assert_eq!(ask_of(&Value::Null), Ask::Default);
        assert_eq!(
            ask_of(&json!([{"uuid": "n1", "fixed_ip": "10.0.0.9", "tag": "t"}, {"port": "p1"}])),
            Ask::List(vec![
                Requested {
                    network_id: Some("n1".into()),
                    fixed_ip: Some("10.0.0.9".into()),
                    tag: Some("t".into()),
                    ..Default::default()
                },
                Requested {
                    port_id: Some("p1".into()),
                    ..Default::default()
                }
            ])
        );
    }

    #[test]
    fn available_are_own_and_shared_not_external() {
        let all = vec![
            json!({"id": "own", "project_id": "p", "shared": false, "router:external": false}),
            json!({"id": "other", "project_id": "q", "shared": false, "router:external": false}),
            json!({"id": "shared", "project_id": "q", "shared": true, "router:external": false}),
            json!({"id": "public", "project_id": "p", "shared": false, "router:external": true}),
        ];
        let ids: Vec<Value> = available_networks(&all, "p")
            .into_iter()
            .map(|n| n["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("own"), json!("shared")]);
    }

    #[test]
    fn port_bodies() {
        assert_eq!(
            port_create_body("n1", None, "i1", "compute:nova", None),
            json!({"port": {"network_id": "n1", "device_id": "i1", "device_owner": "compute:nova"}})
        );
        let groups = vec!["g1".to_string()];
        assert_eq!(
            port_create_body("n1", Some("10.0.0.9"), "i1", "compute:az1", Some(&groups)),
            json!({"port": {"network_id": "n1", "device_id": "i1", "device_owner": "compute:az1",
                "fixed_ips": [{"ip_address": "10.0.0.9"}], "security_groups": ["g1"]}})
        );
        let mut i = inst(json!("auto"), json!([]));
        assert_eq!(device_owner(&i, "nova"), "compute:nova");
        i.host_availability_zone = Some("az1".into());
        assert_eq!(device_owner(&i, "nova"), "compute:az1");
    }

    #[test]
    fn vif_from_a_bound_port() {
        let port = json!({
            "id": "0123456789abcdef", "mac_address": "fa:16:3e:00:00:01", "status": "DOWN",
            "network_id": "n1", "binding:vif_type": "bridge", "binding:vnic_type": "normal",
            "binding:vif_details": {"port_filter": true, "connectivity": "l2",
                "bridge_name": "brq1", "devname": "tap0123456789a", "namespace": "kumo-host"},
            "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        });
        let network = json!({"id": "n1", "name": "private", "mtu": 1450, "project_id": "p"});
        let subnets = vec![
            json!({"id": "s1", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1",
                   "dns_nameservers": ["8.8.8.8"], "host_routes": [], "enable_dhcp": true}),
            json!({"id": "s2", "cidr": "fd00::/64", "ip_version": 6, "gateway_ip": null}),
        ];
        let vif = vif_of(&port, &network, &subnets, false, Some("eth0"));
        assert_eq!(vif["devname"], "tap0123456789a");
        assert_eq!(vif["type"], "bridge");
        assert_eq!(vif["active"], false);
        assert_eq!(vif["preserve_on_delete"], false);
        assert_eq!(vif["tag"], "eth0");
        assert_eq!(vif["details"]["namespace"], "kumo-host");
        assert_eq!(vif["network"]["label"], "private");
        assert_eq!(vif["network"]["bridge"], "brq1");
        assert_eq!(vif["network"]["meta"]["mtu"], 1450);
        let subs = vif["network"]["subnets"].as_array().unwrap();
        assert_eq!(subs.len(), 1, "only the subnets the port has an address on");
        assert_eq!(subs[0]["cidr"], "10.0.0.0/24");
        assert_eq!(subs[0]["gateway"]["address"], "10.0.0.1");
        assert_eq!(subs[0]["dns"][0]["address"], "8.8.8.8");
        assert_eq!(
            subs[0]["ips"],
            json!([{"address": "10.0.0.5", "type": "fixed", "version": 4, "meta": {},
                    "floating_ips": []}])
        );
        // An unbound port: Nova's tap name.
        let bare = json!({"id": "0123456789abcdef", "status": "ACTIVE"});
        let vif = vif_of(&bare, &network, &[], true, None);
        assert_eq!(vif["devname"], "tap0123456789a");
        assert_eq!(vif["active"], true);
        assert!(vif.get("tag").is_none());
    }

    #[test]
    fn preserved_are_the_callers_ports() {
        let i = inst(
            json!([{"port": "p1"}, {"uuid": "n1"}]),
            json!([{"id": "p1", "preserve_on_delete": true},
                   {"id": "p2", "preserve_on_delete": false},
                   {"id": "p3", "preserve_on_delete": true}]),
        );
        assert_eq!(preserved_ports(&i), vec!["p1".to_string(), "p3".into()]);
        assert!(preserved_ports(&inst(json!("auto"), json!([]))).is_empty());
    }
}
