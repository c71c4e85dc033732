//! Subnet pools (`subnet_allocation`, `default-subnetpools`): the pools and their prefixes, and
//! the allocation of a subnet's cidr from a pool (Neutron's `SubnetAllocator`: prefix bounds, the
//! per-project prefix quota, the smallest free block first).

use common::auth::AuthContext;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::attrs::*;
use super::{NetworkService, SUBNET, SUBNETPOOL};
use crate::error::{NetError, Result};
use crate::ipam;
use crate::model::{Subnet, now};
use crate::store;

pub const SUBNETPOOL_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "default_quota",
    "address_scope_id",
    "ip_version",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const POST: &[&str] = &[
    "name",
    "description",
    "tenant_id",
    "project_id",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "shared",
    "is_default",
    "default_quota",
    "address_scope_id",
];
const PUT: &[&str] = &[
    "name",
    "description",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "is_default",
    "default_quota",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetPool {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub prefixes: Vec<String>,
    pub default_prefixlen: u8,
    pub min_prefixlen: u8,
    pub max_prefixlen: u8,
    pub shared: bool,
    pub is_default: bool,
    pub default_quota: Option<i64>,
    pub ip_version: u8,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

impl SubnetPool {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "tenant_id": self.project_id, "project_id": self.project_id,
            "prefixes": self.prefixes, "default_prefixlen": self.default_prefixlen,
            "min_prefixlen": self.min_prefixlen, "max_prefixlen": self.max_prefixlen,
            "shared": self.shared, "is_default": self.is_default,
            "default_quota": self.default_quota, "address_scope_id": null,
            "ip_version": self.ip_version, "tags": [],
            "created_at": self.created_at, "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }

    fn target(&self) -> Value {
        json!({
            "id": self.id, "project_id": self.project_id, "tenant_id": self.project_id,
            "shared": if self.shared { "True" } else { "False" },
        })
    }
}

pub fn subnetpool_not_found(id: &str) -> NetError {
    NetError::new(
        http::StatusCode::NOT_FOUND,
        "SubnetPoolNotFound",
        format!("Subnet pool {id} could not be found."),
    )
}

/// Prefixes as Neutron stores them: valid, one IP version, canonical, merged duplicates.
fn parse_prefixes(v: &Value) -> Result<(Vec<String>, u8)> {
    let mut nets: Vec<IpNet> = Vec::new();
    for p in to_list("prefixes", v)? {
        let s = to_string("prefixes", p, 64)?;
        let n: IpNet = s.parse().map_err(|_| {
            NetError::invalid_attr("prefixes", format!("'{s}' is not a valid IP subnet"))
        })?;
        nets.push(n.trunc());
    }
    let Some(first) = nets.first() else {
        return Err(NetError::invalid_attr("prefixes", "[] is too short"));
    };
    let v6 = first.addr().is_ipv6();
    if nets.iter().any(|n| n.addr().is_ipv6() != v6) {
        return Err(NetError::new(
            http::StatusCode::BAD_REQUEST,
            "PrefixVersionMismatch",
            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
        ));
    }
    let merged = IpNet::aggregate(&nets);
    Ok((
        merged.iter().map(IpNet::to_string).collect(),
        if v6 { 6 } else { 4 },
    ))
}

/// neutron-lib's SubnetAllocationError. Neutron answers it with a 500 (it maps no HTTP status
/// to it); kumo says 409: the pool's state, not the server, refuses the request.
fn allocation_error(reason: impl std::fmt::Display) -> NetError {
    NetError::conflict(
        "SubnetAllocationError",
        format!("Failed to allocate subnet: {reason}."),
    )
}

fn bounds_error(kind: &str, len: u8, base_kind: &str, base: u8) -> NetError {
    NetError::invalid(
        "IllegalSubnetPoolPrefixBounds",
        format!("Illegal prefix bounds: {kind}={len}, {base_kind}={base}."),
    )
}

/// Quota units of an allocation of `prefixlen`: Neutron counts IPv4 in /32s and IPv6 in /64s.
fn quota_units(ip_version: u8, prefixlen: u8) -> f64 {
    let unit: i32 = if ip_version == 6 { 64 } else { 32 };
    2f64.powi(unit - i32::from(prefixlen))
}

fn prefixlen(attr: &str, v: &Value, max: u8) -> Result<u8> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= u64::from(max) => Ok(n as u8),
        _ => Err(NetError::invalid_attr(
            attr,
            format!("'{}' is not an integer between 0 and {max}", py(v)),
        )),
    }
}

impl NetworkService {
    pub(crate) async fn lookup_subnetpool<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<SubnetPool> {
        let pool: Option<SubnetPool> = super::read(c, SUBNETPOOL, id).await?;
        match pool {
            Some(p)
                if (self.is_admin(ctx) || p.shared || ctx.project_id() == Some(&p.project_id))
                    && self.allowed(ctx, "get_subnetpool", &p.target()) =>
            {
                Ok(p)
            }
            _ => Err(subnetpool_not_found(id)),
        }
    }

    /// Check and set the prefix lengths as Neutron's SubnetPoolReader: min <= max <= the
    /// version's bits, min <= default <= max.
    fn apply_lengths(p: &mut SubnetPool, body: &Map<String, Value>) -> Result<()> {
        let bits = if p.ip_version == 6 { 128 } else { 32 };
        if let Some(v) = body.get("min_prefixlen") {
            p.min_prefixlen = prefixlen("min_prefixlen", v, bits)?;
        }
        if let Some(v) = body.get("max_prefixlen") {
            p.max_prefixlen = prefixlen("max_prefixlen", v, bits)?;
        }
        p.default_prefixlen = match body.get("default_prefixlen") {
            Some(v) => prefixlen("default_prefixlen", v, bits)?,
            None => p.default_prefixlen.max(p.min_prefixlen),
        };
        if p.min_prefixlen > p.max_prefixlen {
            return Err(bounds_error(
                "min_prefixlen",
                p.min_prefixlen,
                "max_prefixlen",
                p.max_prefixlen,
            ));
        }
        if p.default_prefixlen < p.min_prefixlen {
            return Err(bounds_error(
                "default_prefixlen",
                p.default_prefixlen,
                "min_prefixlen",
                p.min_prefixlen,
            ));
        }
        if p.default_prefixlen > p.max_prefixlen {
            return Err(bounds_error(
                "default_prefixlen",
                p.default_prefixlen,
                "max_prefixlen",
                p.max_prefixlen,
            ));
        }
        Ok(())
    }

    /// Only one default pool per IP version (Neutron's `_check_default_subnetpool_exists`).
    async fn check_no_other_default<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        p: &SubnetPool,
    ) -> Result<()> {
        let pools: Vec<SubnetPool> = super::read_all(c, SUBNETPOOL).await?;
        if pools
            .iter()
            .any(|o| o.is_default && o.ip_version == p.ip_version && o.id != p.id)
        {
            return Err(NetError::invalid_input(
                "A default subnetpool for this IP family has already been set. Only one default may exist per IP family",
            ));
        }
        Ok(())
    }

    /// The pool a new subnet names: `subnetpool_id`, or with `use_default_subnetpool` the
    /// default pool of its IP version (Neutron's `_get_subnetpool_id`).
    pub(crate) async fn requested_subnetpool<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        body: &Map<String, Value>,
        ip_version: u8,
    ) -> Result<Option<SubnetPool>> {
        let use_default = body
            .get("use_default_subnetpool")
            .map(|v| to_bool("use_default_subnetpool", v))
            .transpose()?
            .unwrap_or(false);
        let id = match body.get("subnetpool_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(to_string("subnetpool_id", v, 36)?),
        };
        if use_default && id.is_some() {
            return Err(NetError::bad_request(
                "subnets",
                "subnetpool_id and use_default_subnetpool cannot both be specified",
            ));
        }
        if let Some(id) = id {
            return self.lookup_subnetpool(c, ctx, &id).await.map(Some);
        }
        if !use_default {
            return Ok(None);
        }
        match self.default_subnetpool(c, ctx, ip_version).await? {
            Some(p) => Ok(Some(p)),
            None => Err(NetError::bad_request(
                "subnets",
                format!("No default subnetpool found for IPv{ip_version}"),
            )),
        }
    }

    /// The default pool of `ip_version` the caller can see.
    pub(crate) async fn default_subnetpool<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        ip_version: u8,
    ) -> Result<Option<SubnetPool>> {
        let pools: Vec<SubnetPool> = super::read_all(c, SUBNETPOOL).await?;
        Ok(pools.into_iter().find(|p| {
            p.is_default
                && p.ip_version == ip_version
                && (self.is_admin(ctx) || p.shared || ctx.project_id() == Some(&p.project_id))
        }))
    }

    /// The cidr a subnet of `project` gets from `pool`: `cidr` if given and free in the pool,
    /// else the first free block of `prefixlen` (the pool's default when none). `pending`
    /// holds the subnets of the same (bulk) request not yet written.
    pub(crate) async fn allocate_from_pool<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        pool: &SubnetPool,
        project: &str,
        cidr: Option<IpNet>,
        prefixlen: Option<u8>,
        pending: &[Subnet],
    ) -> Result<IpNet> {
        let len = cidr
            .map(|n| n.prefix_len())
            .or(prefixlen)
            .unwrap_or(pool.default_prefixlen);
        if len > pool.max_prefixlen {
            return Err(NetError::invalid(
                "MaxPrefixSubnetAllocationError",
                format!(
                    "Unable to allocate subnet with prefix length {len}, maximum allowed prefix is {}.",
                    pool.max_prefixlen
                ),
            ));
        }
        if len < pool.min_prefixlen {
            return Err(NetError::invalid(
                "MinPrefixSubnetAllocationError",
                format!(
                    "Unable to allocate subnet with prefix length {len}, minimum allowed prefix is {}.",
                    pool.min_prefixlen
                ),
            ));
        }
        let mut allocated: Vec<Subnet> = super::read_all::<Subnet, _>(c, SUBNET)
            .await?
            .into_iter()
            .filter(|s| s.subnetpool_id.as_deref() == Some(&pool.id))
            .collect();
        allocated.extend(
            pending
                .iter()
                .filter(|s| s.subnetpool_id.as_deref() == Some(&pool.id))
                .cloned(),
        );
        let taken: Vec<IpNet> = allocated
            .iter()
            .filter_map(|s| s.cidr.parse().ok())
            .collect();
        // A quota of 0 or none means no limit, as in Neutron.
        if let Some(quota) = pool.default_quota.filter(|q| *q > 0) {
            let used: f64 = allocated
                .iter()
                .filter(|s| s.project_id == project)
                .filter_map(|s| s.cidr.parse::<IpNet>().ok())
                .map(|n| quota_units(pool.ip_version, n.prefix_len()))
                .sum();
            if used + quota_units(pool.ip_version, len) > quota as f64 {
                return Err(NetError::conflict(
                    "SubnetPoolQuotaExceeded",
                    "Per-project subnet pool prefix quota exceeded.",
                ));
            }
        }
        let prefixes: Vec<IpNet> = pool
            .prefixes
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let free = ipam::free_blocks(&prefixes, &taken);
        match cidr {
            Some(want) => {
                if free.iter().any(|b| b.contains(&want)) {
                    Ok(want)
                } else {
                    Err(allocation_error(
                        "Cannot allocate requested subnet from the available set of prefixes",
                    ))
                }
            }
            None => ipam::allocate_prefix(&free, len).ok_or_else(|| {
                allocation_error(format!(
                    "Insufficient prefix space to allocate subnet size /{len}"
                ))
            }),
        }
    }

    pub async fn create_subnetpools(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.write().await?;
        let mut out = Vec::new();
        for body in bodies {
            check_keys(body, SUBNETPOOL_KEYS, POST, false)?;
            if body.get("address_scope_id").is_some_and(|v| !v.is_null()) {
                return Err(NetError::invalid_input(
                    "address scopes are not supported by this cloud",
                ));
            }
            let (prefixes, ip_version) = match body.get("prefixes") {
                Some(v) => parse_prefixes(v)?,
                None => {
                    return Err(NetError::bad(
                        "Failed to parse request. Required attribute 'prefixes' not specified",
                    ));
                }
            };
            let b = |k: &str| -> Result<bool> {
                body.get(k)
                    .map(|v| to_bool(k, v))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let s = |k: &str| -> Result<String> {
                body.get(k)
                    .map(|v| to_string(k, v, 255))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let ts = now();
            let min = if ip_version == 6 { 64 } else { 8 };
            let mut p = SubnetPool {
                id: uuid::Uuid::new_v4().to_string(),
                name: s("name")?,
                description: s("description")?,
                project_id: owner(ctx, body)?,
                prefixes,
                default_prefixlen: min,
                min_prefixlen: min,
                max_prefixlen: if ip_version == 6 { 128 } else { 32 },
                shared: b("shared")?,
                is_default: b("is_default")?,
                default_quota: body.get("default_quota").and_then(Value::as_i64),
                ip_version,
                created_at: ts.clone(),
                updated_at: ts,
                revision_number: 0,
            };
            Self::apply_lengths(&mut p, body)?;
            let attrs: Vec<&str> = ["shared", "is_default"]
                .into_iter()
                .filter(|a| body.get(*a).is_some_and(|v| v == &json!(true)))
                .collect();
            self.authorize(ctx, "create_subnetpool", &attrs, &p.target())?;
            if p.is_default {
                self.check_no_other_default(&*w, &p).await?;
            }
            store::insert(
                &*w,
                store::NewRow {
                    kind: SUBNETPOOL,
                    id: &p.id,
                    project_id: &p.project_id,
                    parent_id: None,
                    created_at: &p.created_at,
                    body: serde_json::to_string(&p)?,
                },
            )
            .await?;
            out.push(p.render());
        }
        w.commit().await?;
        Ok(out)
    }

    pub async fn list_subnetpools(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for b in store::list(self.db.conn(), SUBNETPOOL).await? {
            let p: SubnetPool = serde_json::from_str(&b)?;
            let visible = self.is_admin(ctx) || p.shared || ctx.project_id() == Some(&p.project_id);
            if visible && self.allowed(ctx, "get_subnetpool", &p.target()) {
                out.push(p.render());
            }
        }
        Ok(out)
    }

    pub async fn get_subnetpool(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        Ok(self
            .lookup_subnetpool(self.db.conn(), ctx, id)
            .await?
            .render())
    }

    pub async fn update_subnetpool(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, SUBNETPOOL_KEYS, PUT, true)?;
        let w = self.write().await?;
        let mut p = self.lookup_subnetpool(&*w, ctx, id).await?;
        check_revision(if_match, p.revision_number)?;
        let attrs: Vec<&str> = ["is_default"]
            .into_iter()
            .filter(|a| body.contains_key(*a))
            .collect();
        self.authorize(ctx, "update_subnetpool", &attrs, &p.target())?;
        for (k, v) in body {
            match k.as_str() {
                "name" => p.name = to_string(k, v, 255)?,
                "description" => p.description = to_string(k, v, 255)?,
                "is_default" => p.is_default = to_bool(k, v)?,
                "default_quota" => p.default_quota = v.as_i64(),
                "prefixes" => {
                    let (prefixes, version) = parse_prefixes(v)?;
                    if version != p.ip_version {
                        return Err(NetError::new(
                            http::StatusCode::BAD_REQUEST,
                            "PrefixVersionMismatch",
                            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                        ));
                    }
                    // Neutron: prefixes may only grow.
                    let old: Vec<IpNet> =
                        p.prefixes.iter().filter_map(|x| x.parse().ok()).collect();
                    let new: Vec<IpNet> = prefixes.iter().filter_map(|x| x.parse().ok()).collect();
                    if !old.iter().all(|o| new.iter().any(|n| n.contains(o))) {
                        return Err(NetError::invalid_input(
                            "Existing prefixes must be a subset of the new prefixes",
                        ));
                    }
                    p.prefixes = prefixes;
                }
                _ => {}
            }
        }
        Self::apply_lengths(&mut p, body)?;
        if p.is_default && body.contains_key("is_default") {
            self.check_no_other_default(&*w, &p).await?;
        }
        p.updated_at = now();
        p.revision_number += 1;
        store::update(&*w, &p.id, serde_json::to_string(&p)?).await?;
        w.commit().await?;
        Ok(p.render())
    }

    pub async fn delete_subnetpool(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let p = self.lookup_subnetpool(&*w, ctx, id).await?;
        check_revision(if_match, p.revision_number)?;
        self.authorize(ctx, "delete_subnetpool", &[], &p.target())?;
        let subnets: Vec<Subnet> = super::read_all(&*w, SUBNET).await?;
        if subnets
            .iter()
            .any(|s| s.subnetpool_id.as_deref() == Some(id))
        {
            return Err(NetError::invalid(
                "SubnetPoolDeleteError",
                "Unable to delete subnet pool: Subnet pool has existing allocations.",
            ));
        }
        store::delete(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ctx, obj, svc};
    use serde_json::json;

    #[tokio::test]
    async fn subnets_from_pools() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        let pool = s
            .create_subnetpools(
                &admin,
                &[&obj(json!({"name": "p", "prefixes": ["10.10.0.0/16"],
                    "default_prefixlen": 24, "max_prefixlen": 28, "shared": true,
                    "is_default": true, "default_quota": 512}))],
            )
            .await
            .unwrap();
        let pool_id = pool[0]["id"].as_str().unwrap().to_string();
        let e = s
            .create_subnetpools(
                &admin,
                &[&obj(
                    json!({"prefixes": ["10.20.0.0/16"], "is_default": true}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        let net = s.create_networks(&alice, &[&obj(json!({}))]).await.unwrap();
        let net_id = net[0]["id"].as_str().unwrap();
        let sub = |extra: serde_json::Value| {
            let mut b = json!({"network_id": net_id, "ip_version": 4});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            obj(b)
        };
        let a = s
            .create_subnets(&alice, &[&sub(json!({"subnetpool_id": pool_id}))])
            .await
            .unwrap();
        assert_eq!(a[0]["cidr"], "10.10.0.0/24");
        assert_eq!(a[0]["subnetpool_id"], pool_id.as_str());
        assert_eq!(a[0]["gateway_ip"], "10.10.0.1");
        let b = s
            .create_subnets(
                &alice,
                &[&sub(
                    json!({"use_default_subnetpool": true, "prefixlen": 26}),
                )],
            )
            .await
            .unwrap();
        assert_eq!(b[0]["cidr"], "10.10.1.0/26");
        // Two in one bulk request do not collide; a hole is filled first.
        let c = s
            .create_subnets(
                &alice,
                &[
                    &sub(json!({"subnetpool_id": pool_id, "prefixlen": 27})),
                    &sub(json!({"subnetpool_id": pool_id, "prefixlen": 27})),
                ],
            )
            .await
            .unwrap();
        assert_eq!(c[0]["cidr"], "10.10.1.64/27");
        assert_eq!(c[1]["cidr"], "10.10.1.96/27");
        let e = s
            .create_subnets(
                &alice,
                &[&sub(json!({"subnetpool_id": pool_id, "prefixlen": 30}))],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "MaxPrefixSubnetAllocationError");
        assert_eq!(
            e.message,
            "Unable to allocate subnet with prefix length 30, maximum allowed prefix is 28."
        );
        // Taken or outside: the explicit cidr is refused.
        for cidr in ["10.10.0.0/28", "192.168.0.0/28"] {
            let e = s
                .create_subnets(
                    &alice,
                    &[&sub(json!({"subnetpool_id": pool_id, "cidr": cidr}))],
                )
                .await
                .unwrap_err();
            assert_eq!(e.kind, "SubnetAllocationError", "{cidr}");
        }
        // Quota 512 /32s: 256 + 64 + 32 + 32 used, another /24 is too much.
        let e = s
            .create_subnets(&alice, &[&sub(json!({"subnetpool_id": pool_id}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "SubnetPoolQuotaExceeded");
        // A subnet without the pool on the same network and version: affinity.
        let e = s
            .create_subnets(&alice, &[&sub(json!({"cidr": "192.168.9.0/24"}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "NetworkSubnetPoolAffinityError");
        let e = s
            .delete_subnetpool(&admin, &pool_id, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, "SubnetPoolDeleteError");
        s.delete_network(&alice, net_id, None).await.unwrap();
        s.delete_subnetpool(&admin, &pool_id, None).await.unwrap();
        let e = s
            .create_subnets(&alice, &[&sub(json!({"use_default_subnetpool": true}))])
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "Bad subnets request: No default subnetpool found for IPv4."
        );
    }
}
