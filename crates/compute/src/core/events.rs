//! External instance events (os-server-external-events): which events a microversion takes,
//! the per-event result codes, delivery to the instance's compute agent, and the waiters a
//! build uses to wait for one (`network-vif-plugged` for a port, as Nova's
//! `wait_for_instance_event`).
//!
//! A waiter is registered in the process of the agent that will receive the event (the
//! events go to the instance's host over the bus). An event that arrives before anyone waits
//! is kept for a while, so `wait_for_event` called after the trigger still sees it.

use bus::{BusExt, Target};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::Instance;
use crate::rpc::{self, ExternalEvent, ExternalInstanceEvents};
use crate::store;

/// The instance action a `volume-extended` event starts (Nova's `EXTEND_VOLUME`).
pub const EXTEND_VOLUME_ACTION: &str = "extend_volume";

/// The event names 2.`minor` accepts (kumo's max is 2.72: power-update (2.76),
/// accelerator-request-bound (2.82) and volume-reimaged (2.93) are refused by the schema).
pub fn event_names(minor: u16) -> Vec<&'static str> {
    let mut v = vec![
        "network-changed",
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
    ];
    if minor >= 51 {
        v.push("volume-extended");
    }
    if minor >= 76 {
        v.push("power-update");
    }
    if minor >= 82 {
        v.push("accelerator-request-bound");
    }
    if minor >= 93 {
        v.push("volume-reimaged");
    }
    v
}

/// Events that mean nothing without a tag (Nova's TAG_REQUIRED).
const TAG_REQUIRED: &[&str] = &[
    "volume-extended",
    "power-update",
    "accelerator-request-bound",
];

pub const STATUSES: &[&str] = &["failed", "completed", "in-progress"];

fn enum_message(v: &Value, allowed: &[&str]) -> String {
    let list = allowed
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let shown = match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    format!("{shown} is not one of [{list}]")
}

/// Validate a request body as Nova's schema for 2.`minor`; the events as given.
pub fn validate(body: &Value, minor: u16) -> Result<Vec<Map<String, Value>>> {
    use crate::api::validate::{invalid, only};
    let o = body
        .as_object()
        .ok_or_else(|| invalid("body", body, format!("{body} is not of type 'object'")))?;
    only(o, &["events"])?;
    let events = match o.get("events") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(invalid(
                "events",
                other,
                format!("{other} is not of type 'array'"),
            ));
        }
        None => {
            return Err(ComputeError::bad(format!(
                "Invalid input for field/attribute events. Value: {body}. 'events' is a required property"
            )));
        }
    };
    if events.is_empty() {
        return Err(invalid("events", &json!([]), "[] should be non-empty"));
    }
    let names = event_names(minor);
    let mut out = Vec::new();
    for (k, e) in events.iter().enumerate() {
        let field = format!("events/{k}");
        let Some(eo) = e.as_object() else {
            return Err(invalid(&field, e, format!("{e} is not of type 'object'")));
        };
        only(eo, &["name", "server_uuid", "status", "tag"])?;
        for req in ["name", "server_uuid"] {
            if !eo.contains_key(req) {
                return Err(invalid(
                    &field,
                    e,
                    format!("'{req}' is a required property"),
                ));
            }
        }
        let name = &eo["name"];
        if !name.as_str().is_some_and(|n| names.contains(&n)) {
            return Err(invalid(
                &format!("{field}/name"),
                name,
                enum_message(name, &names),
            ));
        }
        let su = &eo["server_uuid"];
        match su.as_str() {
            Some(s) if crate::api::validate::is_uuid(s) => {}
            Some(s) => {
                return Err(invalid(
                    &format!("{field}/server_uuid"),
                    su,
                    format!("'{s}' is not a 'uuid'"),
                ));
            }
            None => {
                return Err(invalid(
                    &format!("{field}/server_uuid"),
                    su,
                    format!("{su} is not of type 'string'"),
                ));
            }
        }
        if let Some(st) = eo.get("status")
            && !st.as_str().is_some_and(|s| STATUSES.contains(&s))
        {
            return Err(invalid(
                &format!("{field}/status"),
                st,
                enum_message(st, STATUSES),
            ));
        }
        if let Some(tag) = eo.get("tag") {
            crate::api::validate::string(&format!("{field}/tag"), tag, 255, false)?;
        }
        out.push(eo.clone());
    }
    Ok(out)
}

/// What happens to one event: its result status and code (Nova's): 404 for an unknown (or
/// deleted) server, 400 for a missing required tag, 422 for a server on no host, else 200.
pub fn outcome(instance: Option<&Instance>, name: &str, tag: Option<&str>) -> (&'static str, u16) {
    match instance {
        None => ("failed", 404),
        Some(i) if i.deleted => ("failed", 404),
        Some(_) if tag.is_none() && TAG_REQUIRED.contains(&name) => ("failed", 400),
        Some(i) if i.host.as_deref().is_some_and(|h| !h.is_empty()) => ("completed", 200),
        Some(_) => ("failed", 422),
    }
}

/// The response code: 200 when every event was accepted, else 207 (Nova answers 207 even
/// when all failed since bug 1855752).
pub fn overall(codes: &[u16]) -> u16 {
    if codes.iter().all(|c| *c == 200) {
        200
    } else {
        207
    }
}

type Key = (String, String);

struct Waiter {
    key: Key,
    tag: Option<String>,
    tx: oneshot::Sender<ExternalEvent>,
}

#[derive(Default)]
struct Inner {
    waiting: Vec<Waiter>,
    /// Events nobody waited for yet, newest last.
    arrived: Vec<(ExternalEvent, Instant)>,
}

/// How long an event nobody waited for is kept, and how many.
const KEEP_FOR: Duration = Duration::from_secs(300);
const KEEP_MAX: usize = 1024;

/// The waiters of one process.
#[derive(Default)]
pub struct EventWaiters {
    inner: Mutex<Inner>,
}

/// A registered wait: created before the action that makes the event, awaited after.
pub struct EventWaiter {
    rx: oneshot::Receiver<ExternalEvent>,
    instance: String,
    name: String,
    tag: Option<String>,
}

fn matches(ev: &ExternalEvent, key: &Key, tag: Option<&str>) -> bool {
    ev.instance_uuid == key.0
        && ev.name == key.1
        && tag.is_none_or(|t| ev.tag.as_deref() == Some(t))
}

impl EventWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a wait for `name` (with `tag`, or any tag when None) on `instance`. An event
    /// that already arrived completes it at once.
    pub fn prepare(&self, instance: &str, name: &str, tag: Option<&str>) -> EventWaiter {
        let (tx, rx) = oneshot::channel();
        let key = (instance.to_string(), name.to_string());
        let mut g = self.lock();
        let now = Instant::now();
        g.arrived
            .retain(|(_, at)| now.duration_since(*at) < KEEP_FOR);
        if let Some(pos) = g.arrived.iter().position(|(e, _)| matches(e, &key, tag)) {
            let (ev, _) = g.arrived.remove(pos);
            let _ = tx.send(ev);
        } else {
            g.waiting.retain(|w| !w.tx.is_closed());
            g.waiting.push(Waiter {
                key,
                tag: tag.map(str::to_string),
                tx,
            });
        }
        EventWaiter {
            rx,
            instance: instance.to_string(),
            name: name.to_string(),
            tag: tag.map(str::to_string),
        }
    }

    /// Hand an event to whoever waits for it; returns whether someone did (else it is kept
    /// for a later wait).
    pub fn deliver(&self, ev: &ExternalEvent) -> bool {
        let mut g = self.lock();
        let mut woke = false;
        let waiting = std::mem::take(&mut g.waiting);
        for w in waiting {
            if matches(ev, &w.key, w.tag.as_deref()) {
                woke |= w.tx.send(ev.clone()).is_ok();
            } else if !w.tx.is_closed() {
                g.waiting.push(w);
            }
        }
        if !woke {
            g.arrived.push((ev.clone(), Instant::now()));
            let n = g.arrived.len();
            if n > KEEP_MAX {
                g.arrived.drain(..n - KEEP_MAX);
            }
        }
        woke
    }
}

impl EventWaiter {
    /// Wait for the event; an error after `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<ExternalEvent> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(ev)) => Ok(ev),
            Ok(Err(_)) => Err(ComputeError::Internal(format!(
                "the wait for {} of instance {} was abandoned",
                self.name, self.instance
            ))),
            Err(_) => Err(ComputeError::Internal(format!(
                "timed out after {} s waiting for event {}{} of instance {}",
                timeout.as_secs(),
                self.name,
                self.tag.map(|t| format!(":{t}")).unwrap_or_default(),
                self.instance
            ))),
        }
    }
}

/// One event as the response shows it: the request's fields with the result.
#[derive(Debug, Clone)]
pub struct EventResult {
    pub body: Map<String, Value>,
    pub code: u16,
}

impl ComputeService {
    /// Wait for an external event of an instance (see [`EventWaiters::prepare`] to register
    /// before the action that causes it, which this does not).
    pub async fn wait_for_event(
        &self,
        instance: &str,
        name: &str,
        tag: Option<&str>,
        timeout: Duration,
    ) -> Result<ExternalEvent> {
        self.events.prepare(instance, name, tag).wait(timeout).await
    }

    /// One event from another service in this process, as `POST /os-server-external-events`
    /// would deliver it: the network agent's `network-vif-plugged` (tag: the port) once it has
    /// wired a bound port, the volume service's `volume-extended` (tag: the volume, `by` its
    /// caller). Returns the event's code (200 delivered to the server's host; 404 no such
    /// server; 422 the server is on no host).
    pub async fn deliver_event(
        &self,
        server_uuid: &str,
        name: &str,
        tag: Option<&str>,
        status: &str,
        request_id: &str,
        by: Option<(&str, &str)>,
    ) -> Result<u16> {
        let mut e = Map::new();
        e.insert("server_uuid".into(), json!(server_uuid));
        e.insert("name".into(), json!(name));
        e.insert("status".into(), json!(status));
        if let Some(t) = tag {
            e.insert("tag".into(), json!(t));
        }
        let results = self.external_events(vec![e], request_id, by).await?;
        Ok(results.first().map(|r| r.code).unwrap_or(404))
    }

    /// `POST /os-server-external-events` after validation: find each event's server, set the
    /// result, and cast the accepted ones to their hosts (one message per host).
    ///
    /// `by` (user id, project id) is who sent them: a `volume-extended` event starts the
    /// instance's `extend_volume` action in their name, as Nova's API does.
    pub async fn external_events(
        &self,
        events: Vec<Map<String, Value>>,
        request_id: &str,
        by: Option<(&str, &str)>,
    ) -> Result<Vec<EventResult>> {
        let mut results = Vec::new();
        let mut by_host: BTreeMap<String, Vec<ExternalEvent>> = BTreeMap::new();
        for mut e in events {
            let uuid = e["server_uuid"].as_str().unwrap_or_default().to_string();
            let name = e["name"].as_str().unwrap_or_default().to_string();
            let tag = e.get("tag").and_then(Value::as_str).map(str::to_string);
            let status = e
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("completed")
                .to_string();
            let instance = self.get_instance(&uuid).await?;
            let (result, code) = outcome(instance.as_ref(), &name, tag.as_deref());
            if code == 200
                && let Some(host) = instance.as_ref().and_then(|i| i.host.clone())
            {
                tracing::info!(instance = %uuid, event = %name, tag = ?tag, %host, "external event");
                if name == "volume-extended"
                    && let Some((user_id, project_id)) = by
                {
                    let txn = self.db.write().await?;
                    store::insert_action(
                        &*txn,
                        &uuid,
                        EXTEND_VOLUME_ACTION,
                        request_id,
                        user_id,
                        project_id,
                    )
                    .await?;
                    txn.commit().await?;
                }
                by_host.entry(host).or_default().push(ExternalEvent {
                    instance_uuid: uuid.clone(),
                    name: name.clone(),
                    status,
                    tag: tag.clone(),
                });
            } else {
                tracing::debug!(instance = %uuid, event = %name, code, "external event dropped");
            }
            e.insert("status".into(), json!(result));
            e.insert("code".into(), json!(code));
            results.push(EventResult { body: e, code });
        }
        for (host, events) in by_host {
            let msg = ExternalInstanceEvents { events };
            match self
                .bus()?
                .cast_typed(&Target::server(rpc::COMPUTE_TOPIC, &host), request_id, &msg)
                .await
            {
                Ok(()) => {}
                Err(bus::BusError::NoServer { .. }) => {
                    tracing::warn!(%host, "compute host is down: its external events are lost");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inst(host: Option<&str>, deleted: bool) -> Instance {
        serde_json::from_value(json!({
            "uuid": "u1", "project_id": "p", "user_id": "u", "display_name": "vm",
            "hostname": "vm", "vm_state": "active", "host": host, "deleted": deleted,
            "flavor": {"flavorid": "1", "name": "f", "memory_mb": 64, "vcpus": 1, "root_gb": 1,
                       "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0, "is_public": true},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn result_codes() {
        assert_eq!(outcome(None, "network-changed", None), ("failed", 404));
        let gone = inst(Some("h"), true);
        assert_eq!(outcome(Some(&gone), "network-changed", None).1, 404);
        let nowhere = inst(None, false);
        assert_eq!(
            outcome(Some(&nowhere), "network-vif-plugged", Some("p")),
            ("failed", 422)
        );
        let here = inst(Some("h"), false);
        assert_eq!(
            outcome(Some(&here), "network-vif-plugged", Some("p")),
            ("completed", 200)
        );
        assert_eq!(
            outcome(Some(&here), "volume-extended", None),
            ("failed", 400)
        );
        assert_eq!(overall(&[200, 200]), 200);
        assert_eq!(overall(&[200, 404]), 207);
        assert_eq!(overall(&[404]), 207);
    }

    #[test]
    fn names_per_microversion() {
        let body = |name: &str| {
            json!({"events": [{"name": name,
                "server_uuid": "3df201cf-2451-44f2-8d25-a4ca826fc1f3"}]})
        };
        assert!(validate(&body("network-vif-plugged"), 1).is_ok());
        assert!(validate(&body("volume-extended"), 50).is_err());
        assert!(validate(&body("volume-extended"), 51).is_ok());
        assert!(validate(&body("power-update"), 72).is_err());
        assert!(validate(&body("volume-reimaged"), 72).is_err());
        assert!(validate(&json!({"events": []}), 72).is_err());
        assert!(
            validate(
                &json!({"events": [{"name": "network-changed", "server_uuid": "x"}]}),
                72
            )
            .is_err()
        );
        assert!(
            validate(
                &json!({"events": [{"name": "network-changed",
                    "server_uuid": "3df201cf-2451-44f2-8d25-a4ca826fc1f3", "status": "done"}]}),
                72
            )
            .is_err()
        );
    }

    fn ev(tag: &str) -> ExternalEvent {
        ExternalEvent {
            instance_uuid: "i".into(),
            name: "network-vif-plugged".into(),
            status: "completed".into(),
            tag: Some(tag.into()),
        }
    }

    #[tokio::test]
    async fn waiters_get_their_event_before_or_after_it_arrives() {
        let w = EventWaiters::default();
        // Registered first.
        let a = w.prepare("i", "network-vif-plugged", Some("port-a"));
        assert!(!w.deliver(&ev("port-b")));
        assert!(w.deliver(&ev("port-a")));
        assert_eq!(
            a.wait(Duration::from_secs(1)).await.unwrap().tag.as_deref(),
            Some("port-a")
        );
        // Arrived first (port-b above was kept).
        let b = w.prepare("i", "network-vif-plugged", Some("port-b"));
        assert!(b.wait(Duration::from_secs(1)).await.is_ok());
        // Nothing comes.
        let c = w.prepare("i", "network-vif-plugged", Some("port-c"));
        assert!(c.wait(Duration::from_millis(20)).await.is_err());
    }
}
