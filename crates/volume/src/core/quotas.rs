//! Quotas as Cinder counts them: volumes, snapshots and gigabytes (volumes' and snapshots'
//! sizes) per project, and the same per volume type (`volumes_<type>`, ...). Usage is counted
//! from the rows at each check, inside the write transaction, so it cannot drift.

use common::auth::AuthContext;
use std::collections::BTreeMap;

use super::*;

/// Limits by resource name.
pub type QuotaSet = BTreeMap<String, i64>;

/// In-use counts by resource name.
pub type Usage = BTreeMap<String, i64>;

impl VolumeService {
    /// Cinder's defaults, plus the per-type keys of every type (unlimited).
    pub async fn default_quotas(&self) -> Result<QuotaSet> {
        let mut q = QuotaSet::new();
        q.insert("volumes".into(), self.cfg.quota_volumes);
        q.insert("snapshots".into(), self.cfg.quota_snapshots);
        q.insert("gigabytes".into(), self.cfg.quota_gigabytes);
        q.insert(
            "per_volume_gigabytes".into(),
            self.cfg.per_volume_size_limit,
        );
        q.insert("backups".into(), 10);
        q.insert("backup_gigabytes".into(), 1000);
        q.insert("groups".into(), 10);
        let types: Vec<VolumeType> = self.all(self.db.conn(), KIND_TYPE).await?;
        for t in types {
            for r in ["volumes", "snapshots", "gigabytes"] {
                q.insert(format!("{r}_{}", t.name), -1);
            }
        }
        Ok(q)
    }

    async fn limits_of<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
    ) -> Result<QuotaSet> {
        let mut q = self.default_quotas().await?;
        for (r, l) in store::quotas(c, project).await? {
            q.insert(r, l);
        }
        Ok(q)
    }

    async fn usage_of<C: sea_orm::ConnectionTrait>(&self, c: &C, project: &str) -> Result<Usage> {
        let mut u = Usage::new();
        for k in [
            "volumes",
            "snapshots",
            "gigabytes",
            "backups",
            "backup_gigabytes",
            "groups",
        ] {
            u.insert(k.into(), 0);
        }
        let vols: Vec<Volume> = self.all(c, KIND_VOLUME).await?;
        for v in vols.iter().filter(|v| v.project_id == project) {
            *u.entry("volumes".into()).or_default() += 1;
            *u.entry("gigabytes".into()).or_default() += v.size;
            *u.entry(format!("volumes_{}", v.volume_type_name))
                .or_default() += 1;
            *u.entry(format!("gigabytes_{}", v.volume_type_name))
                .or_default() += v.size;
        }
        let snaps: Vec<Snapshot> = self.all(c, KIND_SNAPSHOT).await?;
        let type_name = |id: &str| {
            vols.iter()
                .find(|v| v.volume_type_id == id)
                .map(|v| v.volume_type_name.clone())
        };
        for s in snaps.iter().filter(|s| s.project_id == project) {
            *u.entry("snapshots".into()).or_default() += 1;
            *u.entry("gigabytes".into()).or_default() += s.size;
            if let Some(t) = type_name(&s.volume_type_id) {
                *u.entry(format!("snapshots_{t}")).or_default() += 1;
                *u.entry(format!("gigabytes_{t}")).or_default() += s.size;
            }
        }
        Ok(u)
    }

    /// Refuse (413) what would take `project` over a limit.
    pub(crate) async fn check_quota<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
        vtype: &str,
        volumes: i64,
        gigabytes: i64,
        snapshots: i64,
    ) -> Result<()> {
        let limits = self.limits_of(c, project).await?;
        let usage = self.usage_of(c, project).await?;
        check(&limits, &usage, vtype, volumes, gigabytes, snapshots)
    }

    pub async fn quota_show(&self, ctx: &AuthContext, project: &str) -> Result<(QuotaSet, Usage)> {
        self.authorize(ctx, "volume_extension:quotas:show", project)?;
        let conn = self.db.conn();
        Ok((
            self.limits_of(conn, project).await?,
            self.usage_of(conn, project).await?,
        ))
    }

    pub async fn quota_update(
        &self,
        ctx: &AuthContext,
        project: &str,
        set: &QuotaSet,
    ) -> Result<QuotaSet> {
        self.authorize(ctx, "volume_extension:quotas:update", project)?;
        let defaults = self.default_quotas().await?;
        for (k, v) in set {
            if !defaults.contains_key(k) {
                return Err(VolumeError::bad(format!("Bad key(s) in quota set: {k}")));
            }
            if *v < -1 {
                return Err(VolumeError::invalid_input(format!(
                    "Quota limit {v} for {k} must be -1 or greater."
                )));
            }
        }
        let w = self.db.write().await?;
        for (k, v) in set {
            store::set_quota(&*w, project, k, *v).await?;
        }
        w.commit().await?;
        self.limits_of(self.db.conn(), project).await
    }

    pub async fn quota_delete(&self, ctx: &AuthContext, project: &str) -> Result<()> {
        self.authorize(ctx, "volume_extension:quotas:delete", project)?;
        let w = self.db.write().await?;
        store::delete_quotas(&*w, project).await?;
        w.commit().await?;
        Ok(())
    }
}

/// The quota rules, pure.
pub(crate) fn check(
    limits: &QuotaSet,
    usage: &Usage,
    vtype: &str,
    volumes: i64,
    gigabytes: i64,
    snapshots: i64,
) -> Result<()> {
    let over = |name: &str, add: i64| -> Option<(i64, i64)> {
        let limit = *limits.get(name)?;
        let used = usage.get(name).copied().unwrap_or(0);
        (add > 0 && limit >= 0 && used + add > limit).then_some((limit, used))
    };
    for name in ["volumes".to_string(), format!("volumes_{vtype}")] {
        if let Some((limit, _)) = over(&name, volumes) {
            return Err(VolumeError::OverLimit(format!(
                "Maximum number of volumes allowed ({limit}) exceeded for quota '{name}'."
            )));
        }
    }
    for name in ["snapshots".to_string(), format!("snapshots_{vtype}")] {
        if let Some((limit, _)) = over(&name, snapshots) {
            return Err(VolumeError::OverLimit(format!(
                "Maximum number of snapshots allowed ({limit}) exceeded for quota '{name}'."
            )));
        }
    }
    for name in ["gigabytes".to_string(), format!("gigabytes_{vtype}")] {
        if let Some((limit, used)) = over(&name, gigabytes) {
            return Err(VolumeError::OverLimit(format!(
                "Requested volume or snapshot exceeds allowed {name} quota. Requested {gigabytes}G, quota is {limit}G and {used}G has been consumed."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn quota_rules() {
        let limits = q(&[
            ("volumes", 1),
            ("gigabytes", 10),
            ("snapshots", 2),
            ("volumes_fast", -1),
        ]);
        let none = q(&[]);
        assert!(check(&limits, &none, "fast", 1, 1, 0).is_ok());
        let used = q(&[("volumes", 1), ("gigabytes", 1)]);
        let e = check(&limits, &used, "fast", 1, 1, 0).unwrap_err();
        assert!(matches!(e, VolumeError::OverLimit(_)));
        assert!(
            e.to_string()
                .contains("Maximum number of volumes allowed (1) exceeded for quota 'volumes'"),
            "{e}"
        );
        let e = check(&limits, &used, "fast", 0, 10, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("Requested 10G, quota is 10G and 1G has been consumed"),
            "{e}"
        );
        // Growing by nothing never fails, unlimited never fails.
        assert!(check(&limits, &used, "fast", 0, 9, 0).is_ok());
        let unl = q(&[("volumes", -1)]);
        assert!(check(&unl, &used, "x", 5, 0, 0).is_ok());
        let limits2 = q(&[("volumes_fast", 0)]);
        assert!(check(&limits2, &none, "fast", 1, 0, 0).is_err());
        assert!(check(&limits2, &none, "slow", 1, 0, 0).is_ok());
    }
}
