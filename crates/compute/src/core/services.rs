//! Compute services (os-services) and hypervisors (os-hypervisors): their records, up/down
//! from the heartbeat, enabling and disabling (which the scheduler's ComputeFilter reads),
//! deleting, and what each node has in use.

use chrono::Utc;

use super::ComputeService;
use super::aggregates::HostAggregates;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::store;

/// The zone Nova puts its control-plane services in (`internal_service_availability_zone`).
pub const INTERNAL_ZONE: &str = "internal";

/// Nova's db servicegroup driver: up while the last heartbeat is younger than
/// `down_time` seconds (`[DEFAULT] service_down_time`), unless forced down.
pub fn service_is_up(s: &Service, now: Timestamp, down_time: i64) -> bool {
    !s.forced_down
        && s.last_seen_up
            .or(s.updated_at)
            .is_some_and(|t| (now - t).num_seconds().abs() <= down_time)
}

/// What an update changes on a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceChange {
    /// Some(true) disables, Some(false) enables (clearing the reason).
    pub disabled: Option<bool>,
    pub disabled_reason: Option<String>,
    pub forced_down: Option<bool>,
}

/// Resources a compute node has in use, from the instances on its host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    pub vcpus_used: i64,
    pub memory_mb_used: i64,
    pub local_gb_used: i64,
    pub running_vms: i64,
    pub current_workload: i64,
}

/// Sum what live instances hold on a host (shelved-offloaded ones hold nothing there);
/// `reserved_mb` is the host memory kept for the hypervisor, counted as used as Nova does.
pub fn node_usage(instances: &[Instance], reserved_mb: i64) -> NodeUsage {
    let mut u = NodeUsage {
        memory_mb_used: reserved_mb,
        ..Default::default()
    };
    for i in instances
        .iter()
        .filter(|i| !i.deleted && i.vm_state != vm_state::SHELVED_OFFLOADED)
    {
        u.vcpus_used += i.flavor.vcpus;
        u.memory_mb_used += i.flavor.memory_mb;
        u.local_gb_used += i.flavor.root_gb + i.flavor.ephemeral_gb;
        u.running_vms += 1;
        if matches!(
            i.task_state.as_deref(),
            Some(
                task_state::SCHEDULING
                    | task_state::NETWORKING
                    | task_state::BLOCK_DEVICE_MAPPING
                    | task_state::SPAWNING
                    | task_state::RESIZE_PREP
                    | task_state::RESIZE_MIGRATING
                    | task_state::RESIZE_FINISH
                    | task_state::REBUILDING
                    | task_state::IMAGE_SNAPSHOT
                    | task_state::IMAGE_UPLOADING
                    | task_state::SHELVING
                    | task_state::UNSHELVING
            )
        ) || i.vm_state == vm_state::BUILDING
        {
            u.current_workload += 1;
        }
    }
    u
}

impl ComputeService {
    /// The zone a service is in: its host's for nova-compute, `internal` for the others.
    pub fn service_zone(aggs: &HostAggregates, s: &Service) -> String {
        if s.binary == "nova-compute" {
            aggs.zone(&s.host)
        } else {
            INTERNAL_ZONE.to_string()
        }
    }

    /// Services as `GET /os-services` lists them (filters host and binary).
    pub async fn services(&self, host: Option<&str>, binary: Option<&str>) -> Result<Vec<Service>> {
        Ok(store::list_services(self.db.conn())
            .await?
            .into_iter()
            .filter(|s| !matches!(s.binary.as_str(), "nova-osapi_compute" | "nova-metadata"))
            .filter(|s| host.is_none_or(|h| h.is_empty() || s.host == h))
            .filter(|s| binary.is_none_or(|b| b.is_empty() || s.binary == b))
            .collect())
    }

    /// A service by its API id: the integer id below 2.53, the uuid from 2.53.
    pub async fn service_by_api_id(&self, id: &str) -> Result<Option<Service>> {
        if let Ok(n) = id.parse::<i32>() {
            return store::get_service(self.db.conn(), n).await;
        }
        Ok(store::list_services(self.db.conn())
            .await?
            .into_iter()
            .find(|s| s.uuid == id))
    }

    /// Apply a change to a nova-compute service (Nova refuses the others).
    pub async fn update_service(&self, mut s: Service, change: &ServiceChange) -> Result<Service> {
        if s.binary != "nova-compute" {
            return Err(ComputeError::bad(format!(
                "Updating a {} service is not supported. Only nova-compute services can be updated.",
                s.binary
            )));
        }
        match change.disabled {
            Some(true) => {
                s.disabled = true;
                s.disabled_reason = change.disabled_reason.clone();
            }
            Some(false) => {
                s.disabled = false;
                s.disabled_reason = None;
            }
            None => {}
        }
        if let Some(f) = change.forced_down {
            s.forced_down = f;
        }
        let txn = self.db.write().await?;
        // Keep the heartbeat's latest counters.
        if let Some(cur) = store::get_service(&*txn, s.id).await? {
            s.report_count = cur.report_count;
            s.last_seen_up = cur.last_seen_up;
        }
        store::update_service(&*txn, &s).await?;
        txn.commit().await?;
        s.updated_at = Some(Utc::now());
        tracing::info!(host = %s.host, binary = %s.binary, disabled = s.disabled, forced_down = s.forced_down, "service updated");
        Ok(s)
    }

    /// The legacy (< 2.53) update by host and binary.
    pub async fn update_service_by_host(
        &self,
        host: &str,
        binary: &str,
        change: &ServiceChange,
    ) -> Result<Service> {
        if binary != "nova-compute" {
            return Err(ComputeError::bad(format!(
                "Updating a {binary} service is not supported. Only nova-compute services can be updated."
            )));
        }
        let s = store::find_service(self.db.conn(), host, binary)
            .await?
            .ok_or_else(|| {
                ComputeError::NotFound(format!("Could not find binary {binary} on host {host}."))
            })?;
        self.update_service(s, change).await
    }

    /// `DELETE /os-services/{id}`: a compute service hosting instances stays (409); its
    /// compute nodes go with it.
    pub async fn delete_service(&self, s: &Service) -> Result<()> {
        let txn = self.db.write().await?;
        if s.binary == "nova-compute" {
            let on_host = store::instances_on_host(&*txn, &s.host).await?;
            if !on_host.is_empty() {
                return Err(ComputeError::conflict(
                    "Unable to delete compute service that is hosting instances. Migrate or delete the instances first.",
                ));
            }
            store::delete_nodes_of_host(&*txn, &s.host).await?;
            // The host leaves its aggregates, as Nova's service delete does.
            for mut a in store::aggregates::list_aggregates(&*txn).await? {
                if a.hosts.contains(&s.host) {
                    a.hosts.retain(|h| *h != s.host);
                    store::aggregates::save_aggregate(&*txn, &mut a).await?;
                }
            }
        }
        store::delete_service(&*txn, s.id).await?;
        txn.commit().await?;
        tracing::info!(host = %s.host, binary = %s.binary, "service deleted");
        Ok(())
    }

    /// The compute nodes with their nova-compute service (nodes without one are skipped, as
    /// Nova skips them).
    pub async fn nodes_with_services(&self) -> Result<Vec<(ComputeNode, Service)>> {
        let services = store::list_services(self.db.conn()).await?;
        Ok(store::list_nodes(self.db.conn())
            .await?
            .into_iter()
            .filter_map(|n| {
                services
                    .iter()
                    .find(|s| s.binary == "nova-compute" && s.host == n.host)
                    .cloned()
                    .map(|s| (n, s))
            })
            .collect())
    }

    /// Whether a service is up by this deployment's service_down_time.
    /// Whether `host`'s nova-compute is up; None when the host has none.
    pub async fn compute_service_up(&self, host: &str) -> Result<Option<bool>> {
        Ok(store::find_service(self.db.conn(), host, "nova-compute")
            .await?
            .map(|s| self.is_up(&s)))
    }

    pub fn is_up(&self, s: &Service) -> bool {
        service_is_up(s, Utc::now(), self.cfg.service_down_time)
    }

    /// What a node has in use.
    pub async fn node_usage(&self, n: &ComputeNode) -> Result<NodeUsage> {
        let on_host = store::instances_on_host(self.db.conn(), &n.host).await?;
        let reserved = crate::manager::reserved_host_memory_mb(
            self.cfg.reserved_host_memory_mb,
            n.resources.memory_mb,
        ) as i64;
        Ok(node_usage(&on_host, reserved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(now: Timestamp, age_s: i64, forced: bool) -> Service {
        Service {
            id: 1,
            uuid: "u".into(),
            host: "h".into(),
            binary: "nova-compute".into(),
            topic: "compute".into(),
            disabled: false,
            disabled_reason: None,
            forced_down: forced,
            report_count: 1,
            last_seen_up: Some(now - chrono::Duration::seconds(age_s)),
            created_at: now,
            updated_at: None,
            version: 1,
        }
    }

    #[test]
    fn up_from_heartbeat_age() {
        let now = Utc::now();
        assert!(service_is_up(&service(now, 5, false), now, 60));
        assert!(service_is_up(&service(now, 60, false), now, 60));
        assert!(!service_is_up(&service(now, 61, false), now, 60));
        assert!(!service_is_up(&service(now, 5, true), now, 60));
        assert!(!service_is_up(&service(now, 7, false), now, 6));
    }

    fn inst(vcpus: i64, ram: i64, vm: &str, task: Option<&str>) -> Instance {
        serde_json::from_value(json!({
            "uuid": "x", "project_id": "p", "user_id": "u", "display_name": "vm",
            "hostname": "vm", "vm_state": vm, "task_state": task,
            "flavor": {"flavorid": "1", "name": "f", "memory_mb": ram, "vcpus": vcpus,
                       "root_gb": 1, "ephemeral_gb": 2, "swap": 0, "rxtx_factor": 1.0,
                       "is_public": true},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn usage_sums_live_instances() {
        let u = node_usage(
            &[
                inst(1, 512, "active", None),
                inst(2, 1024, "building", Some("spawning")),
                inst(4, 4096, "shelved_offloaded", None),
            ],
            512,
        );
        assert_eq!(u.vcpus_used, 3);
        assert_eq!(u.memory_mb_used, 512 + 512 + 1024);
        assert_eq!(u.local_gb_used, 6);
        assert_eq!(u.running_vms, 2);
        assert_eq!(u.current_workload, 1);
    }
}
