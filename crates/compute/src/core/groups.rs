//! Server groups (`os-server-groups`): a policy (affinity, anti-affinity, soft-affinity,
//! soft-anti-affinity) the scheduler applies to the group's members, under the
//! `server_groups` quota.

use chrono::Utc;
use common::auth::AuthContext;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::ServerGroup;
use crate::store;

pub const POLICIES: &[&str] = &[
    "anti-affinity",
    "affinity",
    "soft-anti-affinity",
    "soft-affinity",
];

/// The rule the API accepts (2.64+), for anti-affinity only.
pub const MAX_SERVER_PER_HOST: &str = "max_server_per_host";

/// Nova's check of a group's policy and rules: rules only with anti-affinity, and a
/// `max_server_per_host` of at least 1.
pub fn check_rules(policy: &str, rules: &BTreeMap<String, Value>) -> Result<()> {
    if !POLICIES.contains(&policy) {
        return Err(ComputeError::bad(format!("Invalid policy {policy}")));
    }
    if !rules.is_empty() && policy != "anti-affinity" {
        return Err(ComputeError::bad(
            "Only anti-affinity policy supports rules.",
        ));
    }
    for (k, v) in rules {
        if k != MAX_SERVER_PER_HOST || v.as_u64().is_none_or(|n| n < 1) {
            return Err(ComputeError::bad(format!("Invalid rule {k}: {v}")));
        }
    }
    Ok(())
}

pub fn group_not_found(id: &str) -> ComputeError {
    ComputeError::NotFound(format!("Instance group {id} could not be found."))
}

impl ComputeService {
    /// Create a group in the caller's project.
    pub async fn create_group(
        &self,
        ctx: &AuthContext,
        name: String,
        policy: String,
        rules: BTreeMap<String, Value>,
    ) -> Result<ServerGroup> {
        let project_id = ctx.project_id().unwrap_or_default().to_string();
        self.authorize(
            ctx,
            "os_compute_api:os-server-groups:create",
            &json!({"project_id": project_id}),
        )?;
        check_rules(&policy, &rules)?;
        let limit = self.quota_limit(&project_id, "server_groups").await?;
        let txn = self.db.write().await?;
        let used = store::list_groups(&*txn, Some(&project_id)).await?.len() as i64;
        if limit >= 0 && used + 1 > limit {
            return Err(ComputeError::QuotaExceeded(
                "Quota exceeded, too many server groups.".into(),
            ));
        }
        let g = ServerGroup {
            uuid: uuid::Uuid::new_v4().to_string(),
            name,
            project_id,
            user_id: ctx.user_id.clone(),
            policy,
            rules,
            members: Vec::new(),
            created_at: Utc::now(),
        };
        store::insert_group(&*txn, &g).await?;
        txn.commit().await?;
        Ok(g)
    }

    /// A group by id (404 first, then the policy on its project, as Nova).
    pub async fn group(&self, ctx: &AuthContext, id: &str) -> Result<ServerGroup> {
        let g = store::get_group(self.db.conn(), id)
            .await?
            .ok_or_else(|| group_not_found(id))?;
        self.authorize(
            ctx,
            "os_compute_api:os-server-groups:show",
            &json!({"project_id": g.project_id}),
        )?;
        self.live_members(vec![g])
            .await?
            .pop()
            .ok_or_else(|| group_not_found(id))
    }

    /// The caller's project's groups, or every project's for an admin asking for
    /// `all_projects`; `offset` then `limit` (Nova's `common.limited`).
    pub async fn groups(
        &self,
        ctx: &AuthContext,
        all_projects: bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ServerGroup>> {
        let project_id = ctx.project_id().unwrap_or_default().to_string();
        let target = json!({"project_id": project_id});
        self.authorize(ctx, "os_compute_api:os-server-groups:index", &target)?;
        // Nova: `all_projects` counts only for an admin (any value); others get their own.
        let all = all_projects && ctx.has_role("admin");
        if all {
            self.authorize(
                ctx,
                "os_compute_api:os-server-groups:index:all_projects",
                &target,
            )?;
        }
        let groups =
            store::list_groups(self.db.conn(), (!all).then_some(project_id.as_str())).await?;
        let max = self.cfg.max_limit;
        let limit = limit.filter(|l| *l > 0).map_or(max, |l| l.min(max));
        let page: Vec<ServerGroup> = groups.into_iter().skip(offset).take(limit).collect();
        self.live_members(page).await
    }

    /// Members shown are the instances that are not deleted.
    async fn live_members(&self, mut groups: Vec<ServerGroup>) -> Result<Vec<ServerGroup>> {
        let all: Vec<String> = groups.iter().flat_map(|g| g.members.clone()).collect();
        if all.is_empty() {
            return Ok(groups);
        }
        let live: HashSet<String> = store::list_instances(
            self.db.conn(),
            &store::InstanceQuery {
                uuids: Some(all),
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .map(|i| i.uuid)
        .collect();
        for g in &mut groups {
            g.members.retain(|m| live.contains(m));
        }
        Ok(groups)
    }

    pub async fn delete_group(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        let txn = self.db.write().await?;
        let g = store::get_group(&*txn, id)
            .await?
            .ok_or_else(|| group_not_found(id))?;
        self.authorize(
            ctx,
            "os_compute_api:os-server-groups:delete",
            &json!({"project_id": g.project_id}),
        )?;
        if !store::delete_group(&*txn, id).await? {
            return Err(group_not_found(id));
        }
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).expect("rules")
    }

    #[test]
    fn rules_only_with_anti_affinity() {
        assert!(check_rules("anti-affinity", &rules(json!({"max_server_per_host": 2}))).is_ok());
        assert!(check_rules("affinity", &rules(json!({}))).is_ok());
        let e = check_rules("affinity", &rules(json!({"max_server_per_host": 2})))
            .expect_err("affinity with rules");
        assert_eq!(e.to_string(), "Only anti-affinity policy supports rules.");
        assert!(
            check_rules(
                "soft-anti-affinity",
                &rules(json!({"max_server_per_host": 1}))
            )
            .is_err()
        );
        assert!(check_rules("anti-affinity", &rules(json!({"max_server_per_host": 0}))).is_err());
        assert!(check_rules("anti-affinity", &rules(json!({"other": 1}))).is_err());
        assert!(check_rules("legacy", &rules(json!({}))).is_err());
    }
}
