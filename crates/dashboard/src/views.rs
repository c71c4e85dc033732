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

/// One of the 28 steps of an OpenStack boot (the seed book's boot sequence), in short words.
#[derive(Debug, Clone)]
pub struct BootStep {
    pub n: u8,
    pub component: &'static str,
    pub text: &'static str,
}

const fn step(n: u8, component: &'static str, text: &'static str) -> BootStep {
    BootStep { n, component, text }
}

/// The 28 steps, from the user's login to the hypervisor starting the guest.
pub const BOOT_STEPS: [BootStep; 28] = [
    step(
        1,
        "Horizon or CLI",
        "sends the user's credentials to Keystone",
    ),
    step(
        2,
        "Keystone",
        "checks them and returns a token for the other services",
    ),
    step(
        3,
        "Horizon or CLI",
        "turns \"launch instance\" into a POST /servers to nova-api",
    ),
    step(
        4,
        "nova-api",
        "asks Keystone to validate the token and the user's permissions",
    ),
    step(
        5,
        "Keystone",
        "validates the token and answers with its roles and permissions",
    ),
    step(6, "nova-api", "opens a session with Nova's database"),
    step(7, "Database", "stores the new instance's record"),
    step(
        8,
        "nova-api",
        "asks nova-scheduler (rpc.call) for a host for the instance",
    ),
    step(
        9,
        "nova-scheduler",
        "takes the request off the message queue",
    ),
    step(
        10,
        "nova-scheduler",
        "picks a host through filters and weighers",
    ),
    step(
        11,
        "nova-scheduler",
        "returns the instance's entry with the chosen host",
    ),
    step(
        12,
        "nova-scheduler",
        "casts \"launch instance\" (rpc.cast) to that host's nova-compute",
    ),
    step(
        13,
        "nova-compute",
        "takes the request off the message queue",
    ),
    step(
        14,
        "nova-compute",
        "asks nova-conductor (rpc.call) for the instance's data and flavor",
    ),
    step(
        15,
        "nova-conductor",
        "takes the request off the message queue",
    ),
    step(16, "nova-conductor", "opens a session with Nova's database"),
    step(17, "Database", "returns the instance's data"),
    step(18, "nova-compute", "receives the answer from the queue"),
    step(
        19,
        "nova-compute",
        "asks glance-api (REST, with the token) where the image is",
    ),
    step(20, "glance-api", "validates the token with Keystone"),
    step(21, "nova-compute", "gets the image's metadata"),
    step(
        22,
        "nova-compute",
        "asks the Network API (REST) to allocate and set up the instance's network",
    ),
    step(23, "neutron-server", "validates the token with Keystone"),
    step(
        24,
        "nova-compute",
        "gets the network information (ports, addresses)",
    ),
    step(
        25,
        "nova-compute",
        "asks the Volume API (REST) to attach the instance's volumes",
    ),
    step(26, "cinder-api", "validates the token with Keystone"),
    step(27, "nova-compute", "gets the block storage information"),
    step(
        28,
        "nova-compute",
        "builds the hypervisor driver's data and asks the hypervisor to start the guest",
    ),
];

const EV_SCHEDULE: &str = "conductor_schedule_and_build_instances";
const EV_SELECT: &str = "scheduler_select_destinations";
const EV_BUILD: &str = "compute__do_build_and_run_instance";
const EV_NETWORKING: &str = "compute_build_networking";
const EV_BDM: &str = "compute_build_block_device_mapping";
const EV_SPAWNING: &str = "compute_build_spawning";

/// How a phase's time is measured from the create action's events.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// happens before the request reaches compute: no event
    Nothing,
    /// from the first start to the last finish of these events
    Events(&'static [&'static str]),
    /// the build event's start until the first host phase began (networking, block device
    /// mapping or spawning), or its finish when none did
    HostPrelude,
    /// the moment the build event finished well
    Active,
}

/// The phases of a boot: (status, task, first and last step (0, 0: none), how measured).
const PHASES: [(&str, &str, (u8, u8), Measure); 7] = [
    (
        "Before the request",
        "authentication",
        (1, 2),
        Measure::Nothing,
    ),
    (
        "Build",
        "scheduling",
        (3, 12),
        Measure::Events(&[EV_SCHEDULE, EV_SELECT]),
    ),
    ("Build", "on the host", (13, 21), Measure::HostPrelude),
    (
        "Build",
        "networking",
        (22, 24),
        Measure::Events(&[EV_NETWORKING]),
    ),
    (
        "Build",
        "block_device_mapping",
        (25, 27),
        Measure::Events(&[EV_BDM]),
    ),
    (
        "Build",
        "spawning",
        (28, 28),
        Measure::Events(&[EV_SPAWNING]),
    ),
    ("Active", "Running", (0, 0), Measure::Active),
];

/// A phase's measure in one attempt: start, end (None while running), failed, details.
type Span = (DateTime<Utc>, Option<DateTime<Utc>>, bool, String);

/// A phase of the boot sequence beside the trace: its steps and what the events say of it.
#[derive(Debug, Clone)]
pub struct BootPhase {
    pub status: &'static str,
    pub task: &'static str,
    pub steps: Vec<BootStep>,
    /// "3-12", "28", "" (Active)
    pub step_range: String,
    /// the kumo events it is measured from
    pub events: Vec<&'static str>,
    pub recorded: bool,
    pub start: String,
    pub end: String,
    pub duration: String,
    /// where its bar sits on the boot trace's time axis (percent)
    pub left: String,
    pub width: String,
    /// any attempt failed
    pub failed: bool,
    pub running: bool,
    /// a moment (Active), not a span
    pub moment: bool,
    pub note: String,
    /// a rescheduled build's later attempts of this phase, in words
    pub retries: Vec<String>,
}

impl BootPhase {
    pub fn slug(&self) -> String {
        self.task.replace(' ', "-")
    }
}

/// One occurrence of an event.
struct Occurrence {
    start: DateTime<Utc>,
    finish: Option<DateTime<Utc>>,
    failed: bool,
    detail: String,
}

/// A phase's span in attempt `k` (the k-th occurrence of its events; a rescheduled build
/// repeats them).
fn phase_span(measure: Measure, ev: &HashMap<String, Vec<Occurrence>>, k: usize) -> Option<Span> {
    let nth = |name: &str| ev.get(name).and_then(|v| v.get(k));
    match measure {
        Measure::Nothing => None,
        Measure::Events(names) => {
            let occ: Vec<&Occurrence> = names.iter().filter_map(|n| nth(n)).collect();
            let start = occ.iter().map(|o| o.start).min()?;
            let end = if occ.iter().all(|o| o.finish.is_some()) {
                occ.iter().filter_map(|o| o.finish).max()
            } else {
                None
            };
            let detail = occ
                .iter()
                .map(|o| o.detail.as_str())
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Some((start, end, occ.iter().any(|o| o.failed), detail))
        }
        Measure::HostPrelude => {
            let b = nth(EV_BUILD)?;
            let later = [EV_NETWORKING, EV_BDM, EV_SPAWNING];
            let next = later.iter().filter_map(|n| nth(n)).map(|o| o.start).min();
            // the build's failure is the prelude's only when no later phase failed
            let later_failed = later.iter().filter_map(|n| nth(n)).any(|o| o.failed);
            Some((
                b.start,
                next.or(b.finish),
                b.failed && !later_failed,
                b.detail.clone(),
            ))
        }
        Measure::Active => {
            let b = nth(EV_BUILD).filter(|b| !b.failed)?;
            let f = b.finish?;
            Some((f, Some(f), false, String::new()))
        }
    }
}

/// The seed book's boot sequence as phases, each with the start, end and duration measured
/// from the create action's events (`instanceAction` of os-instance-actions/{request}); a
/// phase kumo has no event for is "not recorded"; a failed event marks its phase failed (the
/// build event's failure marks the host phase when no later phase failed). A rescheduled
/// build's first attempt is the phase's times; later ones are listed as retries.
pub fn boot_phases(action: &Value, now: DateTime<Utc>) -> Vec<BootPhase> {
    let mut ev: HashMap<String, Vec<Occurrence>> = HashMap::new();
    for e in action["events"].as_array().into_iter().flatten() {
        let (Some(name), Some(start)) = (
            e["event"].as_str(),
            e["start_time"].as_str().and_then(parse_time),
        ) else {
            continue;
        };
        ev.entry(name.to_string()).or_default().push(Occurrence {
            start,
            finish: e["finish_time"].as_str().and_then(parse_time),
            failed: e["result"]
                .as_str()
                .is_some_and(|r| r.eq_ignore_ascii_case("error")),
            detail: s(e, "details"),
        });
    }
    for v in ev.values_mut() {
        v.sort_by_key(|o| o.start);
    }
    let attempts = ev.values().map(Vec::len).max().unwrap_or(0);
    // the trace's time axis: first start to last finish (or now)
    let t0 = ev.values().flatten().map(|o| o.start).min();
    let t1 = ev.values().flatten().map(|o| o.finish.unwrap_or(now)).max();
    let hhmmss = |t: DateTime<Utc>| t.format("%H:%M:%S%.3f").to_string();
    let axis = |start: DateTime<Utc>, stop: DateTime<Utc>| match (t0, t1) {
        (Some(a), Some(b)) => {
            let total = (b - a).num_milliseconds().max(1) as f64;
            let left = ((start - a).num_milliseconds() as f64 / total * 100.0).clamp(0.0, 99.5);
            let width = ((stop - start).num_milliseconds() as f64 / total * 100.0)
                .max(0.5)
                .min(100.0 - left);
            (format!("{left:.2}"), format!("{width:.2}"))
        }
        _ => ("0".into(), "0".into()),
    };
    PHASES
        .iter()
        .map(|(status, task, range, measure)| {
            let mut p = BootPhase {
                status,
                task,
                steps: BOOT_STEPS
                    .iter()
                    .filter(|st| (range.0..=range.1).contains(&st.n))
                    .cloned()
                    .collect(),
                step_range: match *range {
                    (0, _) => String::new(),
                    (a, b) if a == b => a.to_string(),
                    (a, b) => format!("{a}-{b}"),
                },
                events: match measure {
                    Measure::Nothing => Vec::new(),
                    Measure::Events(names) => names.to_vec(),
                    Measure::HostPrelude | Measure::Active => vec![EV_BUILD],
                },
                recorded: false,
                start: String::new(),
                end: String::new(),
                duration: String::new(),
                left: String::new(),
                width: String::new(),
                failed: false,
                running: false,
                moment: *measure == Measure::Active,
                note: String::new(),
                retries: Vec::new(),
            };
            let spans: Vec<(usize, Span)> = (0..attempts)
                .filter_map(|k| phase_span(*measure, &ev, k).map(|sp| (k, sp)))
                .collect();
            // Active is reached by the last attempt or not at all
            let spans = if *measure == Measure::Active {
                spans
                    .into_iter()
                    .filter(|(k, _)| *k + 1 == attempts)
                    .collect()
            } else {
                spans
            };
            for (i, (k, (start, end, failed, detail))) in spans.into_iter().enumerate() {
                let stop = end.unwrap_or(now);
                let duration = duration_text((stop - start).num_milliseconds().max(0));
                let end_text = end.map(hhmmss).unwrap_or_else(|| "running".into());
                p.failed |= failed;
                if i == 0 {
                    p.recorded = true;
                    p.start = hhmmss(start);
                    p.end = end_text;
                    p.duration = duration;
                    p.running = end.is_none();
                    (p.left, p.width) = axis(start, stop);
                    if !detail.is_empty() {
                        p.note = detail;
                    } else if *measure == Measure::HostPrelude {
                        p.note =
                            "from the build's start on the host until its first phase began".into();
                    }
                } else {
                    p.retries.push(format!(
                        "attempt {}: {} → {end_text} · {duration}{}",
                        k + 1,
                        hhmmss(start),
                        if failed { " · failed" } else { "" }
                    ));
                }
            }
            if !p.recorded {
                p.note = match measure {
                    Measure::Nothing => {
                        "not recorded: it happens before the request reaches compute".into()
                    }
                    Measure::Active => "not reached".into(),
                    _ => "not recorded".into(),
                };
            }
            p
        })
        .collect()
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
    fn boot_phases_measured_from_the_events() {
        let ev = |name: &str, a: &str, b: Option<&str>, result: &str| {
            json!({"event": name, "start_time": format!("2026-01-01T00:00:{a}"),
                "finish_time": b.map(|b| format!("2026-01-01T00:00:{b}")), "result": result})
        };
        let ok = json!({"events": [
            ev(EV_SCHEDULE, "00.000000", Some("00.400000"), "Success"),
            ev(EV_SELECT, "00.100000", Some("00.300000"), "Success"),
            ev(EV_BUILD, "00.500000", Some("05.000000"), "Success"),
            ev(EV_NETWORKING, "00.700000", Some("01.000000"), "Success"),
            ev(EV_SPAWNING, "01.000000", Some("05.000000"), "Success"),
        ]});
        let now = parse_time("2026-01-01T00:01:00Z").unwrap();
        let p = boot_phases(&ok, now);
        let steps: usize = p.iter().map(|x| x.steps.len()).sum();
        assert_eq!(steps, 28, "every step is in one phase");
        let by = |task: &str| p.iter().find(|x| x.task == task).unwrap();
        assert!(!by("authentication").recorded);
        let sched = by("scheduling");
        assert_eq!(sched.step_range, "3-12");
        assert!(sched.steps.iter().any(|s| s.component == "nova-scheduler"
            && s.text.contains("filters and weighers")));
        assert_eq!(
            (sched.start.as_str(), sched.end.as_str()),
            ("00:00:00.000", "00:00:00.400")
        );
        assert_eq!(sched.duration, "400 ms");
        assert_eq!(by("on the host").duration, "200 ms");
        assert_eq!(by("networking").step_range, "22-24");
        assert_eq!(by("spawning").duration, "4.00 s");
        assert_eq!(by("spawning").step_range, "28");
        let bdm = by("block_device_mapping");
        assert!(!bdm.recorded && bdm.note == "not recorded");
        let active = by("Running");
        assert!(active.recorded && active.start == "00:00:05.000");
        assert!(p.iter().all(|x| !x.failed));

        // spawning fails: its phase is red, the build's failure is not blamed on the host
        // prelude, Active is not reached
        let bad = json!({"events": [
            ev(EV_SCHEDULE, "00.000000", Some("00.400000"), "Success"),
            ev(EV_BUILD, "00.500000", Some("02.000000"), "Error"),
            ev(EV_SPAWNING, "01.000000", Some("02.000000"), "Error"),
        ]});
        let p = boot_phases(&bad, now);
        let by = |task: &str| p.iter().find(|x| x.task == task).unwrap().clone();
        assert!(by("spawning").failed);
        assert!(!by("on the host").failed && !by("scheduling").failed);
        assert!(!by("Running").recorded && by("Running").note == "not reached");
        // the build fails before any host phase: the host prelude is red
        let early = json!({"events": [ev(EV_BUILD, "00.500000", Some("00.600000"), "Error")]});
        let p = boot_phases(&early, now);
        assert!(p.iter().find(|x| x.task == "on the host").unwrap().failed);
        // rescheduled: the first attempt's times, the second listed, Active by the last
        let again = json!({"events": [
            ev(EV_SCHEDULE, "00.000000", Some("00.100000"), "Success"),
            ev(EV_BUILD, "00.200000", Some("01.000000"), "Error"),
            ev(EV_SPAWNING, "00.300000", Some("01.000000"), "Error"),
            ev(EV_SCHEDULE, "01.100000", Some("01.200000"), "Success"),
            ev(EV_BUILD, "01.300000", Some("02.000000"), "Success"),
            ev(EV_SPAWNING, "01.400000", Some("02.000000"), "Success"),
        ]});
        let p = boot_phases(&again, now);
        let by = |task: &str| p.iter().find(|x| x.task == task).unwrap().clone();
        let sched = by("scheduling");
        assert_eq!(sched.duration, "100 ms");
        assert_eq!(
            sched.retries,
            vec!["attempt 2: 00:00:01.100 → 00:00:01.200 · 100 ms"]
        );
        assert_eq!(
            (sched.left.as_str(), sched.width.as_str()),
            ("0.00", "5.00")
        );
        let spawn = by("spawning");
        assert!(spawn.failed && spawn.retries[0].starts_with("attempt 2"));
        assert!(by("Running").recorded && by("Running").start == "00:00:02.000");
        // still running: "running", measured up to now
        let running = json!({"events": [ev(EV_SCHEDULE, "00.000000", None, "")]});
        let p = boot_phases(&running, now);
        let s = p.iter().find(|x| x.task == "scheduling").unwrap();
        assert!(s.running && s.end == "running" && s.duration == "60.00 s");
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
