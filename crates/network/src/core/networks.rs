//! Networks.

use common::auth::AuthContext;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::attrs::*;
use super::{NETWORK, NetworkService, SUBNET};
use crate::error::{NetError, Result};
use crate::model::{Network, Port, Subnet, now};
use crate::segments::{self, Segment};
use crate::store;

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
    "is_default",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
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
    "is_default",
    "port_security_enabled",
    "availability_zone_hints",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];
const NETWORK_PUT: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "is_default",
    "port_security_enabled",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];
const PROVIDER_ATTRS: &[&str] = &[
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];

/// The provider attributes of a request body (null = not given), typed as neutron-lib's.
fn provider_request(body: &Map<String, Value>) -> Result<segments::Requested> {
    let given = |k: &str| body.get(k).filter(|v| !v.is_null());
    Ok(segments::Requested {
        network_type: given("provider:network_type")
            .map(|v| to_string("provider:network_type", v, 32))
            .transpose()?,
        physical_network: given("provider:physical_network")
            .map(|v| to_string("provider:physical_network", v, 64))
            .transpose()?,
        segmentation_id: given("provider:segmentation_id")
            .map(|v| {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                n.ok_or_else(|| {
                    NetError::invalid_attr(
                        "provider:segmentation_id",
                        format!("'{}' is not an integer", py(v)),
                    )
                })
            })
            .transpose()?,
    })
}

/// The provider attributes a body names (for the `action:provider:*` policies).
fn provider_attrs_in(body: &Map<String, Value>) -> impl Iterator<Item = &'static str> + '_ {
    PROVIDER_ATTRS
        .iter()
        .copied()
        .filter(|a| body.get(*a).is_some_and(|v| !v.is_null()))
}
impl NetworkService {
    // ------------------------------------------------------------ networks

    pub(crate) fn parse_new_network(
        &self,
        ctx: &AuthContext,
        body: &Map<String, Value>,
    ) -> Result<Network> {
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
            is_default: b("is_default", false)?,
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
            if body.contains_key("is_default") {
                attrs.push("is_default");
            }
            if body.contains_key("port_security_enabled") {
                attrs.push("port_security_enabled");
            }
            attrs.extend(provider_attrs_in(body));
            self.authorize(ctx, "create_network", &attrs, &Self::net_target(&n))?;
            let req = provider_request(body)?;
            let wanted = if req.is_empty() {
                None
            } else {
                Some(segments::validate(&req, &self.cfg.segments)?)
            };
            nets.push((n, wanted));
        }
        let w = self.write().await?;
        let mut per_project: HashMap<&str, i64> = HashMap::new();
        for (n, _) in &nets {
            *per_project.entry(&n.project_id).or_default() += 1;
        }
        for (p, k) in &per_project {
            self.check_quota(&*w, p, NETWORK, *k).await?;
        }
        let plain: Vec<Network> = nets.iter().map(|(n, _)| n.clone()).collect();
        for (i, n) in plain.iter().enumerate() {
            if n.external && n.is_default {
                self.check_one_default_external(&*w, n, &plain[..i]).await?;
            }
        }
        let mut taken = store::segment_allocations(&*w).await?;
        let mut out = Vec::new();
        for (mut n, wanted) in nets {
            let seg = match wanted {
                Some(seg) => segments::reserve(seg, &self.cfg.segments, &taken)?,
                None => segments::tenant_segment(&self.cfg.segments, &taken)?,
            };
            n.mtu = seg.mtu(self.cfg.global_physnet_mtu);
            if let Some(a) = seg.allocation() {
                taken.insert(a);
            }
            store::insert(
                &*w,
                store::NewRow {
                    kind: NETWORK,
                    id: &n.id,
                    project_id: &n.project_id,
                    parent_id: None,
                    created_at: &n.created_at,
                    body: serde_json::to_string(&n)?,
                },
            )
            .await?;
            store::set_segment(&*w, &n.id, &seg).await?;
            out.push(self.render_network(ctx, &n, vec![], Some(&seg)));
        }
        w.commit().await?;
        Ok(out)
    }

    /// A network as the caller may see it: the provider attributes only where the
    /// `get_network:provider:*` policies allow (admins, by default), as Neutron strips them.
    pub(crate) fn render_network(
        &self,
        ctx: &AuthContext,
        n: &Network,
        subnets: Vec<String>,
        seg: Option<&Segment>,
    ) -> Value {
        let mut v = n.render(subnets);
        let local = Segment::local();
        let seg = seg.unwrap_or(&local);
        let target = Self::net_target(n);
        let shown = [
            ("provider:network_type", json!(seg.network_type)),
            ("provider:physical_network", json!(seg.physical_network)),
            ("provider:segmentation_id", json!(seg.segmentation_id)),
        ];
        if let Some(o) = v.as_object_mut() {
            for (k, val) in shown {
                if self.allowed(ctx, &format!("get_network:{k}"), &target) {
                    o.insert(k.to_string(), val);
                }
            }
        }
        v
    }

    /// Every network the caller may see, rendered.
    pub async fn list_networks(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let c = self.db.conn();
        let mut subnets: HashMap<String, Vec<String>> = HashMap::new();
        for b in store::list(c, SUBNET).await? {
            let s: Subnet = serde_json::from_str(&b)?;
            subnets.entry(s.network_id).or_default().push(s.id);
        }
        let segs = store::segments(c).await?;
        let mut out = Vec::new();
        for b in store::list(c, NETWORK).await? {
            let n: Network = serde_json::from_str(&b)?;
            if self.net_readable(ctx, &n) {
                let ids = subnets.remove(&n.id).unwrap_or_default();
                out.push(self.render_network(ctx, &n, ids, segs.get(&n.id)));
            }
        }
        Ok(out)
    }

    pub async fn get_network(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let c = self.db.conn();
        let n = self.lookup_network(c, ctx, id).await?;
        let seg = store::segment(c, id).await?;
        Ok(self.render_network(ctx, &n, self.subnet_ids(c, id).await?, seg.as_ref()))
    }

    pub async fn update_network(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, NETWORK_KEYS, NETWORK_PUT, true)?;
        let w = self.write().await?;
        let mut n = self.lookup_network(&*w, ctx, id).await?;
        check_revision(if_match, n.revision_number)?;
        let attrs: Vec<&str> = [
            "shared",
            "router:external",
            "is_default",
            "port_security_enabled",
        ]
        .into_iter()
        .filter(|a| body.contains_key(*a))
        .chain(provider_attrs_in(body))
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
                "is_default" => n.is_default = to_bool(k, v)?,
                _ => {}
            }
        }
        if n.external && n.is_default && body.contains_key("is_default") {
            self.check_one_default_external(&*w, &n, &[]).await?;
        }
        let seg = self
            .update_segment(&*w, &n, &provider_request(body)?)
            .await?;
        n.updated_at = now();
        n.revision_number += 1;
        store::update(&*w, &n.id, serde_json::to_string(&n)?).await?;
        let ids = self.subnet_ids(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(self.render_network(ctx, &n, ids, Some(&seg)))
    }

    /// ML2's provider attribute update: the type and physical network cannot change; a new
    /// segmentation id needs a network without bound ports (and must be valid and free).
    async fn update_segment<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        n: &Network,
        req: &segments::Requested,
    ) -> Result<Segment> {
        let cur = store::segment(c, &n.id)
            .await?
            .unwrap_or_else(Segment::local);
        let fixed = [
            req.network_type
                .as_ref()
                .is_some_and(|t| *t != cur.network_type),
            req.physical_network.is_some() && req.physical_network != cur.physical_network,
        ];
        if fixed.contains(&true) {
            return Err(NetError::invalid_input(
                "Plugin does not support updating the following provider network attributes: provider:network_type, provider:physical_network",
            ));
        }
        let Some(id) = req.segmentation_id else {
            return Ok(cur);
        };
        if cur.segmentation_id.map(i64::from) == Some(id) {
            return Ok(cur);
        }
        let ports: Vec<Port> = super::read_children(c, super::PORT, &n.id).await?;
        if ports
            .iter()
            .any(|p| !["unbound", "binding_failed"].contains(&p.binding_vif_type.as_str()))
        {
            return Err(NetError::invalid_input(
                "Provider network attribute provider:segmentation_id cannot be updated if any port in the network has not the following binding:vif_type: unbound, binding_failed",
            ));
        }
        let wanted = segments::validate(
            &segments::Requested {
                network_type: Some(cur.network_type.clone()),
                physical_network: cur.physical_network.clone(),
                segmentation_id: Some(id),
            },
            &self.cfg.segments,
        )?;
        let mut taken = store::segment_allocations(c).await?;
        if let Some(a) = cur.allocation() {
            taken.remove(&a);
        }
        let seg = segments::reserve(wanted, &self.cfg.segments, &taken)?;
        store::set_segment(c, &n.id, &seg).await?;
        Ok(seg)
    }

    /// One default external network at a time (Neutron's DefaultExternalNetworkExists);
    /// `pending` are networks of the same bulk request not written yet.
    async fn check_one_default_external<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        n: &Network,
        pending: &[Network],
    ) -> Result<()> {
        let stored: Vec<Network> = super::read_all(c, NETWORK).await?;
        if let Some(other) = stored
            .iter()
            .chain(pending)
            .find(|o| o.external && o.is_default && o.id != n.id)
        {
            return Err(NetError::conflict(
                "DefaultExternalNetworkExists",
                format!("A default external network already exists: {}.", other.id),
            ));
        }
        Ok(())
    }

    /// The deployment's default external network, if there is one.
    pub(crate) async fn default_external_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
    ) -> Result<Option<Network>> {
        let nets: Vec<Network> = super::read_all(c, NETWORK).await?;
        Ok(nets.into_iter().find(|n| n.external && n.is_default))
    }

    /// Delete a network with its subnets and DHCP port; other ports keep it (NetworkInUse).
    pub async fn delete_network(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let n = self.lookup_network(&*w, ctx, id).await?;
        check_revision(if_match, n.revision_number)?;
        self.authorize(ctx, "delete_network", &[], &Self::net_target(&n))?;
        let (auto, blocking) = self.ports_blocking_network(&*w, id).await?;
        if !blocking.is_empty() {
            return Err(NetError::conflict(
                "NetworkInUse",
                format!(
                    "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
                ),
            ));
        }
        for p in auto {
            self.remove_port(&*w, &p.id).await?;
        }
        store::delete_children(&*w, id).await?;
        store::delete_segment(&*w, id).await?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }
}
