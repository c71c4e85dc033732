//! Routers (`/v2.0/routers`, extensions router, ext-gw-mode, extraroute, extraroute-atomic):
//! the external gateway (a port on an external network), interfaces (ports with
//! device_owner `network:router_interface`, device_id = the router) and extra routes, with
//! the rules and messages of Neutron's l3_db and extraroute_db.

use common::auth::AuthContext;
use ipnet::IpNet;
use serde_json::{Map, Value, json};
use std::net::IpAddr;

use super::attrs::*;
use super::ports::{AddressHolder, IpRequest, PortSpec};
use super::{NetworkService, PORT, ROUTER};
use crate::error::{NetError, Result};
use crate::ipam;
use crate::model::{
    FixedIp, FloatingIp, HostRoute, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE, Port, Router,
    RouterGateway, Subnet, now,
};
use crate::store;

pub const ROUTER_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "external_gateway_info",
    "routes",
    "availability_zone_hints",
    "availability_zones",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const ROUTER_POST: &[&str] = &[
    "name",
    "description",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "external_gateway_info",
    "availability_zone_hints",
];
const ROUTER_PUT: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "external_gateway_info",
    "routes",
];

/// A requested external gateway.
#[derive(Debug, Clone)]
pub(crate) struct GatewayRequest {
    pub network_id: String,
    pub enable_snat: Option<bool>,
    pub fixed_ips: Option<Vec<IpRequest>>,
}

/// neutron-lib's validate_uuid.
pub(crate) fn to_uuid(attr: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => Ok(s.clone()),
        other => Err(NetError::invalid_attr(
            attr,
            format!("'{}' is not a valid UUID", py(other)),
        )),
    }
}

/// A list of `{subnet_id, ip_address}` (neutron-lib's `type:fixed_ips`).
pub(crate) fn parse_fixed_ips(attr: &str, v: &Value) -> Result<Vec<IpRequest>> {
    let mut out = Vec::new();
    for item in to_list(attr, v)? {
        let Some(o) = item.as_object() else {
            return Err(NetError::invalid_attr(
                attr,
                format!("'{}' is not a dictionary", py(item)),
            ));
        };
        let subnet_id = match o.get("subnet_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(to_uuid(attr, v)?),
        };
        let ip_address = match o.get("ip_address") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ipam::parse_ip(attr, s)?),
            Some(other) => {
                return Err(NetError::invalid_attr(
                    attr,
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

/// `external_gateway_info`: null or `{}` clear the gateway.
fn parse_gateway_info(v: &Value) -> Result<Option<GatewayRequest>> {
    const ATTR: &str = "external_gateway_info";
    let o = match v {
        Value::Null => return Ok(None),
        Value::Object(o) if o.is_empty() => return Ok(None),
        Value::Object(o) => o,
        other => {
            return Err(NetError::invalid_attr(
                ATTR,
                format!("'{}' is not a dictionary", py(other)),
            ));
        }
    };
    let Some(net) = o.get("network_id") else {
        return Err(NetError::invalid_attr(
            ATTR,
            format!(
                "Validation of dictionary's keys failed. Expected keys: {{'network_id'}} Provided keys: {{{}}}",
                o.keys()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    Ok(Some(GatewayRequest {
        network_id: to_uuid(ATTR, net)?,
        enable_snat: o
            .get("enable_snat")
            .filter(|v| !v.is_null())
            .map(|v| to_bool(ATTR, v))
            .transpose()?,
        fixed_ips: match o.get("external_fixed_ips") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_fixed_ips(ATTR, v)?),
        },
    }))
}

/// The policy attributes a gateway request sets (`<action>:external_gateway_info:<key>`).
fn gateway_policy_attrs(v: &Value) -> Vec<&'static str> {
    let mut attrs = vec!["external_gateway_info"];
    if let Some(o) = v.as_object() {
        for (k, a) in [
            ("network_id", "external_gateway_info:network_id"),
            ("enable_snat", "external_gateway_info:enable_snat"),
            (
                "external_fixed_ips",
                "external_gateway_info:external_fixed_ips",
            ),
        ] {
            if o.contains_key(k) {
                attrs.push(a);
            }
        }
    }
    attrs
}

/// Extra routes (`routes`, neutron-lib's `type:hostroutes`).
pub(crate) fn parse_routes(v: &Value) -> Result<Vec<HostRoute>> {
    if v.is_null() {
        return Ok(vec![]);
    }
    let mut out: Vec<HostRoute> = Vec::new();
    for r in to_list("routes", v)? {
        let (Some(d), Some(n)) = (
            r.get("destination").and_then(Value::as_str),
            r.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(NetError::invalid_attr(
                "routes",
                format!("Invalid data format for hostroute: '{}'", py(r)),
            ));
        };
        let dest: IpNet = d.parse().map_err(|_| {
            NetError::invalid_attr("routes", format!("'{d}' is not a valid IP subnet"))
        })?;
        ipam::parse_ip("routes", n)?;
        let route = HostRoute {
            destination: dest.trunc().to_string(),
            nexthop: n.to_string(),
        };
        if out.contains(&route) {
            return Err(NetError::invalid_attr(
                "routes",
                format!("Duplicate hostroute '{}'", py(r)),
            ));
        }
        out.push(route);
    }
    Ok(out)
}

/// Python's repr of a route list, as InvalidRoutes prints it.
fn routes_repr(routes: &[HostRoute]) -> String {
    let items: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "{{'destination': '{}', 'nexthop': '{}'}}",
                r.destination, r.nexthop
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn invalid_routes(routes: &[HostRoute], reason: &str) -> NetError {
    NetError::new(
        http::StatusCode::BAD_REQUEST,
        "InvalidRoutes",
        format!(
            "Invalid format for routes: {}, {reason}",
            routes_repr(routes)
        ),
    )
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    match (ip.parse::<IpAddr>(), cidr.parse::<IpNet>()) {
        (Ok(ip), Ok(net)) => net.contains(&ip),
        _ => false,
    }
}

fn gateway_in_use(router: &str, net: &str) -> NetError {
    NetError::conflict(
        "RouterExternalGatewayInUseByFloatingIp",
        format!(
            "Gateway cannot be updated for router {router}, since a gateway to external network {net} is required by one or more floating IPs."
        ),
    )
}

/// The interface info `add_router_interface`/`remove_router_interface` return.
fn interface_info(router: &str, port: &Port, subnet_id: &str, subnet_ids: Vec<String>) -> Value {
    json!({
        "id": router,
        "tenant_id": port.project_id,
        "project_id": port.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnet_id,
        "subnet_ids": subnet_ids,
    })
}

/// `{port_id, subnet_id}` of an interface request (Neutron's _validate_interface_info).
fn interface_request(
    body: &Map<String, Value>,
    removal: bool,
) -> Result<(Option<String>, Option<String>)> {
    let port = body.get("port_id");
    let subnet = body.get("subnet_id");
    if port.is_none() && subnet.is_none() {
        return Err(NetError::bad_request(
            "router",
            "Either subnet_id or port_id must be specified",
        ));
    }
    let as_uuid = |v: &Value| -> Result<String> {
        match v {
            Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => Ok(s.clone()),
            other => Err(NetError::bad_request(
                "router",
                format!("'{}' is not a valid UUID", py(other)),
            )),
        }
    };
    let port = port.map(as_uuid).transpose()?;
    let subnet = subnet.map(as_uuid).transpose()?;
    if !removal && port.is_some() && subnet.is_some() {
        return Err(NetError::bad_request(
            "router",
            "Cannot specify both subnet-id and port-id",
        ));
    }
    Ok((port, subnet))
}

impl NetworkService {
    pub(crate) fn router_target(r: &Router) -> Value {
        json!({"id": r.id, "project_id": r.project_id, "tenant_id": r.project_id, "name": r.name})
    }

    fn router_readable(&self, ctx: &AuthContext, r: &Router) -> bool {
        (self.is_admin(ctx) || ctx.project_id() == Some(&r.project_id))
            && self.allowed(ctx, "get_router", &Self::router_target(r))
    }

    pub(crate) async fn load_router<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Router>> {
        super::read(c, ROUTER, id).await
    }

    /// The router `id` if the caller may see it, else RouterNotFound.
    pub(crate) async fn lookup_router<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Router> {
        match self.load_router(c, id).await? {
            Some(r) if self.router_readable(ctx, &r) => Ok(r),
            _ => Err(NetError::router_not_found(id)),
        }
    }

    pub(crate) async fn save_router<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        r: &Router,
    ) -> Result<()> {
        store::update(c, &r.id, serde_json::to_string(r)?).await?;
        Ok(())
    }

    /// Every router (all projects).
    pub(crate) async fn all_routers<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
    ) -> Result<Vec<Router>> {
        super::read_all(c, ROUTER).await
    }

    /// The router's ports: its gateway port and its interfaces.
    pub(crate) async fn router_ports<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        router: &str,
    ) -> Result<Vec<Port>> {
        let mut out = Vec::new();
        for b in store::list(c, PORT).await? {
            let p: Port = serde_json::from_str(&b)?;
            if p.device_id == router
                && (p.device_owner == OWNER_ROUTER_INTERFACE
                    || p.device_owner == OWNER_ROUTER_GATEWAY)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn subnets_by_id<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ids: &[String],
    ) -> Result<Vec<Subnet>> {
        let mut out: Vec<Subnet> = Vec::new();
        for id in ids {
            if out.iter().any(|s| &s.id == id) {
                continue;
            }
            if let Some(s) = self.load_subnet(c, id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Floating IPs the router serves.
    async fn router_floating_ips<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        router: &str,
    ) -> Result<Vec<FloatingIp>> {
        Ok(self
            .all_floating_ips(c)
            .await?
            .into_iter()
            .filter(|f| f.router_id.as_deref() == Some(router))
            .collect())
    }

    /// Neutron's _check_for_dup_router_subnets: a subnet once per router, and no overlap
    /// with the router's other subnets (all of the gateway network's count).
    async fn check_router_subnets<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        router: &str,
        new: &[Subnet],
        skip_port: Option<&str>,
    ) -> Result<()> {
        let mut attached: Vec<String> = Vec::new();
        for p in self.router_ports(c, router).await? {
            if Some(p.id.as_str()) == skip_port {
                continue;
            }
            for f in &p.fixed_ips {
                if new.iter().any(|s| s.id == f.subnet_id) {
                    return Err(NetError::bad_request(
                        "router",
                        format!("Router already has a port on subnet {}", f.subnet_id),
                    ));
                }
            }
            if p.device_owner == OWNER_ROUTER_GATEWAY {
                for s in self.network_subnets(c, &p.network_id).await? {
                    attached.push(s.id);
                }
            } else {
                attached.extend(p.fixed_ips.iter().map(|f| f.subnet_id.clone()));
            }
        }
        let attached = self.subnets_by_id(c, &attached).await?;
        for old in &attached {
            for s in new {
                let (Ok(a), Ok(b)) = (old.cidr.parse::<IpNet>(), s.cidr.parse::<IpNet>()) else {
                    continue;
                };
                if ipam::overlaps(&a, &b) {
                    return Err(NetError::bad_request(
                        "router",
                        format!(
                            "Cidr {} of subnet {} overlaps with cidr {} of subnet {}",
                            s.cidr, s.id, old.cidr, old.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Extraroute's checks: every nexthop on a subnet of the router (the gateway network's
    /// subnets count), none one of the router's own addresses; at most `max_routes`.
    async fn validate_routes<C: sea_orm::ConnectionTrait>(&self, c: &C, r: &Router) -> Result<()> {
        if r.routes.is_empty() {
            return Ok(());
        }
        if r.routes.len() > self.cfg.max_routes {
            return Err(NetError::new(
                http::StatusCode::BAD_REQUEST,
                "RoutesExhausted",
                format!(
                    "Unable to complete operation for {}. The number of routes exceeds the maximum {}.",
                    r.id, self.cfg.max_routes
                ),
            ));
        }
        let mut cidrs: Vec<String> = Vec::new();
        let mut ips: Vec<String> = Vec::new();
        for p in self.router_ports(c, &r.id).await? {
            let subnet_ids: Vec<String> = if p.device_owner == OWNER_ROUTER_GATEWAY {
                self.network_subnets(c, &p.network_id)
                    .await?
                    .into_iter()
                    .map(|s| s.id)
                    .collect()
            } else {
                p.fixed_ips.iter().map(|f| f.subnet_id.clone()).collect()
            };
            for s in self.subnets_by_id(c, &subnet_ids).await? {
                cidrs.push(s.cidr);
            }
            ips.extend(p.fixed_ips.iter().map(|f| f.ip_address.clone()));
        }
        for route in &r.routes {
            if !cidrs.iter().any(|cidr| in_cidr(&route.nexthop, cidr)) {
                return Err(invalid_routes(
                    &r.routes,
                    "the nexthop is not connected with router",
                ));
            }
            if ips.contains(&route.nexthop) {
                return Err(invalid_routes(&r.routes, "the nexthop is used by router"));
            }
        }
        Ok(())
    }

    /// Set, change or clear the router's gateway (Neutron's _update_router_gw_info).
    async fn set_gateway<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        r: &mut Router,
        req: Option<GatewayRequest>,
    ) -> Result<()> {
        let Some(req) = req else {
            if let Some(g) = r.gateway.take() {
                if !self.router_floating_ips(c, &r.id).await?.is_empty() {
                    return Err(gateway_in_use(&r.id, &g.network_id));
                }
                self.remove_port(c, &g.port_id).await?;
            }
            return Ok(());
        };
        let net = match self.load_network(c, &req.network_id).await? {
            Some(n) if self.net_readable(ctx, &n) => n,
            _ => return Err(NetError::network_not_found(&req.network_id)),
        };
        if !net.external {
            return Err(NetError::bad_request(
                "router",
                format!("Network {} is not an external network", net.id),
            ));
        }
        let subnets = self.network_subnets(c, &net.id).await?;
        for ip in req.fixed_ips.iter().flatten() {
            if let Some(a) = ip.ip_address
                && subnets
                    .iter()
                    .any(|s| s.gateway_ip.as_deref() == Some(&a.to_string()))
            {
                return Err(NetError::bad_request(
                    "router",
                    format!("External IP {a} is the same as the gateway IP"),
                ));
            }
        }
        let enable_snat = req.enable_snat.unwrap_or(true);
        match r.gateway.clone() {
            Some(g) if g.network_id == net.id => {
                if let Some(reqs) = &req.fixed_ips
                    && let Some(mut p) = self.load_port(c, &g.port_id).await?
                    && !same_addresses(&p.fixed_ips, reqs)
                {
                    let keep = p.fixed_ips.clone();
                    p.fixed_ips = self
                        .allocate_ips(c, &net, AddressHolder::of(&p), Some(reqs), &keep)
                        .await?;
                    p.updated_at = now();
                    p.revision_number += 1;
                    self.save_port(c, &p, true).await?;
                }
                r.gateway = Some(RouterGateway { enable_snat, ..g });
            }
            old => {
                if let Some(g) = old {
                    if !self.router_floating_ips(c, &r.id).await?.is_empty() {
                        return Err(gateway_in_use(&r.id, &g.network_id));
                    }
                    self.remove_port(c, &g.port_id).await?;
                    r.gateway = None;
                }
                self.check_router_subnets(c, &r.id, &subnets, None).await?;
                let port = self
                    .create_service_port(
                        c,
                        &net,
                        PortSpec {
                            // Neutron's gateway port belongs to no project: it is hidden.
                            project_id: String::new(),
                            device_owner: OWNER_ROUTER_GATEWAY.into(),
                            device_id: r.id.clone(),
                            fixed_ips: req.fixed_ips.clone(),
                            name: String::new(),
                        },
                    )
                    .await?;
                r.gateway = Some(RouterGateway {
                    network_id: net.id.clone(),
                    enable_snat,
                    port_id: port.id,
                });
            }
        }
        Ok(())
    }

    async fn render_router<C: sea_orm::ConnectionTrait>(&self, c: &C, r: &Router) -> Result<Value> {
        let gw = match &r.gateway {
            Some(g) => self.load_port(c, &g.port_id).await?,
            None => None,
        };
        Ok(r.render(gw.as_ref()))
    }

    // ------------------------------------------------------------ API

    pub async fn create_routers(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.write().await?;
        let mut out = Vec::new();
        for body in bodies {
            check_keys(body, ROUTER_KEYS, ROUTER_POST, false)?;
            let s = |k: &str| -> Result<String> {
                body.get(k)
                    .map(|v| to_string(k, v, 255))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let hints = match body.get("availability_zone_hints") {
                None | Some(Value::Null) => vec![],
                Some(v) => to_list("availability_zone_hints", v)?
                    .iter()
                    .map(|h| to_string("availability_zone_hints", h, 255))
                    .collect::<Result<_>>()?,
            };
            let gw_req = match body.get("external_gateway_info") {
                Some(v) => parse_gateway_info(v)?,
                None => None,
            };
            let ts = now();
            let mut r = Router {
                id: uuid::Uuid::new_v4().to_string(),
                name: s("name")?,
                description: s("description")?,
                project_id: owner(ctx, body)?,
                admin_state_up: body
                    .get("admin_state_up")
                    .map(|v| to_bool("admin_state_up", v))
                    .transpose()?
                    .unwrap_or(true),
                status: "ACTIVE".into(),
                gateway: None,
                routes: vec![],
                availability_zone_hints: hints,
                created_at: ts.clone(),
                updated_at: ts,
                revision_number: 0,
            };
            let attrs = match body.get("external_gateway_info") {
                Some(v) if gw_req.is_some() => gateway_policy_attrs(v),
                _ => vec![],
            };
            self.authorize(ctx, "create_router", &attrs, &Self::router_target(&r))?;
            self.check_quota(&*w, &r.project_id, ROUTER, 1).await?;
            store::insert(
                &*w,
                store::NewRow {
                    kind: ROUTER,
                    id: &r.id,
                    project_id: &r.project_id,
                    parent_id: None,
                    created_at: &r.created_at,
                    body: serde_json::to_string(&r)?,
                },
            )
            .await?;
            if gw_req.is_some() {
                self.set_gateway(&*w, ctx, &mut r, gw_req).await?;
                self.save_router(&*w, &r).await?;
            }
            out.push(self.render_router(&*w, &r).await?);
        }
        w.commit().await?;
        self.changed();
        Ok(out)
    }

    pub async fn list_routers(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let c = self.db.conn();
        let mut out = Vec::new();
        for r in self.all_routers(c).await? {
            if self.router_readable(ctx, &r) {
                out.push(self.render_router(c, &r).await?);
            }
        }
        Ok(out)
    }

    pub async fn get_router(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let c = self.db.conn();
        let r = self.lookup_router(c, ctx, id).await?;
        self.render_router(c, &r).await
    }

    pub async fn update_router(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, ROUTER_KEYS, ROUTER_PUT, true)?;
        let w = self.write().await?;
        let mut r = self.lookup_router(&*w, ctx, id).await?;
        check_revision(if_match, r.revision_number)?;
        let attrs = match body.get("external_gateway_info") {
            Some(v) => gateway_policy_attrs(v),
            None => vec![],
        };
        self.authorize(ctx, "update_router", &attrs, &Self::router_target(&r))?;
        for (k, v) in body {
            match k.as_str() {
                "name" => r.name = to_string(k, v, 255)?,
                "description" => r.description = to_string(k, v, 255)?,
                "admin_state_up" => r.admin_state_up = to_bool(k, v)?,
                "routes" => r.routes = parse_routes(v)?,
                _ => {}
            }
        }
        if let Some(v) = body.get("external_gateway_info") {
            let req = parse_gateway_info(v)?;
            self.set_gateway(&*w, ctx, &mut r, req).await?;
        }
        self.validate_routes(&*w, &r).await?;
        r.updated_at = now();
        r.revision_number += 1;
        self.save_router(&*w, &r).await?;
        let v = self.render_router(&*w, &r).await?;
        w.commit().await?;
        self.changed();
        Ok(v)
    }

    pub async fn delete_router(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let mut r = self.lookup_router(&*w, ctx, id).await?;
        check_revision(if_match, r.revision_number)?;
        self.authorize(ctx, "delete_router", &[], &Self::router_target(&r))?;
        let attached: Vec<String> = self
            .router_ports(&*w, id)
            .await?
            .into_iter()
            .filter(|p| p.device_owner == OWNER_ROUTER_INTERFACE)
            .map(|p| p.id)
            .collect();
        if !attached.is_empty() {
            return Err(NetError::conflict(
                "RouterInUse",
                format!(
                    "Router {id} has ports still attached: {}",
                    attached.join(", ")
                ),
            ));
        }
        self.set_gateway(&*w, ctx, &mut r, None).await?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// `PUT /routers/{id}/add_router_interface` with `subnet_id` or `port_id`.
    pub async fn add_router_interface(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        let (port_id, subnet_id) = interface_request(body, false)?;
        let w = self.write().await?;
        let r = self.lookup_router(&*w, ctx, id).await?;
        self.authorize(ctx, "add_router_interface", &[], &Self::router_target(&r))?;
        let (port, subnets) = match (port_id, subnet_id) {
            (Some(pid), _) => {
                let (mut p, _net) = self.lookup_port(&*w, ctx, &pid).await?;
                if !p.device_id.is_empty() {
                    return Err(NetError::conflict(
                        "PortInUse",
                        format!(
                            "Unable to complete operation on port {} for network {}. Port already has an attached device {}.",
                            p.id, p.network_id, p.device_id
                        ),
                    ));
                }
                if p.fixed_ips.is_empty() {
                    return Err(NetError::bad_request(
                        "router",
                        "Router port must have at least one fixed IP",
                    ));
                }
                let subnets = self.subnets_by_id(&*w, &subnet_ids_of(&p)).await?;
                for s in &subnets {
                    check_address_mode(s)?;
                }
                self.check_one_ipv6_port_per_network(&*w, &r.id, &p).await?;
                self.check_router_subnets(&*w, &r.id, &subnets, Some(&p.id))
                    .await?;
                if subnets.iter().filter(|s| s.ip_version == 4).count() > 1 {
                    return Err(NetError::bad_request(
                        "router",
                        "Cannot have multiple IPv4 subnets on router port",
                    ));
                }
                if !self.is_admin(ctx) {
                    for f in &p.fixed_ips {
                        let Some(s) = subnets.iter().find(|s| s.id == f.subnet_id) else {
                            continue;
                        };
                        let in_pool = f.ip_address.parse::<IpAddr>().is_ok_and(|ip| {
                            s.allocation_pools.iter().any(|pool| {
                                match (pool.start.parse::<IpAddr>(), pool.end.parse::<IpAddr>()) {
                                    (Ok(a), Ok(b)) => {
                                        let x = ipam::to_u128(ip);
                                        ipam::to_u128(a) <= x && x <= ipam::to_u128(b)
                                    }
                                    _ => false,
                                }
                            })
                        });
                        if !in_pool && ctx.project_id() != Some(&s.project_id) {
                            return Err(NetError::bad_request(
                                "router",
                                format!(
                                    "Cannot add interface to router because specified port {} has an IP address out of the allocation pool of subnet {}, which is not owned by the project making the request",
                                    p.id, s.id
                                ),
                            ));
                        }
                    }
                }
                p.device_id = r.id.clone();
                p.device_owner = OWNER_ROUTER_INTERFACE.into();
                p.updated_at = now();
                p.revision_number += 1;
                self.save_port(&*w, &p, false).await?;
                (p, subnets)
            }
            (None, Some(sid)) => {
                let (s, net) = self.lookup_subnet(&*w, ctx, &sid).await?;
                let Some(gateway) = s.gateway_ip.clone() else {
                    return Err(NetError::bad_request(
                        "router",
                        "Subnet for router interface must have a gateway IP",
                    ));
                };
                if !self.is_admin(ctx) && ctx.project_id() != Some(&s.project_id) {
                    return Err(NetError::bad_request(
                        "router",
                        format!(
                            "Cannot add interface to router because subnet {sid} is not owned by project making the request"
                        ),
                    ));
                }
                check_address_mode(&s)?;
                self.check_router_subnets(&*w, &r.id, std::slice::from_ref(&s), None)
                    .await?;
                let gw_ip: IpAddr = ipam::parse_ip("gateway_ip", &gateway)?;
                let wanted = IpRequest {
                    subnet_id: Some(s.id.clone()),
                    ip_address: Some(gw_ip),
                };
                // A further IPv6 subnet of a network joins the router's IPv6 port there.
                let v6_port = if s.ip_version == 6 {
                    self.router_ports(&*w, &r.id).await?.into_iter().find(|p| {
                        p.device_owner == OWNER_ROUTER_INTERFACE
                            && p.network_id == s.network_id
                            && p.ips().any(|ip| ip.is_ipv6())
                    })
                } else {
                    None
                };
                let p = match v6_port {
                    Some(mut p) => {
                        let mut reqs: Vec<IpRequest> = p
                            .fixed_ips
                            .iter()
                            .map(|f| IpRequest {
                                subnet_id: Some(f.subnet_id.clone()),
                                ip_address: f.ip_address.parse().ok(),
                            })
                            .collect();
                        reqs.push(wanted);
                        let keep = p.fixed_ips.clone();
                        p.fixed_ips = self
                            .allocate_ips(&*w, &net, AddressHolder::of(&p), Some(&reqs), &keep)
                            .await?;
                        p.updated_at = now();
                        p.revision_number += 1;
                        self.save_port(&*w, &p, true).await?;
                        p
                    }
                    None => {
                        self.create_service_port(
                            &*w,
                            &net,
                            PortSpec {
                                project_id: r.project_id.clone(),
                                device_owner: OWNER_ROUTER_INTERFACE.into(),
                                device_id: r.id.clone(),
                                fixed_ips: Some(vec![wanted]),
                                name: String::new(),
                            },
                        )
                        .await?
                    }
                };
                (p, vec![s])
            }
            (None, None) => unreachable!("interface_request demands one"),
        };
        w.commit().await?;
        self.changed();
        let last = subnets.last().map(|s| s.id.clone()).unwrap_or_default();
        let ids = subnets.iter().map(|s| s.id.clone()).collect();
        Ok(interface_info(&r.id, &port, &last, ids))
    }

    /// Only one IPv6 interface port per network (Neutron, but for OVN).
    async fn check_one_ipv6_port_per_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        router: &str,
        port: &Port,
    ) -> Result<()> {
        if !port.ips().any(|ip| ip.is_ipv6()) {
            return Ok(());
        }
        for other in self.router_ports(c, router).await? {
            if other.id != port.id
                && other.network_id == port.network_id
                && other.ips().any(|ip| ip.is_ipv6())
            {
                return Err(NetError::bad_request(
                    "router",
                    format!(
                        "Router already contains IPv6 port {} belonging to network id {}. Only one IPv6 port from the same network subnet can be connected to a router.",
                        other.id, other.network_id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A subnet's interface may go unless a floating IP or an extra route of the router
    /// needs it.
    async fn check_interface_not_in_use<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        r: &Router,
        s: &Subnet,
    ) -> Result<()> {
        let in_subnet = store::ports_in_subnet(c, &s.id).await?;
        for f in self.router_floating_ips(c, &r.id).await? {
            if let (Some(ip), Some(port)) = (&f.fixed_ip_address, &f.port_id)
                && in_cidr(ip, &s.cidr)
                && in_subnet.contains(port)
            {
                return Err(NetError::conflict(
                    "RouterInterfaceInUseByFloatingIP",
                    format!(
                        "Router interface for subnet {} on router {} cannot be deleted, as it is required by one or more floating IPs.",
                        s.id, r.id
                    ),
                ));
            }
        }
        if r.routes
            .iter()
            .any(|route| in_cidr(&route.nexthop, &s.cidr))
        {
            return Err(NetError::conflict(
                "RouterInterfaceInUseByRoute",
                format!(
                    "Router interface for subnet {} on router {} cannot be deleted, as it is required by one or more routes.",
                    s.id, r.id
                ),
            ));
        }
        Ok(())
    }

    /// `PUT /routers/{id}/remove_router_interface` with `port_id` and/or `subnet_id`.
    pub async fn remove_router_interface(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        let (port_id, subnet_id) = interface_request(body, true)?;
        let w = self.write().await?;
        let r = self.lookup_router(&*w, ctx, id).await?;
        self.authorize(
            ctx,
            "remove_router_interface",
            &[],
            &Self::router_target(&r),
        )?;
        let (port, subnets) = if let Some(pid) = port_id {
            let p = match self.load_port(&*w, &pid).await? {
                Some(p) if p.device_id == r.id && p.device_owner == OWNER_ROUTER_INTERFACE => p,
                _ => {
                    return Err(NetError::new(
                        http::StatusCode::NOT_FOUND,
                        "RouterInterfaceNotFound",
                        format!("Router {} does not have an interface with id {pid}", r.id),
                    ));
                }
            };
            if let Some(sid) = &subnet_id
                && !p.fixed_ips.iter().any(|f| &f.subnet_id == sid)
            {
                return Err(NetError::new(
                    http::StatusCode::BAD_REQUEST,
                    "SubnetMismatchForPort",
                    format!(
                        "Subnet on port {} does not match the requested subnet {sid}.",
                        p.id
                    ),
                ));
            }
            let subnets = self.subnets_by_id(&*w, &subnet_ids_of(&p)).await?;
            for s in &subnets {
                self.check_interface_not_in_use(&*w, &r, s).await?;
            }
            self.remove_port(&*w, &p.id).await?;
            (p, subnets)
        } else {
            let sid = subnet_id.unwrap_or_default();
            let (s, net) = self.lookup_subnet(&*w, ctx, &sid).await?;
            let ports: Vec<Port> = self
                .router_ports(&*w, &r.id)
                .await?
                .into_iter()
                .filter(|p| {
                    p.device_owner == OWNER_ROUTER_INTERFACE && p.network_id == s.network_id
                })
                .collect();
            if !ports.is_empty() {
                self.check_interface_not_in_use(&*w, &r, &s).await?;
            }
            let Some(mut p) = ports
                .into_iter()
                .find(|p| p.fixed_ips.iter().any(|f| f.subnet_id == s.id))
            else {
                return Err(NetError::new(
                    http::StatusCode::NOT_FOUND,
                    "RouterInterfaceNotFoundForSubnet",
                    format!("Router {} has no interface on subnet {sid}", r.id),
                ));
            };
            if p.fixed_ips.len() > 1 {
                let reqs: Vec<IpRequest> = p
                    .fixed_ips
                    .iter()
                    .filter(|f| f.subnet_id != s.id)
                    .map(|f| IpRequest {
                        subnet_id: Some(f.subnet_id.clone()),
                        ip_address: f.ip_address.parse().ok(),
                    })
                    .collect();
                let keep = p.fixed_ips.clone();
                p.fixed_ips = self
                    .allocate_ips(&*w, &net, AddressHolder::of(&p), Some(&reqs), &keep)
                    .await?;
                p.updated_at = now();
                p.revision_number += 1;
                self.save_port(&*w, &p, true).await?;
            } else {
                self.remove_port(&*w, &p.id).await?;
            }
            (p, vec![s])
        };
        w.commit().await?;
        self.changed();
        let first = subnets.first().map(|s| s.id.clone()).unwrap_or_default();
        let ids = subnets.iter().map(|s| s.id.clone()).collect();
        Ok(interface_info(&r.id, &port, &first, ids))
    }

    /// extraroute-atomic: `PUT /routers/{id}/add_extraroutes` / `remove_extraroutes`.
    pub async fn edit_extraroutes(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        add: bool,
    ) -> Result<Value> {
        let action = if add {
            "add_extraroutes"
        } else {
            "remove_extraroutes"
        };
        for k in body.keys() {
            if k != "routes" {
                return Err(NetError::bad(format!("Unrecognized attribute(s) '{k}'")));
            }
        }
        let Some(v) = body.get("routes") else {
            return Err(NetError::bad(
                "Failed to parse request. Required attribute 'routes' not specified",
            ));
        };
        let given = parse_routes(v)?;
        let w = self.write().await?;
        let mut r = self.lookup_router(&*w, ctx, id).await?;
        self.authorize(ctx, action, &[], &Self::router_target(&r))?;
        let mut routes = r.routes.clone();
        if add {
            for g in given {
                if !routes.contains(&g) {
                    routes.push(g);
                }
            }
        } else {
            routes.retain(|x| !given.contains(x));
        }
        r.routes = routes;
        self.validate_routes(&*w, &r).await?;
        r.updated_at = now();
        r.revision_number += 1;
        self.save_router(&*w, &r).await?;
        let v = self.render_router(&*w, &r).await?;
        w.commit().await?;
        self.changed();
        Ok(v)
    }

    /// Every router and floating IP, for the data plane.
    pub async fn l3_snapshot(&self) -> Result<(Vec<Router>, Vec<FloatingIp>)> {
        let c = self.db.conn();
        Ok((self.all_routers(c).await?, self.all_floating_ips(c).await?))
    }
}

fn subnet_ids_of(p: &Port) -> Vec<String> {
    p.fixed_ips.iter().map(|f| f.subnet_id.clone()).collect()
}

/// Whether the port already has exactly the requested addresses.
fn same_addresses(have: &[FixedIp], reqs: &[IpRequest]) -> bool {
    have.len() == reqs.len()
        && reqs.iter().all(|q| {
            have.iter().any(|f| {
                q.subnet_id.as_ref().is_none_or(|s| *s == f.subnet_id)
                    && q.ip_address.is_none_or(|ip| ip.to_string() == f.ip_address)
            })
        })
}

/// Neutron's _validate_subnet_address_mode: an IPv6 subnet whose RAs come from elsewhere
/// cannot be on a router.
fn check_address_mode(s: &Subnet) -> Result<()> {
    if s.ip_version == 6 && s.ipv6_ra_mode.is_none() && s.ipv6_address_mode.is_some() {
        return Err(NetError::bad_request(
            "router",
            format!(
                "IPv6 subnet {} configured to receive RAs from an external router cannot be added to Neutron Router.",
                s.id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;
    use common::auth::{RoleRef, Scope};
    use std::sync::Arc;

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

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    struct World {
        s: Arc<NetworkService>,
        admin: AuthContext,
        alice: AuthContext,
        ext: String,
        _dir: tempfile::TempDir,
    }

    /// A service with an external network 172.24.4.0/24 (no DHCP).
    async fn world() -> World {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkService::open(NetworkConfig::defaults(d.path()))
            .await
            .unwrap();
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        let ext = s
            .create_networks(&admin, &[&obj(json!({"router:external": true}))])
            .await
            .unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        s.create_subnets(
            &admin,
            &[&obj(json!({"network_id": ext, "ip_version": 4,
                "cidr": "172.24.4.0/24", "enable_dhcp": false}))],
        )
        .await
        .unwrap();
        World {
            s,
            admin,
            alice,
            ext,
            _dir: d,
        }
    }

    /// A network of `who` with one subnet; (network id, subnet id).
    async fn private(s: &NetworkService, who: &AuthContext, cidr: &str) -> (String, String) {
        let n = s.create_networks(who, &[&obj(json!({}))]).await.unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let sub = s
            .create_subnets(
                who,
                &[&obj(
                    json!({"network_id": n, "ip_version": 4, "cidr": cidr}),
                )],
            )
            .await
            .unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        (n, sub)
    }

    fn id(v: &Value) -> String {
        v["id"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn gateway_interfaces_routes_and_delete() {
        let w = world().await;
        let (s, alice) = (&w.s, &w.alice);
        // gateway on a missing network: 404; on an internal one: 400
        let e = s
            .create_routers(
                alice,
                &[&obj(
                    json!({"external_gateway_info": {"network_id": uuid::Uuid::new_v4().to_string()}}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "NetworkNotFound");
        let (net, sub) = private(s, alice, "10.0.0.0/24").await;
        let e = s
            .create_routers(
                alice,
                &[&obj(json!({"external_gateway_info": {"network_id": net}}))],
            )
            .await
            .unwrap_err();
        assert_eq!((e.kind, e.status.as_u16()), ("BadRequest", 400));
        assert_eq!(
            e.message,
            format!("Bad router request: Network {net} is not an external network.")
        );
        // enable_snat is the admin's
        let e = s
            .create_routers(
                alice,
                &[&obj(
                    json!({"external_gateway_info": {"network_id": w.ext, "enable_snat": false}}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        let r = s
            .create_routers(
                alice,
                &[&obj(
                    json!({"name": "r1", "external_gateway_info": {"network_id": w.ext}}),
                )],
            )
            .await
            .unwrap()
            .remove(0);
        let rid = id(&r);
        let gw = &r["external_gateway_info"];
        assert_eq!(gw["enable_snat"], true);
        assert_eq!(gw["external_fixed_ips"][0]["ip_address"], "172.24.4.2");
        // interface by subnet: the subnet's gateway address
        let info = s
            .add_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap();
        assert_eq!(info["subnet_ids"], json!([sub]));
        assert_eq!(info["network_id"], net);
        let iface = s
            .get_port(&w.admin, info["port_id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(iface["device_owner"], OWNER_ROUTER_INTERFACE);
        assert_eq!(iface["fixed_ips"][0]["ip_address"], "10.0.0.1");
        let e = s
            .add_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!("Bad router request: Router already has a port on subnet {sub}.")
        );
        // an overlapping subnet of another network
        let (_, sub2) = private(s, alice, "10.0.0.0/25").await;
        let e = s
            .add_router_interface(alice, &rid, &obj(json!({"subnet_id": sub2})))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(
            e.message.contains("overlaps with cidr 10.0.0.0/24"),
            "{}",
            e.message
        );
        // interface by port
        let (net3, _) = private(s, alice, "10.3.0.0/24").await;
        let p = s
            .create_ports(alice, &[&obj(json!({"network_id": net3}))])
            .await
            .unwrap()
            .remove(0);
        let info3 = s
            .add_router_interface(alice, &rid, &obj(json!({"port_id": id(&p)})))
            .await
            .unwrap();
        assert_eq!(info3["port_id"], id(&p));
        let e = s
            .add_router_interface(alice, &rid, &obj(json!({"port_id": id(&p)})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PortInUse");
        // the port API refuses to delete an interface
        assert_eq!(
            s.delete_port(alice, &id(&p), None).await.unwrap_err().kind,
            "L3PortInUse"
        );
        // routes: the nexthop must be on the router's subnets
        let e = s
            .update_router(
                alice,
                &rid,
                &obj(json!({"routes": [{"destination": "192.168.0.0/24", "nexthop": "10.9.0.5"}]})),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidRoutes");
        assert!(
            e.message
                .ends_with("the nexthop is not connected with router")
        );
        let up = s
            .update_router(
                alice,
                &rid,
                &obj(json!({"routes": [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"}]})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(up["routes"][0]["nexthop"], "10.0.0.5");
        let e = s
            .remove_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, "RouterInterfaceInUseByRoute");
        let up = s
            .edit_extraroutes(
                alice,
                &rid,
                &obj(json!({"routes": [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"}]})),
                false,
            )
            .await
            .unwrap();
        assert_eq!(up["routes"], json!([]));
        // delete: refused with interfaces
        let e = s.delete_router(alice, &rid, None).await.unwrap_err();
        assert_eq!(e.kind, "RouterInUse");
        assert_eq!(e.status.as_u16(), 409);
        s.remove_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap();
        let e = s
            .remove_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, "RouterInterfaceNotFoundForSubnet");
        s.remove_router_interface(alice, &rid, &obj(json!({"port_id": id(&p)})))
            .await
            .unwrap();
        assert_eq!(
            s.get_port(alice, &id(&p)).await.unwrap_err().kind,
            "PortNotFound"
        );
        s.delete_router(alice, &rid, None).await.unwrap();
        // the gateway port went with the router
        let left = s.list_ports(&w.admin).await.unwrap();
        assert!(
            left.iter()
                .all(|p| p["device_owner"] != OWNER_ROUTER_GATEWAY),
            "{left:?}"
        );
        let (routers, _) = s.l3_snapshot().await.unwrap();
        assert!(routers.is_empty());
    }

    #[tokio::test]
    async fn floating_ips() {
        let w = world().await;
        let (s, alice) = (&w.s, &w.alice);
        let (net, sub) = private(s, alice, "10.1.0.0/24").await;
        let vm = s
            .create_ports(alice, &[&obj(json!({"network_id": net}))])
            .await
            .unwrap()
            .remove(0);
        // not external: 400
        let e = s
            .create_floating_ips(alice, &[&obj(json!({"floating_network_id": net}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "BadRequest");
        // unreachable: no router yet
        let e = s
            .create_floating_ips(
                alice,
                &[&obj(
                    json!({"floating_network_id": w.ext, "port_id": id(&vm)}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "ExternalGatewayForFloatingIPNotFound");
        assert_eq!(e.status.as_u16(), 404);
        let f = s
            .create_floating_ips(alice, &[&obj(json!({"floating_network_id": w.ext}))])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(f["status"], "DOWN");
        assert_eq!(f["port_id"], Value::Null);
        let fid = id(&f);
        let r = s
            .create_routers(
                alice,
                &[&obj(
                    json!({"external_gateway_info": {"network_id": w.ext}}),
                )],
            )
            .await
            .unwrap()
            .remove(0);
        let rid = id(&r);
        s.add_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap();
        let f = s
            .update_floating_ip(alice, &fid, &obj(json!({"port_id": id(&vm)})), None)
            .await
            .unwrap();
        assert_eq!(f["status"], "ACTIVE");
        assert_eq!(f["router_id"], rid);
        assert_eq!(f["fixed_ip_address"], vm["fixed_ips"][0]["ip_address"]);
        // the interface and the gateway are in use now
        let e = s
            .remove_router_interface(alice, &rid, &obj(json!({"subnet_id": sub})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, "RouterInterfaceInUseByFloatingIP");
        let e = s
            .update_router(
                alice,
                &rid,
                &obj(json!({"external_gateway_info": {}})),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "RouterExternalGatewayInUseByFloatingIp");
        // a second floating IP for the same fixed IP
        let e = s
            .create_floating_ips(
                alice,
                &[&obj(
                    json!({"floating_network_id": w.ext, "port_id": id(&vm)}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "FloatingIPPortAlreadyAssociated");
        // deleting the port disassociates
        s.delete_port(alice, &id(&vm), None).await.unwrap();
        let f = s.get_floating_ip(alice, &fid).await.unwrap();
        assert_eq!(
            (f["port_id"].clone(), f["status"].clone()),
            (Value::Null, json!("DOWN"))
        );
        let (_, fips) = s.l3_snapshot().await.unwrap();
        assert_eq!(fips.len(), 1);
        // the floating IP's port keeps the external network; delete frees it
        let e = s.delete_network(&w.admin, &w.ext, None).await.unwrap_err();
        assert_eq!(e.kind, "NetworkInUse");
        s.delete_floating_ip(alice, &fid, None).await.unwrap();
        assert_eq!(
            s.get_floating_ip(alice, &fid).await.unwrap_err().kind,
            "FloatingIPNotFound"
        );
        s.update_router(
            alice,
            &rid,
            &obj(json!({"external_gateway_info": null})),
            None,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn quotas() {
        let w = world().await;
        let s = &w.s;
        s.update_quota(&w.admin, "pa", &obj(json!({"router": 1, "floatingip": 0})))
            .await
            .unwrap();
        s.create_routers(&w.alice, &[&obj(json!({}))])
            .await
            .unwrap();
        let e = s
            .create_routers(&w.alice, &[&obj(json!({}))])
            .await
            .unwrap_err();
        assert_eq!(e.message, "Quota exceeded for resources: ['router'].");
        let e = s
            .create_floating_ips(&w.alice, &[&obj(json!({"floating_network_id": w.ext}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "OverQuota");
        let q = s.get_quota(&w.alice, "pa").await.unwrap();
        assert_eq!(
            (q["router"].clone(), q["floatingip"].clone()),
            (json!(1), json!(0))
        );
    }
}
