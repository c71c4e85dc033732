//! The network service core: Neutron's rules for networks, subnets and quotas, no HTTP.
//!
//! Every change runs in the database's serialised write transaction (read, check, write):
//! quota counts, cidr overlap checks and the write cannot interleave with another request's.

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::NetworkConfig;
use crate::error::{NetError, Result};
use crate::ipam::{self, Pool};
use crate::model::{HostRoute, Network, Subnet, now};
use crate::store;

/// Policy defaults Neutron registers (secure RBAC) for what kumo implements, as data.
pub const POLICY_DEFAULTS: &str = include_str!("policy_defaults.yaml");

pub const NETWORK: &str = "network";
pub const SUBNET: &str = "subnet";
/// Resources with a quota, in the order Neutron lists them.
pub const QUOTA_RESOURCES: &[&str] = &[NETWORK, SUBNET];

pub struct NetworkService {
    pub cfg: NetworkConfig,
    pub(crate) db: Database,
    pub(crate) policy: Enforcer,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService")
            .field("db", &self.db.url())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the network database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("policy: {0}")]
    Policy(String),
}

// ------------------------------------------------------------ attribute parsing

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn py(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// neutron-lib's convert_to_boolean: booleans, "true"/"false" in any case, 0/1.
pub fn to_bool(attr: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        other => Err(NetError::invalid_attr(
            attr,
            format!("'{}' cannot be converted to boolean", py(other)),
        )),
    }
}

/// neutron-lib's validate_string with a maximum length.
fn to_string(attr: &str, v: &Value, max: usize) -> Result<String> {
    match v {
        Value::String(s) if s.chars().count() > max => Err(NetError::invalid_attr(
            attr,
            format!("'{s}' exceeds maximum length of {max}"),
        )),
        Value::String(s) => Ok(s.clone()),
        other => Err(NetError::invalid_attr(
            attr,
            format!("'{}' is not a valid string", py(other)),
        )),
    }
}

fn to_list<'a>(attr: &str, v: &'a Value) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| NetError::invalid_attr(attr, format!("'{}' is not a list", py(v))))
}

/// Check a request body's keys as Neutron's attribute map does.
fn check_keys(
    body: &Map<String, Value>,
    known: &[&str],
    allowed: &[&str],
    update: bool,
) -> Result<()> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(NetError::bad(format!(
            "Unrecognized attribute(s) '{}'",
            unknown.join(", ")
        )));
    }
    for k in body.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(NetError::bad(if update {
                format!("Cannot update read-only attribute {k}")
            } else {
                format!("Attribute '{k}' not allowed in POST")
            }));
        }
    }
    Ok(())
}

pub const NETWORK_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "subnets",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "availability_zone_hints",
    "availability_zones",
    "ipv4_address_scope",
    "ipv6_address_scope",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const NETWORK_POST: &[&str] = &[
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "shared",
    "router:external",
    "port_security_enabled",
    "availability_zone_hints",
];
const NETWORK_PUT: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "port_security_enabled",
];
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
];
const SUBNET_PUT: &[&str] = &[
    "name",
    "description",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
];
const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

/// The project a new resource belongs to: `project_id`/`tenant_id` of the body (they must
/// agree) or the caller's.
fn owner(ctx: &AuthContext, body: &Map<String, Value>) -> Result<String> {
    let p = body
        .get("project_id")
        .map(|v| to_string("project_id", v, 255))
        .transpose()?;
    let t = body
        .get("tenant_id")
        .map(|v| to_string("tenant_id", v, 255))
        .transpose()?;
    match (p, t) {
        (Some(p), Some(t)) if p != t => Err(NetError::bad(
            "Invalid input for operation: 'project_id' and 'tenant_id' do not match.".to_string(),
        )),
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) => ctx.project_id().map(str::to_string).ok_or_else(|| {
            NetError::bad("Invalid input for operation: 'project_id' is required.".to_string())
        }),
    }
}

fn parse_pools(v: &Value) -> Result<Vec<Pool>> {
    let mut out = Vec::new();
    for p in to_list("allocation_pools", v)? {
        let o = p.as_object().ok_or_else(|| {
            NetError::invalid_attr(
                "allocation_pools",
                format!("'{}' is not a dictionary", py(p)),
            )
        })?;
        let get = |k: &str| -> Result<String> {
            match o.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(NetError::invalid_attr(
                    "allocation_pools",
                    format!(
                        "Validation of dictionary's keys failed. Expected keys: {{'end', 'start'}} Provided keys: {{{}}}",
                        o.keys()
                            .map(|k| format!("'{k}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        };
        out.push(Pool {
            start: get("start")?,
            end: get("end")?,
        });
    }
    Ok(out)
}

fn parse_nameservers(v: &Value, max: usize) -> Result<Vec<String>> {
    let list = to_list("dns_nameservers", v)?;
    let mut out: Vec<String> = Vec::new();
    for s in list {
        let s = to_string("dns_nameservers", s, 255)?;
        if s.parse::<IpAddr>().is_err() {
            return Err(NetError::invalid_attr(
                "dns_nameservers",
                format!("'{s}' is not a valid nameserver. '{s}' is not a valid IP address"),
            ));
        }
        if out.contains(&s) {
            return Err(NetError::invalid_attr(
                "dns_nameservers",
                format!("Duplicate nameserver '{s}'"),
            ));
        }
        out.push(s);
    }
    if out.len() > max {
        return Err(NetError::bad(format!(
            "Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit {max}."
        )));
    }
    Ok(out)
}

fn parse_routes(v: &Value, max: usize) -> Result<Vec<HostRoute>> {
    let mut out: Vec<HostRoute> = Vec::new();
    for r in to_list("host_routes", v)? {
        let (Some(d), Some(n)) = (
            r.get("destination").and_then(Value::as_str),
            r.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(NetError::invalid_attr(
                "host_routes",
                format!("Invalid data format for hostroute: '{}'", py(r)),
            ));
        };
        let dest: ipnet::IpNet = d.parse().map_err(|_| {
            NetError::invalid_attr("host_routes", format!("'{d}' is not a valid IP subnet"))
        })?;
        ipam::parse_ip("host_routes", n)?;
        let route = HostRoute {
            destination: dest.trunc().to_string(),
            nexthop: n.to_string(),
        };
        if out.contains(&route) {
            return Err(NetError::invalid_attr(
                "host_routes",
                format!("Duplicate hostroute '{}'", py(r)),
            ));
        }
        out.push(route);
    }
    if out.len() > max {
        return Err(NetError::bad(format!(
            "Unable to complete operation for subnet. The number of host routes exceeds the limit {max}."
        )));
    }
    Ok(out)
}

fn parse_mode(attr: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if IPV6_MODES.contains(&s.as_str()) => Ok(Some(s.clone())),
        other => Err(NetError::invalid_attr(
            attr,
            format!(
                "'{}' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac', None]",
                py(other)
            ),
        )),
    }
}

fn parse_gateway(v: &Value) -> Result<Option<IpAddr>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(ipam::parse_ip("gateway_ip", s)?)),
        other => Err(NetError::invalid_attr(
            "gateway_ip",
            format!("'{}' is not a valid IP address", py(other)),
        )),
    }
}

/// The body under `key` of a request, as Neutron demands it.
pub fn resource_body<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(NetError::bad(format!(
            "Invalid input for {key}. Reason: '{}' is not a dictionary.",
            kind_of(other)
        ))),
        None => Err(NetError::bad(format!(
            "Unable to find '{key}' in request body"
        ))),
    }
}

impl NetworkService {
    /// Open the service: database (migrated), policy.
    pub async fn open(cfg: NetworkConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        Ok(Arc::new(Self { cfg, db, policy }))
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    // ------------------------------------------------------------ policy

    fn creds(ctx: &AuthContext) -> Credentials {
        Credentials::from_auth(ctx)
    }

    pub fn is_admin(&self, ctx: &AuthContext) -> bool {
        self.policy
            .check("context_is_admin", &json!({}), &Self::creds(ctx))
    }

    pub fn allowed(&self, ctx: &AuthContext, action: &str, target: &Value) -> bool {
        self.policy.check(action, target, &Self::creds(ctx))
    }

    /// Enforce `action` and the `action:attr` rules of the attributes set, as Neutron's
    /// policy engine combines them: "(rule:a and rule:a:x) is disallowed by policy".
    pub fn authorize(
        &self,
        ctx: &AuthContext,
        action: &str,
        attrs: &[&str],
        target: &Value,
    ) -> Result<()> {
        let mut rules = vec![action.to_string()];
        rules.extend(attrs.iter().map(|a| format!("{action}:{a}")));
        let ok = rules.iter().all(|r| self.allowed(ctx, r, target));
        if ok {
            return Ok(());
        }
        tracing::info!(%action, "network policy denied");
        let text = if rules.len() == 1 {
            format!("rule:{action}")
        } else {
            format!(
                "({})",
                rules
                    .iter()
                    .map(|r| format!("rule:{r}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        };
        Err(NetError::policy(&text))
    }

    fn net_target(n: &Network) -> Value {
        json!({
            "id": n.id, "project_id": n.project_id, "tenant_id": n.project_id,
            "shared": if n.shared { "True" } else { "False" },
            "router:external": if n.external { "True" } else { "False" },
            "name": n.name,
        })
    }

    fn subnet_target(s: &Subnet, net: &Network) -> Value {
        json!({
            "id": s.id, "project_id": s.project_id, "tenant_id": s.project_id,
            "network_id": s.network_id,
            "network:project_id": net.project_id, "network:tenant_id": net.project_id,
            "shared": if net.shared { "True" } else { "False" },
            "router:external": if net.external { "True" } else { "False" },
        })
    }

    /// Neutron's query scoping: admin sees everything; others their project's, shared and
    /// external networks.
    fn net_visible(&self, ctx: &AuthContext, n: &Network) -> bool {
        self.is_admin(ctx) || ctx.project_id() == Some(&n.project_id) || n.shared || n.external
    }

    fn net_readable(&self, ctx: &AuthContext, n: &Network) -> bool {
        self.net_visible(ctx, n) && self.allowed(ctx, "get_network", &Self::net_target(n))
    }

    async fn load_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Network>> {
        Ok(match store::get(c, NETWORK, id).await? {
            Some(b) => Some(serde_json::from_str(&b)?),
            None => None,
        })
    }

    async fn load_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Subnet>> {
        Ok(match store::get(c, SUBNET, id).await? {
            Some(b) => Some(serde_json::from_str(&b)?),
            None => None,
        })
    }

    /// The network `id` if the caller may see it, else NetworkNotFound.
    async fn lookup_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Network> {
        match self.load_network(c, id).await? {
            Some(n) if self.net_readable(ctx, &n) => Ok(n),
            _ => Err(NetError::network_not_found(id)),
        }
    }

    async fn subnet_ids<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for b in store::children(c, SUBNET, net).await? {
            let s: Subnet = serde_json::from_str(&b)?;
            ids.push(s.id);
        }
        Ok(ids)
    }

    async fn check_quota<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
        resource: &str,
        adding: i64,
    ) -> Result<()> {
        let limit = self.quota_limits(c, project).await?[resource];
        if limit >= 0 && store::count(c, resource, project).await? + adding > limit {
            return Err(NetError::over_quota(resource));
        }
        Ok(())
    }

    // ------------------------------------------------------------ networks

    fn parse_new_network(&self, ctx: &AuthContext, body: &Map<String, Value>) -> Result<Network> {
        check_keys(body, NETWORK_KEYS, NETWORK_POST, false)?;
        let s = |k: &str| -> Result<String> {
            body.get(k)
                .map(|v| to_string(k, v, 255))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let b = |k: &str, d: bool| -> Result<bool> {
            body.get(k)
                .map(|v| to_bool(k, v))
                .transpose()
                .map(|o| o.unwrap_or(d))
        };
        let hints = match body.get("availability_zone_hints") {
            None | Some(Value::Null) => vec![],
            Some(v) => to_list("availability_zone_hints", v)?
                .iter()
                .map(|h| to_string("availability_zone_hints", h, 255))
                .collect::<Result<_>>()?,
        };
        let ts = now();
        Ok(Network {
            id: uuid::Uuid::new_v4().to_string(),
            name: s("name")?,
            description: s("description")?,
            project_id: owner(ctx, body)?,
            admin_state_up: b("admin_state_up", true)?,
            shared: b("shared", false)?,
            external: b("router:external", false)?,
            mtu: self.cfg.global_physnet_mtu,
            port_security_enabled: b("port_security_enabled", true)?,
            availability_zone_hints: hints,
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        })
    }

    /// Create networks (one, or a bulk request: all or nothing).
    pub async fn create_networks(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let mut nets = Vec::new();
        for body in bodies {
            let n = self.parse_new_network(ctx, body)?;
            let mut attrs = Vec::new();
            if n.shared {
                attrs.push("shared");
            }
            if n.external {
                attrs.push("router:external");
            }
            if body.contains_key("port_security_enabled") {
                attrs.push("port_security_enabled");
            }
            self.authorize(ctx, "create_network", &attrs, &Self::net_target(&n))?;
            nets.push(n);
        }
        let w = self.db.write().await?;
        let mut per_project: HashMap<&str, i64> = HashMap::new();
        for n in &nets {
            *per_project.entry(&n.project_id).or_default() += 1;
        }
        for (p, k) in &per_project {
            self.check_quota(&*w, p, NETWORK, *k).await?;
        }
        for n in &nets {
            store::insert(
                &*w,
                store::NewRow {
                    kind: NETWORK,
                    id: &n.id,
                    project_id: &n.project_id,
                    parent_id: None,
                    created_at: &n.created_at,
                    body: serde_json::to_string(n)?,
                },
            )
            .await?;
        }
        w.commit().await?;
        Ok(nets.iter().map(|n| n.render(vec![])).collect())
    }

    /// Every network the caller may see, rendered.
    pub async fn list_networks(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let c = self.db.conn();
        let mut subnets: HashMap<String, Vec<String>> = HashMap::new();
        for b in store::list(c, SUBNET).await? {
            let s: Subnet = serde_json::from_str(&b)?;
            subnets.entry(s.network_id).or_default().push(s.id);
        }
        let mut out = Vec::new();
        for b in store::list(c, NETWORK).await? {
            let n: Network = serde_json::from_str(&b)?;
            if self.net_readable(ctx, &n) {
                let ids = subnets.remove(&n.id).unwrap_or_default();
                out.push(n.render(ids));
            }
        }
        Ok(out)
    }

    pub async fn get_network(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let c = self.db.conn();
        let n = self.lookup_network(c, ctx, id).await?;
        Ok(n.render(self.subnet_ids(c, id).await?))
    }

    pub async fn update_network(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        check_keys(body, NETWORK_KEYS, NETWORK_PUT, true)?;
        let w = self.db.write().await?;
        let mut n = self.lookup_network(&*w, ctx, id).await?;
        let attrs: Vec<&str> = ["shared", "router:external", "port_security_enabled"]
            .into_iter()
            .filter(|a| body.contains_key(*a))
            .collect();
        self.authorize(ctx, "update_network", &attrs, &Self::net_target(&n))?;
        for (k, v) in body {
            match k.as_str() {
                "name" => n.name = to_string(k, v, 255)?,
                "description" => n.description = to_string(k, v, 255)?,
                "admin_state_up" => n.admin_state_up = to_bool(k, v)?,
                "shared" => n.shared = to_bool(k, v)?,
                "router:external" => n.external = to_bool(k, v)?,
                "port_security_enabled" => n.port_security_enabled = to_bool(k, v)?,
                _ => {}
            }
        }
        n.updated_at = now();
        n.revision_number += 1;
        store::update(&*w, &n.id, serde_json::to_string(&n)?).await?;
        let ids = self.subnet_ids(&*w, id).await?;
        w.commit().await?;
        Ok(n.render(ids))
    }

    /// Delete a network and its subnets (there are no ports yet that could hold it).
    pub async fn delete_network(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        let w = self.db.write().await?;
        let n = self.lookup_network(&*w, ctx, id).await?;
        self.authorize(ctx, "delete_network", &[], &Self::net_target(&n))?;
        store::delete_children(&*w, id).await?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ subnets

    async fn lookup_subnet<C: sea_orm::ConnectionTrait>(
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

    async fn parse_new_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        body: &Map<String, Value>,
    ) -> Result<(Subnet, Network)> {
        check_keys(body, SUBNET_KEYS, SUBNET_POST, false)?;
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
        if let Some(p) = body.get("subnetpool_id")
            && !p.is_null()
        {
            return Err(NetError::bad(
                "Invalid input for operation: subnet pools are not supported by this cloud."
                    .to_string(),
            ));
        }
        let cidr_s = match body.get("cidr") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                return Err(NetError::bad(
                    "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
                ));
            }
            Some(other) => {
                return Err(NetError::invalid_attr(
                    "cidr",
                    format!("'{}' is not a valid IP subnet", py(other)),
                ));
            }
        };
        let net_cidr = ipam::parse_cidr(&cidr_s)?;
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
        let w = self.db.write().await?;
        let mut made: Vec<Subnet> = Vec::new();
        let mut per_project: HashMap<String, i64> = HashMap::new();
        for body in bodies {
            let (sub, net) = self.parse_new_subnet(&*w, ctx, body).await?;
            self.authorize(ctx, "create_subnet", &[], &Self::subnet_target(&sub, &net))?;
            let cidr = ipam::parse_cidr(&sub.cidr)?;
            let mut siblings: Vec<Subnet> = Vec::new();
            for b in store::children(&*w, SUBNET, &net.id).await? {
                siblings.push(serde_json::from_str(&b)?);
            }
            siblings.extend(made.iter().filter(|s| s.network_id == net.id).cloned());
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
        w.commit().await?;
        Ok(made.iter().map(Subnet::render).collect())
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
                out.push(s.render());
            }
        }
        Ok(out)
    }

    pub async fn get_subnet(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let (s, _) = self.lookup_subnet(self.db.conn(), ctx, id).await?;
        Ok(s.render())
    }

    pub async fn update_subnet(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        check_keys(body, SUBNET_KEYS, SUBNET_PUT, true)?;
        let w = self.db.write().await?;
        let (mut s, n) = self.lookup_subnet(&*w, ctx, id).await?;
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
        w.commit().await?;
        Ok(s.render())
    }

    pub async fn delete_subnet(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        let w = self.db.write().await?;
        let (s, n) = self.lookup_subnet(&*w, ctx, id).await?;
        self.authorize(ctx, "delete_subnet", &[], &Self::subnet_target(&s, &n))?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ quotas

    pub fn default_quotas(&self) -> HashMap<&'static str, i64> {
        HashMap::from([
            (NETWORK, self.cfg.quota_network),
            (SUBNET, self.cfg.quota_subnet),
        ])
    }

    async fn quota_limits<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
    ) -> Result<HashMap<&'static str, i64>> {
        let mut q = self.default_quotas();
        for (_, r, l) in store::quotas(c, Some(project)).await? {
            if let Some(k) = QUOTA_RESOURCES.iter().find(|k| **k == r) {
                q.insert(k, l);
            }
        }
        Ok(q)
    }

    fn quota_view(q: &HashMap<&'static str, i64>) -> Map<String, Value> {
        QUOTA_RESOURCES
            .iter()
            .map(|k| (k.to_string(), json!(q[k])))
            .collect()
    }

    pub async fn get_quota(&self, ctx: &AuthContext, project: &str) -> Result<Value> {
        self.authorize(ctx, "get_quota", &[], &json!({"project_id": project}))?;
        let q = self.quota_limits(self.db.conn(), project).await?;
        Ok(Value::Object(Self::quota_view(&q)))
    }

    pub async fn get_quota_details(&self, ctx: &AuthContext, project: &str) -> Result<Value> {
        self.authorize(ctx, "get_quota", &[], &json!({"project_id": project}))?;
        let c = self.db.conn();
        let q = self.quota_limits(c, project).await?;
        let mut out = Map::new();
        for k in QUOTA_RESOURCES {
            let used = store::count(c, k, project).await?;
            out.insert(
                k.to_string(),
                json!({"limit": q[k], "used": used, "reserved": 0}),
            );
        }
        Ok(Value::Object(out))
    }

    pub fn get_default_quota(&self, ctx: &AuthContext, project: &str) -> Result<Value> {
        self.authorize(ctx, "get_quota", &[], &json!({"project_id": project}))?;
        Ok(Value::Object(Self::quota_view(&self.default_quotas())))
    }

    /// The projects with quotas set, as `GET /v2.0/quotas` lists them (admin only).
    pub async fn list_quotas(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let mut projects: Vec<String> = store::quotas(self.db.conn(), None)
            .await?
            .into_iter()
            .map(|(p, _, _)| p)
            .collect();
        projects.dedup();
        let mut out = Vec::new();
        for p in projects {
            if !self.allowed(ctx, "get_quota", &json!({"project_id": p})) {
                continue;
            }
            let q = self.quota_limits(self.db.conn(), &p).await?;
            let mut v = Self::quota_view(&q);
            v.insert("project_id".into(), json!(p));
            v.insert("tenant_id".into(), json!(p));
            out.push(Value::Object(v));
        }
        Ok(out)
    }

    pub async fn update_quota(
        &self,
        ctx: &AuthContext,
        project: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        self.authorize(ctx, "update_quota", &[], &json!({"project_id": project}))?;
        let unknown: Vec<&str> = body
            .keys()
            .map(String::as_str)
            .filter(|k| !QUOTA_RESOURCES.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(NetError::bad(format!(
                "Unrecognized attribute(s) '{}'",
                unknown.join(", ")
            )));
        }
        let mut set = Vec::new();
        for (k, v) in body {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= -1 => set.push((k.clone(), n)),
                _ => {
                    return Err(NetError::invalid_attr(
                        k,
                        format!("'{}' is not an integer or is less than -1", py(v)),
                    ));
                }
            }
        }
        let w = self.db.write().await?;
        for (k, n) in &set {
            store::set_quota(&*w, project, k, *n).await?;
        }
        let q = self.quota_limits(&*w, project).await?;
        w.commit().await?;
        Ok(Value::Object(Self::quota_view(&q)))
    }

    pub async fn delete_quota(&self, ctx: &AuthContext, project: &str) -> Result<()> {
        self.authorize(ctx, "delete_quota", &[], &json!({"project_id": project}))?;
        let w = self.db.write().await?;
        store::delete_quotas(&*w, project).await?;
        w.commit().await?;
        Ok(())
    }
}

fn load_policy(cfg: &NetworkConfig) -> std::result::Result<Enforcer, String> {
    let mut b = Enforcer::builder()
        .defaults_yaml(POLICY_DEFAULTS)
        .map_err(|e| e.to_string())?
        .enforce_scope(cfg.enforce_scope);
    if cfg.policy_file.exists() {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("cannot read {}: {e}", cfg.policy_file.display()))?;
        b = b
            .overrides_file(&text)
            .map_err(|e| format!("{}: {e}", cfg.policy_file.display()))?;
        tracing::info!(file = %cfg.policy_file.display(), "network policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::auth::{AuthContext, RoleRef, Scope};

    fn ctx(project: &str, roles: &[&str]) -> AuthContext {
        AuthContext {
            user_id: format!("u-{project}"),
            user_name: project.into(),
            user_domain_id: "default".into(),
            user_domain_name: "Default".into(),
            scope: Scope::Project {
                id: project.into(),
                name: project.into(),
                domain_id: "default".into(),
                domain_name: "Default".into(),
            },
            roles: roles
                .iter()
                .map(|r| RoleRef {
                    id: (*r).into(),
                    name: (*r).into(),
                })
                .collect(),
            methods: vec!["password".into()],
            audit_ids: vec![],
            issued_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
            app_cred: None,
            is_admin_project: false,
        }
    }

    async fn svc(dir: &std::path::Path) -> Arc<NetworkService> {
        NetworkService::open(NetworkConfig::defaults(dir))
            .await
            .unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn networks_policy_and_visibility() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        let bob = ctx("pb", &["member", "reader"]);
        let e = s
            .create_networks(&alice, &[&obj(json!({"shared": true}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        assert_eq!(
            e.message,
            "(rule:create_network and rule:create_network:shared) is disallowed by policy"
        );
        let own = s
            .create_networks(&alice, &[&obj(json!({"name": "a"}))])
            .await
            .unwrap();
        let ext = s
            .create_networks(&admin, &[&obj(json!({"router:external": true}))])
            .await
            .unwrap();
        let id = own[0]["id"].as_str().unwrap();
        let ext_id = ext[0]["id"].as_str().unwrap();
        assert_eq!(s.list_networks(&alice).await.unwrap().len(), 2);
        assert_eq!(s.list_networks(&bob).await.unwrap().len(), 1);
        assert_eq!(
            s.get_network(&bob, id).await.unwrap_err().kind,
            "NetworkNotFound"
        );
        assert!(s.get_network(&bob, ext_id).await.is_ok());
        let e = s.delete_network(&bob, ext_id).await.unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        // subnets: defaults, overlap, cascade
        let sub = s
            .create_subnets(
                &alice,
                &[&obj(
                    json!({"network_id": id, "ip_version": 4, "cidr": "10.0.0.0/24"}),
                )],
            )
            .await
            .unwrap();
        assert_eq!(sub[0]["gateway_ip"], "10.0.0.1");
        assert_eq!(
            sub[0]["allocation_pools"],
            json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
        );
        let e = s
            .create_subnets(
                &alice,
                &[&obj(
                    json!({"network_id": id, "ip_version": 4, "cidr": "10.0.0.128/25"}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        let e = s
            .create_subnets(
                &bob,
                &[&obj(
                    json!({"network_id": ext_id, "ip_version": 4, "cidr": "10.9.0.0/24"}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        assert_eq!(
            s.get_network(&alice, id).await.unwrap()["subnets"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        s.delete_network(&alice, id).await.unwrap();
        assert!(s.list_subnets(&admin).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn quotas() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        s.update_quota(&admin, "pa", &obj(json!({"network": 1})))
            .await
            .unwrap();
        s.create_networks(&alice, &[&obj(json!({}))]).await.unwrap();
        let e = s
            .create_networks(&alice, &[&obj(json!({}))])
            .await
            .unwrap_err();
        assert_eq!(e.message, "Quota exceeded for resources: ['network'].");
        assert_eq!(e.status, http::StatusCode::CONFLICT);
        assert!(
            s.update_quota(&alice, "pa", &obj(json!({"network": 9})))
                .await
                .is_err()
        );
        assert!(
            s.update_quota(&admin, "pa", &obj(json!({"port": 9})))
                .await
                .is_err()
        );
    }
}
