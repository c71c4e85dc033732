//! Ports: addresses from the subnets (IPAM), MACs, device owner/id, allowed address pairs,
//! security groups, port security and the binding to a host.

use common::auth::AuthContext;
use ipnet::IpNet;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::attrs::*;
use super::{NetworkService, PORT, SUBNET};
use crate::error::{NetError, Result};
use crate::ipam;
use crate::model::{
    AddressPair, FixedIp, Network, OWNER_DHCP, OWNER_FLOATING_IP, OWNER_ROUTER_GATEWAY,
    OWNER_ROUTER_INTERFACE, Port, Subnet, now,
};
use crate::store;

pub const PORT_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "mac_address",
    "admin_state_up",
    "status",
    "device_id",
    "device_owner",
    "fixed_ips",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "security_groups",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "binding:vif_type",
    "binding:vif_details",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const PORT_POST: &[&str] = &[
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "mac_address",
    "admin_state_up",
    "device_id",
    "device_owner",
    "fixed_ips",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "security_groups",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
];
const PORT_PUT: &[&str] = &[
    "name",
    "description",
    "mac_address",
    "admin_state_up",
    "device_id",
    "device_owner",
    "fixed_ips",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "security_groups",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
];
/// Attributes with a policy rule of their own (`create_port:<attr>`).
const PORT_POLICY_ATTRS: &[&str] = &[
    "device_owner",
    "mac_address",
    "fixed_ips",
    "port_security_enabled",
    "binding:host_id",
    "binding:profile",
    "allowed_address_pairs",
];
/// vnic types Neutron accepts; kumo binds `normal` only (others fail to bind).
const VNIC_TYPES: &[&str] = &[
    "normal",
    "direct",
    "macvtap",
    "baremetal",
    "direct-physical",
    "virtio-forwarder",
    "smart-nic",
    "vdpa",
    "remote-managed",
];
/// Owners whose ports the network service deletes with the network.
const AUTO_DELETE_OWNERS: &[&str] = &[OWNER_DHCP];

/// A requested fixed IP: a subnet, an address, or both.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpRequest {
    pub subnet_id: Option<String>,
    pub ip_address: Option<IpAddr>,
}

/// What the network service needs to make a port of its own (DHCP, router, floating IP).
#[derive(Debug, Clone)]
pub(crate) struct PortSpec {
    pub project_id: String,
    pub device_owner: String,
    pub device_id: String,
    /// `None` = one address from the network's subnets as for a user's port.
    pub fixed_ips: Option<Vec<IpRequest>>,
    pub name: String,
}

fn is_valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A MAC with the configured base and random host octets.
fn random_mac(base: &str) -> String {
    let mut octets: Vec<String> = base.split(':').take(3).map(str::to_lowercase).collect();
    while octets.len() < 3 {
        octets.push("00".into());
    }
    // A v4 UUID is 122 random bits: three of its bytes are random enough for a MAC.
    let r = uuid::Uuid::new_v4();
    for b in &r.as_bytes()[..3] {
        octets.push(format!("{b:02x}"));
    }
    octets.join(":")
}

/// The modified EUI-64 address of `mac` in an IPv6 /64 (SLAAC, as the guest computes it).
pub fn eui64(net: &IpNet, mac: &str) -> Option<IpAddr> {
    let IpNet::V6(n) = net else { return None };
    let b: Vec<u8> = mac
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    if b.len() != 6 {
        return None;
    }
    let iid = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let mut bytes = n.network().octets();
    bytes[8..].copy_from_slice(&iid);
    Some(IpAddr::V6(bytes.into()))
}

/// The port addresses are allocated for.
#[derive(Clone, Copy)]
pub(crate) struct AddressHolder<'a> {
    pub id: &'a str,
    pub mac: &'a str,
    pub owner: &'a str,
}

impl<'a> AddressHolder<'a> {
    pub fn of(p: &'a Port) -> Self {
        AddressHolder {
            id: &p.id,
            mac: &p.mac_address,
            owner: &p.device_owner,
        }
    }
}

/// Neutron's ROUTER_INTERFACE_OWNERS.
const ROUTER_INTERFACE_OWNERS: &[&str] = &[
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

fn is_auto_address(s: &Subnet) -> bool {
    matches!(
        s.ipv6_address_mode.as_deref(),
        Some("slaac") | Some("dhcpv6-stateless")
    )
}

fn parse_ip_requests(v: &Value) -> Result<Vec<IpRequest>> {
    let mut out = Vec::new();
    for item in to_list("fixed_ips", v)? {
        let Some(o) = item.as_object() else {
            return Err(NetError::invalid_attr(
                "fixed_ips",
                format!("'{}' is not a dictionary", py(item)),
            ));
        };
        for k in o.keys() {
            if k != "subnet_id" && k != "ip_address" {
                return Err(NetError::invalid_attr(
                    "fixed_ips",
                    format!("Unexpected keys supplied: {k}"),
                ));
            }
        }
        let subnet_id = match o.get("subnet_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(to_string("fixed_ips", v, 36)?),
        };
        let ip_address = match o.get("ip_address") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ipam::parse_ip("fixed_ips", s)?),
            Some(other) => {
                return Err(NetError::invalid_attr(
                    "fixed_ips",
                    format!("'{}' is not a valid IP address", py(other)),
                ));
            }
        };
        out.push(IpRequest {
            subnet_id,
            ip_address,
        });
    }
    Ok(out)
}

fn parse_address_pairs(v: &Value, port_mac: &str) -> Result<Vec<AddressPair>> {
    let mut out: Vec<AddressPair> = Vec::new();
    for item in to_list("allowed_address_pairs", v)? {
        let Some(o) = item.as_object() else {
            return Err(NetError::invalid_attr(
                "allowed_address_pairs",
                format!("'{}' is not a dictionary", py(item)),
            ));
        };
        let Some(ip) = o.get("ip_address").and_then(Value::as_str) else {
            return Err(NetError::new(
                http::StatusCode::BAD_REQUEST,
                "AllowedAddressPairsMissingIP",
                "AllowedAddressPair must contain ip_address",
            ));
        };
        let valid = ip.parse::<IpAddr>().is_ok() || ip.parse::<IpNet>().is_ok();
        if !valid {
            return Err(NetError::invalid_attr(
                "allowed_address_pairs",
                format!("'{ip}' is not a valid IP address"),
            ));
        }
        let mac = match o.get("mac_address") {
            None | Some(Value::Null) => port_mac.to_string(),
            Some(Value::String(m)) if is_valid_mac(m) => m.to_lowercase(),
            Some(other) => {
                return Err(NetError::invalid_attr(
                    "allowed_address_pairs",
                    format!("'{}' is not a valid MAC address", py(other)),
                ));
            }
        };
        let pair = AddressPair {
            ip_address: ip.to_string(),
            mac_address: mac,
        };
        if out.contains(&pair) {
            return Err(NetError::new(
                http::StatusCode::BAD_REQUEST,
                "DuplicateAddressPairInRequest",
                format!(
                    "Request contains duplicate address pair: mac_address {} ip_address {}.",
                    pair.mac_address, pair.ip_address
                ),
            ));
        }
        out.push(pair);
    }
    Ok(out)
}

fn parse_sg_ids(v: &Value) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in to_list("security_groups", v)? {
        let id = to_string("security_groups", s, 36)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn port_in_use(id: &str, owner: &str) -> NetError {
    NetError::conflict(
        "L3PortInUse",
        format!("Port {id} cannot be deleted directly via the port API: has device owner {owner}."),
    )
}

pub fn port_not_found(id: &str) -> NetError {
    NetError::new(
        http::StatusCode::NOT_FOUND,
        "PortNotFound",
        format!("Port {id} could not be found."),
    )
}

impl NetworkService {
    pub(crate) fn port_target(p: &Port, net: &Network) -> Value {
        json!({
            "id": p.id, "project_id": p.project_id, "tenant_id": p.project_id,
            "network_id": p.network_id, "device_owner": p.device_owner,
            "network_device": if p.device_owner.starts_with("network:") { "True" } else { "False" },
            "network:project_id": net.project_id, "network:tenant_id": net.project_id,
            "shared": if net.shared { "True" } else { "False" },
            "router:external": if net.external { "True" } else { "False" },
        })
    }

    /// Neutron's scoping of ports: admin all; others their project's ports and every port
    /// on a network their project owns.
    fn port_visible(&self, ctx: &AuthContext, p: &Port, net: &Network) -> bool {
        let me = ctx.project_id();
        self.is_admin(ctx) || me == Some(&p.project_id) || me == Some(&net.project_id)
    }

    fn port_readable(&self, ctx: &AuthContext, p: &Port, net: &Network) -> bool {
        self.port_visible(ctx, p, net) && self.allowed(ctx, "get_port", &Self::port_target(p, net))
    }

    /// The rendered port without the attributes the caller's policy hides.
    pub(crate) fn render_port(&self, ctx: &AuthContext, p: &Port, net: &Network) -> Value {
        let mut v = p.render();
        let target = Self::port_target(p, net);
        if let Some(o) = v.as_object_mut() {
            for attr in [
                "binding:host_id",
                "binding:profile",
                "binding:vif_type",
                "binding:vif_details",
            ] {
                if !self.allowed(ctx, &format!("get_port:{attr}"), &target) {
                    o.remove(attr);
                }
            }
        }
        v
    }

    pub(crate) async fn load_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Port>> {
        super::read(c, PORT, id).await
    }

    pub(crate) async fn network_ports<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
    ) -> Result<Vec<Port>> {
        super::read_children(c, PORT, net).await
    }

    pub(crate) async fn network_subnets<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
    ) -> Result<Vec<Subnet>> {
        super::read_children(c, SUBNET, net).await
    }

    /// The port `id` and its network if the caller may see it, else PortNotFound.
    pub(crate) async fn lookup_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<(Port, Network)> {
        let Some(p) = self.load_port(c, id).await? else {
            return Err(port_not_found(id));
        };
        let Some(n) = self.load_network(c, &p.network_id).await? else {
            return Err(port_not_found(id));
        };
        if self.port_readable(ctx, &p, &n) {
            Ok((p, n))
        } else {
            Err(port_not_found(id))
        }
    }

    /// A MAC not used on `net` (the given one, checked, or a new one).
    async fn choose_mac<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
        wanted: Option<&str>,
    ) -> Result<String> {
        if let Some(m) = wanted {
            let m = m.to_lowercase();
            if self.mac_in_use(c, net, &m).await? {
                return Err(NetError::conflict(
                    "MacAddressInUse",
                    format!(
                        "Unable to complete operation for network {net}. The mac address {m} is in use."
                    ),
                ));
            }
            return Ok(m);
        }
        for _ in 0..32 {
            let m = random_mac(&self.cfg.base_mac);
            if !self.mac_in_use(c, net, &m).await? {
                return Ok(m);
            }
        }
        Err(NetError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "MacAddressGenerationFailure",
            format!("Unable to generate unique mac on network {net}."),
        ))
    }

    /// Whether a port of `net` has the MAC `mac` (lower case): one lookup by key (`port_mac`).
    async fn mac_in_use<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
        mac: &str,
    ) -> Result<bool> {
        Ok(store::mac_taken(c, net, &mac.to_lowercase()).await?)
    }

    /// The lowest free address of `subnet`'s allocation pools.
    async fn next_free_ip<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        subnet: &Subnet,
        taken_now: &HashSet<IpAddr>,
    ) -> Result<Option<IpAddr>> {
        let used: HashSet<IpAddr> = store::allocated_ips(c, &subnet.id)
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let v6 = subnet.ip_version == 6;
        for pool in &subnet.allocation_pools {
            let (Ok(a), Ok(b)) = (pool.start.parse::<IpAddr>(), pool.end.parse::<IpAddr>()) else {
                continue;
            };
            let (mut x, end) = (ipam::to_u128(a), ipam::to_u128(b));
            while x <= end {
                let ip = ipam::from_u128(x, v6);
                if !used.contains(&ip) && !taken_now.contains(&ip) {
                    return Ok(Some(ip));
                }
                x += 1;
            }
        }
        Ok(None)
    }

    /// Addresses for a new (or changed) port on `net`, as Neutron's IPAM gives them:
    /// requested ones checked; without a request one IPv4 address from the first subnet with
    /// room, a stateful IPv6 one likewise, and the SLAAC address of every auto-address subnet.
    pub(crate) async fn allocate_ips<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &Network,
        holder: AddressHolder<'_>,
        requested: Option<&[IpRequest]>,
        keep: &[FixedIp],
    ) -> Result<Vec<FixedIp>> {
        let AddressHolder {
            id: port_id,
            mac,
            owner,
        } = holder;
        // Router interfaces may hold any address of an auto-address subnet (its gateway).
        let router_port = ROUTER_INTERFACE_OWNERS.contains(&owner);
        let subnets = self.network_subnets(c, &net.id).await?;
        let mut out: Vec<FixedIp> = Vec::new();
        let mut taken_now: HashSet<IpAddr> = HashSet::new();
        let find_subnet = |id: &str| subnets.iter().find(|s| s.id == id);
        match requested {
            Some(reqs) => {
                for r in reqs {
                    let subnet = match (&r.subnet_id, r.ip_address) {
                        (Some(sid), _) => find_subnet(sid).ok_or_else(|| {
                            NetError::invalid_input(format!(
                                "Failed to create port on network {}, because fixed_ips included invalid subnet {sid}",
                                net.id
                            ))
                        })?,
                        (None, Some(ip)) => subnets
                            .iter()
                            .find(|s| {
                                s.cidr.parse::<IpNet>().is_ok_and(|n| n.contains(&ip))
                            })
                            .ok_or_else(|| {
                                NetError::new(
                                    http::StatusCode::BAD_REQUEST,
                                    "InvalidIpForNetwork",
                                    format!(
                                        "IP address {ip} is not a valid IP for any of the subnets on the specified network."
                                    ),
                                )
                            })?,
                        (None, None) => {
                            return Err(NetError::invalid_attr(
                                "fixed_ips",
                                "Exactly one of subnet_id or ip_address must be given",
                            ));
                        }
                    };
                    let ip = match r.ip_address {
                        Some(ip) => {
                            let cidr = ipam::parse_cidr(&subnet.cidr)?;
                            let valid = cidr.contains(&ip)
                                && (ip.is_ipv6()
                                    || cidr.prefix_len() >= 31
                                    || (ip != cidr.network() && ip != cidr.broadcast()));
                            if !valid {
                                return Err(NetError::new(
                                    http::StatusCode::BAD_REQUEST,
                                    "InvalidIpForSubnet",
                                    format!(
                                        "IP address {ip} is not a valid IP for the specified subnet."
                                    ),
                                ));
                            }
                            if is_auto_address(subnet)
                                && !router_port
                                && eui64(&cidr, mac) != Some(ip)
                            {
                                return Err(NetError::bad(format!(
                                    "IPv6 address {ip} cannot be directly assigned to a port on subnet {} as the subnet is configured for automatic addresses",
                                    subnet.id
                                )));
                            }
                            let holder = store::ip_holder(c, &subnet.id, &ip.to_string()).await?;
                            let ours = holder.as_deref() == Some(port_id);
                            if (holder.is_some() && !ours) || taken_now.contains(&ip) {
                                return Err(NetError::conflict(
                                    "IpAddressAlreadyAllocated",
                                    format!(
                                        "IP address {ip} already allocated in subnet {}",
                                        subnet.id
                                    ),
                                ));
                            }
                            ip
                        }
                        None => {
                            if let Some(k) = keep.iter().find(|k| k.subnet_id == subnet.id)
                                && let Ok(ip) = k.ip_address.parse::<IpAddr>()
                                && !taken_now.contains(&ip)
                            {
                                ip
                            } else if is_auto_address(subnet) {
                                eui64(&ipam::parse_cidr(&subnet.cidr)?, mac).ok_or_else(|| {
                                    NetError::invalid_input("cannot derive a SLAAC address")
                                })?
                            } else {
                                self.next_free_ip(c, subnet, &taken_now).await?.ok_or_else(
                                    || {
                                        NetError::conflict(
                                            "IpAddressGenerationFailure",
                                            format!(
                                                "No more IP addresses available for subnet {}.",
                                                subnet.id
                                            ),
                                        )
                                    },
                                )?
                            }
                        }
                    };
                    taken_now.insert(ip);
                    out.push(FixedIp {
                        subnet_id: subnet.id.clone(),
                        ip_address: ip.to_string(),
                    });
                }
            }
            None => {
                let mut got_v4 = false;
                let mut got_v6 = false;
                let mut any_room = subnets.is_empty();
                for s in &subnets {
                    let ip = if is_auto_address(s) {
                        eui64(&ipam::parse_cidr(&s.cidr)?, mac)
                    } else if (s.ip_version == 4 && got_v4) || (s.ip_version == 6 && got_v6) {
                        continue;
                    } else {
                        self.next_free_ip(c, s, &taken_now).await?
                    };
                    let Some(ip) = ip else { continue };
                    any_room = true;
                    if !is_auto_address(s) {
                        if s.ip_version == 4 {
                            got_v4 = true;
                        } else {
                            got_v6 = true;
                        }
                    }
                    taken_now.insert(ip);
                    out.push(FixedIp {
                        subnet_id: s.id.clone(),
                        ip_address: ip.to_string(),
                    });
                }
                if !any_room {
                    return Err(NetError::conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {}.", net.id),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Write a new port and its address allocations.
    pub(crate) async fn insert_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        p: &Port,
    ) -> Result<()> {
        store::insert(
            c,
            store::NewRow {
                kind: PORT,
                id: &p.id,
                project_id: &p.project_id,
                parent_id: Some(&p.network_id),
                created_at: &p.created_at,
                body: serde_json::to_string(p)?,
            },
        )
        .await?;
        for f in &p.fixed_ips {
            store::allocate_ip(c, &f.subnet_id, &f.ip_address, &p.id, &p.network_id).await?;
        }
        store::add_mac(c, &p.network_id, &p.mac_address.to_lowercase(), &p.id).await?;
        Ok(())
    }

    /// Rewrite a port (and its allocations when its addresses changed).
    pub(crate) async fn save_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        p: &Port,
        ips_changed: bool,
    ) -> Result<()> {
        if ips_changed {
            store::release_ips(c, &p.id).await?;
            for f in &p.fixed_ips {
                store::allocate_ip(c, &f.subnet_id, &f.ip_address, &p.id, &p.network_id).await?;
            }
        }
        store::update(c, &p.id, serde_json::to_string(p)?).await?;
        Ok(())
    }

    pub(crate) async fn remove_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<()> {
        store::release_ips(c, id).await?;
        store::release_mac(c, id).await?;
        store::delete(c, id).await?;
        Ok(())
    }

    /// A port the network service makes for itself (DHCP, router interface and gateway,
    /// floating IP): no security groups, port security off, ACTIVE once the data plane has it.
    pub(crate) async fn create_service_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &Network,
        spec: PortSpec,
    ) -> Result<Port> {
        let id = uuid::Uuid::new_v4().to_string();
        let mac = self.choose_mac(c, &net.id, None).await?;
        let fixed_ips = self
            .allocate_ips(
                c,
                net,
                AddressHolder {
                    id: &id,
                    mac: &mac,
                    owner: &spec.device_owner,
                },
                spec.fixed_ips.as_deref(),
                &[],
            )
            .await?;
        let ts = now();
        let p = Port {
            id,
            name: spec.name,
            description: String::new(),
            project_id: spec.project_id,
            network_id: net.id.clone(),
            mac_address: mac,
            admin_state_up: true,
            status: "DOWN".into(),
            device_id: spec.device_id,
            device_owner: spec.device_owner,
            fixed_ips,
            allowed_address_pairs: vec![],
            security_groups: vec![],
            port_security_enabled: false,
            binding_host_id: String::new(),
            binding_profile: json!({}),
            binding_vnic_type: "normal".into(),
            binding_vif_type: "unbound".into(),
            binding_vif_details: json!({}),
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        };
        self.insert_port(c, &p).await?;
        Ok(p)
    }

    /// Keep the network's DHCP port in line with its DHCP-enabled subnets: made with the
    /// first such subnet (taking an address from each), its addresses follow the subnets,
    /// removed with the last one.
    pub(crate) async fn sync_dhcp_port<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &Network,
    ) -> Result<()> {
        let subnets: Vec<Subnet> = self
            .network_subnets(c, &net.id)
            .await?
            .into_iter()
            .filter(|s| s.enable_dhcp && (s.ip_version == 4 || !is_auto_address(s)))
            .collect();
        let existing = self
            .network_ports(c, &net.id)
            .await?
            .into_iter()
            .find(|p| p.device_owner == OWNER_DHCP);
        match (existing, subnets.is_empty()) {
            (None, true) => Ok(()),
            (Some(p), true) => self.remove_port(c, &p.id).await,
            (None, false) => {
                let reqs = subnets
                    .iter()
                    .map(|s| IpRequest {
                        subnet_id: Some(s.id.clone()),
                        ip_address: None,
                    })
                    .collect();
                self.create_service_port(
                    c,
                    net,
                    PortSpec {
                        project_id: net.project_id.clone(),
                        device_owner: OWNER_DHCP.into(),
                        device_id: format!("dhcp-{}", net.id),
                        fixed_ips: Some(reqs),
                        name: String::new(),
                    },
                )
                .await?;
                Ok(())
            }
            (Some(mut p), false) => {
                let wanted: HashSet<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
                let have: HashSet<String> =
                    p.fixed_ips.iter().map(|f| f.subnet_id.clone()).collect();
                if have.len() == wanted.len() && wanted.iter().all(|w| have.contains(*w)) {
                    return Ok(());
                }
                let reqs: Vec<IpRequest> = subnets
                    .iter()
                    .map(|s| IpRequest {
                        subnet_id: Some(s.id.clone()),
                        ip_address: None,
                    })
                    .collect();
                let keep = p.fixed_ips.clone();
                p.fixed_ips = self
                    .allocate_ips(c, net, AddressHolder::of(&p), Some(&reqs), &keep)
                    .await?;
                p.updated_at = now();
                p.revision_number += 1;
                self.save_port(c, &p, true).await
            }
        }
    }

    // ------------------------------------------------------------ API

    pub async fn create_ports(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.write().await?;
        let mut made: Vec<(Port, Network)> = Vec::new();
        let mut per_project: HashMap<String, i64> = HashMap::new();
        for body in bodies {
            check_keys(body, PORT_KEYS, PORT_POST, false)?;
            let network_id = match body.get("network_id") {
                Some(v) => to_string("network_id", v, 36)?,
                None => {
                    return Err(NetError::bad(
                        "Failed to parse request. Required attribute 'network_id' not specified",
                    ));
                }
            };
            let net = self.lookup_network(&*w, ctx, &network_id).await?;
            let project_id = owner(ctx, body)?;
            let s = |k: &str, max: usize| -> Result<String> {
                body.get(k)
                    .map(|v| to_string(k, v, max))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let id = uuid::Uuid::new_v4().to_string();
            let wanted_mac = match body.get("mac_address") {
                None | Some(Value::Null) => None,
                Some(Value::String(m)) if is_valid_mac(m) => Some(m.as_str()),
                Some(other) => {
                    return Err(NetError::invalid_attr(
                        "mac_address",
                        format!("'{}' is not a valid MAC address", py(other)),
                    ));
                }
            };
            let port_security = match body.get("port_security_enabled") {
                Some(v) => to_bool("port_security_enabled", v)?,
                None => net.port_security_enabled,
            };
            let vnic = match body.get("binding:vnic_type") {
                None => "normal".to_string(),
                Some(Value::String(v)) if VNIC_TYPES.contains(&v.as_str()) => v.clone(),
                Some(other) => {
                    return Err(NetError::invalid_attr(
                        "binding:vnic_type",
                        format!("'{}' is not in {:?}", py(other), VNIC_TYPES),
                    ));
                }
            };
            let profile = match body.get("binding:profile") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(other) => {
                    return Err(NetError::invalid_attr(
                        "binding:profile",
                        format!("'{}' is not a dictionary", py(other)),
                    ));
                }
            };
            let ts = now();
            let mut p = Port {
                id,
                name: s("name", 255)?,
                description: s("description", 255)?,
                project_id,
                network_id: net.id.clone(),
                mac_address: String::new(),
                admin_state_up: body
                    .get("admin_state_up")
                    .map(|v| to_bool("admin_state_up", v))
                    .transpose()?
                    .unwrap_or(true),
                status: "DOWN".into(),
                device_id: s("device_id", 255)?,
                device_owner: s("device_owner", 255)?,
                fixed_ips: vec![],
                allowed_address_pairs: vec![],
                security_groups: vec![],
                port_security_enabled: port_security,
                binding_host_id: s("binding:host_id", 255)?,
                binding_profile: profile,
                binding_vnic_type: vnic,
                binding_vif_type: "unbound".into(),
                binding_vif_details: json!({}),
                created_at: ts.clone(),
                updated_at: ts,
                revision_number: 0,
            };
            let attrs: Vec<&str> = PORT_POLICY_ATTRS
                .iter()
                .copied()
                .filter(|a| body.contains_key(*a))
                .collect();
            self.authorize(ctx, "create_port", &attrs, &Self::port_target(&p, &net))?;
            p.mac_address = self.choose_mac(&*w, &net.id, wanted_mac).await?;
            // Two ports of this bulk request on one network must not share a MAC.
            if made
                .iter()
                .any(|(o, _)| o.network_id == p.network_id && o.mac_address == p.mac_address)
            {
                return Err(NetError::conflict(
                    "MacAddressInUse",
                    format!(
                        "Unable to complete operation for network {}. The mac address {} is in use.",
                        net.id, p.mac_address
                    ),
                ));
            }
            if let Some(v) = body.get("allowed_address_pairs")
                && !v.is_null()
            {
                p.allowed_address_pairs = parse_address_pairs(v, &p.mac_address)?;
            }
            let requested = match body.get("fixed_ips") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_ip_requests(v)?),
            };
            p.fixed_ips = self
                .allocate_ips(&*w, &net, AddressHolder::of(&p), requested.as_deref(), &[])
                .await?;
            self.apply_port_security(&*w, ctx, &mut p, body.get("security_groups"), true)
                .await?;
            let host_ns = self.host_namespace_of(&*w, &p.binding_host_id).await?;
            self.bind(&mut p, &net, host_ns);
            *per_project.entry(p.project_id.clone()).or_default() += 1;
            // Allocate now so the next port of a bulk request sees these addresses.
            self.insert_port(&*w, &p).await?;
            made.push((p, net));
        }
        for (proj, k) in &per_project {
            // The ports are inserted already: count them as existing.
            self.check_quota(&*w, proj, PORT, 0)
                .await
                .inspect_err(|_| {
                    tracing::info!(project = %proj, adding = k, "port quota exceeded");
                })?;
        }
        w.commit().await?;
        self.ports_changed(made.iter().map(|(p, _)| p));
        Ok(made
            .iter()
            .map(|(p, n)| self.render_port(ctx, p, n))
            .collect())
    }

    /// Security groups and address pairs against port security, as Neutron's
    /// portsecurity_db: groups need port security and an address; pairs need port security.
    async fn apply_port_security<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        p: &mut Port,
        requested: Option<&Value>,
        creating: bool,
    ) -> Result<()> {
        if let Some(v) = requested {
            p.security_groups = if v.is_null() {
                vec![]
            } else {
                parse_sg_ids(v)?
            };
            self.check_security_groups(c, ctx, &p.security_groups)
                .await?;
        } else if creating && p.port_security_enabled && !p.device_owner.starts_with("network:") {
            p.security_groups = vec![self.ensure_default_security_group(c, &p.project_id).await?];
        }
        if !p.port_security_enabled {
            if !p.security_groups.is_empty() {
                return Err(NetError::conflict(
                    "PortSecurityPortHasSecurityGroup",
                    "Port has security group associated. Cannot disable port security or ip address until security group is removed",
                ));
            }
            if !p.allowed_address_pairs.is_empty() {
                return Err(NetError::conflict(
                    "AddressPairAndPortSecurityRequired",
                    "Port Security must be enabled in order to have allowed address pairs on a port.",
                ));
            }
        }
        Ok(())
    }

    /// Bind (or unbind) the port to `binding:host_id`: kumo's one mechanism is Linux bridges.
    /// `host_namespace`: where that host's Linux bridge agent builds its bridges, as it
    /// reported; none (all-in-one, or a host whose agent has not reported) is this process's.
    fn bind(&self, p: &mut Port, net: &Network, host_namespace: Option<String>) {
        if p.binding_host_id.is_empty() {
            p.binding_vif_type = "unbound".into();
            p.binding_vif_details = json!({});
            p.status = "DOWN".into();
        } else if p.binding_vnic_type != "normal" {
            p.binding_vif_type = "binding_failed".into();
            p.binding_vif_details = json!({});
        } else {
            p.binding_vif_type = "bridge".into();
            let namespace = host_namespace.unwrap_or_else(|| {
                dataplane::plan::Names::new(self.cfg.namespace_prefix.clone()).host_namespace()
            });
            // `namespace` is kumo's: where the bridge and the port's tap live (the compute
            // agent starts the guest there so that its tap is on the bridge).
            p.binding_vif_details = json!({
                "port_filter": true,
                "connectivity": "l2",
                "bridge_name": dataplane::bridge_name(&net.id),
                "devname": dataplane::tap_name(&p.id),
                "namespace": namespace,
            });
        }
    }

    pub async fn list_ports(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let c = self.db.conn();
        let mut nets: HashMap<String, Network> = HashMap::new();
        for b in store::list(c, super::NETWORK).await? {
            let n: Network = serde_json::from_str(&b)?;
            nets.insert(n.id.clone(), n);
        }
        let mut out = Vec::new();
        for b in store::list(c, PORT).await? {
            let p: Port = serde_json::from_str(&b)?;
            if let Some(n) = nets.get(&p.network_id)
                && self.port_readable(ctx, &p, n)
            {
                out.push(self.render_port(ctx, &p, n));
            }
        }
        Ok(out)
    }

    pub async fn get_port(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let (p, n) = self.lookup_port(self.db.conn(), ctx, id).await?;
        Ok(self.render_port(ctx, &p, &n))
    }

    pub async fn update_port(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, PORT_KEYS, PORT_PUT, true)?;
        let w = self.write().await?;
        let (mut p, net) = self.lookup_port(&*w, ctx, id).await?;
        check_revision(if_match, p.revision_number)?;
        let attrs: Vec<&str> = PORT_POLICY_ATTRS
            .iter()
            .copied()
            .filter(|a| body.contains_key(*a))
            .collect();
        self.authorize(ctx, "update_port", &attrs, &Self::port_target(&p, &net))?;
        let was_bound_to = p.binding_host_id.clone();
        let mut ips_changed = false;
        for (k, v) in body {
            match k.as_str() {
                "name" => p.name = to_string(k, v, 255)?,
                "description" => p.description = to_string(k, v, 255)?,
                "admin_state_up" => p.admin_state_up = to_bool(k, v)?,
                "device_id" => p.device_id = to_string(k, v, 255)?,
                "device_owner" => p.device_owner = to_string(k, v, 255)?,
                "port_security_enabled" => p.port_security_enabled = to_bool(k, v)?,
                "binding:host_id" => {
                    p.binding_host_id = if v.is_null() {
                        String::new()
                    } else {
                        to_string(k, v, 255)?
                    }
                }
                "binding:profile" => {
                    p.binding_profile = if v.is_null() { json!({}) } else { v.clone() }
                }
                "binding:vnic_type" => match v {
                    Value::String(s) if VNIC_TYPES.contains(&s.as_str()) => {
                        p.binding_vnic_type = s.clone()
                    }
                    other => {
                        return Err(NetError::invalid_attr(
                            k,
                            format!("'{}' is not in {:?}", py(other), VNIC_TYPES),
                        ));
                    }
                },
                "mac_address" => match v {
                    Value::String(m) if is_valid_mac(m) => {
                        if !m.eq_ignore_ascii_case(&p.mac_address) {
                            if p.binding_vif_type != "unbound" {
                                return Err(NetError::conflict(
                                    "PortBound",
                                    format!(
                                        "Unable to complete operation on port {}, port is already bound, port type: {}, old_mac {}, new_mac {}.",
                                        p.id, p.binding_vif_type, p.mac_address, m
                                    ),
                                ));
                            }
                            p.mac_address = self.choose_mac(&*w, &net.id, Some(m)).await?;
                            store::release_mac(&*w, &p.id).await?;
                            store::add_mac(&*w, &net.id, &p.mac_address, &p.id).await?;
                        }
                    }
                    other => {
                        return Err(NetError::invalid_attr(
                            k,
                            format!("'{}' is not a valid MAC address", py(other)),
                        ));
                    }
                },
                "allowed_address_pairs" => {
                    p.allowed_address_pairs = if v.is_null() {
                        vec![]
                    } else {
                        parse_address_pairs(v, &p.mac_address)?
                    }
                }
                "fixed_ips" => {
                    let reqs = parse_ip_requests(v)?;
                    let keep = p.fixed_ips.clone();
                    p.fixed_ips = self
                        .allocate_ips(&*w, &net, AddressHolder::of(&p), Some(&reqs), &keep)
                        .await?;
                    ips_changed = true;
                }
                _ => {}
            }
        }
        if ips_changed {
            self.keep_floating_ip_targets(&*w, &p).await?;
        }
        if body.contains_key("security_groups") || body.contains_key("port_security_enabled") {
            let sgs = body.get("security_groups");
            self.apply_port_security(&*w, ctx, &mut p, sgs, false)
                .await?;
        }
        if body.contains_key("binding:host_id") || body.contains_key("binding:vnic_type") {
            let host_ns = self.host_namespace_of(&*w, &p.binding_host_id).await?;
            self.bind(&mut p, &net, host_ns);
            if p.binding_host_id != was_bound_to {
                // Wired on the old host, not yet on the new one: down until the new host's
                // agent says it is up (and compute waits for that network-vif-plugged).
                p.status = "DOWN".into();
            }
        }
        p.updated_at = now();
        p.revision_number += 1;
        self.save_port(&*w, &p, ips_changed).await?;
        w.commit().await?;
        let mut before = p.clone();
        before.binding_host_id = was_bound_to;
        self.ports_changed([&before, &p]);
        Ok(self.render_port(ctx, &p, &net))
    }

    /// A fixed IP a floating IP maps to stays on its port (Neutron's
    /// `prevent_internal_ip_change_for_fip`, 400).
    async fn keep_floating_ip_targets<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        p: &Port,
    ) -> Result<()> {
        for f in self.all_floating_ips(c).await? {
            let Some(fixed) = f.fixed_ip_address.as_deref() else {
                continue;
            };
            if f.port_id.as_deref() == Some(&p.id)
                && !p.fixed_ips.iter().any(|x| x.ip_address == fixed)
            {
                return Err(NetError::bad_request(
                    "port",
                    format!(
                        "Cannot update the fixed_ips of the port {}, because its original fixed_ip has been associated to a floating ip",
                        p.id
                    ),
                ));
            }
        }
        Ok(())
    }

    pub async fn delete_port(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let (p, net) = self.lookup_port(&*w, ctx, id).await?;
        check_revision(if_match, p.revision_number)?;
        self.authorize(ctx, "delete_port", &[], &Self::port_target(&p, &net))?;
        if [
            OWNER_ROUTER_INTERFACE,
            OWNER_ROUTER_GATEWAY,
            OWNER_FLOATING_IP,
        ]
        .contains(&p.device_owner.as_str())
            && !p.device_id.is_empty()
        {
            return Err(port_in_use(&p.id, &p.device_owner));
        }
        self.disassociate_floating_ips_of_port(&*w, &p.id).await?;
        self.remove_port(&*w, id).await?;
        w.commit().await?;
        self.ports_changed([&p]);
        Ok(())
    }

    /// Ports that keep `net` from being deleted (all but the ones the service removes itself).
    pub(crate) async fn ports_blocking_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
    ) -> Result<(Vec<Port>, Vec<Port>)> {
        let (auto, blocking): (Vec<Port>, Vec<Port>) = self
            .network_ports(c, net)
            .await?
            .into_iter()
            .partition(|p| AUTO_DELETE_OWNERS.contains(&p.device_owner.as_str()));
        Ok((auto, blocking))
    }

    /// Ports other than the DHCP port with an address in `subnet`.
    pub(crate) async fn ports_blocking_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        subnet: &str,
    ) -> Result<Vec<Port>> {
        let mut out = Vec::new();
        for id in store::ports_in_subnet(c, subnet).await? {
            if let Some(p) = self.load_port(c, &id).await?
                && !AUTO_DELETE_OWNERS.contains(&p.device_owner.as_str())
            {
                out.push(p);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaac_address_from_mac() {
        let net: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        let ip = eui64(&net, "fa:16:3e:11:22:33").unwrap();
        assert_eq!(ip.to_string(), "2001:db8:1:2:f816:3eff:fe11:2233");
    }

    /// A MAC is taken by a port's create, moves with its update and comes free with its
    /// delete; another network may hold the same MAC.
    #[tokio::test]
    async fn a_mac_is_unique_per_network_through_create_update_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::core::tests::svc(d.path()).await;
        let a = crate::core::tests::ctx("adm", &["admin", "member", "reader"]);
        let obj = |v: Value| v.as_object().unwrap().clone();
        let nets = s
            .create_networks(
                &a,
                &[&obj(serde_json::json!({})), &obj(serde_json::json!({}))],
            )
            .await
            .unwrap();
        let (n1, n2) = (
            nets[0]["id"].as_str().unwrap(),
            nets[1]["id"].as_str().unwrap(),
        );
        let port =
            |net: &str, mac: &str| obj(serde_json::json!({"network_id": net, "mac_address": mac}));
        let m1 = "fa:16:3e:00:00:01";
        let m2 = "fa:16:3e:00:00:02";
        let p = s.create_ports(&a, &[&port(n1, m1)]).await.unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let e = s
            .create_ports(&a, &[&port(n1, &m1.to_uppercase())])
            .await
            .unwrap_err();
        assert_eq!((e.kind, e.status.as_u16()), ("MacAddressInUse", 409));
        s.create_ports(&a, &[&port(n2, m1)]).await.unwrap();
        s.update_port(&a, &p, &obj(serde_json::json!({"mac_address": m2})), None)
            .await
            .unwrap();
        s.create_ports(&a, &[&port(n1, m1)]).await.unwrap();
        let e = s.create_ports(&a, &[&port(n1, m2)]).await.unwrap_err();
        assert_eq!(e.kind, "MacAddressInUse");
        s.delete_port(&a, &p, None).await.unwrap();
        s.create_ports(&a, &[&port(n1, m2)]).await.unwrap();
    }

    #[test]
    fn macs() {
        let m = random_mac("fa:16:3e:00:00:00");
        assert!(is_valid_mac(&m) && m.starts_with("fa:16:3e:"), "{m}");
        assert!(!is_valid_mac("fa:16:3e:00:00"));
        assert!(!is_valid_mac("zz:16:3e:00:00:00"));
    }
}
