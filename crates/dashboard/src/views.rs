//! What the pages show, built from the APIs' JSON. Pure functions: no HTTP here.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::api::ProjectRef;
use crate::session::Flash;

/// The frame of every logged-in page.
pub struct Layout {
    pub logged_in: bool,
    pub user: String,
    pub domain: String,
    pub roles: String,
    pub project_id: String,
    pub project_name: String,
    pub projects: Vec<ProjectRef>,
    pub csrf: String,
    pub can_write: bool,
    /// the token has the admin role: the Admin nav group is shown (the APIs still decide)
    pub is_admin: bool,
    pub active: &'static str,
    pub flashes: Vec<Flash>,
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Statuses a server moves out of by itself: its row is polled while in one.
const TRANSITIONAL: &[&str] = &[
    "BUILD",
    "REBOOT",
    "HARD_REBOOT",
    "REBUILD",
    "RESIZE",
    "REVERT_RESIZE",
    "MIGRATING",
    "PASSWORD",
];

#[derive(Debug, Clone)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub task: String,
    pub power: String,
    pub ips: Vec<String>,
    pub flavor: String,
    pub image: String,
    pub key_name: String,
    pub created: String,
    pub fault: String,
    pub host: String,
}

pub fn power_name(code: i64) -> &'static str {
    match code {
        1 => "Running",
        3 => "Paused",
        4 => "Shut down",
        6 => "Crashed",
        7 => "Suspended",
        _ => "No state",
    }
}

impl ServerView {
    pub fn from_json(v: &Value, image_names: &HashMap<String, String>) -> Self {
        let mut ips = Vec::new();
        if let Some(addrs) = v.get("addresses").and_then(Value::as_object) {
            for (net, list) in addrs {
                for a in list.as_array().into_iter().flatten() {
                    let kind = s(a, "OS-EXT-IPS:type");
                    let mut text = format!("{} ({net}", s(a, "addr"));
                    if kind == "floating" {
                        text.push_str(", floating");
                    }
                    text.push(')');
                    ips.push(text);
                }
            }
        }
        let image = match v.get("image") {
            Some(Value::Object(o)) => {
                let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
                image_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string())
            }
            _ => "(booted from volume)".into(),
        };
        let flavor = v
            .get("flavor")
            .map(|f| {
                let name = s(f, "original_name");
                if name.is_empty() { s(f, "id") } else { name }
            })
            .unwrap_or_default();
        ServerView {
            id: s(v, "id"),
            name: s(v, "name"),
            status: s(v, "status"),
            task: s(v, "OS-EXT-STS:task_state"),
            power: power_name(
                v.get("OS-EXT-STS:power_state")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            )
            .to_string(),
            ips,
            flavor,
            image,
            key_name: s(v, "key_name"),
            created: s(v, "created"),
            fault: v.get("fault").map(|f| s(f, "message")).unwrap_or_default(),
            host: s(v, "OS-EXT-SRV-ATTR:host"),
        }
    }

    /// Polled while true: a status or a task that ends by itself.
    pub fn transitional(&self) -> bool {
        !self.task.is_empty() || TRANSITIONAL.contains(&self.status.as_str())
    }

    pub fn badge(&self) -> &'static str {
        match self.status.as_str() {
            "ACTIVE" => "ok",
            "ERROR" => "bad",
            "SHUTOFF" | "SUSPENDED" | "PAUSED" | "SHELVED" | "SHELVED_OFFLOADED" | "DELETED" => {
                "off"
            }
            _ => "busy",
        }
    }

    /// The actions offered in this state (the API still decides).
    pub fn actions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.task.is_empty() {
            match self.status.as_str() {
                "ACTIVE" => out.extend(["stop", "reboot"]),
                "SHUTOFF" => out.push("start"),
                _ => {}
            }
        }
        if self.task != "deleting" {
            out.push("delete");
        }
        out
    }
}

/// One bar of the overview.
#[derive(Debug, Clone)]
pub struct Usage {
    pub label: String,
    pub text: String,
    pub pct: String,
    pub level: &'static str,
}

impl Usage {
    pub fn new(label: &str, used: i64, limit: i64, unit: &str) -> Self {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        if limit < 0 {
            return Usage {
                label: label.into(),
                text: format!("{used}{unit} used (no limit)"),
                pct: "0".into(),
                level: "ok",
            };
        }
        let pct = if limit == 0 {
            100.0
        } else {
            (used as f64 / limit as f64 * 100.0).clamp(0.0, 100.0)
        };
        Usage {
            label: label.into(),
            text: format!("{used} of {limit}{unit} used"),
            pct: format!("{pct:.1}"),
            level: if pct >= 100.0 {
                "full"
            } else if pct >= 80.0 {
                "warn"
            } else {
                "ok"
            },
        }
    }
}

/// Compute's `GET /limits`: instances, vCPUs, RAM.
pub fn compute_usage(limits: &Value) -> Vec<Usage> {
    let a = &limits["limits"]["absolute"];
    let n = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(0);
    vec![
        Usage::new(
            "Instances",
            n("totalInstancesUsed"),
            n("maxTotalInstances"),
            "",
        ),
        Usage::new("vCPUs", n("totalCoresUsed"), n("maxTotalCores"), ""),
        Usage::new("RAM", n("totalRAMUsed"), n("maxTotalRAMSize"), "MiB"),
    ]
}

/// Neutron's `GET /quotas/{project}/details`: floating IPs, networks, security groups.
pub fn network_usage(details: &Value) -> Vec<Usage> {
    let q = &details["quota"];
    let pick = |key: &str, label: &str| {
        let e = &q[key];
        Usage::new(
            label,
            e["used"].as_i64().unwrap_or(0),
            e["limit"].as_i64().unwrap_or(-1),
            "",
        )
    };
    vec![
        pick("floatingip", "Floating IPs"),
        pick("network", "Networks"),
        pick("security_group", "Security groups"),
    ]
}

/// Cinder's `GET /os-quota-sets/{project}?usage=true`: volumes and gigabytes.
pub fn volume_usage(set: &Value) -> Vec<Usage> {
    let q = &set["quota_set"];
    let pick = |key: &str, label: &str, unit: &str| {
        let e = &q[key];
        Usage::new(
            label,
            e["in_use"].as_i64().unwrap_or(0),
            e["limit"].as_i64().unwrap_or(-1),
            unit,
        )
    };
    vec![
        pick("volumes", "Volumes", ""),
        pick("gigabytes", "Volume storage", "GiB"),
    ]
}

/// OpenStack's timestamps: RFC 3339, or Nova's naive `2026-01-01T00:00:00.000000` (UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// What a step of a build is, in words.
pub fn step_label(event: &str) -> &str {
    match event {
        "conductor_schedule_and_build_instances" => "scheduling (conductor)",
        "scheduler_select_destinations" => "choosing a host (placement, filters, weighers)",
        "compute__do_build_and_run_instance" => "build on the host",
        "compute_build_networking" => "networking (ports, vif plugged)",
        "compute_build_block_device_mapping" => "block device mapping (volumes)",
        "compute_build_spawning" => "spawning (hypervisor)",
        other => other,
    }
}

/// One bar of the boot trace.
#[derive(Debug, Clone)]
pub struct TraceStep {
    pub event: String,
    pub label: String,
    pub start: String,
    pub finish: String,
    pub duration: String,
    pub left: String,
    pub width: String,
    pub failed: bool,
    pub running: bool,
    pub detail: String,
}

/// The boot trace: the events of a server's create action as bars on one time axis.
pub struct Trace {
    pub steps: Vec<TraceStep>,
    pub total: String,
}

/// An event's start, its finish (None while it runs) and its JSON.
type Timed<'a> = (DateTime<Utc>, Option<DateTime<Utc>>, &'a Value);

pub fn boot_trace(action: &Value, now: DateTime<Utc>) -> Trace {
    let mut events: Vec<Timed> = action["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let start = parse_time(e["start_time"].as_str()?)?;
            let finish = e["finish_time"].as_str().and_then(parse_time);
            Some((start, finish, e))
        })
        .collect();
    events.sort_by_key(|(start, _, _)| *start);
    let Some(t0) = events.iter().map(|(st, _, _)| *st).min() else {
        return Trace {
            steps: Vec::new(),
            total: String::new(),
        };
    };
    let end = events
        .iter()
        .map(|(_, f, _)| f.unwrap_or(now))
        .max()
        .unwrap_or(now);
    let total_ms = (end - t0).num_milliseconds().max(1);
    let steps = events
        .iter()
        .map(|(start, finish, e)| {
            let stop = finish.unwrap_or(now);
            let ms = (stop - *start).num_milliseconds().max(0);
            let left = (*start - t0).num_milliseconds() as f64 / total_ms as f64 * 100.0;
            let width = (ms as f64 / total_ms as f64 * 100.0).max(0.5);
            let result = e["result"].as_str().unwrap_or_default();
            let event = e["event"].as_str().unwrap_or_default().to_string();
            TraceStep {
                label: step_label(&event).to_string(),
                event,
                start: start.format("%H:%M:%S%.3f").to_string(),
                finish: finish
                    .map(|f| f.format("%H:%M:%S%.3f").to_string())
                    .unwrap_or_else(|| "running".into()),
                duration: duration_text(ms),
                left: format!("{:.2}", left.clamp(0.0, 100.0)),
                width: format!("{:.2}", width.min(100.0 - left.clamp(0.0, 99.5))),
                failed: result.eq_ignore_ascii_case("error"),
                running: finish.is_none(),
                detail: s(e, "details"),
            }
        })
        .collect();
    Trace {
        steps,
        total: duration_text(total_ms),
    }
}

#[derive(Debug, Clone)]
pub struct ActionView {
    pub action: String,
    pub request_id: String,
    pub start: String,
    pub user_id: String,
    pub message: String,
}

pub fn actions(list: &Value) -> Vec<ActionView> {
    list["instanceActions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| ActionView {
            action: s(a, "action"),
            request_id: s(a, "request_id"),
            start: s(a, "start_time"),
            user_id: s(a, "user_id"),
            message: s(a, "message"),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Named {
    pub id: String,
    pub name: String,
    pub extra: String,
}

pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[derive(Debug, Clone)]
pub struct ImageView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub visibility: String,
    pub size: String,
    pub disk_format: String,
    pub created: String,
}

pub fn images(list: &Value) -> Vec<ImageView> {
    list["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| ImageView {
            id: s(i, "id"),
            name: s(i, "name"),
            status: s(i, "status"),
            visibility: s(i, "visibility"),
            size: i["size"].as_i64().map(human_size).unwrap_or_default(),
            disk_format: s(i, "disk_format"),
            created: s(i, "created_at"),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct KeypairView {
    pub name: String,
    pub fingerprint: String,
    pub kind: String,
}

pub fn keypairs(list: &Value) -> Vec<KeypairView> {
    list["keypairs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let k = &k["keypair"];
            KeypairView {
                name: s(k, "name"),
                fingerprint: s(k, "fingerprint"),
                kind: s(k, "type"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_states_and_actions() {
        let names = HashMap::from([("img".to_string(), "cirros".to_string())]);
        let v = json!({"id": "1", "name": "vm", "status": "BUILD",
            "OS-EXT-STS:task_state": "spawning", "OS-EXT-STS:power_state": 0,
            "image": {"id": "img"}, "flavor": {"original_name": "m1.nano"},
            "addresses": {"private": [{"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"}]}});
        let s = ServerView::from_json(&v, &names);
        assert!(s.transitional());
        assert_eq!(s.badge(), "busy");
        assert_eq!(s.image, "cirros");
        assert_eq!(s.flavor, "m1.nano");
        assert_eq!(s.ips, vec!["10.0.0.5 (private)".to_string()]);
        assert_eq!(s.actions(), vec!["delete"]);
        let active = ServerView::from_json(
            &json!({"id": "1", "status": "ACTIVE", "OS-EXT-STS:task_state": null, "image": ""}),
            &names,
        );
        assert!(!active.transitional());
        assert_eq!(active.actions(), vec!["stop", "reboot", "delete"]);
        let off = ServerView::from_json(&json!({"status": "SHUTOFF"}), &names);
        assert_eq!(off.actions(), vec!["start", "delete"]);
        assert_eq!(off.badge(), "off");
    }

    #[test]
    fn usage_bars() {
        let u = Usage::new("Instances", 8, 10, "");
        assert_eq!((u.pct.as_str(), u.level), ("80.0", "warn"));
        assert_eq!(u.text, "8 of 10 used");
        assert_eq!(Usage::new("x", 3, -1, "").level, "ok");
        assert_eq!(Usage::new("x", 12, 10, "").pct, "100.0");
        let c = compute_usage(&json!({"limits": {"absolute": {
            "maxTotalInstances": 10, "totalInstancesUsed": 2, "maxTotalCores": 20,
            "totalCoresUsed": 4, "maxTotalRAMSize": 51200, "totalRAMUsed": 1024}}}));
        assert_eq!(c[2].text, "1024 of 51200 MiB used");
    }

    #[test]
    fn trace_bars_in_time_order_and_failures() {
        let action = json!({"events": [
            {"event": "compute_build_spawning", "start_time": "2026-01-01T00:00:01.000000",
             "finish_time": "2026-01-01T00:00:02.000000", "result": "Error"},
            {"event": "conductor_schedule_and_build_instances",
             "start_time": "2026-01-01T00:00:00.000000",
             "finish_time": "2026-01-01T00:00:00.500000", "result": "Success"},
        ]});
        let now = parse_time("2026-01-01T00:00:05Z").unwrap();
        let t = boot_trace(&action, now);
        assert_eq!(t.total, "2.00 s");
        assert_eq!(t.steps[0].event, "conductor_schedule_and_build_instances");
        assert_eq!(t.steps[0].left, "0.00");
        assert_eq!(t.steps[0].width, "25.00");
        assert_eq!(t.steps[0].duration, "500 ms");
        assert!(!t.steps[0].failed);
        assert_eq!(t.steps[1].left, "50.00");
        assert!(t.steps[1].failed);
        assert!(boot_trace(&json!({}), now).steps.is_empty());
    }

    #[test]
    fn times_and_sizes() {
        assert!(parse_time("2026-01-01T00:00:00Z").is_some());
        assert!(parse_time("2026-01-01T00:00:00.123456").is_some());
        assert!(parse_time("yesterday").is_none());
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
