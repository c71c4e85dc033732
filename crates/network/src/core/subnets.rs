//! Subnets.

use common::auth::AuthContext;
use serde_json::{Map, Value};
use std::collections::HashMap;

use super::attrs::*;
use super::{NETWORK, NetworkService, SUBNET};
use crate::error::{NetError, Result};
use crate::ipam;
use crate::model::{Network, Subnet, now};
use crate::store;

pub const SUBNET_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "service_types",
    "segment_id",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
    "router:external",
];
const SUBNET_POST: &[&str] = &[
    "name",
    "description",
    "tenant_id",
    "project_id",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "prefixlen",
    "use_default_subnetpool",
];
/// Accepted on create, never shown (`prefixlen` of subnet_allocation, `use_default_subnetpool`
/// of default-subnetpools).
const SUBNET_POST_ONLY: &[&str] = &["prefixlen", "use_default_subnetpool"];
const SUBNET_PUT: &[&str] = &[
    "name",
    "description",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
];
impl NetworkService {
    // ------------------------------------------------------------ subnets

    pub(crate) async fn lookup_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<(Subnet, Network)> {
        let Some(s) = self.load_subnet(c, id).await? else {
            return Err(NetError::subnet_not_found(id));
        };
        let Some(n) = self.load_network(c, &s.network_id).await? else {
            return Err(NetError::subnet_not_found(id));
        };
        let visible = self.net_visible(ctx, &n) || ctx.project_id() == Some(&s.project_id);
        if visible && self.allowed(ctx, "get_subnet", &Self::subnet_target(&s, &n)) {
            Ok((s, n))
        } else {
            Err(NetError::subnet_not_found(id))
        }
    }

    pub(crate) async fn parse_new_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        body: &Map<String, Value>,
        pending: &[Subnet],
    ) -> Result<(Subnet, Network)> {
        let known: Vec<&str> = SUBNET_KEYS
            .iter()
            .chain(SUBNET_POST_ONLY)
            .copied()
            .collect();
        check_keys(body, &known, SUBNET_POST, false)?;
        let required = |k: &str| -> Result<&Value> {
            body.get(k).ok_or_else(|| {
                NetError::bad(format!(
                    "Failed to parse request. Required attribute '{k}' not specified"
                ))
            })
        };
        let network_id = to_string("network_id", required("network_id")?, 36)?;
        let ip_version = match required("ip_version")? {
            Value::Number(n) if n.as_u64() == Some(4) => 4,
            Value::Number(n) if n.as_u64() == Some(6) => 6,
            Value::String(s) if s == "4" => 4,
            Value::String(s) if s == "6" => 6,
            other => {
                return Err(NetError::invalid_attr(
                    "ip_version",
                    format!("{} is not in [4, 6]", py(other)),
                ));
            }
        };
        let given_cidr = match body.get("cidr") {
            Some(Value::String(s)) => Some(ipam::parse_cidr(s)?),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(NetError::invalid_attr(
                    "cidr",
                    format!("'{}' is not a valid IP subnet", py(other)),
                ));
            }
        };
        let prefixlen = match body.get("prefixlen") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_prefixlen(v)?),
        };
        if given_cidr.is_some() && prefixlen.is_some() {
            return Err(NetError::bad_request(
                "subnets",
                "cidr and prefixlen must not be supplied together",
            ));
        }
        let pool = self.requested_subnetpool(c, ctx, body, ip_version).await?;
        let net_cidr = match (&pool, given_cidr) {
            (None, None) => {
                return Err(NetError::bad_request(
                    "subnets",
                    "a subnetpool must be specified in the absence of a cidr",
                ));
            }
            (None, Some(c)) => c,
            (Some(pool), given) => {
                if given.is_none() && body.get("allocation_pools").is_some_and(|v| !v.is_null()) {
                    return Err(NetError::bad_request(
                        "subnets",
                        "allocation_pools allowed only for specific subnet requests.",
                    ));
                }
                if pool.ip_version != ip_version {
                    return Err(NetError::bad_request(
                        "subnets",
                        format!(
                            "Cannot allocate IPv{ip_version} subnet from IPv{} subnet pool",
                            pool.ip_version
                        ),
                    ));
                }
                // A gateway without a cidr asks for the block around it (Neutron's
                // SubnetRequestFactory).
                let around_gateway = match (given, body.get("gateway_ip")) {
                    (None, Some(v)) => parse_gateway(v)?.and_then(|g| {
                        ipnet::IpNet::new(g, prefixlen.unwrap_or(pool.default_prefixlen))
                            .ok()
                            .map(|n| n.trunc())
                    }),
                    _ => None,
                };
                let project = owner(ctx, body)?;
                self.allocate_from_pool(
                    c,
                    pool,
                    &project,
                    given.or(around_gateway),
                    prefixlen,
                    pending,
                )
                .await?
            }
        };
        let is_v6 = net_cidr.addr().is_ipv6();
        if is_v6 != (ip_version == 6) {
            return Err(NetError::invalid_input(format!(
                "Cidr {net_cidr} does not match the ip_version {ip_version}"
            )));
        }
        let s = |k: &str| -> Result<String> {
            body.get(k)
                .map(|v| to_string(k, v, 255))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let enable_dhcp = body
            .get("enable_dhcp")
            .map(|v| to_bool("enable_dhcp", v))
            .transpose()?
            .unwrap_or(true);
        let ra = body
            .get("ipv6_ra_mode")
            .map(|v| parse_mode("ipv6_ra_mode", v))
            .transpose()?
            .flatten();
        let am = body
            .get("ipv6_address_mode")
            .map(|v| parse_mode("ipv6_address_mode", v))
            .transpose()?
            .flatten();
        if ra.is_some() || am.is_some() {
            if ip_version == 4 {
                let attr = if ra.is_some() {
                    "ipv6_ra_mode"
                } else {
                    "ipv6_address_mode"
                };
                return Err(NetError::invalid_input(format!(
                    "{attr} is not valid when ip_version is 4"
                )));
            }
            if !enable_dhcp {
                return Err(NetError::invalid_input(
                    "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False",
                ));
            }
            if let (Some(r), Some(a)) = (&ra, &am)
                && r != a
            {
                return Err(NetError::invalid_input(format!(
                    "ipv6_ra_mode set to '{r}' with ipv6_address_mode set to '{a}' is not valid. If both attributes are set, they must be the same value"
                )));
            }
            let slaac = |m: &Option<String>| {
                matches!(m.as_deref(), Some("slaac") | Some("dhcpv6-stateless"))
            };
            if (slaac(&ra) || slaac(&am)) && net_cidr.prefix_len() != 64 {
                return Err(NetError::invalid_input(format!(
                    "Invalid CIDR {net_cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64"
                )));
            }
        }
        let gateway = match body.get("gateway_ip") {
            None => ipam::default_gateway(&net_cidr),
            Some(v) => parse_gateway(v)?,
        };
        if let Some(g) = gateway {
            ipam::validate_gateway(&net_cidr, g)?;
        }
        let pools = match body.get("allocation_pools") {
            None | Some(Value::Null) => ipam::default_pools(&net_cidr, gateway),
            Some(v) => {
                let p = parse_pools(v)?;
                ipam::validate_pools(&net_cidr, &p, gateway)?;
                p
            }
        };
        let dns = match body.get("dns_nameservers") {
            None | Some(Value::Null) => vec![],
            Some(v) => parse_nameservers(v, self.cfg.max_dns_nameservers)?,
        };
        let routes = match body.get("host_routes") {
            None | Some(Value::Null) => vec![],
            Some(v) => parse_routes(v, self.cfg.max_subnet_host_routes)?,
        };
        let project_id = owner(ctx, body)?;
        let net = self.lookup_network(c, ctx, &network_id).await?;
        let ts = now();
        let sub = Subnet {
            id: uuid::Uuid::new_v4().to_string(),
            name: s("name")?,
            description: s("description")?,
            project_id,
            network_id,
            ip_version,
            cidr: net_cidr.to_string(),
            gateway_ip: gateway.map(|g| g.to_string()),
            allocation_pools: pools,
            enable_dhcp,
            dns_nameservers: dns,
            host_routes: routes,
            ipv6_ra_mode: ra,
            ipv6_address_mode: am,
            subnetpool_id: pool.map(|p| p.id),
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        };
        Ok((sub, net))
    }

    /// Create subnets (one, or a bulk request: all or nothing).
    pub async fn create_subnets(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.write().await?;
        let mut made: Vec<Subnet> = Vec::new();
        let mut external: HashMap<String, bool> = HashMap::new();
        let mut per_project: HashMap<String, i64> = HashMap::new();
        for body in bodies {
            let (sub, net) = self.parse_new_subnet(&*w, ctx, body, &made).await?;
            external.insert(net.id.clone(), net.external);
            self.authorize(ctx, "create_subnet", &[], &Self::subnet_target(&sub, &net))?;
            let cidr = ipam::parse_cidr(&sub.cidr)?;
            let mut siblings: Vec<Subnet> = Vec::new();
            for b in store::children(&*w, SUBNET, &net.id).await? {
                siblings.push(serde_json::from_str(&b)?);
            }
            siblings.extend(made.iter().filter(|s| s.network_id == net.id).cloned());
            // Neutron's NetworkSubnetPoolAffinityError: one network's subnets of one IP
            // version come from the same pool (or none).
            if siblings
                .iter()
                .any(|o| o.ip_version == sub.ip_version && o.subnetpool_id != sub.subnetpool_id)
            {
                return Err(NetError::invalid(
                    "NetworkSubnetPoolAffinityError",
                    "Subnets hosted on the same network must be allocated from the same subnet pool.",
                ));
            }
            for other in &siblings {
                if let Ok(oc) = ipam::parse_cidr(&other.cidr)
                    && ipam::overlaps(&cidr, &oc)
                {
                    return Err(NetError::invalid_input(format!(
                        "Requested subnet with cidr: {} for network: {} overlaps with another subnet",
                        sub.cidr, net.id
                    )));
                }
            }
            *per_project.entry(sub.project_id.clone()).or_default() += 1;
            made.push(sub);
        }
        for (p, k) in &per_project {
            self.check_quota(&*w, p, SUBNET, *k).await?;
        }
        for s in &made {
            store::insert(
                &*w,
                store::NewRow {
                    kind: SUBNET,
                    id: &s.id,
                    project_id: &s.project_id,
                    parent_id: Some(&s.network_id),
                    created_at: &s.created_at,
                    body: serde_json::to_string(s)?,
                },
            )
            .await?;
        }
        let mut synced: Vec<&str> = Vec::new();
        for sub in &made {
            if synced.contains(&sub.network_id.as_str()) {
                continue;
            }
            synced.push(&sub.network_id);
            if let Some(net) = self.load_network(&*w, &sub.network_id).await? {
                self.sync_dhcp_port(&*w, &net).await?;
            }
        }
        w.commit().await?;
        self.changed();
        Ok(made
            .iter()
            .map(|s| s.render(external.get(&s.network_id).copied().unwrap_or(false)))
            .collect())
    }

    pub async fn list_subnets(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let c = self.db.conn();
        let mut nets: HashMap<String, Network> = HashMap::new();
        for b in store::list(c, NETWORK).await? {
            let n: Network = serde_json::from_str(&b)?;
            nets.insert(n.id.clone(), n);
        }
        let mut out = Vec::new();
        for b in store::list(c, SUBNET).await? {
            let s: Subnet = serde_json::from_str(&b)?;
            let Some(n) = nets.get(&s.network_id) else {
                continue;
            };
            let visible = self.net_visible(ctx, n) || ctx.project_id() == Some(&s.project_id);
            if visible && self.allowed(ctx, "get_subnet", &Self::subnet_target(&s, n)) {
                out.push(s.render(n.external));
            }
        }
        Ok(out)
    }

    pub async fn get_subnet(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let (s, n) = self.lookup_subnet(self.db.conn(), ctx, id).await?;
        Ok(s.render(n.external))
    }

    pub async fn update_subnet(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, SUBNET_KEYS, SUBNET_PUT, true)?;
        let w = self.write().await?;
        let (mut s, n) = self.lookup_subnet(&*w, ctx, id).await?;
        check_revision(if_match, s.revision_number)?;
        self.authorize(ctx, "update_subnet", &[], &Self::subnet_target(&s, &n))?;
        let cidr = ipam::parse_cidr(&s.cidr)?;
        for (k, v) in body {
            match k.as_str() {
                "name" => s.name = to_string(k, v, 255)?,
                "description" => s.description = to_string(k, v, 255)?,
                "enable_dhcp" => s.enable_dhcp = to_bool(k, v)?,
                "dns_nameservers" => {
                    s.dns_nameservers = if v.is_null() {
                        vec![]
                    } else {
                        parse_nameservers(v, self.cfg.max_dns_nameservers)?
                    }
                }
                "host_routes" => {
                    s.host_routes = if v.is_null() {
                        vec![]
                    } else {
                        parse_routes(v, self.cfg.max_subnet_host_routes)?
                    }
                }
                "gateway_ip" => {
                    let g = parse_gateway(v)?;
                    if let Some(g) = g {
                        ipam::validate_gateway(&cidr, g)?;
                    }
                    s.gateway_ip = g.map(|g| g.to_string());
                }
                "allocation_pools" => {
                    s.allocation_pools = if v.is_null() { vec![] } else { parse_pools(v)? }
                }
                _ => {}
            }
        }
        let gateway = s.gateway_ip.as_deref().and_then(|g| g.parse().ok());
        ipam::validate_pools(&cidr, &s.allocation_pools, gateway)?;
        s.updated_at = now();
        s.revision_number += 1;
        store::update(&*w, &s.id, serde_json::to_string(&s)?).await?;
        if body.contains_key("enable_dhcp") {
            self.sync_dhcp_port(&*w, &n).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(s.render(n.external))
    }

    pub async fn delete_subnet(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let (s, n) = self.lookup_subnet(&*w, ctx, id).await?;
        check_revision(if_match, s.revision_number)?;
        self.authorize(ctx, "delete_subnet", &[], &Self::subnet_target(&s, &n))?;
        if !self.ports_blocking_subnet(&*w, id).await?.is_empty() {
            return Err(NetError::conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
                ),
            ));
        }
        store::delete(&*w, id).await?;
        self.sync_dhcp_port(&*w, &n).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }
}
