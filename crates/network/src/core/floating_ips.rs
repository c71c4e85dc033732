//! Floating IPs (`/v2.0/floatingips`): an address of an external network, held by a port
//! of its own (device_owner `network:floatingip`, device_id = the floating IP), associated
//! with a fixed IPv4 address of a port that a router joins to that external network.
//!
//! Status: DOWN while unassociated, ACTIVE once associated. Neutron's L3 agent reports ACTIVE
//! after applying the NAT rules; kumo's data plane converges right after the commit.

use common::auth::AuthContext;
use serde_json::{Map, Value, json};
use std::net::IpAddr;

use super::attrs::*;
use super::ports::{IpRequest, PortSpec};
use super::routers::to_uuid;
use super::{FLOATINGIP, NetworkService};
use crate::error::{NetError, Result};
use crate::ipam;
use crate::model::{
    FloatingIp, OWNER_DHCP, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE, Port,
    now,
};
use crate::store;

pub const FLOATINGIP_KEYS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "description",
    "floating_network_id",
    "floating_ip_address",
    "router_id",
    "port_id",
    "fixed_ip_address",
    "status",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
/// The rendered keys and `subnet_id` (input only).
const FLOATINGIP_KNOWN: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "description",
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "router_id",
    "port_id",
    "fixed_ip_address",
    "status",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const FLOATINGIP_POST: &[&str] = &[
    "tenant_id",
    "project_id",
    "description",
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "port_id",
    "fixed_ip_address",
];
const FLOATINGIP_PUT: &[&str] = &["description", "port_id", "fixed_ip_address"];

/// neutron-lib's validate_ip_address_or_none.
fn to_ip_or_none(attr: &str, v: Option<&Value>) -> Result<Option<IpAddr>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(ipam::parse_ip(attr, s)?)),
        Some(other) => Err(NetError::invalid_attr(
            attr,
            format!("'{}' is not a valid IP address", py(other)),
        )),
    }
}

fn to_uuid_or_none(attr: &str, v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(to_uuid(attr, v)?)),
    }
}

fn fip_bad(msg: impl std::fmt::Display) -> NetError {
    NetError::bad_request("floatingip", msg)
}

/// Where a floating IP points: the port, its fixed address, the router doing the NAT.
struct Association {
    port_id: String,
    fixed_ip: String,
    router_id: String,
}

impl NetworkService {
    pub(crate) fn fip_target(f: &FloatingIp) -> Value {
        json!({
            "id": f.id, "project_id": f.project_id, "tenant_id": f.project_id,
            "floating_network_id": f.floating_network_id,
        })
    }

    fn fip_readable(&self, ctx: &AuthContext, f: &FloatingIp) -> bool {
        (self.is_admin(ctx) || ctx.project_id() == Some(&f.project_id))
            && self.allowed(ctx, "get_floatingip", &Self::fip_target(f))
    }

    /// Every floating IP (all projects).
    pub(crate) async fn all_floating_ips<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
    ) -> Result<Vec<FloatingIp>> {
        super::read_all(c, FLOATINGIP).await
    }

    async fn lookup_floating_ip<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<FloatingIp> {
        let f: Option<FloatingIp> = super::read(c, FLOATINGIP, id).await?;
        match f {
            Some(f) if self.fip_readable(ctx, &f) => Ok(f),
            _ => Err(NetError::floatingip_not_found(id)),
        }
    }

    async fn save_floating_ip<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        f: &FloatingIp,
    ) -> Result<()> {
        store::update(c, &f.id, serde_json::to_string(f)?).await?;
        Ok(())
    }

    /// The router joining `subnet_id` (of `port`) to `ext_net`: one with an interface on the
    /// subnet and its gateway on the external network, the one whose interface is the
    /// subnet's gateway first (Neutron's get_router_for_floatingip).
    async fn router_for_floating_ip<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        port: &Port,
        subnet_id: &str,
        ext_net: &str,
    ) -> Result<String> {
        let gateway_ip = self
            .load_subnet(c, subnet_id)
            .await?
            .and_then(|s| s.gateway_ip);
        let mut first: Option<String> = None;
        for r in self.all_routers(c).await? {
            if r.gateway.as_ref().map(|g| g.network_id.as_str()) != Some(ext_net) {
                continue;
            }
            for p in self.router_ports(c, &r.id).await? {
                if p.device_owner != OWNER_ROUTER_INTERFACE || p.network_id != port.network_id {
                    continue;
                }
                for f in p.fixed_ips.iter().filter(|f| f.subnet_id == subnet_id) {
                    if gateway_ip.as_deref() == Some(f.ip_address.as_str()) {
                        return Ok(r.id);
                    }
                    first.get_or_insert_with(|| r.id.clone());
                }
            }
        }
        first.ok_or_else(|| {
            NetError::new(
                http::StatusCode::NOT_FOUND,
                "ExternalGatewayForFloatingIPNotFound",
                format!(
                    "External network {ext_net} is not reachable from subnet {subnet_id}.  Therefore, cannot associate Port {} with a Floating IP.",
                    port.id
                ),
            )
        })
    }

    /// Check an association of `f` with `port_id` (and `fixed`) as Neutron's
    /// _check_and_get_fip_assoc does.
    async fn associate<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        f: &FloatingIp,
        port_id: &str,
        fixed: Option<IpAddr>,
    ) -> Result<Association> {
        let (port, _) = self.lookup_port(c, ctx, port_id).await?;
        if port.project_id != f.project_id && !self.is_admin(ctx) {
            return Err(fip_bad(format!(
                "Cannot process floating IP association with Port {port_id}, since that port is owned by a different project"
            )));
        }
        if [OWNER_DHCP, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY]
            .contains(&port.device_owner.as_str())
        {
            return Err(fip_bad(format!(
                "Port {port_id} is unable to be assigned a floating IP"
            )));
        }
        let (ip, subnet) = match fixed {
            Some(ip) => {
                if !ip.is_ipv4() {
                    return Err(fip_bad(format!(
                        "Cannot process floating IP association with {ip}, since that is not an IPv4 address"
                    )));
                }
                let Some(x) = port
                    .fixed_ips
                    .iter()
                    .find(|x| x.ip_address.parse::<IpAddr>().ok() == Some(ip))
                else {
                    return Err(fip_bad(format!(
                        "Port {port_id} does not have fixed ip {ip}"
                    )));
                };
                (x.ip_address.clone(), x.subnet_id.clone())
            }
            None => {
                let v4: Vec<_> = port
                    .fixed_ips
                    .iter()
                    .filter(|x| x.ip_address.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()))
                    .collect();
                match v4.as_slice() {
                    [] => {
                        return Err(fip_bad(format!(
                            "Cannot add floating IP to port {port_id} that has no fixed IPv4 addresses"
                        )));
                    }
                    [one] => (one.ip_address.clone(), one.subnet_id.clone()),
                    _ => {
                        return Err(fip_bad(format!(
                            "Port {port_id} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP"
                        )));
                    }
                }
            }
        };
        let router_id = self
            .router_for_floating_ip(c, &port, &subnet, &f.floating_network_id)
            .await?;
        if f.port_id.as_deref() != Some(port_id) {
            let taken = self.all_floating_ips(c).await?.into_iter().any(|o| {
                o.id != f.id
                    && o.port_id.as_deref() == Some(port_id)
                    && o.floating_network_id == f.floating_network_id
                    && o.fixed_ip_address.as_deref() == Some(ip.as_str())
            });
            if taken {
                return Err(NetError::conflict(
                    "FloatingIPPortAlreadyAssociated",
                    format!(
                        "Cannot associate floating IP {} ({}) with port {port_id} using fixed IP {ip}, as that fixed IP already has a floating IP on external network {}.",
                        f.floating_ip_address, f.id, f.floating_network_id
                    ),
                ));
            }
        }
        Ok(Association {
            port_id: port.id,
            fixed_ip: ip,
            router_id,
        })
    }

    fn apply_association(f: &mut FloatingIp, a: Option<Association>) {
        match a {
            Some(a) => {
                f.port_id = Some(a.port_id);
                f.fixed_ip_address = Some(a.fixed_ip);
                f.router_id = Some(a.router_id);
                f.status = "ACTIVE".into();
            }
            None => {
                f.port_id = None;
                f.fixed_ip_address = None;
                f.router_id = None;
                f.status = "DOWN".into();
            }
        }
    }

    /// Disassociate the floating IPs of a port about to be deleted (Neutron's
    /// disassociate_floatingips on port delete).
    pub(crate) async fn disassociate_floating_ips_of_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        port_id: &str,
    ) -> Result<()> {
        for mut f in self.all_floating_ips(c).await? {
            if f.port_id.as_deref() == Some(port_id) {
                Self::apply_association(&mut f, None);
                f.updated_at = now();
                f.revision_number += 1;
                self.save_floating_ip(c, &f).await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ API

    pub async fn create_floating_ips(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.write().await?;
        let mut out = Vec::new();
        for body in bodies {
            check_keys(body, FLOATINGIP_KNOWN, FLOATINGIP_POST, false)?;
            let Some(net_id) = body.get("floating_network_id") else {
                return Err(NetError::bad(
                    "Failed to parse request. Required attribute 'floating_network_id' not specified",
                ));
            };
            let net_id = to_uuid("floating_network_id", net_id)?;
            let address = to_ip_or_none("floating_ip_address", body.get("floating_ip_address"))?;
            let subnet_id = to_uuid_or_none("subnet_id", body.get("subnet_id"))?;
            let port_id = to_uuid_or_none("port_id", body.get("port_id"))?;
            let fixed = to_ip_or_none("fixed_ip_address", body.get("fixed_ip_address"))?;
            let description = match body.get("description") {
                Some(v) => to_string("description", v, 255)?,
                None => String::new(),
            };
            let ts = now();
            let mut f = FloatingIp {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: owner(ctx, body)?,
                description,
                floating_network_id: net_id.clone(),
                floating_ip_address: String::new(),
                floating_port_id: String::new(),
                port_id: None,
                fixed_ip_address: None,
                router_id: None,
                status: "DOWN".into(),
                created_at: ts.clone(),
                updated_at: ts,
                revision_number: 0,
            };
            let attrs: &[&str] = if address.is_some() {
                &["floating_ip_address"]
            } else {
                &[]
            };
            self.authorize(ctx, "create_floatingip", attrs, &Self::fip_target(&f))?;
            if fixed.is_some() && port_id.is_none() {
                return Err(fip_bad(
                    "fixed_ip_address cannot be specified without a port_id",
                ));
            }
            let net = match self.load_network(&*w, &net_id).await? {
                Some(n) if self.net_readable(ctx, &n) => n,
                _ => return Err(NetError::network_not_found(&net_id)),
            };
            if !net.external {
                return Err(fip_bad(format!(
                    "Network {net_id} is not a valid external network"
                )));
            }
            let subnets = self.network_subnets(&*w, &net.id).await?;
            if !subnets.iter().any(|s| s.ip_version == 4) {
                return Err(fip_bad(format!(
                    "Network {net_id} does not contain any IPv4 subnet"
                )));
            }
            self.check_quota(&*w, &f.project_id, FLOATINGIP, 1).await?;
            let request = (subnet_id.is_some() || address.is_some()).then(|| {
                vec![IpRequest {
                    subnet_id: subnet_id.clone(),
                    ip_address: address,
                }]
            });
            let port = self
                .create_service_port(
                    &*w,
                    &net,
                    PortSpec {
                        // Neutron's floating IP port belongs to no project: it is hidden.
                        project_id: String::new(),
                        device_owner: OWNER_FLOATING_IP.into(),
                        device_id: f.id.clone(),
                        fixed_ips: request,
                        name: String::new(),
                    },
                )
                .await?;
            let Some(v4) = port.ips().find(IpAddr::is_ipv4) else {
                return Err(NetError::new(
                    http::StatusCode::BAD_REQUEST,
                    "ExternalIpAddressExhausted",
                    format!("Unable to find any IP address on external network {net_id}."),
                ));
            };
            f.floating_ip_address = v4.to_string();
            f.floating_port_id = port.id.clone();
            if let Some(pid) = &port_id {
                let a = self.associate(&*w, ctx, &f, pid, fixed).await?;
                Self::apply_association(&mut f, Some(a));
            }
            store::insert(
                &*w,
                store::NewRow {
                    kind: FLOATINGIP,
                    id: &f.id,
                    project_id: &f.project_id,
                    parent_id: None,
                    created_at: &f.created_at,
                    body: serde_json::to_string(&f)?,
                },
            )
            .await?;
            out.push(f.render());
        }
        w.commit().await?;
        self.changed();
        Ok(out)
    }

    pub async fn list_floating_ips(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        Ok(self
            .all_floating_ips(self.db.conn())
            .await?
            .iter()
            .filter(|f| self.fip_readable(ctx, f))
            .map(FloatingIp::render)
            .collect())
    }

    pub async fn get_floating_ip(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        Ok(self
            .lookup_floating_ip(self.db.conn(), ctx, id)
            .await?
            .render())
    }

    pub async fn update_floating_ip(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, FLOATINGIP_KNOWN, FLOATINGIP_PUT, true)?;
        let port_id = to_uuid_or_none("port_id", body.get("port_id"))?;
        let fixed = to_ip_or_none("fixed_ip_address", body.get("fixed_ip_address"))?;
        let w = self.write().await?;
        let mut f = self.lookup_floating_ip(&*w, ctx, id).await?;
        check_revision(if_match, f.revision_number)?;
        self.authorize(ctx, "update_floatingip", &[], &Self::fip_target(&f))?;
        if let Some(v) = body.get("description") {
            f.description = to_string("description", v, 255)?;
        }
        if fixed.is_some() && port_id.is_none() {
            return Err(fip_bad(
                "fixed_ip_address cannot be specified without a port_id",
            ));
        }
        if body.contains_key("port_id") {
            let a = match &port_id {
                Some(pid) => Some(self.associate(&*w, ctx, &f, pid, fixed).await?),
                None => None,
            };
            Self::apply_association(&mut f, a);
        }
        f.updated_at = now();
        f.revision_number += 1;
        self.save_floating_ip(&*w, &f).await?;
        w.commit().await?;
        self.changed();
        Ok(f.render())
    }

    pub async fn delete_floating_ip(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let f = self.lookup_floating_ip(&*w, ctx, id).await?;
        check_revision(if_match, f.revision_number)?;
        self.authorize(ctx, "delete_floatingip", &[], &Self::fip_target(&f))?;
        self.remove_port(&*w, &f.floating_port_id).await?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }
}
