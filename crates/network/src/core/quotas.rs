//! Quotas (`/v2.0/quotas`).

use common::auth::AuthContext;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::attrs::*;
use super::{FLOATINGIP, NETWORK, NetworkService, PORT, QUOTA_RESOURCES, ROUTER, SUBNET};
use super::{SECURITY_GROUP, SECURITY_GROUP_RULE};
use crate::error::{NetError, Result};
use crate::store;

impl NetworkService {
    // ------------------------------------------------------------ quotas

    pub fn default_quotas(&self) -> HashMap<&'static str, i64> {
        HashMap::from([
            (NETWORK, self.cfg.quota_network),
            (SUBNET, self.cfg.quota_subnet),
            (PORT, self.cfg.quota_port),
            (ROUTER, self.cfg.quota_router),
            (FLOATINGIP, self.cfg.quota_floatingip),
            (SECURITY_GROUP, self.cfg.quota_security_group),
            (SECURITY_GROUP_RULE, self.cfg.quota_security_group_rule),
        ])
    }

    pub(crate) async fn quota_limits<C: sea_orm::ConnectionTrait>(
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

    pub(crate) fn quota_view(q: &HashMap<&'static str, i64>) -> Map<String, Value> {
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
        let w = self.write().await?;
        for (k, n) in &set {
            store::set_quota(&*w, project, k, *n).await?;
        }
        let q = self.quota_limits(&*w, project).await?;
        w.commit().await?;
        Ok(Value::Object(Self::quota_view(&q)))
    }

    pub async fn delete_quota(&self, ctx: &AuthContext, project: &str) -> Result<()> {
        self.authorize(ctx, "delete_quota", &[], &json!({"project_id": project}))?;
        let w = self.write().await?;
        store::delete_quotas(&*w, project).await?;
        w.commit().await?;
        Ok(())
    }
}
