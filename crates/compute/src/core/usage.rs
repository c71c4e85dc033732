//! os-simple-tenant-usage: what each project's servers used over a period, from the launch
//! and termination times of every instance, deleted ones included (a delete keeps the row
//! with `terminated_at`).

use chrono::{DateTime, Utc};

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::store;

/// Hours of `[launched, terminated)` inside `[start, stop]` (Nova's `_hours_for`): zero for
/// an instance never launched, or gone before the period, or launched after it.
pub fn hours_for(
    launched: Option<Timestamp>,
    terminated: Option<Timestamp>,
    start: Timestamp,
    stop: Timestamp,
) -> f64 {
    let Some(launched) = launched else {
        return 0.0;
    };
    if terminated.is_some_and(|t| t < start) || launched > stop {
        return 0.0;
    }
    let from = launched.max(start);
    let to = terminated.map_or(stop, |t| t.min(stop));
    (to - from).num_microseconds().unwrap_or(0) as f64 / 3_600_000_000.0
}

/// Whether an instance was alive at some time of the period (Nova's
/// `get_active_by_window_joined`: launched before its end, not terminated before its start).
pub fn active_in(i: &Instance, start: Timestamp, stop: Timestamp) -> bool {
    i.launched_at.is_some_and(|l| l < stop) && i.terminated_at.is_none_or(|t| t > start)
}

/// One server's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerUsage {
    pub instance_id: String,
    pub name: String,
    pub tenant_id: String,
    pub flavor: String,
    pub hours: f64,
    pub memory_mb: i64,
    pub local_gb: i64,
    pub vcpus: i64,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// `terminated` once ended, else the vm_state.
    pub state: String,
    pub uptime: i64,
}

/// One project's usage over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantUsage {
    pub tenant_id: String,
    pub total_local_gb_usage: f64,
    pub total_vcpus_usage: f64,
    pub total_memory_mb_usage: f64,
    pub total_hours: f64,
    pub start: Timestamp,
    pub stop: Timestamp,
    pub server_usages: Vec<ServerUsage>,
}

/// Per-project sums over `instances` (already filtered to the window), in the order the
/// projects first appear.
pub fn summarize(
    instances: &[Instance],
    start: Timestamp,
    stop: Timestamp,
    now: Timestamp,
) -> Vec<TenantUsage> {
    let mut out: Vec<TenantUsage> = Vec::new();
    for i in instances {
        let hours = hours_for(i.launched_at, i.terminated_at, start, stop);
        let f = &i.flavor;
        let ended = i.terminated_at;
        let state = if ended.is_some() {
            "terminated".to_string()
        } else {
            i.vm_state.clone()
        };
        let uptime = i
            .launched_at
            .map_or(0, |l| (ended.unwrap_or(now) - l).num_seconds());
        let su = ServerUsage {
            instance_id: i.uuid.clone(),
            name: i.display_name.clone(),
            tenant_id: i.project_id.clone(),
            flavor: f.name.clone(),
            hours,
            memory_mb: f.memory_mb,
            local_gb: f.root_gb + f.ephemeral_gb,
            vcpus: f.vcpus,
            started_at: i.launched_at,
            ended_at: ended,
            state,
            uptime,
        };
        let pos = match out.iter().position(|t| t.tenant_id == i.project_id) {
            Some(p) => p,
            None => {
                out.push(TenantUsage {
                    tenant_id: i.project_id.clone(),
                    total_local_gb_usage: 0.0,
                    total_vcpus_usage: 0.0,
                    total_memory_mb_usage: 0.0,
                    total_hours: 0.0,
                    start,
                    stop,
                    server_usages: Vec::new(),
                });
                out.len() - 1
            }
        };
        let t = &mut out[pos];
        t.total_local_gb_usage += su.local_gb as f64 * hours;
        t.total_vcpus_usage += su.vcpus as f64 * hours;
        t.total_memory_mb_usage += su.memory_mb as f64 * hours;
        t.total_hours += hours;
        t.server_usages.push(su);
    }
    out
}

/// Nova's usage times: `2012-10-08T21:14:25` or with microseconds when there are some
/// (Python's isoformat of a naive UTC datetime).
pub fn isoformat(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

/// A `start`/`end` query value in one of the formats Nova takes; missing is now.
pub fn parse_period_time(s: Option<&str>) -> Result<Timestamp> {
    use chrono::{NaiveDateTime, TimeZone};
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(Utc::now());
    };
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    Err(ComputeError::bad(
        "Invalid datetime string: Datetime is in invalid format",
    ))
}

impl ComputeService {
    /// The instances (deleted ones too) of one project or all, active in the period, oldest
    /// first, after `marker` and at most `limit`.
    pub async fn instances_in_period(
        &self,
        project_id: Option<&str>,
        start: Timestamp,
        stop: Timestamp,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Vec<Instance>> {
        let mut all: Vec<Instance> = store::list_instances(
            self.db.conn(),
            &store::InstanceQuery {
                project_id: project_id.map(str::to_string),
                include_deleted: true,
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .filter(|i| active_in(i, start, stop))
        .collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.uuid.cmp(&b.uuid))
        });
        if let Some(m) = marker {
            let pos = all
                .iter()
                .position(|i| i.uuid == m)
                .ok_or_else(|| ComputeError::bad(format!("Marker {m} could not be found.")))?;
            all.drain(..=pos);
        }
        all.truncate(limit);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn t(h: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn hours_are_clipped_to_the_period() {
        // Running through the whole period.
        assert_eq!(hours_for(Some(t(0)), None, t(2), t(10)), 8.0);
        // Launched inside, still running.
        assert_eq!(hours_for(Some(t(4)), None, t(2), t(10)), 6.0);
        // Deleted inside.
        assert_eq!(hours_for(Some(t(0)), Some(t(5)), t(2), t(10)), 3.0);
        // Deleted before, launched after, never launched.
        assert_eq!(hours_for(Some(t(0)), Some(t(1)), t(2), t(10)), 0.0);
        assert_eq!(hours_for(Some(t(11)), None, t(2), t(10)), 0.0);
        assert_eq!(hours_for(None, None, t(2), t(10)), 0.0);
        // Half an hour.
        let half = t(3) + chrono::Duration::minutes(30);
        assert_eq!(hours_for(Some(t(3)), Some(half), t(2), t(10)), 0.5);
    }

    fn inst(uuid: &str, project: &str, launched: Option<u32>, ended: Option<u32>) -> Instance {
        serde_json::from_value(json!({
            "uuid": uuid, "project_id": project, "user_id": "u", "display_name": uuid,
            "hostname": uuid, "vm_state": if ended.is_some() { "deleted" } else { "active" },
            "deleted": ended.is_some(),
            "launched_at": launched.map(t), "terminated_at": ended.map(t),
            "flavor": {"flavorid": "1", "name": "m1.tiny", "memory_mb": 512, "vcpus": 2,
                       "root_gb": 1, "ephemeral_gb": 1, "swap": 0, "rxtx_factor": 1.0,
                       "is_public": true},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn deleted_instances_count_in_their_period() {
        let gone = inst("a", "p1", Some(1), Some(4));
        let live = inst("b", "p1", Some(3), None);
        let other = inst("c", "p2", Some(0), None);
        let never = inst("d", "p1", None, None);
        let early = inst("e", "p1", Some(0), Some(1));
        assert!(active_in(&gone, t(2), t(10)));
        assert!(!active_in(&never, t(2), t(10)));
        assert!(!active_in(&early, t(2), t(10)));
        let u = summarize(&[gone, live, other], t(2), t(10), t(12));
        assert_eq!(u.len(), 2);
        let p1 = &u[0];
        assert_eq!(p1.tenant_id, "p1");
        assert_eq!(p1.total_hours, 2.0 + 7.0);
        assert_eq!(p1.total_vcpus_usage, 2.0 * 9.0);
        assert_eq!(p1.total_memory_mb_usage, 512.0 * 9.0);
        assert_eq!(p1.total_local_gb_usage, 2.0 * 9.0);
        assert_eq!(p1.server_usages[0].state, "terminated");
        assert_eq!(p1.server_usages[0].uptime, 3 * 3600);
        assert_eq!(p1.server_usages[1].state, "active");
        assert_eq!(p1.server_usages[1].uptime, 9 * 3600);
        assert_eq!(u[1].total_hours, 8.0);
    }

    #[test]
    fn period_times() {
        assert_eq!(
            parse_period_time(Some("2026-01-01T02:00:00")).unwrap(),
            t(2)
        );
        assert_eq!(
            parse_period_time(Some("2026-01-01T02:00:00.000000")).unwrap(),
            t(2)
        );
        assert!(parse_period_time(Some("yesterday")).is_err());
        assert_eq!(isoformat(&t(2)), "2026-01-01T02:00:00");
    }
}
