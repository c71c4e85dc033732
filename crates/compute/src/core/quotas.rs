//! Quotas as Nova's os-quota-sets and os-quota-class-sets see them: which keys a microversion
//! shows and accepts, a project's (or a user's) limits made of overrides, the `default` class
//! and the configured defaults, usage, and updates checked against what is already used.

use serde_json::{Map, Value};

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::store;

/// nova-network's quotas: kept (default -1, settable) before 2.36 (2.50 for classes).
pub const LEGACY_NETWORK: &[&str] = &[
    "fixed_ips",
    "floating_ips",
    "security_group_rules",
    "security_groups",
];

/// The personality quotas 2.57 removes.
pub const INJECTED: &[&str] = &[
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
];

/// Which of the two quota APIs a key rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaApi {
    /// os-quota-sets: network keys go at 2.36, injected files at 2.57.
    Sets,
    /// os-quota-class-sets: network keys go at 2.50 (when the server group keys appear), and
    /// injected files at 2.57.
    Classes,
}

/// Every quota resource, in the order they are rendered.
pub fn all_resources() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = crate::config::QUOTA_RESOURCES
        .iter()
        .map(|(r, _)| *r)
        .collect();
    v.extend_from_slice(LEGACY_NETWORK);
    v
}

/// The keys a response shows at microversion 2.`minor`.
pub fn shown_keys(api: QuotaApi, minor: u16) -> Vec<&'static str> {
    all_resources()
        .into_iter()
        .filter(|k| {
            let network_gone = match api {
                QuotaApi::Sets => minor >= 36,
                QuotaApi::Classes => minor >= 50,
            };
            if network_gone && LEGACY_NETWORK.contains(k) {
                return false;
            }
            if minor >= 57 && INJECTED.contains(k) {
                return false;
            }
            // Classes show the server group keys from 2.50 only.
            !(api == QuotaApi::Classes
                && minor < 50
                && matches!(*k, "server_groups" | "server_group_members"))
        })
        .collect()
}

/// The keys an update accepts at 2.`minor` (classes take the server group keys before 2.50
/// too, as Nova's schema does, without showing them).
pub fn settable_keys(api: QuotaApi, minor: u16) -> Vec<&'static str> {
    let mut keys = shown_keys(api, minor);
    if api == QuotaApi::Classes && minor < 50 {
        keys.extend(["server_groups", "server_group_members"]);
    }
    keys
}

/// One limit value of an update body: an integer, or a string of digits, from -1 up
/// (Nova's `_common_quota`).
pub fn limit_value(field: &str, v: &Value) -> Result<i64> {
    use crate::api::validate::invalid;
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| invalid(field, v, format!("{v} is not of type 'integer', 'string'")))?,
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    field,
                    v,
                    format!("'{s}' does not match '^-?[0-9]+$'"),
                ));
            }
            s.parse::<i64>().map_err(|_| {
                invalid(
                    field,
                    v,
                    format!("{s} is greater than the maximum of 2147483647"),
                )
            })?
        }
        other => {
            return Err(invalid(
                field,
                other,
                format!("{other} is not of type 'integer', 'string'"),
            ));
        }
    };
    if n < -1 {
        return Err(invalid(
            field,
            v,
            format!("{n} is less than the minimum of -1"),
        ));
    }
    if n > 0x7FFF_FFFF {
        return Err(invalid(
            field,
            v,
            format!("{n} is greater than the maximum of 2147483647"),
        ));
    }
    Ok(n)
}

/// Nova's range check of a new limit (-1 is unlimited on both sides).
pub fn check_range(resource: &str, limit: i64, minimum: i64, maximum: i64) -> Result<()> {
    let inf = |v: i64| if v == -1 { f64::INFINITY } else { v as f64 };
    if inf(limit) < inf(minimum) {
        return Err(ComputeError::bad(format!(
            "Quota limit {limit} for {resource} must be greater than or equal to already used and reserved {minimum}."
        )));
    }
    if inf(limit) > inf(maximum) {
        return Err(ComputeError::bad(format!(
            "Quota limit {limit} for {resource} must be less than or equal to {maximum}."
        )));
    }
    Ok(())
}

/// A quota of a project (or user): its limit and what is in use.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUsage {
    pub resource: &'static str,
    pub limit: i64,
    pub in_use: i64,
}

impl ComputeService {
    /// The limits of a class: the configured defaults with the class's rows over them
    /// (what `defaults` answers for the `default` class).
    pub async fn class_limits(&self, class: &str) -> Result<Vec<(&'static str, i64)>> {
        let rows = store::quota_class_limits(self.db.conn(), class).await?;
        Ok(all_resources()
            .into_iter()
            .map(|r| {
                let base = self
                    .cfg
                    .quota_defaults
                    .iter()
                    .find(|(x, _)| *x == r)
                    .map_or(-1, |(_, l)| *l);
                let l = rows.iter().find(|(x, _)| x == r).map_or(base, |(_, l)| *l);
                (r, l)
            })
            .collect())
    }

    /// The limits of a project, or of a user in it: user rows, then project rows, then the
    /// `default` class.
    pub async fn project_limits(
        &self,
        project_id: &str,
        user_id: Option<&str>,
    ) -> Result<Vec<(&'static str, i64)>> {
        let c = self.db.conn();
        let class = self.class_limits("default").await?;
        let project = store::quota_limits(c, project_id, None).await?;
        let user = match user_id {
            Some(u) => store::quota_limits(c, project_id, Some(u)).await?,
            None => Vec::new(),
        };
        Ok(class
            .into_iter()
            .map(|(r, l)| {
                let l = user
                    .iter()
                    .chain(project.iter())
                    .find(|(x, _)| x == r)
                    .map_or(l, |(_, v)| *v);
                (r, l)
            })
            .collect())
    }

    /// Limits with usage (os-quota-sets detail and the update's minimums).
    pub async fn quota_usages(
        &self,
        project_id: &str,
        user_id: Option<&str>,
    ) -> Result<Vec<QuotaUsage>> {
        let c = self.db.conn();
        let (n, cores, ram) = store::project_usage(c, project_id, user_id).await?;
        let groups = store::list_groups(c, Some(project_id))
            .await?
            .into_iter()
            .filter(|g| user_id.is_none_or(|u| g.user_id == u))
            .count() as i64;
        let keypairs = match user_id {
            Some(u) => store::flavors::list_keypairs(c, u).await?.len() as i64,
            None => 0,
        };
        Ok(self
            .project_limits(project_id, user_id)
            .await?
            .into_iter()
            .map(|(resource, limit)| {
                let in_use = match resource {
                    "instances" => n,
                    "cores" => cores,
                    "ram" => ram,
                    "server_groups" => groups,
                    "key_pairs" => keypairs,
                    _ => 0,
                };
                QuotaUsage {
                    resource,
                    limit,
                    in_use,
                }
            })
            .collect())
    }

    /// `PUT /os-quota-sets/{project}`: `body` is the validated `quota_set` object. Unless
    /// `force`, a limit below what is used (or, for a user, above the project's) is refused
    /// before anything is written.
    pub async fn update_quotas(
        &self,
        project_id: &str,
        user_id: Option<&str>,
        body: &Map<String, Value>,
        minor: u16,
    ) -> Result<()> {
        crate::api::validate::only(
            body,
            &[settable_keys(QuotaApi::Sets, minor), vec!["force"]].concat(),
        )?;
        let force = match body.get("force") {
            Some(v) => crate::api::validate::boolean("force", v)?,
            None => false,
        };
        let mut wanted = Vec::new();
        for (k, v) in body {
            if k == "force" {
                continue;
            }
            let l = limit_value(k, v)?;
            wanted.push((k.clone(), l));
        }
        if !force {
            let usage = self.quota_usages(project_id, user_id).await?;
            let project = match user_id {
                Some(_) => self.project_limits(project_id, None).await?,
                None => Vec::new(),
            };
            for (k, l) in &wanted {
                let min = usage
                    .iter()
                    .find(|u| u.resource == k)
                    .map_or(0, |u| u.in_use);
                let max = project.iter().find(|(r, _)| r == k).map_or(-1, |(_, l)| *l);
                check_range(k, *l, min, max)?;
            }
        }
        let txn = self.db.write().await?;
        for (k, l) in &wanted {
            store::set_quota(&*txn, project_id, user_id, k, *l).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// `DELETE /os-quota-sets/{project}`: back to the defaults.
    pub async fn reset_quotas(&self, project_id: &str, user_id: Option<&str>) -> Result<()> {
        let txn = self.db.write().await?;
        store::delete_quotas(&*txn, project_id, user_id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// `PUT /os-quota-class-sets/{class}`: `body` is the `quota_class_set` object.
    pub async fn update_quota_class(
        &self,
        class: &str,
        body: &Map<String, Value>,
        minor: u16,
    ) -> Result<()> {
        if class.is_empty() || class.chars().count() > 255 {
            return Err(ComputeError::bad(format!(
                "quota_class_name has a length of {}; it must be 1 to 255 characters.",
                class.chars().count()
            )));
        }
        crate::api::validate::only(body, &settable_keys(QuotaApi::Classes, minor))?;
        let mut wanted = Vec::new();
        for (k, v) in body {
            wanted.push((k.clone(), limit_value(k, v)?));
        }
        let txn = self.db.write().await?;
        for (k, l) in &wanted {
            store::set_quota_class(&*txn, class, k, *l).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_drop_network_keys_at_236_and_injected_at_257() {
        let k21 = shown_keys(QuotaApi::Sets, 1);
        assert!(k21.contains(&"floating_ips"));
        assert!(k21.contains(&"injected_files"));
        assert!(k21.contains(&"server_groups"));
        let k36 = shown_keys(QuotaApi::Sets, 36);
        assert!(!k36.contains(&"floating_ips"));
        assert!(!k36.contains(&"security_groups"));
        assert!(k36.contains(&"injected_files"));
        let k57 = shown_keys(QuotaApi::Sets, 57);
        assert!(!k57.contains(&"injected_files"));
        assert!(!k57.contains(&"injected_file_path_bytes"));
        assert!(k57.contains(&"instances"));
        assert_eq!(settable_keys(QuotaApi::Sets, 57), k57);
    }

    #[test]
    fn classes_change_at_250() {
        let k = shown_keys(QuotaApi::Classes, 49);
        assert!(k.contains(&"fixed_ips"));
        assert!(!k.contains(&"server_groups"));
        assert!(settable_keys(QuotaApi::Classes, 49).contains(&"server_groups"));
        let k50 = shown_keys(QuotaApi::Classes, 50);
        assert!(!k50.contains(&"fixed_ips"));
        assert!(k50.contains(&"server_group_members"));
        assert!(!shown_keys(QuotaApi::Classes, 57).contains(&"injected_files"));
    }

    #[test]
    fn limit_values_as_novas_schema() {
        assert_eq!(limit_value("cores", &json!(4)).unwrap(), 4);
        assert_eq!(limit_value("cores", &json!("-1")).unwrap(), -1);
        assert!(limit_value("cores", &json!(-2)).is_err());
        assert!(limit_value("cores", &json!("4x")).is_err());
        assert!(limit_value("cores", &json!(1.5)).is_err());
        assert!(limit_value("cores", &json!(true)).is_err());
        assert!(limit_value("cores", &json!(0x8000_0000_i64)).is_err());
    }

    #[test]
    fn range_check_treats_minus_one_as_unlimited() {
        assert!(check_range("instances", 2, 3, -1).is_err());
        assert!(check_range("instances", 3, 3, -1).is_ok());
        assert!(check_range("instances", -1, 3, -1).is_ok());
        assert!(check_range("instances", -1, 0, 10).is_err());
        let e = check_range("instances", 1, 2, -1).unwrap_err().to_string();
        assert_eq!(
            e,
            "Quota limit 1 for instances must be greater than or equal to already used and reserved 2."
        );
    }
}
