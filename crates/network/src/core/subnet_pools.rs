//! Subnet pools (`subnet_allocation`): the pools and their prefixes. Subnets do not take their
//! cidr from a pool yet (`subnetpool_id` on a subnet is refused), so a pool is never in use.

use common::auth::AuthContext;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::attrs::*;
use super::{NetworkService, SUBNETPOOL};
use crate::error::{NetError, Result};
use crate::model::now;
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
    async fn lookup_subnetpool<C: sea_orm::ConnectionTrait>(
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

    /// Check and set the prefix lengths: min <= default <= max <= the version's bits, and the
    /// prefixes no longer than max.
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
        if !(p.min_prefixlen <= p.default_prefixlen && p.default_prefixlen <= p.max_prefixlen) {
            return Err(NetError::invalid_input(format!(
                "Illegal prefix bounds: min_prefixlen={}, default_prefixlen={}, max_prefixlen={}",
                p.min_prefixlen, p.default_prefixlen, p.max_prefixlen
            )));
        }
        Ok(())
    }

    pub async fn create_subnetpools(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let w = self.db.write().await?;
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
        let w = self.db.write().await?;
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
        let w = self.db.write().await?;
        let p = self.lookup_subnetpool(&*w, ctx, id).await?;
        check_revision(if_match, p.revision_number)?;
        self.authorize(ctx, "delete_subnetpool", &[], &p.target())?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }
}
